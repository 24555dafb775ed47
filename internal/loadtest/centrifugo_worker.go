package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// A worker's side of --target centrifugo: Centrifugo's client protocol v2 in
// JSON, on the same sockets, epoll readers and counters as Hubbub's.
//
//   - A socket sends connect with its token (the dial's Bearer header is
//     ignored by Centrifugo), subscribes to the channel once the connect
//     reply arrives, as Centrifugo's own clients do, and is ready (its
//     "hello") at the subscribe reply.
//   - The sender publishes from the client, with the same text as a Hubbub
//     message; the publish reply is the ack, an error reply a send error.
//   - Each push of a publication is a delivery, read like Hubbub's message
//     by the "hb " in its text.
//   - Centrifugo pings with an empty reply, {}, and closes a socket that
//     does not answer {} within 8 s.
//
// Centrifugo, like Hubbub, may put several replies and pushes in one frame,
// one per line.

// Command ids. A reply echoes only its command's id, so a publish's id
// carries its step: (seq mod centrifugoSeqWrap + 1) × maxSteps + step, which
// is never below maxSteps, where the setup commands' ids are. Ids are
// uint32 in the protocol: the wrap keeps them there (ids need not be unique).
const (
	centrifugoConnectID   = 1
	centrifugoSubscribeID = 2
	centrifugoSeqWrap     = math.MaxUint32/maxSteps - 1
)

// centrifugoPublishEnd ends the command appendCentrifugoPublish starts,
// after the message's "hb <step> <ns> <worker> <seq>".
const centrifugoPublishEnd = ` load test message"}}}`

var (
	centrifugoReply = []byte(`{"id":`)
	centrifugoError = []byte(`,"error":`)
	centrifugoPing  = []byte(`{}`) // and the pong that answers it
	// errRefused closes a socket whose connect or subscribe failed.
	errRefused = errors.New("centrifugo refused the socket")
	// refusedOnce prints the first refusal: the reader that sees it drops
	// the socket, and the dial then fails without knowing why.
	refusedOnce sync.Once
)

// centrifugoConnect sends the socket's connect command.
func (c *wconn) centrifugoConnect(token string) error {
	if err := c.writeText(centrifugoConnectFrame(token)); err != nil {
		return fmt.Errorf("sending connect: %w", err)
	}
	return nil
}

// centrifugoConnectFrame is the connect command with token.
func centrifugoConnectFrame(token string) []byte {
	b := []byte(`{"id":` + strconv.Itoa(centrifugoConnectID) + `,"connect":{"token":`)
	b = strconv.AppendQuote(b, token)
	return append(b, "}}"...)
}

// centrifugoSubscribeFrame is the subscribe command to channel; with
// recover, from the publication at offset of the stream epoch on.
func centrifugoSubscribeFrame(channel string, recover bool, epoch string, offset uint64) []byte {
	b := []byte(`{"id":` + strconv.Itoa(centrifugoSubscribeID) + `,"subscribe":{"channel":`)
	b = strconv.AppendQuote(b, channel)
	if recover {
		b = append(b, `,"recover":true,"epoch":`...)
		b = strconv.AppendQuote(b, epoch)
		b = append(b, `,"offset":`...)
		b = strconv.AppendUint(b, offset, 10)
	}
	return append(b, "}}"...)
}

// refused notes the first refusal (on stderr: stdout is the worker's
// answers to the coordinator) and returns errRefused.
func refused(line []byte) error {
	refusedOnce.Do(func() { fmt.Fprintf(os.Stderr, "%v: %s\n", errRefused, line) })
	return errRefused
}

// appendCentrifugoPublish starts the publish command of message seq of
// step, up to where the message's text begins.
func appendCentrifugoPublish(buf []byte, channel string, step int, seq int64) []byte {
	id := (uint64(seq)%centrifugoSeqWrap+1)*maxSteps + uint64(step)
	buf = append(buf, centrifugoReply...)
	buf = strconv.AppendUint(buf, id, 10)
	buf = append(buf, `,"publish":{"channel":`...)
	buf = strconv.AppendQuote(buf, channel)
	return append(buf, `,"data":{"text":"`...)
}

// centrifugoFrame counts what one Centrifugo frame holds, and answers what
// needs answering; an error closes the socket.
func (c *wconn) centrifugoFrame(data []byte, now time.Time) error {
	for line := range bytes.Lines(data) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		if bytes.Equal(line, centrifugoPing) {
			if err := c.writeText(centrifugoPing); err != nil {
				return fmt.Errorf("pong: %w", err)
			}
			continue
		}
		if c.edge != nil { // the storm (centrifugo_storm.go)
			if err := c.edge.centrifugoLine(c, line, now); err != nil {
				return err
			}
			continue
		}
		if i := bytes.Index(line, markMessage); i >= 0 {
			c.message(line[i+len(markMessage):], now)
			continue
		}
		id, failed, ok := centrifugoReplyID(line)
		if !ok {
			continue // a push this tool did not ask for
		}
		if err := c.centrifugoReply(id, failed, line); err != nil {
			return err
		}
	}
	return nil
}

// centrifugoReplyID reads a reply's command id, and whether it is an error.
func centrifugoReplyID(line []byte) (id uint64, failed, ok bool) {
	rest, found := bytes.CutPrefix(line, centrifugoReply)
	if !found {
		return 0, false, false
	}
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	id, err := strconv.ParseUint(string(rest[:j]), 10, 32)
	if err != nil {
		return 0, false, false
	}
	return id, bytes.HasPrefix(rest[j:], centrifugoError), true
}

func (c *wconn) centrifugoReply(id uint64, failed bool, line []byte) error {
	switch {
	case id >= maxSteps:
		sc := &c.w.steps[id%maxSteps]
		if failed {
			sc.errFrames.Add(1)
		} else {
			sc.acked.Add(1)
		}
	case failed:
		return refused(line)
	case id == centrifugoConnectID:
		if err := c.writeText(centrifugoSubscribeFrame(c.w.job.Channel, false, "", 0)); err != nil {
			return fmt.Errorf("sending subscribe: %w", err)
		}
	case id == centrifugoSubscribeID:
		c.gotHello()
	}
	return nil
}

// writeText writes one text frame. On a Centrifugo socket the reader writes
// too (the subscribe, pongs) while the sender may be publishing, and
// gorilla allows one writer at a time: every write holds c.wmu.
func (c *wconn) writeText(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}
