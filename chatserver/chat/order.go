package chat

import (
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// outMsg is a committed entry (a message, or a change of one) with its
// encoding, shared by all sockets.
type outMsg struct {
	id    protocol.ID
	m     protocol.Message
	frame []byte
}

func newOutMsg(m protocol.Message) outMsg {
	id, _ := protocol.ParseID(m.ID) // stored ids are well formed
	return outMsg{id: id, m: m, frame: protocol.EncodeEntry(m)}
}

// heldBatch is live messages of one channel held until the client's first frame.
type heldBatch struct {
	channel string
	msgs    []outMsg
}

// resumeWindow is how long a new socket holds live messages back waiting for
// the client's first frame. A reconnecting client sends "resume" first; had
// live messages gone out before its replay, it would see them out of order,
// and the replay would skip what they had already passed: a gap. So the
// window counts only while the server waits for input (readLoop): not while
// the socket's setup waits for storage, nor while the first frame is being
// handled, however slow storage is.
const resumeWindow = 2 * time.Second

// order makes what one socket receives of each channel one stream in id
// order, without repeats, whatever mix of live delivery and resume replay
// it comes from:
//   - until the client's first frame (or the resume window ends) live
//     messages are held, so that a resume's replay goes out first;
//   - while a channel is replayed, its live messages wait behind the replay;
//   - per channel it remembers the newest id queued and drops anything at
//     or below it (replay and live overlap).
//
// It is guarded by the socket's outbox mu, and queues what it lets through
// on that outbox.
type order struct {
	last     map[string]protocol.ID // per channel: newest id queued
	resuming map[string][]outMsg    // per channel: live messages held back while it replays
	holding  bool                   // until the client's first frame
	held     []heldBatch
	releaseT *time.Timer // ends the resume window; nil once ended
}

// gone is the last id of a channel the person left or was removed from
// while the socket was open: past every id, so nothing more of it is
// queued, not even a resume's replay under way. (A mark in last rather
// than a set of its own keeps conn within its size class.)
var gone = protocol.ID{Ms: ^uint64(0), Seq: ^uint64(0)}

// live takes messages fanned out as they are committed. It returns how many
// it queued now.
func (o *order) live(out *outbox, channel string, msgs []outMsg) int {
	if o.holding {
		o.held = append(o.held, heldBatch{channel, msgs})
		return 0
	}
	if held, ok := o.resuming[channel]; ok {
		o.resuming[channel] = append(held, msgs...)
		return 0
	}
	return o.queue(out, channel, msgs)
}

// queue queues msgs (one channel's, in id order), skipping any at or below
// what the socket already has. It returns how many it queued.
func (o *order) queue(out *outbox, channel string, msgs []outMsg) int {
	last, seen := o.last[channel]
	queued := 0
	for _, om := range msgs {
		if seen && om.id.Compare(last) <= 0 {
			continue
		}
		last, seen = om.id, true
		if out.enqueueLocked(om.frame) {
			queued++
		}
	}
	if seen {
		o.setLast(channel, last)
	}
	return queued
}

func (o *order) setLast(channel string, id protocol.ID) {
	if o.last == nil {
		o.last = map[string]protocol.ID{}
	}
	o.last[channel] = id
}

// release ends the hold: held messages go out now, minus whatever a resume
// already replayed (or behind a replay still running). It returns how many
// it queued.
func (o *order) release(out *outbox) int {
	if !o.holding {
		return 0
	}
	o.holding = false
	o.stopTimer()
	queued := 0
	for _, h := range o.held {
		if buf, ok := o.resuming[h.channel]; ok {
			o.resuming[h.channel] = append(buf, h.msgs...)
		} else {
			queued += o.queue(out, h.channel, h.msgs)
		}
	}
	o.held = nil
	return queued
}

// stopTimer drops the resume-window timer, so a socket holds it only for
// its first moments.
func (o *order) stopTimer() {
	if o.releaseT != nil {
		o.releaseT.Stop()
		o.releaseT = nil
	}
}

// beginReplay starts holding channel's live messages behind a replay. The
// client has everything up to since (zero: nothing), which is not sent again.
//
// It reports whether the socket already queued the channel past since
// (ahead, the newest id queued): live messages went out before this replay,
// because the resume was not the socket's first frame or came after the
// resume window. What was committed between since and them can no longer
// go out in order, and the replay drops it with the overlap.
func (o *order) beginReplay(channel string, since protocol.ID, hasSince bool) (ahead protocol.ID, isAhead bool) {
	cur, ok := o.last[channel]
	switch {
	case ok && (!hasSince || since.Compare(cur) < 0):
		ahead, isAhead = cur, true
	case hasSince:
		o.skipTo(channel, since)
	}
	if o.resuming == nil {
		o.resuming = map[string][]outMsg{}
	}
	o.resuming[channel] = o.resuming[channel][:0]
	return ahead, isAhead
}

// endReplay queues the live messages that waited behind channel's replay.
// It returns how many it queued.
func (o *order) endReplay(out *outbox, channel string) int {
	held := o.resuming[channel]
	delete(o.resuming, channel)
	return o.queue(out, channel, held)
}

// leave drops what is held of channel and refuses the rest of it.
func (o *order) leave(channel string) {
	o.setLast(channel, gone)
	delete(o.resuming, channel)
	kept := o.held[:0]
	for _, h := range o.held {
		if h.channel != channel {
			kept = append(kept, h)
		}
	}
	clear(o.held[len(kept):])
	o.held = kept
}

// skipTo lets nothing of channel at or before id go out.
func (o *order) skipTo(channel string, id protocol.ID) {
	if cur, ok := o.last[channel]; !ok || id.Compare(cur) > 0 {
		o.setLast(channel, id)
	}
}

// rejoin lets channel through again (the person is back in it).
func (o *order) rejoin(channel string) {
	if o.last[channel] == gone {
		delete(o.last, channel)
	}
}
