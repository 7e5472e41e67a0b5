package testserver

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestFreePortPairBelowEphemeralRange: both ports of a pair are free on
// loopback and lie below the kernel's ephemeral range, where no outgoing
// connection's source port can take them while a node restarts.
func TestFreePortPairBelowEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	for range 20 {
		port, err := FreePortPair()
		if err != nil {
			t.Fatal(err)
		}
		if port < 10000 || port+1 >= low {
			t.Fatalf("pair %d,%d is not within [10000, %d)", port, port+1, low)
		}
		for _, p := range []int{port, port + 1} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				t.Fatalf("port %d of the pair is not free: %v", p, err)
			}
			l.Close()
		}
	}
}

// TestEnvDropsVaultProxyAndHome: a child gets no VAULT_* or proxy
// variable of the test binary and its own HOME, and keeps the rest.
func TestEnvDropsVaultProxyAndHome(t *testing.T) {
	t.Setenv("VAULT_ADDR", "http://elsewhere:8200")
	t.Setenv("VAULT_TOKEN", "not-root")
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:9")
	t.Setenv("http_proxy", "http://127.0.0.1:9")
	t.Setenv("HOME", "/home/someone")
	t.Setenv("JWT_ROTOR_KEPT", "1")
	env := Env("/scratch")
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "VAULT_") || strings.EqualFold(name, "https_proxy") || strings.EqualFold(name, "http_proxy") {
			t.Errorf("child environment has %s", kv)
		}
		if name == "HOME" && kv != "HOME=/scratch" {
			t.Errorf("child environment has %s, want HOME=/scratch only", kv)
		}
	}
	if !slices.Contains(env, "HOME=/scratch") || !slices.Contains(env, "JWT_ROTOR_KEPT=1") {
		t.Errorf("child environment lacks HOME=/scratch or JWT_ROTOR_KEPT=1: %q", env)
	}
}

// TestLogTailKeepsLastLines: a failed test shows the last n lines of a
// server log, in order, and says so when the log is missing.
func TestLogTailKeepsLastLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.log")
	if err := os.WriteFile(path, []byte("one\ntwo\nthree\nfour\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := LogTail(path, 2); got != "three\nfour" {
		t.Errorf("LogTail(2) = %q, want %q", got, "three\nfour")
	}
	if got := LogTail(path, 10); got != "one\ntwo\nthree\nfour" {
		t.Errorf("LogTail(10) = %q", got)
	}
	if got := LogTail(path+".missing", 2); !strings.HasPrefix(got, "(no log: ") {
		t.Errorf("LogTail of a missing file = %q", got)
	}
}

// TestFindStoreBinaryNamesTarget: a missing store program is an error
// that names the make target providing it, so a sink test fails with what
// to run instead of skipping.
func TestFindStoreBinaryNamesTarget(t *testing.T) {
	_, err := findStoreBinary(filepath.Join(t.TempDir(), "versitygw"), "versitygw")
	if err == nil || !strings.Contains(err.Error(), "make versitygw") {
		t.Fatalf("missing binary: %v, want an error naming make versitygw", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := findStoreBinary(self, "versitygw"); err != nil || got != self {
		t.Fatalf("an executable present: %q, %v", got, err)
	}
}
