package tests

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
	"time"
)

const (
	pluginName = "vault-plugin-jwt-rotor"
	rootToken  = "root"
)

// pluginVersion is the version the binaries under test report: the
// checkout's (scripts/version.sh), which `make plugin` stamps into them and
// names the plugin's file after. Set by repoBinaries.
var pluginVersion string

// devServer is one `vault server -dev` process with its own plugin directory
// and log file.
type devServer struct {
	addr      string // http://127.0.0.1:PORT
	dir       string // holds plugins/ and vault.log
	logPath   string
	pluginSHA string
	cmd       *exec.Cmd
	exited    chan struct{}
	exitErr   error
	logFile   *os.File
}

// repoBinaries returns the Vault and plugin binaries that `make test` builds,
// or an error that says how to build them, and sets pluginVersion.
func repoBinaries() (vault, plugin string, err error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return "", "", err
	}
	out, err := exec.Command(filepath.Join(root, "scripts", "version.sh")).Output()
	if err != nil {
		return "", "", fmt.Errorf("scripts/version.sh: %w", err)
	}
	pluginVersion = strings.TrimSpace(string(out))
	vault = filepath.Join(root, "bin", "vault")
	plugin = filepath.Join(root, "bin", "plugins", pluginName+"_"+pluginVersion)
	for _, p := range []string{vault, plugin} {
		info, err := os.Stat(p)
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			return "", "", fmt.Errorf("acceptance tests need %s: run `make test` (or `make vault plugin`) at the repository root first", p)
		}
	}
	return vault, plugin, nil
}

// startDevServer starts Vault in dev mode on a free loopback port. The plugin
// directory holds a copy of the plugin binary so that rebuilding it while the
// tests run cannot change what the catalog's checksum refers to. Plugins are
// not auto-registered (-dev-plugin-init=false): the harness registers the
// plugin by checksum and version the way an operator does.
func startDevServer(vaultBin, pluginBin string) (*devServer, error) {
	dir, err := os.MkdirTemp("", "jwt-rotor-acc-")
	if err != nil {
		return nil, err
	}
	s := &devServer{dir: dir, logPath: filepath.Join(dir, "vault.log"), exited: make(chan struct{})}
	pluginDir := filepath.Join(dir, "plugins")
	if err := os.Mkdir(pluginDir, 0o755); err != nil {
		return s, err
	}
	sum, err := copyExecutable(pluginBin, filepath.Join(pluginDir, pluginName))
	if err != nil {
		return s, fmt.Errorf("copy plugin: %w", err)
	}
	s.pluginSHA = sum

	port, err := freePortPair()
	if err != nil {
		return s, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	s.addr = "http://" + listen

	s.logFile, err = os.Create(s.logPath)
	if err != nil {
		return s, err
	}
	s.cmd = exec.Command(vaultBin, "server",
		"-dev",
		"-dev-root-token-id="+rootToken,
		"-dev-listen-address="+listen,
		"-dev-plugin-dir="+pluginDir,
		"-dev-plugin-init=false",
		"-dev-no-store-token",
		"-log-level=debug",
	)
	s.cmd.Dir = dir
	s.cmd.Env = serverEnv(dir)
	s.cmd.Stdout = s.logFile
	s.cmd.Stderr = s.logFile
	setChildAttrs(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return s, fmt.Errorf("start %s: %w", vaultBin, err)
	}
	go func() {
		s.exitErr = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitHealthy(60 * time.Second); err != nil {
		return s, err
	}
	return s, nil
}

// serverEnv is the caller's environment without VAULT_* variables, which
// would otherwise override the flags, and with HOME pointed at the scratch
// directory so that nothing is written to the user's home.
func serverEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

func (s *devServer) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("vault server exited during start: %v", s.exitErr)
		default:
		}
		resp, err := hc.Get(s.addr + "/v1/sys/health")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vault server at %s not healthy after %s (last error: %v)", s.addr, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop asks Vault to shut down (which also stops the plugin processes) and
// kills it if it does not within a grace period.
func (s *devServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		stopProcess(s.cmd, s.exited, os.Interrupt, 20*time.Second)
	}
	if s.logFile != nil {
		s.logFile.Close()
	}
}

// stopProcess sends sig to cmd and waits for exited to close; past grace it
// kills the process. It reports whether the process stopped on sig.
func stopProcess(cmd *exec.Cmd, exited <-chan struct{}, sig os.Signal, grace time.Duration) bool {
	select {
	case <-exited:
		return true
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return true
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-exited
		return false
	}
}

// logTail returns the last n lines of the server log.
func (s *devServer) logTail(n int) string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

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

// copyExecutable copies src to dst with mode 0755 and returns the hex SHA-256
// of what it wrote.
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
