package backendtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

var feedTests = []test{
	{"FollowReplaysThenGoesLive", testFollowReplay},
	{"FollowFromID", testFollowFromID},
	{"FollowBeforeRun", testFollowBeforeRun},
	{"FollowTwiceIsNoop", testFollowTwice},
	{"ConcurrentAppendsArriveInOrder", testConcurrentAppends},
	{"MessagesReachEveryServer", testMessagesReachPeers},
	{"Unfollow", testUnfollow},
	{"FollowAgainAfterUnfollow", testRefollow},
	{"EventsReachEveryServer", testEvents},
	{"RunReturnsWhenContextEnds", testRunReturns},
}

func testFollowReplay(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	r := runFeed(t, b)
	old := appendN(t, ctx, b, "general", 5)
	b.Follow("general", "")
	got := r.waitMessages(t, "general", 5)
	if diff := cmp.Diff(old, got); diff != "" {
		t.Fatalf("replay (-want +got):\n%s", diff)
	}
	live := appendN(t, ctx, b, "general", 5)
	got = r.waitMessages(t, "general", 10)
	if diff := cmp.Diff(append(old, live...), got); diff != "" {
		t.Errorf("replay then live (-want +got):\n%s", diff)
	}
}

func testFollowFromID(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	r := runFeed(t, b)
	old := appendN(t, ctx, b, "general", 6)
	b.Follow("general", old[3].ID)
	live := appendN(t, ctx, b, "general", 2)
	want := append(old[4:], live...)
	got := r.waitMessages(t, "general", len(want))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Follow(after=%s) delivered (-want +got):\n%s", old[3].ID, diff)
	}
}

func testFollowBeforeRun(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	old := appendN(t, ctx, b, "general", 3)
	b.Follow("general", old[0].ID)
	r := runFeed(t, b)
	live := appendN(t, ctx, b, "general", 2)
	want := append(old[1:], live...)
	got := r.waitMessages(t, "general", len(want))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func testFollowTwice(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	r := runFeed(t, b)
	old := appendN(t, ctx, b, "general", 3)
	b.Follow("general", "")
	r.waitMessages(t, "general", 3)
	b.Follow("general", "") // a no-op: nothing is delivered twice
	live := appendN(t, ctx, b, "general", 3)
	r.waitMessages(t, "general", 6)
	// One more message shows the feed has moved past anything a second
	// Follow could have replayed (the recorder flags ids that go backwards).
	live = append(live, appendN(t, ctx, b, "general", 1)...)
	r.waitID(t, "general", live[len(live)-1].ID)
	got := r.messages("general")
	if diff := cmp.Diff(append(old, live...), got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func testConcurrentAppends(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	r := runFeed(t, b)
	b.Follow("general", "")
	const writers, each = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		via := b
		if w%2 == 1 {
			via = peer
		}
		wg.Go(func() {
			for i := range each {
				if _, err := via.Append(ctx, protocol.Message{Channel: "general", From: "alice", Text: fmt.Sprintf("w%d #%d", w, i)}, "", 0); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := r.waitMessages(t, "general", writers*each)
	stored := must[[]protocol.Message](t)(b.After(ctx, "general", "", 2*writers*each))
	if diff := cmp.Diff(ids(stored), ids(got)); diff != "" {
		t.Errorf("delivered ids differ from the stream (-stream +delivered):\n%s", diff)
	}
}

func testMessagesReachPeers(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	a, b := newBackend(), newBackend()
	ra, rb := runFeed(t, a), runFeed(t, b)
	a.Follow("general", "")
	b.Follow("general", "")
	var want []protocol.Message
	for i := range 10 {
		via := a
		if i%2 == 1 {
			via = b
		}
		want = append(want, must[protocol.Message](t)(via.Append(ctx, protocol.Message{Channel: "general", From: "bob", Text: fmt.Sprint(i)}, "", 0)))
	}
	for name, r := range map[string]*recorder{"a": ra, "b": rb} {
		got := r.waitMessages(t, "general", len(want))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("server %s got (-want +got):\n%s", name, diff)
		}
	}
}

func testUnfollow(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	r := runFeed(t, b)
	b.Follow("general", "")
	b.Follow("marker", "")
	first := appendN(t, ctx, b, "general", 2)
	r.waitMessages(t, "general", 2)
	b.Unfollow("general")
	// "Soon": once a later marker has come through, nothing more of general does.
	m1 := appendN(t, ctx, b, "marker", 1)
	r.waitID(t, "marker", m1[0].ID)
	appendN(t, ctx, b, "general", 3)
	m2 := appendN(t, ctx, b, "marker", 1)
	r.waitID(t, "marker", m2[0].ID)
	if diff := cmp.Diff(first, r.messages("general")); diff != "" {
		t.Errorf("messages of an unfollowed channel were delivered (-want +got):\n%s", diff)
	}
}

func testRefollow(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	r := runFeed(t, b)
	b.Follow("general", "")
	first := appendN(t, ctx, b, "general", 2)
	r.waitMessages(t, "general", 2)
	b.Unfollow("general")
	missed := appendN(t, ctx, b, "general", 2)
	b.Follow("general", first[1].ID)
	live := appendN(t, ctx, b, "general", 2)
	want := append(append(first, missed...), live...)
	got := r.waitMessages(t, "general", len(want))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func testEvents(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	a, b := newBackend(), newBackend()
	ra, rb := runFeed(t, a), runFeed(t, b)
	// Events are best effort: one published before a feed has subscribed may
	// be lost. Publish a warm-up event until both feeds have had one.
	warm := chat.Event{Kind: chat.EventTyping, User: "warmup", Channel: "general", Origin: "a"}
	seen := func(r *recorder) bool {
		for _, e := range r.eventList() {
			if cmp.Equal(e, warm) {
				return true
			}
		}
		return false
	}
	eventually(t, "a warm-up event on both feeds", func() bool {
		check(t, a.Publish(ctx, warm))
		return seen(ra) && seen(rb)
	})
	want := []chat.Event{
		{Kind: chat.EventPresence, User: "alice", Status: "online", Origin: "a"},
		{Kind: chat.EventRead, User: "alice", Channel: "general", ID: "1-1", Origin: "a"},
		{Kind: chat.EventRevoke, User: "alice", Sessions: []string{"s1", "s2"}, Origin: "b"},
		{Kind: chat.EventRevoke, User: "bob", Origin: "b"},
		{Kind: chat.EventDM, Channel: "dm:alice:bob", Origin: "a"},
	}
	for _, e := range want {
		via := a
		if e.Origin == "b" {
			via = b
		}
		check(t, via.Publish(ctx, e))
	}
	for name, r := range map[string]*recorder{"a": ra, "b": rb} {
		r.wait(t, "the events on "+name, func() bool {
			n := 0
			for _, e := range r.events {
				if e.User != "warmup" {
					n++
				}
			}
			return n >= len(want)
		})
		// A marker round trip gives a duplicate the time to show up.
		marker := chat.Event{Kind: chat.EventTyping, User: "marker", Origin: "a"}
		check(t, a.Publish(ctx, marker))
		r.wait(t, "the marker event on "+name, func() bool {
			for _, e := range r.events {
				if e.User == "marker" {
					return true
				}
			}
			return false
		})
		var got []chat.Event
		for _, e := range r.eventList() {
			if e.User != "warmup" && e.User != "marker" {
				got = append(got, e)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("server %s got events (-want +got):\n%s", name, diff)
		}
		// Its subscription was never lost: nothing was missed.
		if n := r.missedCount(); n != 0 {
			t.Errorf("server %s was told %d times that events were missed", name, n)
		}
	}
}

func testRunReturns(t *testing.T, newBackend func() Backend) {
	b := newBackend()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, newRecorder()) }()
	b.Follow("general", "")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil after its context ended", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Run did not return within %s of its context ending", waitTimeout)
	}
}
