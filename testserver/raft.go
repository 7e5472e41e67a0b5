package testserver

import (
	"context"
	"encoding/json"
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

// RaftNode is one `vault server -config` process with integrated storage
// (Raft) on loopback ports, for the crash and failover tests. Each node has
// its own directory with its config file, Raft data, plugin directory and
// log; the log is appended across restarts.
type RaftNode struct {
	ID          string
	Dir         string
	PluginDir   string
	ConfigPath  string
	LogPath     string
	APIPort     int
	ClusterPort int
	Addr        string // http://127.0.0.1:PORT

	// PerfMultiplier scales Raft's timing (1 quickest, the default here;
	// 5 is Vault's default). Set before WriteConfig.
	PerfMultiplier int

	bins    Binaries
	cmd     *exec.Cmd
	exited  chan struct{}
	logFile *os.File
}

// NewRaftNode prepares a node directory root/id with a copy of bins.Plugin
// in its plugin directory and returns the node (not started) and the
// plugin's SHA-256. The node is stopped when the test ends, and the end of
// its log is logged if the test failed.
func NewRaftNode(t testing.TB, bins Binaries, root, id string) (*RaftNode, string) {
	t.Helper()
	n := &RaftNode{ID: id, Dir: filepath.Join(root, id), bins: bins}
	n.PluginDir = filepath.Join(n.Dir, "plugins")
	n.ConfigPath = filepath.Join(n.Dir, "vault.hcl")
	n.LogPath = filepath.Join(n.Dir, "vault.log")
	for _, d := range []string{n.PluginDir, filepath.Join(n.Dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := CopyExecutable(bins.Plugin, filepath.Join(n.PluginDir, PluginName))
	if err != nil {
		t.Fatalf("copy plugin into %s: %v", n.PluginDir, err)
	}
	port, err := FreePortPair()
	if err != nil {
		t.Fatal(err)
	}
	n.APIPort, n.ClusterPort = port, port+1
	n.Addr = "http://127.0.0.1:" + strconv.Itoa(port)
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", n.LogPath, n.LogTail(60))
		}
	})
	return n, sum
}

// WriteConfig writes the node's server configuration from
// scripts/raft-node.hcl, the topology the drill scripts use too: Raft
// storage in its directory (retry_join to the given leaders), a loopback
// listener without TLS for the API, the cluster port next to it, and its
// plugin directory.
func (n *RaftNode) WriteConfig(t testing.TB, joins []*RaftNode) {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join(n.bins.Root, "scripts", "raft-node.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	mult := n.PerfMultiplier
	if mult == 0 {
		mult = 1
	}
	var retry strings.Builder
	for _, j := range joins {
		if j != n {
			fmt.Fprintf(&retry, "  retry_join {\n    leader_api_addr = %q\n  }\n", j.Addr)
		}
	}
	cfg := strings.NewReplacer(
		"@DIR@", n.Dir,
		"@NODE_ID@", n.ID,
		"@PERFORMANCE_MULTIPLIER@", strconv.Itoa(mult),
		"@RETRY_JOIN@", retry.String(),
		"@API_PORT@", strconv.Itoa(n.APIPort),
		"@CLUSTER_PORT@", strconv.Itoa(n.ClusterPort),
	).Replace(string(tmpl))
	if regexp.MustCompile(`@[A-Z_]+@`).MatchString(cfg) {
		t.Fatalf("scripts/raft-node.hcl has a field the harness does not fill in:\n%s", cfg)
	}
	if err := os.WriteFile(n.ConfigPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// StartFresh starts a new node, initialises it with one key share, unseals
// it and waits until it is active; it returns the unseal key and the root
// token.
func (n *RaftNode) StartFresh(t testing.TB) (unsealKey, rootToken string) {
	t.Helper()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	key, token, err := n.Init()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Unseal(key); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitHealth(60*time.Second, http.StatusOK); err != nil {
		t.Fatal(err)
	}
	return key, token
}

// Start runs `vault server -config` and waits until its listener answers
// (sealed or not).
func (n *RaftNode) Start() error {
	if n.Running() {
		return fmt.Errorf("node %s is already running", n.ID)
	}
	f, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "\n==== start %s ====\n", time.Now().Format(time.RFC3339Nano))
	n.logFile = f
	n.cmd = exec.Command(n.bins.Vault, "server", "-config="+n.ConfigPath)
	n.cmd.Dir = n.Dir
	n.cmd.Env = Env(n.Dir)
	n.cmd.Stdout = f
	n.cmd.Stderr = f
	SetChildAttrs(n.cmd)
	if err := n.cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", n.ID, err)
	}
	exited := make(chan struct{})
	n.exited = exited
	cmd := n.cmd
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("node %s exited during start; see %s", n.ID, n.LogPath)
		default:
		}
		if code, err := n.Health(); err == nil && code > 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("node %s: no answer on %s after 30s", n.ID, n.Addr)
}

// Running reports whether the node's Vault process is up.
func (n *RaftNode) Running() bool {
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

// Health returns the status code of /v1/sys/health: 200 active, 429
// standby, 501 not initialised, 503 sealed.
func (n *RaftNode) Health() (int, error) {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(n.Addr + "/v1/sys/health")
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// WaitHealth waits until /sys/health answers one of codes.
func (n *RaftNode) WaitHealth(timeout time.Duration, codes ...int) error {
	deadline := time.Now().Add(timeout)
	last := 0
	for {
		code, err := n.Health()
		if err == nil {
			last = code
			for _, c := range codes {
				if code == c {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: /sys/health %d after %s, want one of %v", n.ID, last, timeout, codes)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Init initialises the node with one unseal key and returns it and the
// root token.
func (n *RaftNode) Init() (unsealKey, rootToken string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	status, out, err := Client{Addr: n.Addr}.Call(ctx, http.MethodPut, "sys/init", map[string]any{"secret_shares": 1, "secret_threshold": 1})
	if err != nil {
		return "", "", err
	}
	if status != http.StatusOK {
		return "", "", fmt.Errorf("sys/init on %s: status %d: %s", n.ID, status, out)
	}
	var body struct {
		Keys      []string `json:"keys_base64"`
		RootToken string   `json:"root_token"`
	}
	if err := json.Unmarshal(out, &body); err != nil || len(body.Keys) != 1 || body.RootToken == "" {
		return "", "", fmt.Errorf("sys/init on %s: unexpected answer %s (%v)", n.ID, out, err)
	}
	return body.Keys[0], body.RootToken, nil
}

// Unseal submits the unseal key, retrying for up to a minute; for a node
// with retry_join this is also what makes it join the cluster.
func (n *RaftNode) Unseal(key string) error {
	c := Client{Addr: n.Addr}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		status, out, err := c.Call(ctx, http.MethodPut, "sys/unseal", map[string]any{"key": key})
		cancel()
		if err == nil && status == http.StatusOK {
			var st struct {
				Sealed *bool `json:"sealed"`
			}
			if json.Unmarshal(out, &st) == nil && st.Sealed != nil && !*st.Sealed {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("unseal %s: %w", n.ID, err)
			}
			return fmt.Errorf("unseal %s: status %d: %s", n.ID, status, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// PID is the Vault process's id (the node must be running).
func (n *RaftNode) PID() int { return n.cmd.Process.Pid }

// Kill9 sends SIGKILL to the Vault process and then to every plugin
// process it had started (a plugin outlives a killed Vault, so a power cut
// is simulated for both).
func (n *RaftNode) Kill9() {
	if !n.Running() {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.exited
	n.killPlugins()
}

// Stop asks Vault to shut down and kills it after a grace period, then
// kills any plugin process left.
func (n *RaftNode) Stop() {
	if n.Running() {
		StopProcess(n.cmd, n.exited, syscall.SIGTERM, 20*time.Second)
	}
	n.killPlugins()
}

// killPlugins kills the processes whose executable lies in the node's
// plugin directory: each is a plugin this node's Vault started.
func (n *RaftNode) killPlugins() {
	for _, pid := range PluginPIDs(n.PluginDir) {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
}

// PluginPIDs lists the processes whose argv[0] lies in dir (from /proc;
// none where there is no /proc).
func PluginPIDs(dir string) []int {
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

// LogTail returns the last lines of the node's log.
func (n *RaftNode) LogTail(lines int) string { return LogTail(n.LogPath, lines) }
