package acctest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/vault/api"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/terraform-provider-jwtrotor/internal/provider"
)

// The acceptance tests run the Terraform binary named by
// TF_ACC_TERRAFORM_PATH against a Vault v1.21.0 dev server they start from
// the repository's bin/vault, with the plugin from bin/plugins registered by
// its sha256, the way an operator registers it. The provider is served from
// this process (ProtoV6ProviderFactories): terraform init installs nothing,
// and the harness makes sure it cannot, by a CLI configuration whose only
// installation method is an empty local mirror and by pointing every proxy
// variable at a local listener that counts connections (there must be none).

const (
	pluginName = "vault-plugin-jwt-rotor"
	rootToken  = "root"
)

// pluginVersion is the version the plugin under test reports: the
// checkout's (scripts/version.sh), which `make plugin` stamps into it and
// names its file after.
var pluginVersion string

// env is shared by the tests; nil when TF_ACC is not set.
var env *harness

type harness struct {
	addr       string
	root       *api.Client
	terraform  string
	tfVersion  string
	cliConfig  string
	proxyHits  *proxyCounter
	serverDir  string
	serverLog  string
	serverDone chan struct{}
	cmd        *exec.Cmd
	keepDir    bool
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
		fmt.Fprintf(os.Stderr, "the Vault server log is kept at %s\n", h.serverLog)
		h.keepDir = true
	}
	return code
}

func setUp() (*harness, error) {
	h := &harness{serverDone: make(chan struct{})}
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

	root, err := filepath.Abs("../../..")
	if err != nil {
		return nil, err
	}
	version, err := exec.Command(filepath.Join(root, "scripts", "version.sh")).Output()
	if err != nil {
		return nil, fmt.Errorf("scripts/version.sh: %v", err)
	}
	pluginVersion = strings.TrimSpace(string(version))
	vaultBin := filepath.Join(root, "bin", "vault")
	pluginBin := filepath.Join(root, "bin", "plugins", pluginName+"_"+pluginVersion)
	for _, p := range []string{vaultBin, pluginBin} {
		if info, err := os.Stat(p); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("the acceptance tests need %s: run make provider-test (or make vault plugin) at the repository root", p)
		}
	}

	h.serverDir, err = os.MkdirTemp("", "jwtrotor-tfacc-")
	if err != nil {
		return nil, err
	}
	if err := h.sealInstallation(); err != nil {
		return h, err
	}
	if err := h.startVault(vaultBin, pluginBin); err != nil {
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

func (h *harness) startVault(vaultBin, pluginBin string) error {
	pluginDir := filepath.Join(h.serverDir, "plugins")
	if err := os.Mkdir(pluginDir, 0o755); err != nil {
		return err
	}
	sum, err := copyExecutable(pluginBin, filepath.Join(pluginDir, pluginName))
	if err != nil {
		return fmt.Errorf("copy plugin: %w", err)
	}
	port, err := freePortPair()
	if err != nil {
		return err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	h.addr = "http://" + listen
	h.serverLog = filepath.Join(h.serverDir, "vault.log")
	logFile, err := os.Create(h.serverLog)
	if err != nil {
		return err
	}
	h.cmd = exec.Command(vaultBin, "server", "-dev",
		"-dev-root-token-id="+rootToken,
		"-dev-listen-address="+listen,
		"-dev-plugin-dir="+pluginDir,
		"-dev-plugin-init=false",
		"-dev-no-store-token",
	)
	h.cmd.Dir = h.serverDir
	h.cmd.Stdout, h.cmd.Stderr = logFile, logFile
	// The server gets neither the VAULT_* variables of this process nor
	// the proxy, and stops if the test binary dies.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(strings.ToUpper(kv), "HTTP") && !strings.HasPrefix(kv, "HOME=") {
			h.cmd.Env = append(h.cmd.Env, kv)
		}
	}
	h.cmd.Env = append(h.cmd.Env, "HOME="+h.serverDir)
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := h.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", vaultBin, err)
	}
	go func() {
		_ = h.cmd.Wait()
		logFile.Close()
		close(h.serverDone)
	}()

	conf := api.DefaultConfig()
	conf.Address = h.addr
	h.root, err = api.NewClient(conf)
	if err != nil {
		return err
	}
	h.root.SetToken(rootToken)
	if err := h.waitHealthy(); err != nil {
		return err
	}
	if _, err := h.root.Logical().Write("sys/plugins/catalog/secret/"+pluginName, map[string]any{
		"sha256": sum, "command": pluginName, "version": pluginVersion,
	}); err != nil {
		return fmt.Errorf("register the plugin: %w", err)
	}
	// The provider under test finds Vault the way an operator's does.
	os.Setenv("VAULT_ADDR", h.addr)
	os.Setenv("VAULT_TOKEN", rootToken)
	os.Unsetenv("VAULT_NAMESPACE")
	return nil
}

// waitHealthy polls until the server answers; a server that exits first
// fails at once. The bound is a count of polls.
func (h *harness) waitHealthy() error {
	var last error
	for range 300 {
		select {
		case <-h.serverDone:
			return fmt.Errorf("vault server exited during start; see %s", h.serverLog)
		default:
		}
		health, err := h.root.Sys().Health()
		if err == nil && health.Initialized && !health.Sealed {
			return nil
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("vault server at %s not healthy after 300 polls (last error: %v)", h.addr, last)
}

func (h *harness) stop() {
	if h.cmd != nil && h.cmd.Process != nil {
		_ = h.cmd.Process.Signal(os.Interrupt)
		select {
		case <-h.serverDone:
		case <-time.After(20 * time.Second):
			_ = h.cmd.Process.Kill()
			<-h.serverDone
		}
	}
	if h.proxyHits != nil {
		h.proxyHits.close()
	}
	if !h.keepDir && h.serverDir != "" {
		os.RemoveAll(h.serverDir)
	}
}

func (h *harness) printLogTail() {
	if h.serverLog == "" {
		return
	}
	f, err := os.Open(h.serverLog)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 60 {
			lines = lines[1:]
		}
	}
	fmt.Fprintf(os.Stderr, "--- end of the Vault server log (whole log at %s) ---\n%s\n---\n", h.serverLog, strings.Join(lines, "\n"))
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

// freePortPair finds a loopback port p with p+1 free as well: a server also
// binds its cluster listener to the next port. The pair is drawn below the
// kernel's ephemeral range: a port the kernel hands out (":0") goes back to
// that range when its listener closes, and a node killed and restarted on
// it finds it taken by some outgoing connection's source port (seen as
// "bind: address already in use" on a restarted Raft node's cluster port).
func freePortPair() (int, error) {
	low := ephemeralLow()
	for range 200 {
		port := 10000 + rand.IntN(low-10000-1)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+1))
		l.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return port, nil
	}
	return 0, errors.New("no free pair of loopback ports found below the ephemeral range")
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default, 32768, where the range cannot be read).
func ephemeralLow() int {
	const fallback = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return fallback
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 11000 {
		return fallback
	}
	return n
}

func copyExecutable(src, dst string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), in); err != nil {
		out.Close()
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// need skips a test that talks to Vault when the harness is not running;
// make test fails on any skip.
func need(t *testing.T) {
	t.Helper()
	if env == nil {
		t.Skip("TF_ACC is not set: acceptance tests skip (make test sets TF_ACC=1)")
	}
}

// newMount enables the plugin at jwt-<name>, tuned as the repository's
// acceptance tests tune it, and disables it when the test ends. Every test
// has its own mount (config and JWKS are mount-wide) and its own ring names
// (a drained ring's name stays taken).
func newMount(t *testing.T, name string) string {
	t.Helper()
	mount := "jwt-" + name
	if _, err := env.root.Logical().Write("sys/mounts/"+mount, map[string]any{
		"type": pluginName, "config": map[string]any{"plugin_version": pluginVersion},
	}); err != nil {
		t.Fatalf("enable %s: %v", mount, err)
	}
	t.Cleanup(func() {
		if _, err := env.root.Logical().Delete("sys/mounts/" + mount); err != nil {
			t.Logf("disable %s: %v", mount, err)
		}
	})
	if _, err := env.root.Logical().Write("sys/mounts/"+mount+"/tune", map[string]any{
		"allowed_response_headers":    []string{"ETag", "Last-Modified"},
		"passthrough_request_headers": []string{"If-None-Match", "User-Agent"},
	}); err != nil {
		t.Fatalf("tune %s: %v", mount, err)
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
