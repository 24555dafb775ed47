package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// The storm against Centrifugo (storm --target centrifugo): the same drop,
// missed messages and reconnect as Hubbub's, in Centrifugo's words.
//
//   - A socket connects with its token; the connect reply is its "hello".
//   - It then subscribes to the channel. The first time, with nothing to
//     recover, the reply gives the stream's epoch and offset (the channel
//     forces recovery, see centrifugoConfig). After a drop it subscribes
//     with recover, that epoch and the offset of the last publication it
//     saw; the reply, its "resumed", carries what it missed.
//   - The missed messages are client publishes from a socket of the
//     coordinator's, each waiting for its reply, as Hubbub's are sends.
//
// Subscribe replies arrive once per connection, so they are decoded;
// pushes, as in run, are not.

// centrifugoRecoveryLimit is Centrifugo's default
// client_recovery_max_publication_limit: a recovery of more fails.
const centrifugoRecoveryLimit = 300

// centrifugoSubscribed is the part of a subscribe reply the storm reads.
type centrifugoSubscribed struct {
	Epoch         string          `json:"epoch"`
	Offset        uint64          `json:"offset"`
	Recovered     bool            `json:"recovered"`
	WasRecovering bool            `json:"was_recovering"`
	Publications  []centrifugoPub `json:"publications"`
}

type centrifugoPub struct {
	Offset uint64 `json:"offset"`
	Data   struct {
		Text string `json:"text"`
	} `json:"data"`
}

var markCentrifugoPub = []byte(`"pub":`)

// centrifugoLine handles one line of a storm socket's frame; an error
// closes the socket.
func (x *edgeConn) centrifugoLine(c *wconn, line []byte, now time.Time) error {
	e, r := x.s.e, x.rnd
	id, failed, ok := centrifugoReplyID(line)
	switch {
	case !ok:
		if bytes.Contains(line, markCentrifugoPub) {
			var push struct {
				Push struct {
					Pub centrifugoPub `json:"pub"`
				} `json:"push"`
			}
			if err := json.Unmarshal(line, &push); err != nil {
				return fmt.Errorf("a push the storm cannot read: %w", err)
			}
			x.centrifugoPub(push.Push.Pub, now)
		}
	case failed:
		e.round.Load().errors.Add(1)
		return refused(line)
	case id == centrifugoConnectID:
		if !x.helloed {
			x.helloed = true
			r.hello.record(now.Sub(x.dialAt))
		}
		if err := c.writeText(x.s.centrifugoSubscribe(c.w.job.Channel)); err != nil {
			return fmt.Errorf("sending subscribe: %w", err)
		}
		c.gotHello()
	case id == centrifugoSubscribeID:
		var reply struct {
			Subscribe centrifugoSubscribed `json:"subscribe"`
		}
		if err := json.Unmarshal(line, &reply); err != nil {
			return fmt.Errorf("a subscribe reply the storm cannot read: %w", err)
		}
		sub := reply.Subscribe
		if sub.WasRecovering && !sub.Recovered {
			e.round.Load().notRecovered.Add(1)
		}
		for _, p := range sub.Publications {
			x.centrifugoPub(p, now)
		}
		x.s.subscribed(sub)
		if !x.resumed {
			x.resumed = true
			r.resumed.record(now.Sub(x.dialAt))
			x.check(now)
		}
	}
	return nil
}

// centrifugoPub counts a publication that arrived, live or recovered: new
// to the slot if its offset is past the last the slot saw.
func (x *edgeConn) centrifugoPub(p centrifugoPub, now time.Time) {
	if !strings.HasPrefix(p.Data.Text, string(markMissed)) {
		return
	}
	if !x.s.sawOffset(p.Offset) {
		x.rnd.dups.Add(1)
		return
	}
	x.missed++
	x.rnd.missed.Add(1)
	x.check(now)
}

// centrifugoSubscribe is the slot's subscribe command: from where it left
// off once its first subscribe gave the stream's position.
func (s *slot) centrifugoSubscribe(channel string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return centrifugoSubscribeFrame(channel, s.seeded, s.epoch, s.offset)
}

// subscribed takes the stream's position from a subscribe reply, after its
// publications: the stream's top, which the slot has now seen up to.
func (s *slot) subscribed(sub centrifugoSubscribed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seeded = true
	s.epoch = sub.Epoch
	s.offset = max(s.offset, sub.Offset)
}

// sawOffset records a publication's offset and reports whether it is new to
// the slot.
func (s *slot) sawOffset(offset uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if offset <= s.offset {
		return false
	}
	s.offset = offset
	return true
}

// centrifugoPost connects to url with token and publishes each text into
// channel, one at a time, each waiting for its reply, then closes: the
// storm's missed messages (no socket of the coordinator's stays open to
// answer Centrifugo's pings between rounds).
func centrifugoPost(ctx context.Context, url, token, channel string, texts []string) error {
	ws, _, err := posterDialer().DialContext(ctx, url, nil)
	if err != nil {
		return err
	}
	defer func() { _ = ws.Close() }()
	_ = ws.SetReadDeadline(time.Now().Add(60 * time.Second))
	if err := centrifugoCall(ws, centrifugoConnectID, centrifugoConnectFrame(token)); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	for k, text := range texts {
		id := uint64(k) + maxSteps // past the setup commands' ids
		b, err := json.Marshal(map[string]any{"id": id, "publish": map[string]any{"channel": channel, "data": map[string]string{"text": text}}})
		if err != nil {
			return err
		}
		if err := centrifugoCall(ws, id, b); err != nil {
			return fmt.Errorf("publish %d of %d: %w", k+1, len(texts), err)
		}
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	return nil
}

// centrifugoCall writes command b and reads until the reply to id, which
// must not be an error.
func centrifugoCall(ws *websocket.Conn, id uint64, b []byte) error {
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return err
	}
	for {
		_, frame, err := ws.ReadMessage()
		if err != nil {
			return err
		}
		for line := range bytes.Lines(frame) {
			line = bytes.TrimSuffix(line, []byte("\n"))
			got, failed, ok := centrifugoReplyID(line)
			if !ok || got != id {
				continue
			}
			if failed {
				return fmt.Errorf("refused: %s", line)
			}
			return nil
		}
	}
}
