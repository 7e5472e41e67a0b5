//go:build !linux

package tests

import "os/exec"

// setChildAttrs has nothing to add where the kernel cannot tie the server's
// life to the test binary's; the harness stops the server on every normal exit.
func setChildAttrs(cmd *exec.Cmd) {}
