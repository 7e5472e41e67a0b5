package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// This file runs real `vault server -config` processes with integrated
// storage (Raft) on loopback ports, for the crash and failover tests. Each
// node has its own directory with its config file, Raft data, plugin
// directory and log.

// safRaftNode is one Vault server process with persistent Raft storage.
type safRaftNode struct {
	id          string
	dir         string
	pluginDir   string
	configPath  string
	logPath     string
	apiPort     int
	clusterPort int
	addr        string // http://127.0.0.1:PORT
	vaultBin    string

	// perfMultiplier scales Raft's timing (1 quickest; 5 is Vault's
	// default).
	perfMultiplier int

	cmd     *exec.Cmd
	exited  chan struct{}
	logFile *os.File
}

// newSafRaftNode prepares a node directory with the plugin binary in its
// plugin directory and returns the node (not started) and the binary's
// SHA-256.
func newSafRaftNode(t *testing.T, root, id, vaultBin, pluginBin string) (*safRaftNode, string) {
	t.Helper()
	n := &safRaftNode{id: id, dir: filepath.Join(root, id), vaultBin: vaultBin}
	n.pluginDir = filepath.Join(n.dir, "plugins")
	n.configPath = filepath.Join(n.dir, "vault.hcl")
	n.logPath = filepath.Join(n.dir, "vault.log")
	for _, d := range []string{n.pluginDir, filepath.Join(n.dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := copyExecutable(pluginBin, filepath.Join(n.pluginDir, pluginName))
	if err != nil {
		t.Fatalf("copy plugin into %s: %v", n.pluginDir, err)
	}
	port, err := freePortPair()
	if err != nil {
		t.Fatal(err)
	}
	n.apiPort, n.clusterPort = port, port+1
	n.addr = "http://127.0.0.1:" + strconv.Itoa(port)
	return n, sum
}

// writeConfig writes the node's server configuration from
// scripts/raft-node.hcl, the topology the drill scripts use too: Raft
// storage in its directory (retry_join to the given leaders), a loopback
// listener without TLS for the API, the cluster port next to it, and its
// plugin directory. performance_multiplier (n.perfMultiplier, default 1)
// scales Raft's timeouts: 1 elects a leader as quickly as Raft allows.
func (n *safRaftNode) writeConfig(t *testing.T, joins []*safRaftNode) {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join("..", "scripts", "raft-node.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	mult := n.perfMultiplier
	if mult == 0 {
		mult = 1
	}
	var retry strings.Builder
	for _, j := range joins {
		if j != n {
			fmt.Fprintf(&retry, "  retry_join {\n    leader_api_addr = %q\n  }\n", j.addr)
		}
	}
	cfg := strings.NewReplacer(
		"@DIR@", n.dir,
		"@NODE_ID@", n.id,
		"@PERFORMANCE_MULTIPLIER@", strconv.Itoa(mult),
		"@RETRY_JOIN@", retry.String(),
		"@API_PORT@", strconv.Itoa(n.apiPort),
		"@CLUSTER_PORT@", strconv.Itoa(n.clusterPort),
	).Replace(string(tmpl))
	if regexp.MustCompile(`@[A-Z_]+@`).MatchString(cfg) {
		t.Fatalf("scripts/raft-node.hcl has a field this test does not fill in:\n%s", cfg)
	}
	if err := os.WriteFile(n.configPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startFresh starts a new node, initialises it with one key share,
// unseals it and waits until it is active; it returns the unseal key and
// the root token.
func (n *safRaftNode) startFresh(t *testing.T) (unsealKey, rootToken string) {
	t.Helper()
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
	key, token, err := safVaultInit(n)
	if err != nil {
		t.Fatal(err)
	}
	if err := safUnseal(n, key); err != nil {
		t.Fatal(err)
	}
	if err := n.waitHealth(60*time.Second, http.StatusOK); err != nil {
		t.Fatal(err)
	}
	return key, token
}

// start runs `vault server -config`; the log is appended across restarts.
func (n *safRaftNode) start() error {
	if n.cmd != nil {
		select {
		case <-n.exited:
		default:
			return fmt.Errorf("node %s is already running", n.id)
		}
	}
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "\n==== start %s ====\n", time.Now().Format(time.RFC3339Nano))
	n.logFile = f
	n.cmd = exec.Command(n.vaultBin, "server", "-config="+n.configPath)
	n.cmd.Dir = n.dir
	n.cmd.Env = serverEnv(n.dir)
	n.cmd.Stdout = f
	n.cmd.Stderr = f
	setChildAttrs(n.cmd)
	if err := n.cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", n.id, err)
	}
	exited := make(chan struct{})
	n.exited = exited
	cmd := n.cmd
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(exited)
	}()
	// The listener is up once /sys/health answers at all (sealed or not).
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("node %s exited during start; see %s", n.id, n.logPath)
		default:
		}
		if code, err := n.health(); err == nil && code > 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("node %s: no answer on %s after 30s", n.id, n.addr)
}

func (n *safRaftNode) running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// health returns the status code of /v1/sys/health: 200 active, 429
// standby, 501 not initialised, 503 sealed.
func (n *safRaftNode) health() (int, error) {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(n.addr + "/v1/sys/health")
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// waitHealth waits until /sys/health answers one of codes.
func (n *safRaftNode) waitHealth(timeout time.Duration, codes ...int) error {
	deadline := time.Now().Add(timeout)
	last := 0
	for {
		code, err := n.health()
		if err == nil {
			last = code
			for _, c := range codes {
				if code == c {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: /sys/health %d after %s, want one of %v", n.id, last, timeout, codes)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill9 sends SIGKILL to the Vault process and then to every plugin
// process it had started (a plugin outlives a killed Vault, so a power cut
// is simulated for both). Plugin processes are found by their executable
// path, which lies in this node's own plugin directory.
func (n *safRaftNode) kill9() {
	if !n.running() {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	n.killPlugins()
}

// stop asks Vault to shut down and kills it after a grace period.
func (n *safRaftNode) stop() {
	if n.running() {
		stopProcess(n.cmd, n.exited, syscall.SIGTERM, 20*time.Second)
	}
	n.killPlugins()
}

// killPlugins kills processes whose executable lies in the node's plugin
// directory; each is a plugin this node's Vault started.
func (n *safRaftNode) killPlugins() {
	for _, pid := range safPluginPIDs(n.pluginDir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func safPluginPIDs(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		argv0, _, _ := strings.Cut(string(raw), "\x00")
		if strings.HasPrefix(argv0, dir+string(filepath.Separator)) {
			out = append(out, pid)
		}
	}
	return out
}

// logTail returns the last lines of the node's log.
func (n *safRaftNode) logTail(lines int) string {
	raw, err := os.ReadFile(n.logPath)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// safVaultInit initialises a node with one unseal key and returns it and the
// root token.
func safVaultInit(n *safRaftNode) (unsealKey, rootToken string, err error) {
	c := newVaultClient(n.addr, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := c.call(ctx, http.MethodPut, "sys/init", map[string]any{"secret_shares": 1, "secret_threshold": 1})
	if err != nil {
		return "", "", err
	}
	if resp.Status != http.StatusOK {
		return "", "", fmt.Errorf("sys/init on %s: status %d: %s", n.id, resp.Status, resp.Body)
	}
	var body struct {
		Keys      []string `json:"keys_base64"`
		RootToken string   `json:"root_token"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil || len(body.Keys) != 1 || body.RootToken == "" {
		return "", "", fmt.Errorf("sys/init on %s: unexpected answer %s (%v)", n.id, resp.Body, err)
	}
	return body.Keys[0], body.RootToken, nil
}

// safUnseal submits the unseal key; for a node with retry_join this is also
// what makes it join the cluster.
func safUnseal(n *safRaftNode, key string) error {
	c := newVaultClient(n.addr, "")
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := c.call(ctx, http.MethodPut, "sys/unseal", map[string]any{"key": key})
		cancel()
		if err == nil && resp.Status == http.StatusOK {
			var st struct {
				Sealed *bool `json:"sealed"`
			}
			if json.Unmarshal(resp.Body, &st) == nil && st.Sealed != nil && !*st.Sealed {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("unseal %s: %w", n.id, err)
			}
			return fmt.Errorf("unseal %s: status %d: %s", n.id, resp.Status, resp.Body)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// safRegisterPlugin registers the plugin by checksum and version with the
// given environment for its process, and mounts nothing.
func safRegisterPlugin(t testing.TB, c *vaultClient, sha string, pluginEnv []string) {
	t.Helper()
	body := map[string]any{
		"sha256":  sha,
		"command": pluginName,
		"version": pluginVersion,
		"env":     pluginEnv,
	}
	if pluginEnv == nil {
		body["env"] = []string{}
	}
	c.mustDo(t, http.MethodPut, "sys/plugins/catalog/secret/"+pluginName, body)
}

// safMountPlugin enables the plugin at path, tunes the mount for the JWKS
// headers, and writes its config.
func safMountPlugin(t testing.TB, c *vaultClient, path, issuer string, maxAge int) {
	t.Helper()
	c.mustWrite(t, "sys/mounts/"+path, map[string]any{"type": pluginName, "config": map[string]any{"plugin_version": pluginVersion}})
	c.mustWrite(t, "sys/mounts/"+path+"/tune", map[string]any{
		"allowed_response_headers":    []string{"ETag", "Last-Modified"},
		"passthrough_request_headers": []string{"If-None-Match", "User-Agent"},
	})
	c.mustWrite(t, path+"/config", map[string]any{"issuer": issuer, "jwks_max_age": maxAge})
}

// safMustWriteRetry writes and requires a 2xx, retrying a transport error
// or a 5xx for up to 30s (a cluster that has just formed may still move its
// leadership).
func safMustWriteRetry(t testing.TB, c *vaultClient, path string, body any) *apiResponse {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for retried := false; ; retried = true {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := c.call(ctx, http.MethodPost, path, body)
		cancel()
		if err == nil && resp.Status >= 200 && resp.Status < 300 {
			return resp
		}
		// A mount whose first attempt went through before the error.
		if err == nil && retried && resp.Status == http.StatusBadRequest && resp.errorsMention("already in use") {
			return resp
		}
		if err == nil && resp.Status < 500 {
			t.Fatalf("POST %s: status %d, errors %q", path, resp.Status, resp.Errors)
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("POST %s: %v", path, err)
			}
			t.Fatalf("POST %s: status %d, errors %q", path, resp.Status, resp.Errors)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// safReadRing reads keys/<name> through any client and requires exactly one
// active key.
func safReadRing(t testing.TB, c *vaultClient, mountPath, name string) ring {
	t.Helper()
	resp := c.mustRead(t, mountPath+"/keys/"+name)
	r := ringFromData(t, name, resp.Data)
	if n := len(r.inState("active")); n != 1 {
		t.Fatalf("keys/%s has %d active keys, want exactly 1: %+v", name, n, r.SigningKeys)
	}
	return r
}

// safWaitMount retries a read until the mount answers (its plugin may still
// be starting after an unseal or a failover).
func safWaitMount(c *vaultClient, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := c.call(ctx, http.MethodGet, path, nil)
		cancel()
		if err == nil && resp.Status == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("status %d: %s", resp.Status, resp.Body)
			}
			return fmt.Errorf("GET %s not answering after %s: %w", path, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// safCrashhookPlugin is the plugin built with the crashhook tag by `make
// test` (target plugin-crashhook).
func safCrashhookPlugin() (string, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "bin", "plugins-crashhook", pluginName)
	info, err := os.Stat(p)
	if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		return "", errors.New("the crash tests need " + p + ": run `make test` (or `make plugin-crashhook`) at the repository root first")
	}
	return p, nil
}
