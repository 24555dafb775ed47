package server_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hubbub-chat/hubbub/chatserver/server"
)

// BenchmarkFanout measures one process end to end: one sender, N receiving
// sockets on loopback, memory backend. ns/delivery is wall time per message
// per receiving socket, with the receivers' own reading in the same process
// (so it overstates the server's share).
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("sockets=%d", n), func(b *testing.B) {
			cfg := testConfig()
			cfg.MessagesPerSecond, cfg.MessageBurst = 1e9, 1<<30
			cfg.MaxConnectionsPerUser = n + 1
			ts := startServer(b, cfg, server.Options{})
			tok := login(b, ts, "bench")
			var ready, done sync.WaitGroup
			conns := make([]*websocket.Conn, n)
			for i := range conns {
				c, _, err := dialRaw(ts, tok, ts.URL)
				if err != nil {
					b.Fatal(err)
				}
				conns[i] = c
				defer c.Close()
				// As real clients do: the first frame ends the resume window.
				if err := c.WriteJSON(map[string]any{"type": "resume", "since": map[string]string{}}); err != nil {
					b.Fatal(err)
				}
			}
			marker := []byte(`"type":"message"`)
			want := b.N
			ready.Add(n)
			done.Add(n)
			for _, c := range conns {
				go func(c *websocket.Conn) {
					defer done.Done()
					got := 0
					readied := false
					for got < want {
						_, data, err := c.ReadMessage()
						if err != nil {
							return
						}
						if !readied && bytes.Contains(data, []byte(`"type":"hello"`)) {
							readied = true
							ready.Done()
						}
						got += bytes.Count(data, marker)
					}
				}(c)
			}
			ready.Wait()
			sender := conns[0]
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if err := sender.WriteJSON(map[string]string{"type": "send", "channel": "general", "text": "benchmark message body", "clientId": fmt.Sprint(i)}); err != nil {
					b.Fatal(err)
				}
			}
			done.Wait()
			elapsed := time.Since(start)
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*n), "ns/delivery")
			b.ReportMetric(float64(b.N*n)/elapsed.Seconds(), "deliveries/s")
		})
	}
}
