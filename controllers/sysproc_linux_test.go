package controllers

import "syscall"

// childProcAttr makes a test's child process (redis-server) die with the
// test binary, even when that is killed before its cleanup runs.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
