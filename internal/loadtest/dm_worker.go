package loadtest

import (
	"bytes"
	"context"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// person is one of the dm workload's people a worker sends for: every
// socket of a person is on the same worker (dmJobs), so that it can send
// from whichever is open.
type person struct {
	user     int
	slots    []*slot
	to       string   // the DM peer's name ("": none)
	channels []string // the created channels they are in
	sent     int      // only the sending goroutine uses it
}

func newPerson(user int, j *edgeJob) *person {
	p := &person{user: user, channels: j.channelsOf(user)}
	if peer := dmPeer(user, j.Users); peer >= 0 {
		p.to = userName(peer)
	}
	return p
}

// groups is how many channels each of the ChannelsPerPerson partitions of
// the people has: the first cuts them into runs of ChannelSize (people
// 0..ChannelSize-1 in c000), the second deals them out in turn (person p
// in channel groups + p mod groups), so that two people share at most one
// channel and every channel has about ChannelSize members.
func (j *edgeJob) groups() int { return (j.Users + j.ChannelSize - 1) / j.ChannelSize }

// channelsOf names the created channels user is in.
func (j *edgeJob) channelsOf(user int) []string {
	out := []string{dmChannel(user / j.ChannelSize)}
	if j.ChannelsPerPerson > 1 {
		out = append(out, dmChannel(j.groups()+user%j.groups()))
	}
	return out
}

// members is how many people are in user's k-th channel.
func (j *edgeJob) members(user, k int) int {
	if k == 0 {
		return min(j.ChannelSize, j.Users-user/j.ChannelSize*j.ChannelSize) // the last run may be short
	}
	g := j.groups()
	n := j.Users / g
	if user%g < j.Users%g {
		n++
	}
	return n
}

// sender is the person's first socket that is open and not being moved by
// a draining server.
func (p *person) sender() (*slot, *wconn) {
	for _, s := range p.slots {
		if c := s.conn.Load(); c != nil && !s.moving.Load() {
			return s, c
		}
	}
	return nil, nil
}

// sending notes a send before it is written: its ack may come back before
// the write returns.
func (s *slot) sending(clientID string, frame []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unacked == nil {
		s.unacked = map[string][]byte{}
	}
	s.unacked[clientID] = append([]byte(nil), frame...)
}

// answered reports whether clientID was awaiting its answer (an ack or an
// error), and forgets it: a send repeated after a move is answered twice
// at most, and counts once.
func (s *slot) answered(clientID []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.unacked[string(clientID)]; !ok {
		return false
	}
	delete(s.unacked, string(clientID))
	return true
}

// takeUnacked is what to send again on the slot's new connection.
func (s *slot) takeUnacked() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, f := range s.unacked {
		out = append(out, f)
	}
	return out
}

// edgeClientID is the clientId ("x…") an ack or error names, nil if none.
func edgeClientID(line []byte) []byte {
	i := bytes.Index(line, markEdgeClient)
	if i < 0 {
		return nil
	}
	rest := line[i+len(markEdgeClient)-1:]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil
	}
	return rest[:j]
}

// send paces this worker's people's messages for cmd.Duration, each person
// at cmd.Rate a second, turn about into their DM and their channel. The
// workers' messages interleave (worker w starts w/workers of a gap late), so
// that they do not all send at the same instant.
func (e *edgeWorker) send(ctx context.Context, cmd command) {
	if len(e.persons) == 0 || cmd.Rate <= 0 {
		return
	}
	rate := cmd.Rate * float64(len(e.persons))
	total := int(rate*cmd.Duration.Seconds() + 0.5)
	offset := float64(e.w.job.Worker) / float64(max(1, e.w.job.Workers))
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	buf := make([]byte, 0, 256)
	for j := range total {
		at := start.Add(time.Duration((float64(j) + offset) / rate * float64(time.Second)))
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		p := e.persons[j%len(e.persons)]
		s, c := p.sender()
		if c == nil {
			e.dm.skipped.Add(1)
			continue
		}
		dm := p.to != "" && (p.sent+p.user)%2 == 0
		n := p.sent
		p.sent++
		// kind: d a DM, c the first channel, e the second (ack counts
		// the deliveries it owes by it).
		kind, channel := "d", ""
		if dm {
			e.dm.sentDM.Add(1)
		} else {
			k := (n / 2) % len(p.channels)
			kind, channel = string(rune('c'+2*k)), p.channels[k]
			e.dm.sentChannel.Add(1)
		}
		clientID := "x" + kind + strconv.Itoa(p.user) + "." + strconv.Itoa(n)
		buf = buf[:0]
		if dm {
			buf = append(buf, `{"type":"send","to":`...)
			buf = strconv.AppendQuote(buf, p.to)
		} else {
			buf = append(buf, `{"type":"send","channel":`...)
			buf = strconv.AppendQuote(buf, channel)
		}
		buf = append(buf, `,"text":"`...)
		buf = append(buf, markDM...)
		buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
		buf = append(buf, ` load test message","clientId":`...)
		buf = strconv.AppendQuote(buf, clientID)
		buf = append(buf, '}')
		s.sending(clientID, buf)
		e.dm.sent.Add(1)
		_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.ws.WriteMessage(websocket.TextMessage, buf); err != nil {
			// Left unacked: sent again once the slot has moved.
			e.dm.writeErrors.Add(1)
		}
	}
}

// ack counts an acknowledged send (its clientId "x<kind><user>.<n>") and
// the deliveries it owes: one to every socket of the people in its
// conversation, the sender's own included.
func (d *dmCounters) ack(clientID []byte, j *edgeJob) {
	if len(clientID) < 3 {
		return
	}
	user, ok := leadingInt(clientID[2:])
	if !ok || user < 0 || int(user) >= j.Users {
		return
	}
	spp := uint64(j.SocketsPerPerson)
	if clientID[1] == 'd' {
		d.ackedDM.Add(1)
		d.expected.Add(2 * spp)
		return
	}
	d.ackedChannel.Add(1)
	d.expected.Add(uint64(j.members(int(user), int(clientID[1]-'c')/2)) * spp)
}

// deliver counts a message new to its socket; b is its text after the
// marker, starting with the send time.
func (d *dmCounters) deliver(b []byte, now time.Time) {
	sent, ok := leadingInt(b)
	if !ok {
		return
	}
	d.delivered.Add(1)
	d.hist.record(now.Sub(time.Unix(0, sent)))
	storeMax(&d.lastRecv, now.UnixNano())
}

func (d *dmCounters) stats() *dmStats {
	return &dmStats{
		Sent: d.sent.Load(), SentDM: d.sentDM.Load(), SentChannel: d.sentChannel.Load(), WriteErrors: d.writeErrors.Load(), Skipped: d.skipped.Load(), Resent: d.resent.Load(),
		AckedDM: d.ackedDM.Load(), AckedChannel: d.ackedChannel.Load(), ErrFrames: d.errFrames.Load(), Expected: d.expected.Load(),
		Delivered: d.delivered.Load(), Duplicates: d.dups.Load(), LastRecvNS: d.lastRecv.Load(), Hist: d.hist.snapshot(),
	}
}
