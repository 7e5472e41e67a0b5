//go:build crashhook

package jwtrotor

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// Tests of crashpoint_hook.go: in the crashhook build a crash point named
// by JWT_ROTOR_CRASH_AT kills the process as a power cut would, and every
// other point lets the write go on.

// The named point ends the process with SIGKILL; another point returns.
func TestCrashHookKillsAtTheNamedPoint(t *testing.T) {
	if at := os.Getenv("JWT_ROTOR_CRASH_AT"); at != "" {
		// The child: pass one point, then reach the named one.
		if err := crashPoint("another-point"); err != nil {
			os.Exit(3)
		}
		_ = crashPoint(at)
		os.Exit(0)
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHookKillsAtTheNamedPoint$")
	cmd.Env = append(os.Environ(), "JWT_ROTOR_CRASH_AT=after-ring-put")
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("the child was not killed: %v", err)
	}
	status, ok := exit.Sys().(syscall.WaitStatus)
	if !ok || !status.Signaled() || status.Signal() != syscall.SIGKILL {
		t.Fatalf("the child ended with %v, want SIGKILL", err)
	}
}
