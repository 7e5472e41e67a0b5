package acctest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/vault/api"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/terraform-provider-jwtrotor/internal/provider"
	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// The acceptance tests run the Terraform binary named by
// TF_ACC_TERRAFORM_PATH against a Vault v1.21.0 dev server they start from
// the repository's bin/vault, with the plugin from bin/plugins registered by
// its sha256, the way an operator registers it. The provider is served from
// this process (ProtoV6ProviderFactories): terraform init installs nothing,
// and the harness makes sure it cannot, by a CLI configuration whose only
// installation method is an empty local mirror and by pointing every proxy
// variable at a local listener that counts connections (there must be none).

// pluginVersion is the version the plugin under test reports: the
// checkout's (scripts/version.sh), which `make plugin` stamps into it and
// names its file after.
var pluginVersion string

// env is shared by the tests; nil when TF_ACC is not set.
var env *harness

type harness struct {
	addr      string
	root      *api.Client
	terraform string
	tfVersion string
	cliConfig string
	proxyHits *proxyCounter
	serverDir string
	srv       *testserver.DevServer
	keepDir   bool
}

// providers serves the provider in-process; "jwtrotor" is the type name the
// test configurations use without any required_providers block.
var providers = map[string]func() (tfprotov6.ProviderServer, error){
	"jwtrotor": providerserver.NewProtocol6WithError(provider.New("test")()),
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Getenv("TF_ACC") == "" {
		// Every test skips; make test fails on a skip and says why.
		fmt.Fprintln(os.Stderr, "TF_ACC is not set: the acceptance tests skip (make test sets TF_ACC=1)")
		return m.Run()
	}
	h, err := setUp()
	if h != nil {
		defer h.stop()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "acceptance harness: %v\n", err)
		if h != nil {
			h.keepDir = true
			h.printLogTail()
		}
		return 1
	}
	env = h
	code := m.Run()
	if n, first := h.proxyHits.count(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: Terraform tried to reach the network %d time(s) through the proxy (first: %s); the tests must install nothing\n", n, first)
		code = 1
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "the Vault server log is kept at %s\n", h.srv.LogPath)
		h.keepDir = true
	}
	return code
}

func setUp() (*harness, error) {
	h := &harness{}
	h.terraform = os.Getenv("TF_ACC_TERRAFORM_PATH")
	if h.terraform == "" {
		return nil, errors.New("TF_ACC is set but TF_ACC_TERRAFORM_PATH is not: name the Terraform binary to test with (make test sets it from the PATH)")
	}
	out, err := exec.Command(h.terraform, "version").Output()
	if err != nil {
		return nil, fmt.Errorf("TF_ACC_TERRAFORM_PATH=%s does not run: %v", h.terraform, err)
	}
	h.tfVersion = strings.SplitN(string(out), "\n", 2)[0]
	fmt.Fprintf(os.Stderr, "acceptance tests with %s (%s)\n", h.tfVersion, h.terraform)

	bins, err := testserver.FindBinaries()
	if err != nil {
		return nil, err
	}
	pluginVersion = bins.Version

	h.serverDir, err = os.MkdirTemp("", "jwtrotor-tfacc-")
	if err != nil {
		return nil, err
	}
	if err := h.sealInstallation(); err != nil {
		return h, err
	}
	if err := h.startVault(bins); err != nil {
		return h, err
	}
	return h, nil
}

// sealInstallation makes any provider installation fail locally and any
// network access by Terraform visible.
func (h *harness) sealInstallation() error {
	mirror := filepath.Join(h.serverDir, "empty-mirror")
	if err := os.Mkdir(mirror, 0o755); err != nil {
		return err
	}
	h.cliConfig = filepath.Join(h.serverDir, "terraform.rc")
	rc := fmt.Sprintf("provider_installation {\n  filesystem_mirror {\n    path = %q\n  }\n}\n", mirror)
	if err := os.WriteFile(h.cliConfig, []byte(rc), 0o644); err != nil {
		return err
	}
	counter, err := startProxyCounter()
	if err != nil {
		return err
	}
	h.proxyHits = counter
	for k, v := range map[string]string{
		"TF_CLI_CONFIG_FILE": h.cliConfig,
		"CHECKPOINT_DISABLE": "1",
		"HTTP_PROXY":         counter.url,
		"HTTPS_PROXY":        counter.url,
		"http_proxy":         counter.url,
		"https_proxy":        counter.url,
		"NO_PROXY":           "",
		"no_proxy":           "",
	} {
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	return os.Unsetenv("TF_PLUGIN_CACHE_DIR")
}

// startVault starts the dev server (testserver.StartDev, which registers
// the plugin) in the harness's directory; the server gets neither the
// VAULT_* variables of this process nor the proxy.
func (h *harness) startVault(bins testserver.Binaries) error {
	var err error
	h.srv, err = testserver.StartDev(bins, testserver.DevOptions{Dir: h.serverDir})
	if err != nil {
		return err
	}
	h.addr = h.srv.Addr
	conf := api.DefaultConfig()
	conf.Address = h.addr
	h.root, err = api.NewClient(conf)
	if err != nil {
		return err
	}
	h.root.SetToken(testserver.RootToken)
	// The provider under test finds Vault the way an operator's does.
	os.Setenv("VAULT_ADDR", h.addr)
	os.Setenv("VAULT_TOKEN", testserver.RootToken)
	os.Unsetenv("VAULT_NAMESPACE")
	return nil
}

func (h *harness) stop() {
	if h.srv != nil {
		h.srv.Stop()
	}
	if h.proxyHits != nil {
		h.proxyHits.close()
	}
	if !h.keepDir && h.serverDir != "" {
		os.RemoveAll(h.serverDir)
	}
}

func (h *harness) printLogTail() {
	if h.srv == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "--- end of the Vault server log (whole log at %s) ---\n%s\n---\n", h.srv.LogPath, h.srv.LogTail(60))
}

// proxyCounter accepts connections meant for the network and counts them.
type proxyCounter struct {
	url   string
	l     net.Listener
	n     atomic.Int64
	mu    sync.Mutex
	first string
}

func startProxyCounter() (*proxyCounter, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxyCounter{url: "http://" + l.Addr().String(), l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.n.Add(1)
			go func() {
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				p.mu.Lock()
				if p.first == "" {
					p.first = strings.TrimSpace(line)
				}
				p.mu.Unlock()
				_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}()
		}
	}()
	return p, nil
}

func (p *proxyCounter) count() (int64, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n.Load(), p.first
}

func (p *proxyCounter) close() { p.l.Close() }

// need skips a test that talks to Vault when the harness is not running;
// make test fails on any skip.
func need(t *testing.T) {
	t.Helper()
	if env == nil {
		t.Skip("TF_ACC is not set: acceptance tests skip (make test sets TF_ACC=1)")
	}
}

// newMount enables the plugin at jwt-<name>, tuned as the repository's
// acceptance tests tune it (testserver.MountPlugin), and disables it when the test ends. Every test
// has its own mount (config and JWKS are mount-wide) and its own ring names
// (a drained ring's name stays taken).
func newMount(t *testing.T, name string) string {
	t.Helper()
	mount := "jwt-" + name
	t.Cleanup(func() {
		if _, err := env.root.Logical().Delete("sys/mounts/" + mount); err != nil {
			t.Logf("disable %s: %v", mount, err)
		}
	})
	if err := testserver.MountPlugin(env.srv.Root(), mount, pluginVersion); err != nil {
		t.Fatal(err)
	}
	return mount
}

// providerBlock configures the provider for a mount; address and token come
// from VAULT_ADDR and VAULT_TOKEN.
func providerBlock(mount string) string {
	return fmt.Sprintf("provider \"jwtrotor\" {\n  mount = %q\n}\n", mount)
}

// vaultRead reads a path as root; nil when nothing is there.
func vaultRead(t *testing.T, p string) map[string]any {
	t.Helper()
	s, err := env.root.Logical().Read(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	if s == nil {
		return nil
	}
	return s.Data
}

func vaultWrite(t *testing.T, p string, data map[string]any) *api.Secret {
	t.Helper()
	s, err := env.root.Logical().Write(p, data)
	if err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	return s
}

// document fetches an unauthenticated document of a mount as a verifier does.
func document(t *testing.T, mount, rel string) []byte {
	t.Helper()
	resp, err := http.Get(env.addr + "/v1/" + mount + "/" + rel)
	if err != nil {
		t.Fatalf("GET %s: %v", rel, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", rel, resp.StatusCode, b)
	}
	return b
}
