package redisbackend_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/backend/redisbackend"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// stallingHandler is a slow pod: its first Event call blocks the pub/sub
// receiver (events are handled on the receiving goroutine) until release is
// closed, so the pod stops reading its pub/sub connection while Redis keeps
// publishing to it.
type stallingHandler struct {
	*collector
	once    sync.Once
	stalled chan struct{} // closed when the receiver is blocked
	release chan struct{}
}

func (h *stallingHandler) Event(chat.Event) {
	h.once.Do(func() {
		close(h.stalled)
		<-h.release
	})
}

// A pod that Redis cuts off for exceeding its pub/sub output buffer limit (a
// slow pod) recovers every message from the stream: nothing acknowledged is
// lost, and the order holds.
func TestSlowPodCutOffByRedisRecoversFromStream(t *testing.T) {
	srv := redistest.Start(t, redistest.WithConfig("client-output-buffer-limit", "pubsub", "64kb", "32kb", "1"))
	room := newRoom()
	// No periodic re-read: recovery must come from noticing the lost
	// connection, not from the safety net.
	reader := newBackend(t, srv.URL(), room, func(o *redisbackend.Options) { o.ResyncInterval = -1 })
	writer := newBackend(t, srv.URL(), room)
	h := &stallingHandler{collector: newCollector(t), stalled: make(chan struct{}), release: make(chan struct{})}
	runFeed(t, reader, h)
	// Unblock the receiver before runFeed's cleanup waits for Run to end
	// (cleanups run last-registered first), also when the test fails early.
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(h.release) }) }
	t.Cleanup(release)
	reader.Follow("general", "")
	ctx := t.Context()

	// The subscription works: a first message arrives by pub/sub.
	first, err := send(ctx, writer, "general", 0)
	if err != nil {
		t.Fatal(err)
	}
	acked := []string{first.ID}
	h.waitFor(t, "general", acked)

	// Stall the reader's pub/sub receiver, then publish far more than the
	// limit (and than the kernel's socket buffers hold) while it reads nothing.
	if err := writer.Publish(ctx, chat.Event{Kind: chat.EventTyping, User: "alice", Channel: "general"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.stalled:
	case <-time.After(waitTimeout):
		t.Fatal("the reader never received the event that stalls it")
	}
	text := strings.Repeat("x", 2000)
	logPath := filepath.Join(srv.Dir(), "redis.log")
	deadline := time.Now().Add(waitTimeout)
	for i := 1; !cutOff(t, logPath); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("redis did not cut the slow pod off after %d messages; log:\n%s", i, readLog(logPath))
		}
		m, err := writer.Append(ctx, protocol.Message{Channel: "general", From: "alice", Text: text}, fmt.Sprintf("slow-%d", i), 100000)
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, m.ID)
	}
	// A few more while the pod is disconnected.
	for i, n := len(acked), len(acked)+20; i < n; i++ {
		m, err := send(ctx, writer, "general", i)
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, m.ID)
	}
	release()

	h.waitFor(t, "general", acked)
	st := reader.Stats()
	if st.Reconnects == 0 {
		t.Errorf("the feed counted no lost pub/sub connection: %+v", st)
	}
	t.Logf("%d messages; stats: %+v", len(acked), st)
}

// cutOff reports whether Redis logged closing a client for its output buffer.
func cutOff(t *testing.T, logPath string) bool {
	t.Helper()
	return strings.Contains(readLog(logPath), "output buffer limits")
}

func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}
