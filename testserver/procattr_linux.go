package testserver

import (
	"os/exec"
	"syscall"
)

// SetChildAttrs makes the kernel stop a child process (a Vault server, an
// agent, a verifier) if the test binary dies without running its cleanup
// (a panic or `go test -timeout`), so no server is left holding a port.
func SetChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
