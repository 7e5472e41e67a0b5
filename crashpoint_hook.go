//go:build crashhook

package jwtrotor

import (
	"os"
	"syscall"
)

// crashPoint kills the process with SIGKILL at the named point when
// JWT_ROTOR_CRASH_AT names it, as a power cut between two writes would.
func crashPoint(name string) error {
	if os.Getenv("JWT_ROTOR_CRASH_AT") == name {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	return nil
}
