//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package wsconn

// readable reports a socket readable at once where peeking is not
// implemented: the caller then waits inside its read, on a deeper stack.
func readable(uintptr) bool { return true }
