package redistest

import "syscall"

// sysProcAttr makes the kernel kill redis-server if the test binary dies
// before its cleanup runs, so no server outlives a crashed test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
