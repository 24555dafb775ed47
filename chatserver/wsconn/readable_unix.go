//go:build linux || darwin || freebsd || netbsd || openbsd

package wsconn

import "syscall"

// readable is a syscall.RawConn read callback that consumes nothing: it
// reports whether a read would return at once (data, end of stream or an
// error) by peeking at one byte; false makes the runtime poller park the
// caller until the socket is readable. The peek is needed because the poller
// forgets readiness it saw before the wait began.
func readable(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		return true
	}
}
