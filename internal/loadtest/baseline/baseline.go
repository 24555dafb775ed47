// Package baseline is the shape of gorilla/websocket's chat example
// (examples/chat: hub.go, client.go), rewritten here as the load tool's
// baseline: one process, one room, no accounts, no storage, no protocol.
// Every text frame a client sends is broadcast to every connected client.
//
// It keeps the example's design on purpose (a hub goroutine that owns the
// client set, a buffered send channel and a read and a write pump per
// client, newline-coalesced writes, ping at 9/10 of the pong wait) so that
// `hubbub-bench --target=baseline` measures what the example costs. The only
// changes: the hub stops with its context, and errors end a client instead
// of being ignored. It lives under internal/loadtest because the shipped
// hubbub-bench binary serves it (`hubbub-bench baseline`).
package baseline

import (
	"bytes"
	"context"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
)

// The example's timing and limits.
const (
	writeWait      = 10 * time.Second
	pongWait       = 60 * time.Second
	pingPeriod     = (pongWait * 9) / 10
	maxMessageSize = 512
	sendBuffer     = 256
)

var (
	newline = []byte{'\n'}
	space   = []byte{' '}
)

var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	CheckOrigin:     func(*http.Request) bool { return true },
}

// Hub keeps the set of clients and broadcasts to them.
type Hub struct {
	clients    map[*client]bool
	broadcast  chan []byte
	register   chan *client
	unregister chan *client
}

// NewHub returns a hub; Run must be running for it to serve.
func NewHub() *Hub {
	return &Hub{
		clients:    map[*client]bool{},
		broadcast:  make(chan []byte),
		register:   make(chan *client),
		unregister: make(chan *client),
	}
}

// Run owns the client set until ctx ends; then it closes every client's
// send channel, which ends their write pumps and connections.
func (h *Hub) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			for c := range h.clients {
				delete(h.clients, c)
				close(c.send)
			}
			return
		case c := <-h.register:
			h.clients[c] = true
		case c := <-h.unregister:
			if h.clients[c] {
				delete(h.clients, c)
				close(c.send)
			}
		case msg := <-h.broadcast:
			for c := range h.clients {
				select {
				case c.send <- msg:
				default:
					// The example's slow-client rule: a full buffer drops the client.
					close(c.send)
					delete(h.clients, c)
				}
			}
		}
	}
}

type client struct {
	hub  *Hub
	conn *websocket.Conn
	send chan []byte
}

// ServeWS upgrades the request and runs the client's pumps. ctx is the
// hub's lifetime: registering after it ended fails instead of blocking.
func (h *Hub) ServeWS(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &client{hub: h, conn: conn, send: make(chan []byte, sendBuffer)}
	select {
	case h.register <- c:
	case <-ctx.Done():
		_ = conn.Close()
		return
	}
	go c.writePump()
	go c.readPump(ctx)
}

func (c *client) readPump(ctx context.Context) {
	defer func() {
		select {
		case c.hub.unregister <- c:
		case <-ctx.Done():
		}
		_ = c.conn.Close()
	}()
	c.conn.SetReadLimit(maxMessageSize)
	_ = c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		_, msg, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		msg = bytes.TrimSpace(bytes.ReplaceAll(msg, newline, space))
		select {
		case c.hub.broadcast <- msg:
		case <-ctx.Done():
			return
		}
	}
}

func (c *client) writePump() {
	ticker := time.NewTicker(pingPeriod)
	defer func() {
		ticker.Stop()
		_ = c.conn.Close()
	}()
	for {
		select {
		case msg, ok := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if !ok {
				_ = c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			w, err := c.conn.NextWriter(websocket.TextMessage)
			if err != nil {
				return
			}
			_, _ = w.Write(msg)
			// Queued messages go out in the same frame, one per line.
			for n := len(c.send); n > 0; n-- {
				_, _ = w.Write(newline)
				_, _ = w.Write(<-c.send)
			}
			if err := w.Close(); err != nil {
				return
			}
		case <-ticker.C:
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

// ListenAndServe is the baseline server process (`hubbub-bench baseline`):
// the chat at addr's /ws and a /healthz the load tool waits on, until ctx
// ends, so that the baseline is measured as a process of its own just like
// a chat server.
func ListenAndServe(ctx context.Context, addr string) error {
	hub := NewHub()
	hubDone := make(chan struct{})
	go func() {
		defer close(hubDone)
		hub.Run(ctx)
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { hub.ServeWS(ctx, w, r) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-hubDone
	return err
}
