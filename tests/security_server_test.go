package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The security tests that need a server of their own (a different log level,
// audit devices, the raw storage endpoint, a flood that must not disturb the
// shared server) start one here, with the harness's building blocks: the
// same binaries, plugin registration and signer user as the shared server.

type secServerOptions struct {
	logLevel string // -log-level; default "info"
	// config is extra server configuration (HCL), merged into dev mode's.
	config string
}

// secServer is a dedicated dev server and the clients of its root and of a
// signer whose token has an entity.
type secServer struct {
	srv      *devServer
	root     *vaultClient
	signer   *vaultClient
	entityID string
	// rec records every response the clients above receive.
	rec *secRecorder
}

// secStartServer starts a dev server for one test and stops it when the test
// ends. The server directory (log, audit files) is removed when the test
// passes and kept, with its path logged, when it fails.
func secStartServer(t *testing.T, opts secServerOptions) *secServer {
	t.Helper()
	vaultBin, pluginBin, err := repoBinaries()
	if err != nil {
		t.Fatal(err)
	}
	if opts.logLevel == "" {
		opts.logLevel = "info"
	}
	dir, err := os.MkdirTemp("", "jwt-rotor-sec-")
	if err != nil {
		t.Fatal(err)
	}
	s := &devServer{dir: dir, logPath: filepath.Join(dir, "vault.log"), exited: make(chan struct{})}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("server directory kept: %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	pluginDir := filepath.Join(dir, "plugins")
	if err := os.Mkdir(pluginDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if s.pluginSHA, err = copyExecutable(pluginBin, filepath.Join(pluginDir, pluginName)); err != nil {
		t.Fatal(err)
	}
	port, err := freePortPair()
	if err != nil {
		t.Fatal(err)
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	s.addr = "http://" + listen
	args := []string{"server", "-dev",
		"-dev-root-token-id=" + rootToken,
		"-dev-listen-address=" + listen,
		"-dev-plugin-dir=" + pluginDir,
		"-dev-plugin-init=false",
		"-dev-no-store-token",
		"-log-level=" + opts.logLevel,
	}
	if opts.config != "" {
		cfg := filepath.Join(dir, "extra.hcl")
		if err := os.WriteFile(cfg, []byte(opts.config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-config="+cfg)
	}
	if s.logFile, err = os.Create(s.logPath); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(vaultBin, args...)
	s.cmd.Dir = dir
	s.cmd.Env = serverEnv(dir)
	s.cmd.Stdout = s.logFile
	s.cmd.Stderr = s.logFile
	setChildAttrs(s.cmd)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.exitErr = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitHealthy(60 * time.Second); err != nil {
		t.Fatalf("%v\n%s", err, s.logTail(40))
	}
	e, err := setUp(s)
	if err != nil {
		t.Fatalf("%v\n%s", err, s.logTail(40))
	}
	rec := &secRecorder{}
	hc := &http.Client{Timeout: 60 * time.Second, Transport: rec}
	root := &vaultClient{addr: s.addr, token: rootToken, hc: hc}
	return &secServer{srv: s, root: root, signer: root.withToken(e.signer.token), entityID: e.entityID, rec: rec}
}

// mount enables the plugin at path on sec's server, tunes it for the
// JWKS headers and writes its config.
func (sec *secServer) mount(t *testing.T, path string, config map[string]any) *mount {
	t.Helper()
	m := &mount{path: path, issuer: sec.root.url(path)}
	sec.root.mustWrite(t, "sys/mounts/"+path, map[string]any{"type": pluginName, "config": map[string]any{"plugin_version": pluginVersion}})
	sec.root.mustWrite(t, "sys/mounts/"+path+"/tune", map[string]any{
		"allowed_response_headers":    []string{"ETag", "Last-Modified"},
		"passthrough_request_headers": []string{"If-None-Match", "User-Agent"},
	})
	cfg := map[string]any{"issuer": m.issuer}
	for k, v := range config {
		cfg[k] = v
	}
	sec.root.mustWrite(t, m.p("config"), cfg)
	return m
}

// ring creates a ring and forces its first key active.
func (sec *secServer) ring(t *testing.T, m *mount, name string, settings map[string]any) string {
	t.Helper()
	sec.root.mustWrite(t, m.p("keys/"+name), settings)
	resp := sec.root.mustWrite(t, m.p("keys/"+name+"/rotate"), map[string]any{"force": true})
	return str(t, resp.Data, "active_kid")
}

// pluginPID is the pid of the plugin process Vault started for this
// server: a child of the Vault process running the plugin binary.
func (sec *secServer) pluginPID(t *testing.T) int {
	t.Helper()
	vaultPID := sec.srv.cmd.Process.Pid
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("no /proc (the plugin's process is found and measured there, on Linux): %v", err)
	}
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
		fields := strings.Fields(rest)
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid != vaultPID {
			continue
		}
		exe, _ := os.Readlink("/proc/" + e.Name() + "/exe")
		if filepath.Base(exe) == pluginName || strings.HasPrefix(filepath.Base(strings.TrimSuffix(exe, " (deleted)")), pluginName) {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one plugin process under vault pid %d, found %v", vaultPID, found)
	}
	return found[0]
}

// secRSS returns a process's resident and peak resident memory in bytes.
func secRSS(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("plugin process %d: %v", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("%s: %q", name, value)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if rss == 0 {
		t.Fatalf("no VmRSS for pid %d", pid)
	}
	return rss, hwm
}

// secRecorder is an http.RoundTripper that keeps a copy of every response
// (status line, headers and body) for the secrecy scan. Responses of
// sys/raw, the test's own privileged reads of storage, are counted but not
// kept.
type secRecorder struct {
	mu        sync.Mutex
	responses []secRecorded
	skipped   int
}

type secRecorded struct {
	method, path string
	data         []byte
}

func (r *secRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	skip := strings.HasPrefix(req.URL.Path, "/v1/sys/raw/")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	defer r.mu.Unlock()
	if skip {
		r.skipped++
		return resp, nil
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s %s\n", resp.Proto, resp.Status)
	resp.Header.Write(&buf)
	buf.WriteString("\n")
	buf.Write(body)
	r.responses = append(r.responses, secRecorded{method: req.Method, path: req.URL.Path, data: buf.Bytes()})
	return resp, nil
}

func (r *secRecorder) all() []secRecorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]secRecorded(nil), r.responses...)
}
