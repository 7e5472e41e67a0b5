package testserver

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Env is the test binary's environment for a child process that talks to
// Vault: without VAULT_* variables, which would override the flags the
// harness passes, without proxy variables (HTTP_PROXY, https_proxy, ...:
// the servers are on loopback), and with HOME pointed at home so that
// nothing is written to the user's home directory.
func Env(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(strings.ToUpper(kv), "HTTP") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

// StopProcess sends sig to cmd and waits for exited to close; past grace it
// kills the process. It reports whether the process stopped on sig.
func StopProcess(cmd *exec.Cmd, exited <-chan struct{}, sig os.Signal, grace time.Duration) bool {
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

// CopyExecutable copies src to dst with mode 0755 and returns the hex
// SHA-256 of what it wrote. A server runs its own copy of the plugin, so
// rebuilding bin/plugins while the tests run cannot change what the
// catalog's checksum refers to.
func CopyExecutable(src, dst string) (string, error) {
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

// LogTail returns the last n lines of the file at path, or a line saying
// why it cannot be read.
func LogTail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TempDir makes a directory for one test's servers: removed when the test
// passes, kept (its path logged) for whoever investigates when it fails.
// Its cleanup is registered first, so it runs after the servers' own.
func TempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server directory kept: %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}
