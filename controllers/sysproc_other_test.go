//go:build !linux

package controllers

import "syscall"

func childProcAttr() *syscall.SysProcAttr { return nil }
