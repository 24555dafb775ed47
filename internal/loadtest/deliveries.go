package loadtest

import (
	"bytes"
	"strconv"
	"time"
)

// The prefixes a worker counts server frames by: it matches them and reads
// the numbers after them rather than decoding each object, since the tool's
// own CPU is taken from the servers it measures (see epoll_linux.go).
var (
	markMessage = []byte("hb ")
	markAck     = []byte(`{"type":"ack"`)
	markError   = []byte(`{"type":"error"`)
	markHello   = []byte(`{"type":"hello"`)
	markClient  = []byte(`"clientId":"k`)
	markTarget  = []byte(`"clientId":"target"`)
	markID      = []byte(`"id":"`)
	markReact   = []byte(`{"type":"reaction"`)
)

// frame counts what one server frame holds: objects (or, from the
// baseline, lines) separated by newlines.
func (c *wconn) frame(data []byte, now time.Time) {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if c.edge != nil {
			c.edge.line(c, line, now)
			continue
		}
		if i := bytes.Index(line, markMessage); i >= 0 {
			c.message(line[i+len(markMessage):], now)
			continue
		}
		switch {
		case bytes.HasPrefix(line, markAck):
			if step, ok := clientStep(line); ok {
				c.w.steps[step].acked.Add(1)
			} else if bytes.Contains(line, markTarget) {
				c.gotTarget(line)
			}
		case bytes.HasPrefix(line, markReact):
			// Counted in the step running now; a reaction carries no send
			// time, so no latency.
			sc := &c.w.steps[c.w.step.Load()]
			sc.delivered.Add(1)
			sc.heard(now)
		case bytes.HasPrefix(line, markError):
			step, ok := clientStep(line)
			if !ok {
				step = int(c.w.step.Load())
			}
			c.w.steps[step].errFrames.Add(1)
		case bytes.HasPrefix(line, markHello):
			c.gotHello()
		}
	}
}

// message handles "<step> <sendUnixNano> <sender> <seq>..." (the rest of a
// message's text after "hb ").
func (c *wconn) message(b []byte, now time.Time) {
	var f [4]int64
	for i := range f {
		j := 0
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == 0 {
			return
		}
		v, err := strconv.ParseInt(string(b[:j]), 10, 64)
		if err != nil {
			return
		}
		f[i] = v
		if j < len(b) {
			j++ // the space
		}
		b = b[j:]
	}
	step, sent, sender, seq := f[0], f[1], f[2], f[3]
	if step < 0 || step >= maxSteps || sender < 0 || sender >= int64(max(1, c.w.job.Workers)) {
		return
	}
	for int64(len(c.lastSeq)) <= sender {
		// Grown on demand: a socket hears from few of the workers' senders
		// (one entry per worker, made up front, was 0.5 KB a socket at 63
		// workers).
		c.lastSeq = append(c.lastSeq, -1)
	}
	sc := &c.w.steps[step]
	if seq <= c.lastSeq[sender] {
		sc.dups.Add(1)
		return
	}
	c.lastSeq[sender] = seq
	sc.delivered.Add(1)
	sc.hist.record(now.Sub(time.Unix(0, sent)))
	sc.heard(now)
}

// heard notes when the step's latest delivery arrived (the coordinator
// waits for deliveries to stop before it ends a step).
func (sc *stepCounters) heard(now time.Time) {
	ns := now.UnixNano()
	for {
		old := sc.lastRecv.Load()
		if ns <= old || sc.lastRecv.CompareAndSwap(old, ns) {
			break
		}
	}
}

// clientStep reads the step out of a clientId "k<step>.<seq>".
func clientStep(line []byte) (int, bool) {
	i := bytes.Index(line, markClient)
	if i < 0 {
		return 0, false
	}
	b := line[i+len(markClient):]
	j := bytes.IndexByte(b, '.')
	if j <= 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(b[:j]))
	if err != nil || n < 0 || n >= maxSteps {
		return 0, false
	}
	return n, true
}

// gotTarget passes on the id of the message the sender edits or reacts to.
func (c *wconn) gotTarget(ack []byte) {
	i := bytes.Index(ack, markID)
	if i < 0 || c.w.targetID == nil {
		return
	}
	id := ack[i+len(markID):]
	if j := bytes.IndexByte(id, '"'); j > 0 {
		select {
		case c.w.targetID <- string(id[:j]):
		default:
		}
	}
}
