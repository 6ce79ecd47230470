package crashtest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the child get SIGKILL if the test process dies first
// (a panic or a test timeout), so no child outlives the test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
