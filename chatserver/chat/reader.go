package chat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// readLoop reads client frames until the socket fails or closes. This
// goroutine lives as long as the socket and mostly waits, and a parked
// goroutine keeps its stack: so it only waits (WaitReadable parks right
// here, on a minimal stack), and each burst of input is read and handled on
// a short-lived goroutine, whose deep stack (frame parsing, JSON decoding,
// storage calls) is gone again when it ends. Frames are still handled one at
// a time, in order.
func (c *conn) readLoop(ctx context.Context) {
	c.ws.SetReadLimit(ReadLimit(c.s.opts.MaxMessageBytes))
	pongWait := c.s.opts.PongWait
	_ = c.ws.SetReadDeadline(time.Now().Add(pongWait))
	c.ws.SetPongHandler(func(string) error { return c.ws.SetReadDeadline(time.Now().Add(pongWait)) })
	// Replies go through the writer: only it writes to the socket.
	c.ws.SetPingHandler(func(data string) error {
		c.out.answerPing(data)
		return nil
	})
	c.ws.SetCloseHandler(func(code int, _ string) error {
		c.out.peerClosed(code)
		return nil
	})
	// The first frame's window: input pauses it (a control frame alone
	// does not end it), and it never runs while a frame is handled.
	windowEnd, holding := time.Now().Add(c.s.opts.ResumeWindow), true
	for {
		if holding {
			holding = c.awaitFirstFrame(windowEnd)
		}
		if err := c.ws.WaitReadable(); err != nil {
			return
		}
		if holding {
			c.stopReleaseTimer()
		}
		more := true
		onFreshStack(func() { more = c.readInput(ctx) })
		if !more {
			return
		}
	}
}

func onFreshStack(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// readInput handles what has arrived: ping and pong frames, then at most
// one message. It reports whether the socket is still readable.
func (c *conn) readInput(ctx context.Context) bool {
	for {
		handled, err := c.ws.HandleControl()
		if err != nil {
			return false
		}
		if !handled {
			break
		}
		if c.ws.Buffered() == 0 {
			return true // back to waiting: ReadMessage would wait in here
		}
	}
	typ, data, err := c.ws.ReadMessage()
	if err != nil {
		if errors.Is(err, websocket.ErrReadLimit) {
			c.s.m.FramesIn.WithLabelValues(protocol.CodeTooLarge).Inc()
			c.s.m.Errors.WithLabelValues(protocol.CodeTooLarge).Inc()
			c.out.closedTooLarge()
			c.ws.DiscardInput(4<<20, time.Second)
		}
		return false
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(c.s.opts.PongWait))
	c.handleFrame(ctx, typ, data)
	return true
}

// handleFrame decodes a client frame, charges the frame budget, and hands
// it to the handler of its type.
func (c *conn) handleFrame(ctx context.Context, typ int, data []byte) {
	var f protocol.ClientFrame
	var perr *protocol.Error
	if typ != websocket.TextMessage {
		perr = &protocol.Error{Code: protocol.CodeBadRequest, Message: "only text frames are accepted"}
	} else {
		f, perr = protocol.Decode(data, c.s.opts.MaxMessageBytes)
	}
	h, known := handlers[f.Type]
	label := f.Type
	if !known {
		label = protocol.LabelInvalid
	}
	c.s.m.FramesIn.WithLabelValues(label).Inc()
	if !c.withinBudget(f.ClientID) {
		return
	}
	if perr != nil {
		c.sendError(perr)
		return
	}
	if h != nil {
		h(c, ctx, f)
	}
	c.release()
}

// handlers holds what each client frame type does.
var handlers = map[string]func(c *conn, ctx context.Context, f protocol.ClientFrame){
	protocol.TypeSend: (*conn).handleSend,
	protocol.TypeResume: func(c *conn, ctx context.Context, f protocol.ClientFrame) {
		c.out.gather(func() { c.handleResume(ctx, f) })
	},
	protocol.TypeTyping: (*conn).handleTyping,
	protocol.TypeRead:   (*conn).handleRead,
	protocol.TypeWatch:  (*conn).handleWatch,
	protocol.TypeEdit:   (*conn).handleChange,
	protocol.TypeDelete: (*conn).handleChange,
	protocol.TypeReact:  (*conn).handleChange,
}

// withinBudget passes a frame through the socket's frame gate (limit.go).
// Every frame spends the budget, a bad one too: each costs an answer. Past
// the budget a frame gets rate_limited; refusals past theirs close the
// socket (1008), and frames already read after that get no answer.
func (c *conn) withinBudget(clientID string) bool {
	switch c.in.gate.admit(c.s.wire.pace.now(), c.s.budget) {
	case admitted:
		return true
	case refused:
		c.sendError(&protocol.Error{Code: protocol.CodeRateLimited, Message: "too many frames, slow down", ClientID: clientID})
	case flooding:
		c.s.m.Errors.WithLabelValues(protocol.CodeFlooding).Inc()
		c.out.close(protocol.ClosePolicy, "flooding")
	}
	return false
}

// ack tells the client its frame that came at start is committed as id.
// The latency is observed first: whoever reads the ack may read the
// metrics next, and finds it counted.
func (c *conn) ack(clientID, id string, start time.Time) {
	c.s.m.AckLatency.Observe(time.Since(start).Seconds())
	c.enqueue(protocol.TypeAck, protocol.Encode(protocol.Ack{Type: protocol.TypeAck, ClientID: clientID, ID: id}))
}

func (c *conn) sendError(e *protocol.Error) {
	c.s.m.Errors.WithLabelValues(e.Code).Inc()
	c.enqueue(protocol.TypeError, protocol.Encode(protocol.ErrorFrame{Type: protocol.TypeError, Error: *e}))
}

func accessError(err error, channel, clientID string) *protocol.Error {
	if errors.Is(err, ErrForbidden) {
		return &protocol.Error{Code: protocol.CodeForbidden, Message: fmt.Sprintf("you are not a member of %q", channel), ClientID: clientID}
	}
	return &protocol.Error{Code: protocol.CodeUnknownChannel, Message: fmt.Sprintf("no channel %q that you are in", channel), ClientID: clientID}
}

func unavailable(clientID string) *protocol.Error {
	return &protocol.Error{Code: protocol.CodeUnavailable, Message: "message not stored: storage unavailable, retry", ClientID: clientID}
}
