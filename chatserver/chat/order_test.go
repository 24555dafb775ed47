package chat

import (
	"strings"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// msgs makes committed messages of one channel whose frames are their ids.
func msgs(ids ...string) []outMsg {
	out := make([]outMsg, len(ids))
	for i, s := range ids {
		id, err := protocol.ParseID(s)
		if err != nil {
			panic(err)
		}
		out[i] = outMsg{id: id, frame: []byte(s)}
	}
	return out
}

// queued is what the outbox holds, as ids.
func queued(o *outbox) string {
	var ids []string
	for _, f := range o.queue {
		ids = append(ids, string(f))
	}
	return strings.Join(ids, " ")
}

// TestOrder drives one socket's order through a script of steps and checks
// what reaches the outbox: one stream per channel, in id order, no repeats.
func TestOrder(t *testing.T) {
	type step struct {
		do      string // live, release, begin, replay, end, leave, rejoin
		channel string
		ids     []string // messages (live, replay) or the since id (begin)
	}
	live := func(ch string, ids ...string) step { return step{"live", ch, ids} }
	replay := func(ch string, ids ...string) step { return step{"replay", ch, ids} }
	begin := func(ch, since string) step { return step{"begin", ch, []string{since}} }
	end := func(ch string) step { return step{"end", ch, nil} }
	leave := func(ch string) step { return step{"leave", ch, nil} }
	rejoin := func(ch string) step { return step{"rejoin", ch, nil} }
	release := step{do: "release"}

	tests := []struct {
		name    string
		holding bool
		steps   []step
		want    string
	}{
		{"live messages go out in order", false,
			[]step{live("g", "1-0", "2-0"), live("g", "3-0")}, "1-0 2-0 3-0"},
		{"a message at or below the last is dropped", false,
			[]step{live("g", "2-0"), live("g", "1-0", "2-0", "3-0")}, "2-0 3-0"},
		{"channels are ordered apart", false,
			[]step{live("a", "5-0"), live("b", "1-0")}, "5-0 1-0"},
		{"held until released", true,
			[]step{live("g", "1-0"), live("g", "2-0")}, ""},
		{"release lets the held out", true,
			[]step{live("g", "1-0"), live("g", "2-0"), release}, "1-0 2-0"},
		{"a second release does nothing", true,
			[]step{live("g", "1-0"), release, release, live("g", "2-0")}, "1-0 2-0"},
		{"a resume goes out before what was held", true,
			[]step{live("g", "3-0"), begin("g", "1-0"), replay("g", "2-0", "3-0"), end("g"), release}, "2-0 3-0"},
		{"live messages wait behind a replay", false,
			[]step{begin("g", "1-0"), live("g", "4-0"), replay("g", "2-0", "3-0", "4-0"), end("g"), live("g", "5-0")}, "2-0 3-0 4-0 5-0"},
		{"released during a replay, the held wait behind it", true,
			[]step{begin("g", ""), live("g", "2-0"), release, replay("g", "1-0", "2-0"), end("g")}, "1-0 2-0"},
		{"what the client has is not sent again", false,
			[]step{begin("g", "2-0"), replay("g", "1-0", "2-0", "3-0"), end("g")}, "3-0"},
		{"an old since does not move the last id back", false,
			[]step{live("g", "5-0"), begin("g", "1-0"), replay("g", "2-0", "5-0", "6-0"), end("g")}, "5-0 6-0"},
		{"a replay of one channel does not hold another", false,
			[]step{begin("a", ""), live("b", "1-0"), end("a")}, "1-0"},
		{"nothing of a channel left goes out", false,
			[]step{live("g", "1-0"), leave("g"), live("g", "2-0")}, "1-0"},
		{"what was held of a channel left is dropped, other channels' kept", true,
			[]step{live("g", "1-0"), live("b", "7-0"), leave("g"), release}, "7-0"},
		{"a replay under way stops at leaving", false,
			[]step{begin("g", ""), replay("g", "1-0"), live("g", "3-0"), leave("g"), replay("g", "2-0"), end("g")}, "1-0"},
		{"back in, the channel goes out again", false,
			[]step{live("g", "1-0"), leave("g"), rejoin("g"), live("g", "5-0")}, "1-0 5-0"},
		{"rejoining a channel never left keeps its last id", false,
			[]step{live("g", "5-0"), rejoin("g"), live("g", "4-0", "6-0")}, "5-0 6-0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ob, _ := newTestOutbox(t, 100) // never greeted: the queue stays put
			o := order{holding: tt.holding}
			total := 0
			for _, s := range tt.steps {
				switch s.do {
				case "live":
					total += o.live(ob, s.channel, msgs(s.ids...))
				case "release":
					total += o.release(ob)
				case "begin":
					id, err := protocol.ParseID(s.ids[0])
					o.beginReplay(s.channel, id, s.ids[0] != "" && err == nil)
				case "replay":
					total += o.queue(ob, s.channel, msgs(s.ids...))
				case "end":
					total += o.endReplay(ob, s.channel)
				case "leave":
					o.leave(s.channel)
				case "rejoin":
					o.rejoin(s.channel)
				}
			}
			if got := queued(ob); got != tt.want {
				t.Fatalf("queued %q, want %q", got, tt.want)
			}
			if n := len(ob.queue); total != n {
				t.Errorf("the steps reported %d queued, the outbox holds %d", total, n)
			}
		})
	}
}

// TestOrderBeginReplaySaysWhenLiveWentAhead: a replay can fill only what
// comes after everything the socket queued; beginReplay names what it
// queued past the client's since, so the resume can say the channel is not
// recovered.
func TestOrderBeginReplaySaysWhenLiveWentAhead(t *testing.T) {
	tests := []struct {
		name      string
		queued    []string // live, before the replay
		since     string
		wantAhead string // "" = not ahead
	}{
		{"nothing queued yet (resume as the first frame)", nil, "3-0", ""},
		{"nothing queued, from the start", nil, "", ""},
		{"the client has all that was queued", []string{"4-0", "5-0"}, "5-0", ""},
		{"the client is past what was queued", []string{"4-0"}, "6-0", ""},
		{"live went past since", []string{"4-0", "5-0"}, "3-0", "5-0"},
		{"live went out, the client asks from the start", []string{"4-0"}, "", "4-0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ob, _ := newTestOutbox(t, 100)
			var o order
			o.live(ob, "g", msgs(tt.queued...))
			id, err := protocol.ParseID(tt.since)
			ahead, isAhead := o.beginReplay("g", id, tt.since != "" && err == nil)
			got := ""
			if isAhead {
				got = ahead.String()
			}
			if got != tt.wantAhead {
				t.Errorf("ahead %q, want %q", got, tt.wantAhead)
			}
		})
	}
}

// TestOrderCountsOnlyWhatTheOutboxTook: a closing socket takes nothing, and
// nothing is counted.
func TestOrderCountsOnlyWhatTheOutboxTook(t *testing.T) {
	ob, _ := newTestOutbox(t, 100)
	ob.end.closing = true
	var o order
	if n := o.live(ob, "g", msgs("1-0", "2-0")); n != 0 {
		t.Fatalf("%d counted on a closing socket", n)
	}
}

// TestOrderReleaseStopsTheTimer: the resume window's timer is dropped once
// it has no purpose, so an idle socket does not hold it.
func TestOrderReleaseStopsTheTimer(t *testing.T) {
	ob, _ := newTestOutbox(t, 100)
	fired := make(chan struct{})
	o := order{holding: true}
	o.releaseT = time.AfterFunc(time.Hour, func() { close(fired) })
	o.release(ob)
	if o.releaseT != nil {
		t.Fatal("timer kept after release")
	}
	select {
	case <-fired:
		t.Fatal("the stopped timer fired")
	default:
	}
}
