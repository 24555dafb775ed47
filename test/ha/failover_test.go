package ha

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/test/chatclient"
)

// Traffic and timing, kept short: the whole package runs in about a minute.
const (
	nClients = 50
	// nReaders more clients send nothing: when the primary dies, each
	// asks to resume every channel from the start, during the failover.
	nReaders = 5
	// sendEvery is each client's mean time between sends (jittered ±50%):
	// 50 clients make about 100 messages a second, so a failover of a few
	// seconds catches a few hundred sends in flight, and fanning each out
	// to 50 sockets still leaves the 2 shared cores room.
	sendEvery = 500 * time.Millisecond
	// A phase of traffic comes before the first fault, and after each
	// failover (before the next fault, or the end). It lasts phaseFor, and
	// longer if need be until phaseAcks more sends were acked (1.5 s at
	// 100 a second): a slow machine stretches it rather than leaving it
	// empty.
	phaseFor  = 2 * time.Second
	phaseAcks = 150
	// phaseTimeout bounds a phase of traffic.
	phaseTimeout = 30 * time.Second
	// cutFor is how long scenario (b) lets the primary take writes that
	// nothing replicates before killing it: as long as the replica-ack
	// timeout (2 s), so that the chat servers refuse sends whose WAIT
	// timed out, and the primary holds writes no replica has.
	cutFor = 2 * time.Second
	// longCutFor is scenario (d)'s cut: longer than the 10 s after which a
	// chat server looks again at how many replicas the primary has.
	longCutFor = 12 * time.Second
	// failoverTimeout bounds a failover: sentinels take about 5 s (3 s to
	// call the primary down, a vote, a promotion); a split vote is retried
	// after 2 × their 3 s failover-timeout.
	failoverTimeout = 30 * time.Second
	// settleTimeout bounds a restarted server's rejoining as a replica (a
	// full sync) and the sentinels seeing it up.
	settleTimeout = 30 * time.Second
	// drainTimeout bounds the wait for every send to be acked, and for
	// every stored message to reach every client, once traffic stops.
	drainTimeout = 30 * time.Second
	// presenceTimeout: a failover must leave presence right within 30 s.
	presenceTimeout = 30 * time.Second
)

var channels = []string{"general", "random"}

// scenario is one fault under traffic.
type scenario struct {
	name string
	// acks is the chat servers' --redis-min-replica-acks (-1: auto).
	acks int
	// measurement: the scenario reports what it lost and fails only on
	// counts that do not add up.
	measurement bool
	fault       func(t *testing.T, r *run)
}

// TestFailover kills Redis primaries under the traffic of 50 clients spread
// over 3 chat servers on a Sentinel topology; 5 more clients resume every
// channel from the start just as the primary dies, and must each end with
// the replay ("resumed"; "unavailable" meanwhile is fine: the client asks
// again). Once every send is acked it counts: acked (distinct clientIds acked), errors
// (error frames naming a send, and connections lost under one), delivered
// (messages the clients got, summed over clients), lost (acked but not in
// the history; of which "unseen": delivered to no client either),
// duplicates (a send stored twice), and the failover time (from the first
// error after the fault to the first ack after it). No acked message may
// be lost, none stored twice, every client must get every stored message
// in order, nobody may be logged out, and presence must be right again
// within 30 s.
//
// The measurement runs scenario (b) with --redis-min-replica-acks 0, to
// show what waiting for a replica buys: it reports the loss, and fails
// only if the counts do not add up.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("failover test: skipped with -short")
	}
	scenarios := []scenario{
		{name: "a/KillPrimary", acks: -1, fault: killPrimary},
		{name: "b/CutReplicationThenKillPrimary", acks: -1, fault: cutReplicationThenKillPrimary(cutFor)},
		{name: "c/KillEachNewPrimaryThrice", acks: -1, fault: killEachNewPrimary(3)},
		{name: "Measurement/b/NoReplicaAcks", acks: 0, measurement: true, fault: cutReplicationThenKillPrimary(cutFor)},
		// Longer than the 10 s after which auto acks once re-counted the
		// replicas: a primary cut off from them counted none, and acked
		// writes the failover dropped (1,188 of 1,798 lost). Auto now stays
		// at 1 through Sentinel.
		{name: "d/CutReplicationLongerThanReplicaCheck", acks: -1, fault: cutReplicationThenKillPrimary(longCutFor)},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			runScenario(t, sc)
		})
	}
}

// (a) SIGKILL the primary.
func killPrimary(t *testing.T, r *run) {
	old := r.h.Primary()
	r.fault("kill -9 the primary " + old.Addr())
	old.Kill()
	r.primaryDown()
	r.failedOver(r.h.WaitFailover(old, failoverTimeout))
}

// (b) Cut replication (the primary keeps taking writes that no replica
// receives: see Sentinel.CutReplication), kill the primary d later, then
// let the replicas go on so that the sentinels can promote one.
func cutReplicationThenKillPrimary(d time.Duration) func(t *testing.T, r *run) {
	return func(t *testing.T, r *run) {
		r.fault("cut replication: freeze both replicas, close their links")
		old, replicas := r.h.CutReplication()
		time.Sleep(d) // the scenario's timing, not a synchronisation
		r.mark("kill -9 the primary " + old.Addr() + ", thaw the replicas")
		old.Kill()
		for _, s := range replicas {
			s.Thaw()
		}
		r.primaryDown()
		r.failedOver(r.h.WaitFailover(old, failoverTimeout))
	}
}

// (c) Kill each new primary in turn; each killed one restarts (AOF) as a
// replica of the next, and traffic is acked by the new primary before it
// is killed in its turn.
func killEachNewPrimary(n int) func(t *testing.T, r *run) {
	return func(t *testing.T, r *run) {
		for i := range n {
			old := r.h.Primary()
			r.fault(fmt.Sprintf("kill -9 primary #%d %s", i+1, old.Addr()))
			old.Kill()
			r.primaryDown()
			r.failedOver(r.h.WaitFailover(old, failoverTimeout))
			r.h.Rejoin(old)
			r.h.WaitSettled(settleTimeout)
			r.mark(old.Addr() + " rejoined as a replica")
			if i < n-1 {
				r.traffic()
			}
		}
	}
}

// run is one scenario's world: topology, chat servers, clients, and the
// times of what happened.
type run struct {
	t       *testing.T
	ctx     context.Context
	h       *redistest.Sentinel
	pods    []*pod
	start   time.Time
	readers []*chatclient.Client // resume when the primary first dies

	mu     sync.Mutex
	acks   []time.Time // every ack, as the clients got it
	errs   []time.Time // every error frame naming a send
	faults []time.Time // when each fault began
	// failoverAt is when the last failover was seen complete.
	failoverAt time.Time
	// resumeAt is when the readers asked to resume (zero: not yet);
	// resumed counts "resumed" answers after it, resumeErrs "unavailable".
	resumeAt            time.Time
	resumed, resumeErrs int
}

func (r *run) at() string { return time.Since(r.start).Round(100 * time.Millisecond).String() }

func (r *run) mark(what string) { r.t.Logf("%s: %s", r.at(), what) }

// fault marks the start of a fault whose failover time is measured.
func (r *run) fault(what string) {
	r.mu.Lock()
	r.faults = append(r.faults, time.Now())
	r.mu.Unlock()
	r.mark(what)
}

// primaryDown says the primary was just killed: the first time, every
// reader asks to resume every channel from the start.
func (r *run) primaryDown() {
	r.mu.Lock()
	first := r.resumeAt.IsZero()
	if first {
		r.resumeAt = time.Now()
	}
	r.mu.Unlock()
	if !first {
		return
	}
	since := map[string]string{}
	for _, ch := range channels {
		since[ch] = ""
	}
	for _, c := range r.readers {
		if err := c.SendRaw(map[string]any{"type": "resume", "since": since}); err != nil {
			r.t.Fatalf("a reader's resume: %v", err)
		}
	}
}

// observeReader records what the readers' resumes came to.
func (r *run) observeReader(o chatclient.Object) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resumeAt.IsZero() {
		return
	}
	switch {
	case o.Type == "resumed":
		r.resumed++
	case o.Type == "error" && o.ClientID == "" && o.Code == "unavailable":
		r.resumeErrs++
	}
}

func (r *run) failedOver(primary *redistest.Server) {
	r.mu.Lock()
	r.failoverAt = time.Now()
	r.mu.Unlock()
	r.mark("the sentinels promoted " + primary.Addr())
}

func (r *run) observe(o chatclient.Object) {
	switch {
	case o.Type == "ack":
		r.mu.Lock()
		r.acks = append(r.acks, time.Now())
		r.mu.Unlock()
	case o.Type == "error" && o.ClientID != "":
		r.mu.Lock()
		r.errs = append(r.errs, time.Now())
		r.mu.Unlock()
	}
}

// traffic lets the clients send for a phase (phaseFor and phaseAcks).
func (r *run) traffic() {
	r.t.Helper()
	r.mu.Lock()
	want := len(r.acks) + phaseAcks
	r.mu.Unlock()
	start := time.Now()
	deadline := start.Add(phaseTimeout)
	for {
		r.mu.Lock()
		got := len(r.acks)
		r.mu.Unlock()
		if got >= want && time.Since(start) >= phaseFor {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("only %d of %d acks within %s", got-want+phaseAcks, phaseAcks, phaseTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failoverTimes is, for each fault, the time from the first error after it
// to the first ack after that error.
func (r *run) failoverTimes() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Duration
	for _, f := range r.faults {
		i := slices.IndexFunc(r.errs, func(e time.Time) bool { return !e.Before(f) })
		if i < 0 {
			continue
		}
		firstErr := r.errs[i]
		j := slices.IndexFunc(r.acks, func(a time.Time) bool { return a.After(firstErr) })
		if j < 0 {
			continue
		}
		out = append(out, r.acks[j].Sub(firstErr).Round(10*time.Millisecond))
	}
	return out
}

// counts are what a scenario measures; see TestFailover.
type counts struct {
	sent, acked, errors, delivered, lost, lostUnseen, duplicates int
	stored, undelivered, seenNotStored, outOfOrder, connects     int
}

func runScenario(t *testing.T, sc scenario) {
	h := redistest.StartSentinel(t)
	url := h.URLWith(h.MasterName(), "") // the password comes from the environment
	pods := startPods(t, url, h.Password(), 3, "--redis-min-replica-acks="+strconv.Itoa(sc.acks))
	r := &run{t: t, ctx: testContext(t, 3*time.Minute), h: h, pods: pods, start: time.Now()}

	// Accounts, each registered on one server and logged in on another.
	names := make([]string, nClients+nReaders)
	tokens := make([]string, len(names))
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for i := range names {
		names[i] = fmt.Sprintf("user%02d", i)
		if i >= nClients {
			names[i] = fmt.Sprintf("reader%d", i-nClients)
		}
		wg.Go(func() {
			if err := chatclient.Register(r.ctx, pods[i%3].URL(), names[i], "password-"+names[i]); err != nil {
				errs <- err
				return
			}
			tok, err := chatclient.Login(r.ctx, pods[(i+1)%3].URL(), names[i], "password-"+names[i])
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

	// The clients, spread evenly over the servers: each resends an unacked
	// or refused send with its clientId, and resumes after a reconnect.
	clients := make([]*chatclient.Client, len(names))
	for i := range clients {
		observe := r.observe
		if i >= nClients {
			observe = r.observeReader
		}
		clients[i] = chatclient.New(chatclient.Config{
			Servers: []string{pods[i%3].URL()}, Token: tokens[i], Channels: channels, OnObject: observe,
		})
	}
	senders, readers := clients[:nClients], clients[nClients:]
	r.readers = readers
	for _, c := range clients {
		runClient(t, r.ctx, c)
	}
	for _, c := range clients {
		if err := c.WaitConnected(r.ctx); err != nil {
			t.Fatal(err)
		}
	}
	sendCtx, stopSending := context.WithCancel(r.ctx)
	var sending sync.WaitGroup
	for i, c := range senders {
		sending.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-sendCtx.Done():
					return
				case <-time.After(sendEvery/2 + rand.N(sendEvery)): // jittered, not in lockstep
				}
				c.Send(channels[n%len(channels)], fmt.Sprintf("%s#%d", names[i], n))
			}
		})
	}
	defer func() {
		stopSending()
		sending.Wait()
	}()

	r.mark("traffic")
	r.traffic()
	sc.fault(t, r)
	r.traffic()
	stopSending()
	sending.Wait()
	r.mark("traffic stopped; draining")

	// Every send is resent until acked.
	deadline := time.Now().Add(drainTimeout)
	for {
		unacked := 0
		for _, c := range senders {
			unacked += c.Unacked()
		}
		if unacked == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sends still unacked %s after traffic stopped", unacked, drainTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// What the room stores, read from one server.
	stored := map[string]map[string]string{} // channel -> id -> text
	storedTimes := map[string]int{}          // text -> times stored
	for _, ch := range channels {
		ms, err := history(r.ctx, pods[0].URL(), tokens[0], ch)
		if err != nil {
			t.Fatal(err)
		}
		stored[ch] = map[string]string{}
		for _, m := range ms {
			stored[ch][m.ID] = m.Text
			storedTimes[m.Text]++
		}
	}
	// Every stored message reaches every client (a resume fills what a
	// failover interrupted), and every reader's resume ends in a replay.
	deadline = time.Now().Add(drainTimeout)
	for _, c := range clients {
		for _, ch := range channels {
			for len(notSeen(c.Messages(ch), stored[ch])) > 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	for {
		r.mu.Lock()
		resumed, resumeErrs := r.resumed, r.resumeErrs
		r.mu.Unlock()
		if resumed >= nReaders {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of %d resumes sent as the primary died ended in a replay (%d answered unavailable)", resumed, nReaders, resumeErrs)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	var n counts
	seen := map[string]map[string]bool{} // channel -> ids some client got
	for _, ch := range channels {
		seen[ch] = map[string]bool{}
	}
	for _, c := range clients {
		for _, ch := range channels {
			ms := c.Messages(ch)
			n.delivered += len(ms)
			n.undelivered += len(notSeen(ms, stored[ch]))
			for _, m := range ms {
				seen[ch][m.ID] = true
			}
		}
		st := c.Stats()
		n.outOfOrder += st.OutOfOrder
		n.connects += st.Connects
	}
	for _, c := range senders {
		for _, s := range c.Sends() {
			n.sent++
			n.errors += s.Errors
			if s.ID == "" {
				continue
			}
			n.acked++
			if stored[s.Channel][s.ID] != s.Text {
				n.lost++
				if !seen[s.Channel][s.ID] {
					n.lostUnseen++
				}
			}
		}
	}
	for _, ch := range channels {
		for id := range seen[ch] {
			if _, ok := stored[ch][id]; !ok {
				n.seenNotStored++
			}
		}
		n.stored += len(stored[ch])
	}
	for _, times := range storedTimes {
		n.duplicates += times - 1
	}
	fo := r.failoverTimes()
	r.mu.Lock()
	resumeErrs := r.resumeErrs
	r.mu.Unlock()
	t.Logf("%s: %s counts: acked=%d errors=%d delivered=%d lost=%d duplicates=%d failover=%v (--redis-min-replica-acks=%d sent=%d stored=%d lost-and-unseen=%d seen-but-not-stored=%d undelivered=%d out-of-order=%d clients=%d connections=%d resumes-unavailable=%d)",
		r.at(), sc.name, n.acked, n.errors, n.delivered, n.lost, n.duplicates, fo,
		sc.acks, n.sent, n.stored, n.lostUnseen, n.seenNotStored, n.undelivered, n.outOfOrder, len(clients), n.connects, resumeErrs)

	// What holds whatever the acks: the counts add up.
	if n.acked != n.sent {
		t.Errorf("%d of %d sends acked after the drain", n.acked, n.sent)
	}
	if n.stored != n.acked-n.lost+n.duplicates {
		t.Errorf("stored %d messages, want acked %d - lost %d + duplicates %d", n.stored, n.acked, n.lost, n.duplicates)
	}
	if n.errors == 0 {
		t.Error("no send saw an error: the fault did not bite")
	}
	if len(fo) != len(r.faults) {
		t.Errorf("measured %d failover times for %d faults", len(fo), len(r.faults))
	}
	if sc.measurement {
		t.Logf("MEASUREMENT (not checked): with --redis-min-replica-acks=%d the failover lost %d of %d acked messages (%d of them delivered to no client)", sc.acks, n.lost, n.acked, n.lostUnseen)
	} else {
		if n.lost != 0 {
			t.Errorf("lost %d acked messages (%d of them delivered to no client)", n.lost, n.lostUnseen)
		}
		if n.duplicates != 0 {
			t.Errorf("%d sends stored twice", n.duplicates)
		}
		if n.undelivered != 0 {
			t.Errorf("%d stored messages never reached a client (summed over clients)", n.undelivered)
		}
		if n.outOfOrder != 0 {
			t.Errorf("%d messages delivered out of order", n.outOfOrder)
		}
	}

	// Nobody was logged out: every token still works.
	for i, tok := range tokens {
		if user, err := chatclient.Me(r.ctx, pods[i%3].URL(), tok); err != nil || user != names[i] {
			t.Errorf("%s after the failover: /api/v1/me = %q, %v", names[i], user, err)
		}
	}
	// Presence is right again within 30 s of the failover: every server
	// counts the clients connected.
	connected := 0
	for _, c := range clients {
		if c.Connected() {
			connected++
		}
	}
	r.mu.Lock()
	presenceBy := r.failoverAt.Add(presenceTimeout)
	r.mu.Unlock()
	for _, p := range pods {
		for {
			got, err := onlineUsers(r.ctx, p.URL())
			if err == nil && got == connected {
				break
			}
			if time.Now().After(presenceBy) {
				t.Errorf("%s: onlineUsers = %d (%v), want %d (the clients connected) within %s of the failover", p.Name, got, err, connected, presenceTimeout)
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
}

// notSeen are the ids of stored that ms lacks.
func notSeen(ms []chatclient.Message, stored map[string]string) []string {
	have := make(map[string]bool, len(ms))
	for _, m := range ms {
		have[m.ID] = true
	}
	var out []string
	for id := range stored {
		if !have[id] {
			out = append(out, id)
		}
	}
	return out
}

// runClient runs c until the test ends.
func runClient(t *testing.T, ctx context.Context, c *chatclient.Client) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx) // ends with ctx; connection errors are the test's subject
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}
