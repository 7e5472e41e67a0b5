package acctest

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6/tf6server"
	tfaddr "github.com/hashicorp/terraform-registry-address"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/terraform-provider-jwtrotor/internal/provider"
)

// terraformDir runs the Terraform binary in a directory of its own, with
// the provider served from this process the way terraform-plugin-testing
// serves it (TF_REATTACH_PROVIDERS), for checks its test steps cannot
// express: every diagnostic of one validate, and a failing init.
type terraformDir struct {
	t        *testing.T
	dir      string
	reattach string
}

func newTerraformDir(t *testing.T, config string) *terraformDir {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reattachCh := make(chan *plugin.ReattachConfig, 1)
	closed := make(chan struct{})
	addr := tfaddr.NewProvider(tfaddr.DefaultProviderRegistryHost, "hashicorp", "jwtrotor")
	go func() {
		err := tf6server.Serve(addr.String(), providerserver.NewProtocol6(provider.New("test")()),
			tf6server.WithDebug(ctx, reattachCh, closed), tf6server.WithLoggingSink(t), tf6server.WithGoPluginLogger(hclog.NewNullLogger()))
		if err != nil {
			t.Errorf("serve the provider: %v", err)
		}
	}()
	cfg := <-reattachCh
	t.Cleanup(func() {
		cancel()
		<-closed
	})
	info := map[string]any{addr.String(): map[string]any{
		"Protocol": string(cfg.Protocol), "ProtocolVersion": cfg.ProtocolVersion, "Pid": cfg.Pid, "Test": cfg.Test,
		"Addr": map[string]string{"Network": cfg.Addr.Network(), "String": cfg.Addr.String()},
	}}
	b, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	return &terraformDir{t: t, dir: dir, reattach: string(b)}
}

// run runs terraform with args and returns its stdout, stderr and whether
// it exited 0.
func (d *terraformDir) run(args ...string) (string, string, bool) {
	d.t.Helper()
	cmd := exec.Command(env.terraform, args...)
	cmd.Dir = d.dir
	cmd.Env = append(os.Environ(), "TF_REATTACH_PROVIDERS="+d.reattach, "TF_IN_AUTOMATION=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
		d.t.Fatalf("terraform %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), err == nil
}
