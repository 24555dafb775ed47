package protocol

import "fmt"

// WebSocket close codes the server sends. Each has one meaning, and these
// are all of them: Closes lists them for the docs (a test checks
// docs/protocol.md names every one), for clients, and for metrics.
const (
	CloseNormal             = 1000 // the socket ends normally (logout, the client left)
	CloseGoingAway          = 1001 // the connection broke while writing
	ClosePolicy             = 1008 // the socket kept flooding past its frame budget
	CloseTooLarge           = 1009 // a frame over the read limit
	CloseServiceRestart     = 1012 // the server is draining: reconnect (to any server) and resume
	CloseTryAgainLater      = 1013 // the server is full, or storage is unreachable: back off and retry
	CloseUnauthorized       = 4401 // the session expired or was revoked: log in again
	CloseTooSlow            = 4408 // the socket's send queue overflowed: it did not read fast enough
	CloseTooManyConnections = 4429 // too many sockets for this person on this server
)

// CloseInfo describes a close code.
type CloseInfo struct {
	Code int
	// Label names the close in metrics (hubbub_errors_total{code}).
	Label string
	// Reconnect says whether a client should come back on its own.
	Reconnect bool
}

// Closes is every close code the server sends, in code order.
var Closes = []CloseInfo{
	{CloseNormal, "close_normal", false},
	{CloseGoingAway, "close_going_away", true},
	{ClosePolicy, "close_flooding", true},
	{CloseTooLarge, "close_too_large", true},
	{CloseServiceRestart, "close_restart", true},
	{CloseTryAgainLater, "close_try_again_later", true},
	{CloseUnauthorized, "close_session_ended", false},
	{CloseTooSlow, "close_too_slow", true},
	{CloseTooManyConnections, "close_too_many_connections", true},
}

// CloseLabel is code's metrics label ("close_<code>" for one not in Closes,
// which the server never sends).
func CloseLabel(code int) string {
	for _, c := range Closes {
		if c.Code == code {
			return c.Label
		}
	}
	return fmt.Sprintf("close_%d", code)
}
