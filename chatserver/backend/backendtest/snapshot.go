package backendtest

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

var snapshotTests = []test{
	{"Snapshot", testSnapshot},
}

// testSnapshot: what a connecting socket reads, composed call by call and,
// where the backend reads it in fewer round trips (chat.Snapshotter), read
// that way: both say the same, and what they say is right.
func testSnapshot(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	lim := chat.MemberLimits{PerUser: 10, Members: 10}
	post := func(channel string, n int) []string {
		var ids []string
		for i := range n {
			m := must[protocol.Message](t)(b.Append(ctx, protocol.Message{Channel: channel, From: "bob", Text: "m" + string(rune('a'+i))}, "", 100))
			ids = append(ids, m.ID)
		}
		return ids
	}
	check(t, b.CreateChannel(ctx, chat.ChannelMeta{Name: "proj", Creator: "alice"}, lim))
	check(t, b.CreateChannel(ctx, chat.ChannelMeta{Name: "secret", Private: true, Creator: "bob"}, lim))
	if _, _, err := b.AddMember(ctx, "secret", "alice", false, lim); err != nil {
		t.Fatal(err)
	}
	for _, dm := range []string{"dm:alice:bob", "dm:alice:carol", "dm:bob:carol"} {
		must[bool](t)(b.AddDM(ctx, dm))
	}
	general := post("general", 5)
	proj := post("proj", 2)
	dm := post("dm:alice:bob", 1)
	post("dm:bob:carol", 1) // not hers
	check(t, b.SetRead(ctx, "alice", "general", general[1]))
	check(t, b.SetRead(ctx, "alice", "dm:alice:bob", dm[0]))

	want := chat.Snapshot{
		Created: []chat.MemberOf{{Channel: "proj", Admin: true}, {Channel: "secret", Private: true}},
		DMs:     []string{"dm:alice:bob", "dm:alice:carol"},
		Reads:   map[string]string{"general": general[1], "dm:alice:bob": dm[0]},
		LastIDs: map[string]string{
			"general": general[4], "random": "", "proj": proj[1], "secret": "", "dm:alice:bob": dm[0], "dm:alice:carol": "",
		},
		// general has 3 after her marker, counted to the limit of 2; proj
		// 2, with no marker.
		Unread: map[string]int{"general": 2, "random": 0, "proj": 2, "secret": 0, "dm:alice:bob": 0, "dm:alice:carol": 0},
	}
	defaults := []string{"general", "random"}
	snapLim := chat.SnapshotLimits{Created: 10, DMs: 10, Unread: 2}
	got := map[string]chat.Snapshot{"composed": must[chat.Snapshot](t)(chat.ComposeSnapshot(ctx, b, "alice", defaults, snapLim))}
	if sn, ok := b.(chat.Snapshotter); ok {
		got["Snapshot"] = must[chat.Snapshot](t)(sn.Snapshot(ctx, "alice", defaults, snapLim))
	}
	for how, sn := range got {
		if diff := cmp.Diff(want, sn, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", how, diff)
		}
	}

	// Limits cut the lists by name; a stranger has nothing of their own.
	small := chat.SnapshotLimits{Created: 1, DMs: 1, Unread: 0}
	for how, read := range map[string]func(user string) (chat.Snapshot, error){
		"composed": func(user string) (chat.Snapshot, error) { return chat.ComposeSnapshot(ctx, b, user, defaults, small) },
		"Snapshot": func(user string) (chat.Snapshot, error) {
			if sn, ok := b.(chat.Snapshotter); ok {
				return sn.Snapshot(ctx, user, defaults, small)
			}
			return chat.ComposeSnapshot(ctx, b, user, defaults, small)
		},
	} {
		sn := must[chat.Snapshot](t)(read("alice"))
		if diff := cmp.Diff(want.Created[:1], sn.Created); diff != "" {
			t.Errorf("%s with limits: created (-want +got):\n%s", how, diff)
		}
		if diff := cmp.Diff(want.DMs[:1], sn.DMs); diff != "" {
			t.Errorf("%s with limits: DMs (-want +got):\n%s", how, diff)
		}
		if sn.Unread["general"] != 0 {
			t.Errorf("%s with no unread limit: general %d unread", how, sn.Unread["general"])
		}
		stranger := must[chat.Snapshot](t)(read("dave"))
		if len(stranger.Created)+len(stranger.DMs)+len(stranger.Reads) != 0 || stranger.Unread["general"] != 0 ||
			stranger.LastIDs["general"] != general[4] {
			t.Errorf("%s of someone with nothing of their own: %+v", how, stranger)
		}
	}
}
