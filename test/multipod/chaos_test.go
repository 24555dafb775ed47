package multipod

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/test/chatclient"
)

// TestChaos: while 50 clients send continuously over three pods, one pod is
// killed with SIGKILL (and comes back), another is drained with SIGTERM (and
// comes back), then Redis is stopped and restarted (AOF on, same dir).
// Clients reconnect with backoff and jitter and resume. At the end every
// client has every acknowledged message exactly once per channel, in order;
// every send that was not acknowledged got an error; nothing was committed
// twice. A third of the clients' turns edit, delete or react to one of
// their messages instead: every change is acknowledged, and every client
// ends with each message as history has it. The counts are printed.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: skipped with -short")
	}
	const (
		nClients  = 50
		sendEvery = time.Second
	)
	channels := []string{"general", "random"}
	srv := redistest.Start(t)
	// Servers heartbeat and sweep presence every third of the presence TTL,
	// so a crashed server's users go offline within TTL + TTL/3: 20s keeps
	// that within the required 30s (the 30s default can take up to 40s).
	pods := startPods(t, srv, 3, "--presence-ttl=20s")
	victim, drained, steady := pods[0], pods[1], pods[2]
	ctx := testContext(t, 3*time.Minute)
	start := time.Now()
	at := func() string { return time.Since(start).Round(100 * time.Millisecond).String() }

	// Accounts, spread over the pods.
	tokens := make([]string, nClients)
	var wg sync.WaitGroup
	errs := make(chan error, nClients)
	for i := range nClients {
		wg.Go(func() {
			name := fmt.Sprintf("user%02d", i)
			p := pods[i%3].URL()
			if err := chatclient.Register(ctx, p, name, "password-"+name); err != nil {
				errs <- err
				return
			}
			tok, err := chatclient.Login(ctx, pods[(i+1)%3].URL(), name, "password-"+name)
			if err != nil {
				errs <- err
				return
			}
			tokens[i] = tok
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// A ghost user lives only on the victim pod and does not reconnect; an
	// observer on the steady pod watches for the ghost going offline.
	for _, name := range []string{"ghost", "observer"} {
		if err := chatclient.Register(ctx, steady.URL(), name, "password-"+name); err != nil {
			t.Fatal(err)
		}
	}
	ghostTok, err := chatclient.Login(ctx, victim.URL(), "ghost", "password-ghost")
	if err != nil {
		t.Fatal(err)
	}
	obsTok, err := chatclient.Login(ctx, steady.URL(), "observer", "password-observer")
	if err != nil {
		t.Fatal(err)
	}
	// The watch is answered with the ghost's status at once (offline, before
	// it connects): only an offline after an online counts.
	ghostOffline := make(chan time.Time, 1)
	var ghostSeen atomic.Bool
	observer := chatclient.New(chatclient.Config{Servers: []string{steady.URL()}, Token: obsTok, Watch: []string{"ghost"}, OnObject: func(o chatclient.Object) {
		if o.Type == "presence" && o.User == "ghost" && o.Status == "online" {
			ghostSeen.Store(true)
		}
		if o.Type == "presence" && o.User == "ghost" && o.Status == "offline" && ghostSeen.Load() {
			select {
			case ghostOffline <- time.Now():
			default:
			}
		}
	}})
	runClient(t, ctx, observer)
	ghost := chatclient.New(chatclient.Config{Servers: []string{victim.URL()}, Token: ghostTok, NoReconnect: true})
	runClient(t, ctx, ghost)

	// The senders, connected to random pods.
	clients := make([]*chatclient.Client, nClients)
	for i := range clients {
		clients[i] = chatclient.New(chatclient.Config{Servers: urls(pods...), Token: tokens[i], Channels: channels})
		runClient(t, ctx, clients[i])
	}
	for _, c := range append(clients, ghost, observer) {
		if err := c.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sendCtx, stopSending := context.WithCancel(ctx)
	var senders sync.WaitGroup
	for i, c := range clients {
		senders.Go(func() {
			ch := changer{c: c, deleted: map[string]bool{}, on: map[string]bool{}}
			n := 0
			for {
				// Jittered pace so the clients do not send in lockstep.
				select {
				case <-sendCtx.Done():
					return
				case <-time.After(sendEvery/2 + rand.N(sendEvery)):
				}
				if n%3 == 2 && ch.change(fmt.Sprintf("edit:user%02d#%d", i, n)) {
					n++
					continue
				}
				c.Send(channels[n%len(channels)], fmt.Sprintf("user%02d#%d", i, n))
				n++
			}
		})
	}

	step := func(d time.Duration, what string, f func()) {
		select {
		case <-ctx.Done():
			t.Fatalf("test context ended before %s", what)
		case <-time.After(time.Until(start.Add(d))):
		}
		t.Logf("%s: %s", at(), what)
		f()
	}
	var killedAt time.Time
	step(8*time.Second, "kill -9 "+victim.Name, func() {
		killedAt = time.Now()
		victim.Signal(syscall.SIGKILL)
	})
	step(12*time.Second, "restart "+victim.Name, victim.Restart)
	step(16*time.Second, "SIGTERM "+drained.Name, func() {
		took, st := drained.Signal(syscall.SIGTERM)
		if st == nil || !st.Success() {
			t.Errorf("%s exited with %v after SIGTERM, want status 0", drained.Name, st)
		}
		if took > grace+2*time.Second {
			t.Errorf("%s took %s to exit after SIGTERM, grace is %s", drained.Name, took, grace)
		}
		t.Logf("%s: %s exited %s after SIGTERM", at(), drained.Name, took.Round(time.Millisecond))
	})
	step(22*time.Second, "restart "+drained.Name, drained.Restart)

	// A pod killed with SIGKILL has its users shown offline within 30 s.
	select {
	case off := <-ghostOffline:
		d := off.Sub(killedAt)
		t.Logf("%s: ghost (only on the killed pod) shown offline %s after the kill", at(), d.Round(100*time.Millisecond))
		if d > 30*time.Second {
			t.Errorf("ghost shown offline %s after its pod was killed, want within 30s", d)
		}
	case <-time.After(time.Until(killedAt.Add(35 * time.Second))):
		t.Errorf("ghost not shown offline 35s after its pod was killed (want within 30s)")
	}

	step(46*time.Second, "stop redis-server", srv.Stop)
	step(51*time.Second, "start redis-server (same dir, AOF)", srv.Restart)
	step(58*time.Second, "stop sending", func() {
		stopSending()
		senders.Wait()
	})

	// Everything unacknowledged is resent until acknowledged; then every
	// client must have every acknowledged message.
	acked := map[string][]string{}
	for _, ch := range channels {
		acked[ch] = waitAllAcked(t, clients, ch, 20*time.Second)
	}
	type tally struct {
		sent, acked, errors, unackedNoError, delivered, lost, redelivered, outOfOrder, resumes, connects int
		changes, changesAcked, changesRefused, stateDiffers                                              int
	}
	var n tally
	for _, c := range clients {
		for _, s := range c.Sends() {
			if s.Change != nil {
				n.changes++
				if s.ID != "" {
					n.changesAcked++
				}
				if s.Refused != "" {
					n.changesRefused++
					t.Errorf("%s of %s refused: %s", s.Change.Kind, s.Change.Target, s.Refused)
				}
				continue
			}
			n.sent++
			n.errors += s.Errors
			if s.ID != "" {
				n.acked++
			} else if s.Errors == 0 {
				n.unackedNoError++
			}
		}
	}
	for _, c := range clients {
		for _, ch := range channels {
			got := waitDelivered(t, c, ch, acked[ch], 20*time.Second)
			n.delivered += len(got)
			n.lost += missing(acked[ch], got)
		}
		st := c.Stats()
		n.redelivered += st.Redelivered
		n.outOfOrder += st.OutOfOrder
		n.resumes += st.Resumes
		n.connects += st.Connects
	}
	// Edits, deletes and reactions too: every client ends with what
	// history says, message by message.
	for _, ch := range channels {
		hist, err := chatclient.History(ctx, steady.URL(), tokens[0], ch)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]chatclient.State{}
		for _, h := range hist {
			want[h.ID] = chatclient.State{Text: h.Text, EditedAt: h.EditedAt, Deleted: h.Deleted, Reactions: h.Reactions}
		}
		for i, c := range clients {
			if diff := waitStates(c, ch, want, 20*time.Second); diff != "" {
				n.stateDiffers++
				t.Errorf("user%02d's %s differs from its history (-history +client):\n%s", i, ch, diff)
			}
		}
	}
	dups, inStream := duplicates(t, ctx, srv, channels)
	t.Logf("%s: chaos counts: sent=%d acked=%d errors=%d delivered=%d lost=%d duplicates=%d changes=%d changes-acked=%d changes-refused=%d clients-whose-state-differs-from-history=%d (unacked-without-error=%d, redelivered-and-dropped-by-id=%d, out-of-order=%d, committed=%d, connections=%d, resumes-retried=%d)",
		at(), n.sent, n.acked, n.errors, n.delivered, n.lost, dups, n.changes, n.changesAcked, n.changesRefused, n.stateDiffers, n.unackedNoError, n.redelivered, n.outOfOrder, inStream, n.connects, n.resumes)
	fmt.Printf("CHAOS COUNTS: sent=%d acked=%d errors=%d delivered=%d lost=%d duplicates=%d changes=%d changes-acked=%d state-differs=%d\n", n.sent, n.acked, n.errors, n.delivered, n.lost, dups, n.changes, n.changesAcked, n.stateDiffers)
	if n.lost != 0 {
		t.Errorf("lost %d acknowledged messages (summed over clients)", n.lost)
	}
	if dups != 0 {
		t.Errorf("%d messages committed more than once", dups)
	}
	if n.outOfOrder != 0 {
		t.Errorf("%d messages delivered out of order", n.outOfOrder)
	}
	if n.unackedNoError != 0 {
		t.Errorf("%d sends neither acknowledged nor told of an error", n.unackedNoError)
	}
	if n.acked != n.sent {
		t.Errorf("%d of %d sends acknowledged after retries", n.acked, n.sent)
	}
	if n.changesAcked != n.changes || n.changes == 0 {
		t.Errorf("%d of %d changes acknowledged after retries", n.changesAcked, n.changes)
	}
	if n.errors == 0 {
		t.Error("no send saw an error: the faults did not bite")
	}
	if want := n.acked * nClients; n.delivered < want {
		t.Errorf("delivered %d, want at least %d (every acked message to every client)", n.delivered, want)
	}
	if d := time.Since(start); d > 90*time.Second {
		t.Errorf("the chaos run took %s, budget 90s", d)
	}
}

// duplicates reads the channels' streams and counts messages committed more
// than once (the same text: each send's text is unique).
func duplicates(t *testing.T, ctx context.Context, srv *redistest.Server, channels []string) (dups, total int) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	for _, ch := range channels {
		xs, err := c.XRange(ctx, keys.Stream(room, ch), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, x := range xs {
			text, _ := x.Values["t"].(string)
			if !strings.HasPrefix(text, "user") {
				continue
			}
			total++
			if seen[text] {
				dups++
			}
			seen[text] = true
		}
	}
	return dups, total
}

// changer makes a client's changes: each of one of its own acknowledged
// messages that is not deleted and has no change still on its way, so none
// is refused (a change retried after a delete would be).
type changer struct {
	c       *chatclient.Client
	deleted map[string]bool // targets deleted
	on      map[string]bool // target+emoji: reacted
}

var chaosEmoji = []string{"👍", "🎉", "👀"}

// change sends an edit (text), a reaction or a delete, and reports whether
// it found a message to change.
func (ch *changer) change(text string) bool {
	busy := map[string]bool{}
	var mine []chatclient.Send
	for _, s := range ch.c.Sends() {
		switch {
		case s.Change != nil && s.ID == "":
			busy[s.Change.Target] = true
		case s.Change == nil && s.ID != "" && !ch.deleted[s.ID]:
			mine = append(mine, s)
		}
	}
	mine = slices.DeleteFunc(mine, func(s chatclient.Send) bool { return busy[s.ID] })
	if len(mine) == 0 {
		return false
	}
	m := mine[rand.N(len(mine))]
	switch r := rand.N(10); {
	case r < 5:
		ch.c.Change(m.Channel, chatclient.ChangeOf{Kind: protocol.KindEdit, Target: m.ID}, text)
	case r < 9:
		e := chaosEmoji[rand.N(len(chaosEmoji))]
		on := !ch.on[m.ID+e]
		ch.on[m.ID+e] = on
		ch.c.Change(m.Channel, chatclient.ChangeOf{Kind: protocol.KindReact, Target: m.ID, Emoji: e, On: on}, "")
	default:
		ch.deleted[m.ID] = true
		ch.c.Change(m.Channel, chatclient.ChangeOf{Kind: protocol.KindDelete, Target: m.ID}, "")
	}
	return true
}

// waitStates waits until c holds channel's messages as want has them, and
// returns the difference it ended with ("" = none).
func waitStates(c *chatclient.Client, channel string, want map[string]chatclient.State, d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		diff := cmp.Diff(want, c.States(channel), cmpopts.EquateEmpty())
		if diff == "" || time.Now().After(deadline) {
			return diff
		}
		time.Sleep(20 * time.Millisecond)
	}
}
