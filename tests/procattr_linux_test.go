package tests

import (
	"os/exec"
	"syscall"
)

// setChildAttrs makes the kernel stop the Vault server if the test binary
// dies without running its cleanup (a panic or `go test -timeout`), so no
// server is left holding a port.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
