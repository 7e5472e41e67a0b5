package testserver

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// DevOptions are what differs between the dev servers the suites start.
type DevOptions struct {
	// LogLevel is the server's -log-level; "info" when empty.
	LogLevel string
	// Config is extra server configuration (HCL), merged into dev mode's
	// (an audit device's file, raw_storage_endpoint).
	Config string
	// Dir is the server's directory; a new temporary one when empty.
	Dir string
}

// DevServer is one `vault server -dev` process with its own plugin
// directory and log file, and the plugin in its catalog.
type DevServer struct {
	Addr      string // http://127.0.0.1:PORT
	Dir       string // holds plugins/ and vault.log
	LogPath   string
	PluginSHA string // the SHA-256 the catalog holds for the plugin
	Version   string // the plugin's version in the catalog

	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
	logFile *os.File
}

// StartDev starts Vault in dev mode on a free pair of loopback ports
// (FreePortPair) and registers the plugin by checksum and version (plugins
// are not auto-registered: -dev-plugin-init=false), the way an operator
// does. The server's directory holds a copy of the plugin binary. For
// TestMain, which has no testing.TB: the caller stops the server; on an
// error the server returned, when not nil, has a log to show and must be
// stopped too. A test uses Dev.
func StartDev(bins Binaries, opts DevOptions) (*DevServer, error) {
	dir := opts.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "jwt-rotor-vault-"); err != nil {
			return nil, err
		}
	}
	s := &DevServer{Dir: dir, LogPath: filepath.Join(dir, "vault.log"), Version: bins.Version, exited: make(chan struct{})}
	pluginDir := filepath.Join(dir, "plugins")
	if err := os.Mkdir(pluginDir, 0o755); err != nil {
		return s, err
	}
	sum, err := CopyExecutable(bins.Plugin, filepath.Join(pluginDir, PluginName))
	if err != nil {
		return s, fmt.Errorf("copy plugin: %w", err)
	}
	s.PluginSHA = sum
	port, err := FreePortPair()
	if err != nil {
		return s, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	s.Addr = "http://" + listen
	level := opts.LogLevel
	if level == "" {
		level = "info"
	}
	args := []string{"server", "-dev",
		"-dev-root-token-id=" + RootToken,
		"-dev-listen-address=" + listen,
		"-dev-plugin-dir=" + pluginDir,
		"-dev-plugin-init=false",
		"-dev-no-store-token",
		"-log-level=" + level,
	}
	if opts.Config != "" {
		cfg := filepath.Join(dir, "extra.hcl")
		if err := os.WriteFile(cfg, []byte(opts.Config), 0o600); err != nil {
			return s, err
		}
		args = append(args, "-config="+cfg)
	}
	if s.logFile, err = os.Create(s.LogPath); err != nil {
		return s, err
	}
	s.cmd = exec.Command(bins.Vault, args...)
	s.cmd.Dir = dir
	s.cmd.Env = Env(dir)
	s.cmd.Stdout = s.logFile
	s.cmd.Stderr = s.logFile
	SetChildAttrs(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return s, fmt.Errorf("start %s: %w", bins.Vault, err)
	}
	go func() {
		s.exitErr = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitHealthy(60 * time.Second); err != nil {
		return s, err
	}
	if err := RegisterPlugin(s.Root(), s.PluginSHA, s.Version, nil); err != nil {
		return s, err
	}
	return s, nil
}

// Dev starts a dev server for one test (StartDev) in a directory of its own
// (TempDir: kept when the test fails) and stops it when the test ends.
func Dev(t testing.TB, bins Binaries, opts DevOptions) *DevServer {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = TempDir(t, "jwt-rotor-vault-")
	}
	s, err := StartDev(bins, opts)
	if s != nil {
		t.Cleanup(s.Stop)
	}
	if err != nil {
		if s != nil {
			t.Fatalf("%v\n%s", err, s.LogTail(40))
		}
		t.Fatal(err)
	}
	return s
}

// Root is a client of the server's root token.
func (s *DevServer) Root() Client { return Client{Addr: s.Addr, Token: RootToken} }

// PID is the Vault process's id.
func (s *DevServer) PID() int { return s.cmd.Process.Pid }

func (s *DevServer) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("vault server exited during start: %v", s.exitErr)
		default:
		}
		resp, err := hc.Get(s.Addr + "/v1/sys/health")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vault server at %s not healthy after %s (last error: %v)", s.Addr, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop asks Vault to shut down (which also stops the plugin processes) and
// kills it if it does not within a grace period. Stopping twice is safe.
func (s *DevServer) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		StopProcess(s.cmd, s.exited, os.Interrupt, 20*time.Second)
	}
	if s.logFile != nil {
		s.logFile.Close()
	}
}

// LogTail returns the last n lines of the server log.
func (s *DevServer) LogTail(n int) string { return LogTail(s.LogPath, n) }
