package testserver

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// store is what the S3 and WebDAV servers share: one process, restarted
// on the same loopback port, its output in a log file.
type store struct {
	t       testing.TB
	name    string // for messages: "versitygw", "apache2"
	args    []string
	dir     string
	addr    string // 127.0.0.1:PORT
	logPath string

	cmd    *exec.Cmd
	exited chan struct{}
}

// start runs the server and waits until its port accepts connections.
func (s *store) start() error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	s.cmd = exec.Command(s.args[0], s.args[1:]...)
	s.cmd.Dir = s.dir
	var env []string
	for _, kv := range Env(s.dir) {
		if !strings.HasPrefix(kv, "VGW_") && !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "APACHE") {
			env = append(env, kv)
		}
	}
	s.cmd.Env = env
	s.cmd.Stdout = logFile
	s.cmd.Stderr = logFile
	SetChildAttrs(s.cmd)
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", s.args[0], err)
	}
	exited := make(chan struct{})
	s.exited = exited
	go func() {
		_ = s.cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("%s exited at start; its log:\n%s", s.name, LogTail(s.logPath, 30))
		default:
		}
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()
	return fmt.Errorf("%s did not listen on %s within 30s; its log:\n%s", s.name, s.addr, LogTail(s.logPath, 30))
}

// stop stops the server (SIGTERM, then SIGKILL after 10 s) and waits for
// it to exit; a stopped server's port refuses connections.
func (s *store) stop() {
	if s.cmd == nil {
		return
	}
	StopProcess(s.cmd, s.exited, os.Interrupt, 10*time.Second)
	s.cmd = nil
}

// Stop stops the server; its port refuses connections until Restart.
func (s *store) Stop() { s.stop() }

// Restart starts the stopped server again on the same port and data.
func (s *store) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// prepareStore finds a server's program (failing the test with the make
// target when it is missing) and picks its directory and loopback address.
func prepareStore(t testing.TB, path, target, prefix string) (bin, dir, addr string) {
	t.Helper()
	bin, err := findStoreBinary(path, target)
	if err != nil {
		t.Fatal(err)
	}
	dir = TempDir(t, prefix)
	port, err := FreePortPair()
	if err != nil {
		t.Fatal(err)
	}
	return bin, dir, "127.0.0.1:" + strconv.Itoa(port)
}

// findStoreBinary is the path of a server program, or an error naming the
// make target that provides it.
func findStoreBinary(path, target string) (string, error) {
	if !filepath.IsAbs(path) {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		path = filepath.Join(root, path)
	}
	if !executable(path) {
		return "", errors.New("the sink tests need " + path + ": run `make " + target + "` at the repository root first")
	}
	return path, nil
}

// doOK sends req and fails, naming what, on a status other than 200 or
// 204, with the start of the answer.
func doOK(req *http.Request, what string) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("%s: HTTP %d: %s", what, resp.StatusCode, msg)
	}
	return nil
}
