package chat

import (
	"context"
	"errors"
	"time"
)

// Socket is an upgraded WebSocket as the chat core uses it: *wsconn.Conn on
// a server, a fake in unit tests. One goroutine reads (the Set*, Wait*,
// Handle*, Read* and Discard* methods); one writer at a time writes.
type Socket interface {
	frameWriter

	SetReadLimit(limit int64)
	SetReadDeadline(t time.Time) error
	SetPingHandler(h func(appData string) error)
	SetPongHandler(h func(appData string) error)
	SetCloseHandler(h func(code int, text string) error)
	// WaitReadable blocks until a read would not wait; it parks on a
	// minimal stack, which is what an idle socket's reader costs.
	WaitReadable() error
	// HandleControl handles one buffered ping, pong or close frame, if the
	// next frame is one, and reports whether it did.
	HandleControl() (bool, error)
	Buffered() int
	ReadMessage() (messageType int, p []byte, err error)
	// DiscardInput drops the rest of an oversize frame (bounded), so that
	// closing the connection does not reset away the close frame.
	DiscardInput(max int64, wait time.Duration)
}

// Peer is the authenticated person behind a socket.
type Peer struct {
	User    string
	Session string // session id, for revocation
	// Check re-validates the session (and slides its expiry); an error wrapping
	// ErrSessionGone closes the socket with 4401.
	Check func(ctx context.Context) error
}

// ErrSessionGone says a session expired or was revoked.
var ErrSessionGone = errors.New("session expired or revoked")

// Connection timing, as in gorilla's chat example: the read deadline is
// renewed by every pong, pings go out at 9/10 of it, and writes stuck
// longer than the write timeout are cut by the keepalive sweep.
const (
	writeWait      = 10 * time.Second
	pongWait       = 60 * time.Second // the default of Options.PongWait
	maxFrameBytes  = 64 << 10         // a coalesced frame is split past this
	storageTimeout = 5 * time.Second
	typingInterval = time.Second
)

// ReadLimit is the largest client frame accepted for a given text limit: the
// text may grow up to 6x when JSON-escaped (\u00XX), plus the envelope; and
// never less than minReadLimit, which holds a watch of protocol.MaxWatch of
// the longest names however small the text limit. Larger frames close the
// socket with 1009.
func ReadLimit(maxMessageBytes int) int64 {
	return max(int64(maxMessageBytes)*6+1024, minReadLimit)
}

const minReadLimit = 8 << 10
