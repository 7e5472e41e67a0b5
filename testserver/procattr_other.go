//go:build !linux

package testserver

import "os/exec"

// SetChildAttrs has nothing to add where the kernel cannot tie a child's
// life to the test binary's; the harness stops its servers on every
// normal exit.
func SetChildAttrs(cmd *exec.Cmd) {}
