package loadtest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The token is what Centrifugo checks: an HS256 JWT over the header and
// claims, signed with the key its config holds.
func TestHS256JWT(t *testing.T) {
	tok := hs256JWT("k3y", map[string]any{"sub": "bench7", "exp": 2000000000})
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%q: want three parts", tok)
	}
	mac := hmac.New(sha256.New, []byte("k3y"))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)); parts[2] != want {
		t.Errorf("signature %s, want %s", parts[2], want)
	}
	var header, claims map[string]any
	for i, v := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	if header["alg"] != "HS256" || claims["sub"] != "bench7" || claims["exp"] != float64(2000000000) {
		t.Errorf("header %v, claims %v", header, claims)
	}
}

// A publish reply echoes only the command's id: the id must give back the
// step, and stay a uint32 however many messages a worker sends.
func TestCentrifugoPublishIDCarriesTheStep(t *testing.T) {
	for _, tc := range []struct {
		step int
		seq  int64
	}{{0, 0}, {3, 41}, {maxSteps - 1, 1 << 40}, {7, centrifugoSeqWrap - 1}, {7, centrifugoSeqWrap}} {
		cmd := string(appendCentrifugoPublish(nil, "general", tc.step, tc.seq)) + "hb 1 2 3 4" + centrifugoPublishEnd
		var v struct {
			ID      uint32 `json:"id"`
			Publish struct {
				Channel string
				Data    struct{ Text string }
			}
		}
		if err := json.Unmarshal([]byte(cmd), &v); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		id, failed, ok := centrifugoReplyID([]byte(fmt.Sprintf(`{"id":%d,"publish":{}}`, v.ID)))
		if !ok || failed || id < maxSteps || int(id%maxSteps) != tc.step {
			t.Errorf("step %d seq %d: id %d read back as %d (failed %v, ok %v)", tc.step, tc.seq, v.ID, id, failed, ok)
		}
		if v.Publish.Channel != "general" || v.Publish.Data.Text != "hb 1 2 3 4 load test message" {
			t.Errorf("%s: channel %q, text %q", cmd, v.Publish.Channel, v.Publish.Data.Text)
		}
	}
}

// One frame may hold several replies and pushes, one per line: each lands
// on its counter, and the subscribe reply is the socket's hello.
func TestCentrifugoFrameCounts(t *testing.T) {
	c := &wconn{w: &worker{}, hello: make(chan struct{}), lastSeq: []int64{-1}}
	sent := time.Now().Add(-5 * time.Millisecond).UnixNano()
	frame := strings.Join([]string{
		`{"id":2,"subscribe":{}}`,
		fmt.Sprintf(`{"push":{"channel":"general","pub":{"data":{"text":"hb 3 %d 0 0 load test message"},"info":{"user":"bench1","client":"c1"}}}}`, sent),
		fmt.Sprintf(`{"push":{"channel":"general","pub":{"data":{"text":"hb 3 %d 0 1 load test message"}}}}`, sent),
		fmt.Sprintf(`{"id":%d,"publish":{}}`, 1*maxSteps+3),
		fmt.Sprintf(`{"id":%d,"error":{"code":103,"message":"permission denied"}}`, 2*maxSteps+3),
		`{"push":{"channel":"general","join":{"info":{"user":"x"}}}}`,
	}, "\n")
	if err := c.centrifugoFrame([]byte(frame), time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.hello:
	default:
		t.Error("the subscribe reply did not count as the hello")
	}
	s := &c.w.steps[3]
	if s.delivered.Load() != 2 || s.acked.Load() != 1 || s.errFrames.Load() != 1 || s.dups.Load() != 0 {
		t.Errorf("delivered %d, acked %d, errors %d, duplicates %d; want 2, 1, 1, 0",
			s.delivered.Load(), s.acked.Load(), s.errFrames.Load(), s.dups.Load())
	}
	if err := c.centrifugoFrame([]byte(`{"id":1,"error":{"code":109,"message":"token expired"}}`), time.Now()); err == nil {
		t.Error("a refused connect did not close the socket")
	}
}

// fakeStatsWorker answers the coordinator's stats commands as a worker
// process would, with what next gives for the n-th poll (from 1).
type fakeStatsWorker struct {
	polls  int
	next   func(poll int) stepStats
	events chan event
}

func (f *fakeStatsWorker) Write(b []byte) (int, error) {
	var cmd command
	if err := json.Unmarshal(b, &cmd); err != nil || cmd.Cmd != "stats" {
		return 0, fmt.Errorf("unexpected command %s", b)
	}
	f.polls++
	st := f.next(f.polls)
	f.events <- event{Event: "stats", Step: cmd.Step, Stats: &st}
	return len(b), nil
}

func (f *fakeStatsWorker) Close() error { return nil }

// A step whose drain ended with its sends or deliveries still coming (a
// server behind: Centrifugo at 10k sockets) is waited for before the next
// step starts, until the rest has come or nothing more does; a step that
// got everything is not.
func TestCentrifugoBacklogSettles(t *testing.T) {
	const conns = 10
	r := StepResult{Rate: 10, Sent: 4, Conns: conns}
	for _, tc := range []struct {
		name      string
		end       stepStats
		next      func(poll int) stepStats
		wantPolls int
		quiet     bool
	}{
		{name: "complete", end: stepStats{Acked: 4, Delivered: 4 * conns}, wantPolls: 0},
		{
			name: "late acks and deliveries", end: stepStats{Acked: 2, Delivered: 5},
			next: func(poll int) stepStats {
				// One more ack, then its deliveries, a poll at a time.
				return stepStats{Acked: uint64(min(4, 2+poll)), Delivered: uint64(min(4*conns, 5+10*poll))}
			},
			wantPolls: 4,
		},
		{
			name: "stops short", end: stepStats{Acked: 4, Delivered: 30},
			next:  func(poll int) stepStats { return stepStats{Acked: 4, Delivered: 35} },
			quiet: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeStatsWorker{next: tc.next, events: make(chan event, 1)}
			c := newCoordinator(Config{Target: centrifugoTarget}, slog.New(slog.DiscardHandler))
			c.workers = []*workerProc{{in: f, events: f.events}}
			end := stepTotals{delivered: tc.end.Delivered, acked: tc.end.Acked}
			start := time.Now()
			if err := c.settleBacklog(context.Background(), 3, r, end); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			switch {
			case tc.quiet && took < backlogQuiet:
				t.Errorf("returned after %s, before %s without deliveries", took, backlogQuiet)
			case !tc.quiet && f.polls != tc.wantPolls:
				t.Errorf("%d polls, want %d", f.polls, tc.wantPolls)
			}
		})
	}
}
