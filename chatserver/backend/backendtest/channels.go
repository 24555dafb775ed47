package backendtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

var channelTests = []test{
	{"CreateThenGet", testCreateGet},
	{"CreateRaceOneWins", testCreateRace},
	{"CreatePerUserLimit", testCreatePerUserLimit},
	{"PublicChannelsPaging", testPublicChannels},
	{"AddMember", testAddMember},
	{"FirstToJoinEmptyChannelRunsIt", testFirstJoinerRunsIt},
	{"AddMemberLimits", testAddMemberLimits},
	{"AddMemberLimitsAreAtomic", testAddMemberLimitsAtomic},
	{"RemoveMember", testRemoveMember},
	{"LastAdminCannotLeaveOthers", testLastAdmin},
	{"MembersPaging", testMembersPaging},
	{"MemberCounts", testMemberCounts},
	{"UserChannels", testUserChannels},
	{"AppendMember", testAppendMember},
	{"AppendMemberDedup", testAppendMemberDedup},
	{"AppendMemberIsDelivered", testAppendMemberDelivered},
	{"RemovedMemberGetsNothingIn", testRemoveWhileAppending},
}

// roomy is limits no test reaches unless it means to.
var roomy = chat.MemberLimits{PerUser: 100, Members: 100}

// createdAt is when test channels are created (Unix ms); the catalog
// stores what it is given.
const createdAt = 1700000000123

func newChannel(t *testing.T, ctx context.Context, b Backend, name, creator string, private bool) chat.ChannelMeta {
	t.Helper()
	meta := chat.ChannelMeta{Name: name, Private: private, Creator: creator, Created: createdAt}
	check(t, b.CreateChannel(ctx, meta, roomy))
	return meta
}

func addMember(t *testing.T, ctx context.Context, b Backend, channel, user string, admin bool) {
	t.Helper()
	if _, _, err := b.AddMember(ctx, channel, user, admin, roomy); err != nil {
		t.Fatalf("AddMember(%s, %s): %v", channel, user, err)
	}
}

func sendAs(user, channel, text string) protocol.Message {
	return protocol.Message{Channel: channel, From: user, Text: text}
}

// wantMembership checks Membership of user in channel.
func wantMembership(t *testing.T, ctx context.Context, b Backend, channel, user string, member, admin bool) {
	t.Helper()
	m, a, err := b.Membership(ctx, channel, user)
	check(t, err)
	if m != member || a != admin {
		t.Errorf("Membership(%s, %s) = member %v, admin %v; want %v, %v", channel, user, m, a, member, admin)
	}
}

// wantMembers checks every member of channel, by name.
func wantMembers(t *testing.T, ctx context.Context, b Backend, channel string, want []chat.Member) {
	t.Helper()
	got := must[[]chat.Member](t)(b.Members(ctx, channel, "", 1000))
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Members(%s) (-want +got):\n%s", channel, diff)
	}
}

// wantUserChannels checks user's whole list, and that it agrees with
// Membership and with each channel's meta.
func wantUserChannels(t *testing.T, ctx context.Context, b Backend, user string, want []chat.MemberOf) {
	t.Helper()
	got := must[[]chat.MemberOf](t)(b.UserChannels(ctx, user, 1000))
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("UserChannels(%s) (-want +got):\n%s", user, diff)
	}
	for _, mo := range got {
		member, admin, err := b.Membership(ctx, mo.Channel, user)
		check(t, err)
		if !member || admin != mo.Admin {
			t.Errorf("UserChannels(%s) lists %+v, but Membership says member %v, admin %v", user, mo, member, admin)
		}
		meta, err := b.GetChannel(ctx, mo.Channel)
		check(t, err)
		if meta.Private != mo.Private {
			t.Errorf("UserChannels(%s) lists %+v, but the channel's Private is %v", user, mo, meta.Private)
		}
	}
}

func testCreateGet(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	design := newChannel(t, ctx, b, "design", "alice", false)
	secret := newChannel(t, ctx, b, "secret", "bob", true)
	for _, want := range []chat.ChannelMeta{design, secret} {
		got := must[chat.ChannelMeta](t)(peer.GetChannel(ctx, want.Name))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GetChannel(%s) on another server (-want +got):\n%s", want.Name, diff)
		}
	}
	if _, err := b.GetChannel(ctx, "nope"); !errors.Is(err, chat.ErrUnknownChannel) {
		t.Errorf("GetChannel(nope) error = %v, want ErrUnknownChannel", err)
	}
	// The creator is the only member, an admin.
	wantMembership(t, ctx, peer, "design", "alice", true, true)
	wantMembers(t, ctx, peer, "design", []chat.Member{{Username: "alice", Admin: true}})
	wantUserChannels(t, ctx, peer, "alice", []chat.MemberOf{{Channel: "design", Admin: true}})
	wantUserChannels(t, ctx, peer, "bob", []chat.MemberOf{{Channel: "secret", Private: true, Admin: true}})

	// A taken name, public or private, stays its first creator's.
	tests := []struct{ name, creator string }{
		{"design", "carol"},
		{"secret", "carol"},
		{"design", "alice"},
	}
	for _, tc := range tests {
		for _, private := range []bool{false, true} {
			err := peer.CreateChannel(ctx, chat.ChannelMeta{Name: tc.name, Private: private, Creator: tc.creator, Created: createdAt + 1}, roomy)
			if !errors.Is(err, chat.ErrChannelTaken) {
				t.Errorf("CreateChannel(%s by %s, private %v) of a taken name = %v, want ErrChannelTaken", tc.name, tc.creator, private, err)
			}
		}
	}
	for _, want := range []chat.ChannelMeta{design, secret} {
		if diff := cmp.Diff(want, must[chat.ChannelMeta](t)(b.GetChannel(ctx, want.Name))); diff != "" {
			t.Errorf("a refused create changed %s (-want +got):\n%s", want.Name, diff)
		}
	}
	wantUserChannels(t, ctx, b, "carol", nil)
	wantMembership(t, ctx, b, "design", "carol", false, false)
	if got := must[[]chat.ChannelMeta](t)(b.PublicChannels(ctx, "", "", 100)); len(got) != 1 || got[0].Name != "design" {
		t.Errorf("PublicChannels = %+v, want design alone", got)
	}
}

func testCreateRace(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	servers := []Backend{newBackend(), newBackend()}
	const n = 8
	var (
		mu  sync.Mutex
		won []chat.ChannelMeta
		wg  sync.WaitGroup
	)
	for i := range n {
		meta := chat.ChannelMeta{Name: "race", Private: i%2 == 1, Creator: fmt.Sprintf("user%d", i), Created: createdAt + int64(i)}
		wg.Go(func() {
			err := servers[i%2].CreateChannel(ctx, meta, roomy)
			switch {
			case err == nil:
				mu.Lock()
				won = append(won, meta)
				mu.Unlock()
			case !errors.Is(err, chat.ErrChannelTaken):
				t.Errorf("CreateChannel by %s: %v, want nil or ErrChannelTaken", meta.Creator, err)
			}
		})
	}
	wg.Wait()
	if len(won) != 1 {
		t.Fatalf("%d of %d concurrent creates of one name won: %+v; want exactly 1", len(won), n, won)
	}
	winner := won[0]
	b := servers[0]
	if diff := cmp.Diff(winner, must[chat.ChannelMeta](t)(b.GetChannel(ctx, "race"))); diff != "" {
		t.Errorf("GetChannel is not the winner's (-winner +got):\n%s", diff)
	}
	wantMembers(t, ctx, b, "race", []chat.Member{{Username: winner.Creator, Admin: true}})
	for i := range n {
		if user := fmt.Sprintf("user%d", i); user != winner.Creator {
			wantUserChannels(t, ctx, b, user, nil)
		}
	}
	listed := len(must[[]chat.ChannelMeta](t)(b.PublicChannels(ctx, "race", "", 10))) == 1
	if listed == winner.Private {
		t.Errorf("the winner's channel has Private %v but is listed in PublicChannels: %v", winner.Private, listed)
	}
}

func testCreatePerUserLimit(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	two := chat.MemberLimits{PerUser: 2, Members: 100}
	create := func(name, creator string) error {
		return b.CreateChannel(ctx, chat.ChannelMeta{Name: name, Creator: creator, Created: createdAt}, two)
	}
	check(t, create("c1", "alice"))
	newChannel(t, ctx, b, "bobs", "bob", false)
	// Channels one joined count as much as those one created.
	if _, _, err := b.AddMember(ctx, "bobs", "alice", false, two); err != nil {
		t.Fatal(err)
	}
	if err := create("c2", "alice"); !errors.Is(err, chat.ErrTooManyChannels) {
		t.Fatalf("CreateChannel by a creator already in PerUser=2 channels = %v, want ErrTooManyChannels", err)
	}
	if _, err := b.GetChannel(ctx, "c2"); !errors.Is(err, chat.ErrUnknownChannel) {
		t.Errorf("GetChannel of a refused create = %v, want ErrUnknownChannel (nothing stored)", err)
	}
	if got := must[[]chat.ChannelMeta](t)(b.PublicChannels(ctx, "c2", "", 10)); len(got) != 0 {
		t.Errorf("PublicChannels lists a refused create: %+v", got)
	}
	wantUserChannels(t, ctx, b, "alice", []chat.MemberOf{{Channel: "bobs"}, {Channel: "c1", Admin: true}})
	// Leaving one makes room.
	if removed := must[bool](t)(b.RemoveMember(ctx, "c1", "alice")); !removed {
		t.Fatal("RemoveMember of the creator, the only member, reported not removed")
	}
	check(t, create("c2", "alice"))
	wantUserChannels(t, ctx, b, "alice", []chat.MemberOf{{Channel: "bobs"}, {Channel: "c2", Admin: true}})
}

func testPublicChannels(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	public := map[string]chat.ChannelMeta{}
	for i, name := range []string{"gamma", "beta-2", "alpha", "delta", "betamax", "beta"} {
		meta := chat.ChannelMeta{Name: name, Creator: fmt.Sprintf("user%d", i), Created: createdAt + int64(i)}
		check(t, b.CreateChannel(ctx, meta, roomy))
		public[name] = meta
	}
	for _, name := range []string{"beta-secret", "bz", "zeta", "aardvark"} {
		newChannel(t, ctx, b, name, "spy", true)
	}
	metas := func(names ...string) []chat.ChannelMeta {
		var out []chat.ChannelMeta
		for _, n := range names {
			out = append(out, public[n])
		}
		return out
	}
	tests := []struct {
		name          string
		prefix, after string
		limit         int
		want          []chat.ChannelMeta
	}{
		{"all", "", "", 100, metas("alpha", "beta", "beta-2", "betamax", "delta", "gamma")},
		{"limit", "", "", 2, metas("alpha", "beta")},
		{"after a name", "", "beta", 3, metas("beta-2", "betamax", "delta")},
		{"after between names", "", "c", 10, metas("delta", "gamma")},
		{"after the last", "", "gamma", 10, nil},
		{"prefix", "beta", "", 10, metas("beta", "beta-2", "betamax")},
		{"prefix and limit", "beta", "", 2, metas("beta", "beta-2")},
		{"prefix and after", "beta", "beta-2", 10, metas("betamax")},
		{"after before the prefix", "beta", "a", 10, metas("beta", "beta-2", "betamax")},
		{"after past the prefix", "beta", "c", 10, nil},
		{"prefix matching nothing", "omega", "", 10, nil},
		{"prefix of private ones only", "z", "", 10, nil},
		{"a private name as prefix", "bz", "", 10, nil},
		{"whole name as prefix", "delta", "", 10, metas("delta")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := must[[]chat.ChannelMeta](t)(peer.PublicChannels(ctx, tc.prefix, tc.after, tc.limit))
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("PublicChannels(%q, %q, %d) (-want +got):\n%s", tc.prefix, tc.after, tc.limit, diff)
			}
		})
	}
	// Paging one at a time walks them all, in order.
	walked := walk(t, len(public), func(after string) ([]chat.ChannelMeta, error) { return b.PublicChannels(ctx, "", after, 1) },
		func(m chat.ChannelMeta) string { return m.Name })
	if diff := cmp.Diff(metas("alpha", "beta", "beta-2", "betamax", "delta", "gamma"), walked); diff != "" {
		t.Errorf("paged by one (-want +got):\n%s", diff)
	}
}

func testAddMember(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	newChannel(t, ctx, b, "team", "alice", false)
	newChannel(t, ctx, b, "hideout", "alice", true)

	added, last := must2[bool, string](t)(peer.AddMember(ctx, "team", "bob", false, roomy))
	if !added || last != "" {
		t.Errorf("AddMember(bob) to an empty stream = added %v, lastID %q; want true, \"\"", added, last)
	}
	must[protocol.Message](t)(b.AppendMember(ctx, sendAs("alice", "team", "welcome"), "", 0))
	m := must[protocol.Message](t)(b.AppendMember(ctx, sendAs("bob", "team", "thanks"), "", 0))
	added, last = must2[bool, string](t)(peer.AddMember(ctx, "team", "carol", false, roomy))
	if !added || last != m.ID {
		t.Errorf("AddMember(carol) after a message = added %v, lastID %q; want true, %q", added, last, m.ID)
	}
	if got := must[string](t)(b.LastID(ctx, "team")); got != last {
		t.Errorf("lastID %q is not the channel's LastID %q", last, got)
	}
	wantMembership(t, ctx, b, "team", "bob", true, false)

	tests := []struct {
		name      string
		user      string
		admin     bool
		wantAdded bool
		wantAdmin bool
	}{
		{"again changes nothing", "bob", false, false, false},
		{"again as admin grants admin", "bob", true, false, true},
		{"again as non-admin keeps admin", "bob", false, false, true},
		{"a new admin", "dave", true, true, true},
		{"the creator again", "alice", false, false, true},
	}
	for _, tc := range tests {
		added, last := must2[bool, string](t)(peer.AddMember(ctx, "team", tc.user, tc.admin, roomy))
		if added != tc.wantAdded {
			t.Errorf("%s: AddMember(%s, admin %v) added = %v, want %v", tc.name, tc.user, tc.admin, added, tc.wantAdded)
		}
		if added && last != m.ID {
			t.Errorf("%s: lastID %q, want %q", tc.name, last, m.ID)
		}
		wantMembership(t, ctx, b, "team", tc.user, true, tc.wantAdmin)
	}
	wantMembers(t, ctx, b, "team", []chat.Member{
		{Username: "alice", Admin: true}, {Username: "bob", Admin: true}, {Username: "carol"}, {Username: "dave", Admin: true},
	})
	if got := must[map[string]int](t)(b.MemberCounts(ctx, []string{"team"})); got["team"] != 4 {
		t.Errorf("MemberCounts(team) = %d after re-adds, want 4", got["team"])
	}

	addMember(t, ctx, peer, "hideout", "bob", false)
	wantUserChannels(t, ctx, b, "bob", []chat.MemberOf{{Channel: "hideout", Private: true}, {Channel: "team", Admin: true}})
	wantUserChannels(t, ctx, b, "carol", []chat.MemberOf{{Channel: "team"}})

	if _, _, err := b.AddMember(ctx, "nope", "erin", false, roomy); !errors.Is(err, chat.ErrUnknownChannel) {
		t.Errorf("AddMember to no channel = %v, want ErrUnknownChannel", err)
	}
	wantUserChannels(t, ctx, b, "erin", nil)
}

func testFirstJoinerRunsIt(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	newChannel(t, ctx, b, "relay", "alice", false)
	addMember(t, ctx, b, "relay", "bob", true)
	for _, user := range []string{"alice", "bob"} {
		if removed := must[bool](t)(b.RemoveMember(ctx, "relay", user)); !removed {
			t.Fatalf("RemoveMember(%s) reported not removed", user)
		}
	}
	wantMembers(t, ctx, b, "relay", nil)
	if got := must[map[string]int](t)(b.MemberCounts(ctx, []string{"relay"})); got["relay"] != 0 {
		t.Errorf("MemberCounts of an emptied channel = %v, want 0", got)
	}
	if _, err := b.GetChannel(ctx, "relay"); err != nil {
		t.Fatalf("GetChannel of an emptied channel: %v (it still exists)", err)
	}
	added, _ := must2[bool, string](t)(b.AddMember(ctx, "relay", "carol", false, roomy))
	if !added {
		t.Fatal("AddMember(carol) to an empty channel reported not added")
	}
	wantMembership(t, ctx, b, "relay", "carol", true, true)
	addMember(t, ctx, b, "relay", "dave", false)
	wantMembership(t, ctx, b, "relay", "dave", true, false)
	wantUserChannels(t, ctx, b, "carol", []chat.MemberOf{{Channel: "relay", Admin: true}})
	wantUserChannels(t, ctx, b, "dave", []chat.MemberOf{{Channel: "relay"}})
}

func testAddMemberLimits(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	lim := chat.MemberLimits{PerUser: 2, Members: 3}
	newChannel(t, ctx, b, "full", "alice", false)
	newChannel(t, ctx, b, "open", "alice", false)
	for _, u := range []string{"bob", "carol"} {
		if _, _, err := b.AddMember(ctx, "full", u, false, lim); err != nil {
			t.Fatalf("AddMember(full, %s) within the limits: %v", u, err)
		}
	}
	newChannel(t, ctx, b, "erin-1", "erin", false)
	newChannel(t, ctx, b, "erin-2", "erin", false)
	tests := []struct {
		name          string
		channel, user string
		admin         bool
		wantAdded     bool
		wantErr       error
	}{
		{"channel full", "full", "dave", false, false, chat.ErrTooManyMembers},
		{"channel full, as admin", "full", "dave", true, false, chat.ErrTooManyMembers},
		{"user in PerUser channels", "open", "erin", false, false, chat.ErrTooManyChannels},
		{"a member again, channel full", "full", "bob", false, false, nil},
		{"a member made admin, channel full", "full", "carol", true, false, nil},
		{"a member again, user at PerUser", "erin-1", "erin", false, false, nil},
		{"no such channel", "nope", "frank", false, false, chat.ErrUnknownChannel},
		{"within the limits", "open", "dave", false, true, nil},
	}
	for _, tc := range tests {
		added, _, err := b.AddMember(ctx, tc.channel, tc.user, tc.admin, lim)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: AddMember(%s, %s) error = %v, want %v", tc.name, tc.channel, tc.user, err, tc.wantErr)
		}
		if added != tc.wantAdded {
			t.Errorf("%s: AddMember(%s, %s) added = %v, want %v", tc.name, tc.channel, tc.user, added, tc.wantAdded)
		}
	}
	// Refusals change nothing.
	wantMembers(t, ctx, b, "full", []chat.Member{{Username: "alice", Admin: true}, {Username: "bob"}, {Username: "carol", Admin: true}})
	wantMembers(t, ctx, b, "open", []chat.Member{{Username: "alice", Admin: true}, {Username: "dave"}})
	wantUserChannels(t, ctx, b, "erin", []chat.MemberOf{{Channel: "erin-1", Admin: true}, {Channel: "erin-2", Admin: true}})
	wantUserChannels(t, ctx, b, "frank", nil)
}

func testAddMemberLimitsAtomic(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	servers := []Backend{newBackend(), newBackend()}
	b := servers[0]
	// count runs n adds at once and counts those that got in.
	count := func(n int, add func(i int, via Backend) (bool, error), refused error) int {
		var (
			mu sync.Mutex
			in int
			wg sync.WaitGroup
		)
		for i := range n {
			wg.Go(func() {
				added, err := add(i, servers[i%2])
				switch {
				case err == nil && added:
					mu.Lock()
					in++
					mu.Unlock()
				case err == nil:
					t.Errorf("add %d: not added, and no error", i)
				case !errors.Is(err, refused):
					t.Errorf("add %d: %v, want nil or %v", i, err, refused)
				}
			})
		}
		wg.Wait()
		return in
	}

	newChannel(t, ctx, b, "crowd", "alice", false)
	crowd := chat.MemberLimits{PerUser: 100, Members: 5}
	in := count(12, func(i int, via Backend) (bool, error) {
		added, _, err := via.AddMember(ctx, "crowd", fmt.Sprintf("user%02d", i), false, crowd)
		return added, err
	}, chat.ErrTooManyMembers)
	if in != 4 {
		t.Errorf("%d of 12 concurrent adds to a channel with 1 member and Members=5 got in, want 4", in)
	}
	if got := must[map[string]int](t)(b.MemberCounts(ctx, []string{"crowd"})); got["crowd"] != 5 {
		t.Errorf("MemberCounts(crowd) = %d, want 5", got["crowd"])
	}

	for i := range 10 {
		newChannel(t, ctx, b, fmt.Sprintf("room-%d", i), "alice", false)
	}
	few := chat.MemberLimits{PerUser: 3, Members: 100}
	in = count(10, func(i int, via Backend) (bool, error) {
		added, _, err := via.AddMember(ctx, fmt.Sprintf("room-%d", i), "zed", false, few)
		return added, err
	}, chat.ErrTooManyChannels)
	if in != 3 {
		t.Errorf("zed got into %d of 10 channels joined at once with PerUser=3, want 3", in)
	}
	if got := must[[]chat.MemberOf](t)(b.UserChannels(ctx, "zed", 100)); len(got) != 3 {
		t.Errorf("UserChannels(zed) = %+v, want 3 channels", got)
	}
}

func testRemoveMember(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	newChannel(t, ctx, b, "club", "alice", false)
	addMember(t, ctx, b, "club", "bob", false)
	addMember(t, ctx, b, "club", "carol", true)
	tests := []struct {
		name        string
		user        string
		wantRemoved bool
	}{
		{"never a member", "dave", false},
		{"a member", "bob", true},
		{"no longer a member", "bob", false},
		{"an admin while another admin remains", "alice", true},
		{"the last member, who is the last admin", "carol", true},
	}
	for _, tc := range tests {
		removed, err := peer.RemoveMember(ctx, "club", tc.user)
		if err != nil || removed != tc.wantRemoved {
			t.Errorf("%s: RemoveMember(%s) = %v, %v; want %v, nil", tc.name, tc.user, removed, err, tc.wantRemoved)
		}
		wantMembership(t, ctx, b, "club", tc.user, false, false)
		wantUserChannels(t, ctx, b, tc.user, nil)
	}
	wantMembers(t, ctx, b, "club", nil)
}

func testLastAdmin(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	newChannel(t, ctx, b, "guild", "alice", true)
	addMember(t, ctx, b, "guild", "bob", false)
	removed, err := peer.RemoveMember(ctx, "guild", "alice")
	if !errors.Is(err, chat.ErrLastAdmin) || removed {
		t.Fatalf("RemoveMember of the only admin while bob remains = %v, %v; want false, ErrLastAdmin", removed, err)
	}
	// Nothing changed.
	wantMembership(t, ctx, b, "guild", "alice", true, true)
	wantMembers(t, ctx, b, "guild", []chat.Member{{Username: "alice", Admin: true}, {Username: "bob"}})
	wantUserChannels(t, ctx, b, "alice", []chat.MemberOf{{Channel: "guild", Private: true, Admin: true}})
	// The others may go; then the last admin, the last member, may too.
	if removed := must[bool](t)(peer.RemoveMember(ctx, "guild", "bob")); !removed {
		t.Fatal("RemoveMember(bob) reported not removed")
	}
	if removed := must[bool](t)(peer.RemoveMember(ctx, "guild", "alice")); !removed {
		t.Fatal("RemoveMember of the last admin, the last member, reported not removed")
	}
	wantMembers(t, ctx, b, "guild", nil)
	wantUserChannels(t, ctx, b, "alice", nil)
}

func testMembersPaging(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	newChannel(t, ctx, b, "big", "mia", false)
	for _, u := range []string{"zoe", "bob", "amy", "kai", "lee", "dan", "eve"} {
		addMember(t, ctx, b, "big", u, u == "amy")
	}
	newChannel(t, ctx, b, "other", "ann", false)
	all := []chat.Member{
		{Username: "amy", Admin: true}, {Username: "bob"}, {Username: "dan"}, {Username: "eve"},
		{Username: "kai"}, {Username: "lee"}, {Username: "mia", Admin: true}, {Username: "zoe"},
	}
	tests := []struct {
		after string
		limit int
		want  []chat.Member
	}{
		{"", 100, all},
		{"", 3, all[:3]},
		{"dan", 3, all[3:6]},
		{"d", 2, all[2:4]},
		{"mia", 5, all[7:]},
		{"zoe", 5, nil},
	}
	for _, tc := range tests {
		got := must[[]chat.Member](t)(peer.Members(ctx, "big", tc.after, tc.limit))
		if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Members(big, %q, %d) (-want +got):\n%s", tc.after, tc.limit, diff)
		}
	}
	walked := walk(t, len(all), func(after string) ([]chat.Member, error) { return b.Members(ctx, "big", after, 3) },
		func(m chat.Member) string { return m.Username })
	if diff := cmp.Diff(all, walked); diff != "" {
		t.Errorf("paged by three (-want +got):\n%s", diff)
	}
}

func testMemberCounts(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	newChannel(t, ctx, b, "three", "alice", false)
	addMember(t, ctx, b, "three", "bob", false)
	addMember(t, ctx, b, "three", "carol", false)
	newChannel(t, ctx, b, "one", "alice", true)
	newChannel(t, ctx, b, "left", "alice", false)
	addMember(t, ctx, b, "left", "bob", false)
	check(t, func() error { _, err := b.RemoveMember(ctx, "left", "bob"); return err }())
	got := must[map[string]int](t)(peer.MemberCounts(ctx, []string{"three", "one", "left", "nope"}))
	if diff := cmp.Diff(map[string]int{"three": 3, "one": 1, "left": 1, "nope": 0}, got); diff != "" {
		t.Errorf("MemberCounts (-want +got):\n%s", diff)
	}
	if got := must[map[string]int](t)(peer.MemberCounts(ctx, nil)); len(got) != 0 {
		t.Errorf("MemberCounts of no channels = %v", got)
	}
}

func testUserChannels(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	for _, name := range []string{"c3", "c1", "c4"} {
		newChannel(t, ctx, b, name, "alice", false)
	}
	newChannel(t, ctx, b, "c2", "alice", true)
	newChannel(t, ctx, b, "b0", "bob", false)
	for _, name := range []string{"c3", "c2", "c1"} {
		addMember(t, ctx, peer, name, "bob", false)
	}
	all := []chat.MemberOf{{Channel: "b0", Admin: true}, {Channel: "c1"}, {Channel: "c2", Private: true}, {Channel: "c3"}}
	tests := []struct {
		limit int
		want  []chat.MemberOf
	}{
		{100, all},
		{2, all[:2]},
		{1, all[:1]},
	}
	for _, tc := range tests {
		got := must[[]chat.MemberOf](t)(peer.UserChannels(ctx, "bob", tc.limit))
		if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("UserChannels(bob, %d) (-want +got):\n%s", tc.limit, diff)
		}
	}
	// Kept in step with every change.
	addMember(t, ctx, b, "c3", "bob", true)
	check(t, func() error { _, err := b.RemoveMember(ctx, "c1", "bob"); return err }())
	wantUserChannels(t, ctx, peer, "bob", []chat.MemberOf{{Channel: "b0", Admin: true}, {Channel: "c2", Private: true}, {Channel: "c3", Admin: true}})
	wantUserChannels(t, ctx, peer, "alice", []chat.MemberOf{
		{Channel: "c1", Admin: true}, {Channel: "c2", Private: true, Admin: true}, {Channel: "c3", Admin: true}, {Channel: "c4", Admin: true},
	})
	wantUserChannels(t, ctx, peer, "carol", nil)
}

func testAppendMember(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	newChannel(t, ctx, b, "ops", "alice", true)
	addMember(t, ctx, b, "ops", "bob", false)
	in := sendAs("bob", "ops", "hello\nops ünïcode")
	m := must[protocol.Message](t)(peer.AppendMember(ctx, in, "", 0))
	if _, err := protocol.ParseID(m.ID); err != nil || m.TS == 0 {
		t.Fatalf("AppendMember returned id %q, ts %d: want both assigned (%v)", m.ID, m.TS, err)
	}
	if diff := cmp.Diff(in, m, cmpopts.IgnoreFields(protocol.Message{}, "ID", "TS")); diff != "" {
		t.Errorf("AppendMember changed the message (-in +out):\n%s", diff)
	}
	stored := []protocol.Message{m}

	tests := []struct {
		name    string
		m       protocol.Message
		dedup   string
		wantErr error
	}{
		{"never a member", sendAs("carol", "ops", "let me in"), "", chat.ErrForbidden},
		{"never a member, with a dedup key", sendAs("carol", "ops", "let me in"), "carol-1", chat.ErrForbidden},
		{"a default channel is not a created one", sendAs("bob", "general", "hi"), "", chat.ErrUnknownChannel},
		{"no such channel", sendAs("bob", "nope", "hi"), "", chat.ErrUnknownChannel},
		{"no such channel, with a dedup key", sendAs("bob", "nope", "hi"), "bob-1", chat.ErrUnknownChannel},
	}
	for _, tc := range tests {
		before := must[string](t)(b.LastID(ctx, tc.m.Channel))
		if _, err := b.AppendMember(ctx, tc.m, tc.dedup, 0); !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: AppendMember error = %v, want %v", tc.name, err, tc.wantErr)
		}
		if after := must[string](t)(b.LastID(ctx, tc.m.Channel)); after != before {
			t.Errorf("%s: a refused AppendMember stored something: LastID %q, was %q", tc.name, after, before)
		}
	}
	// A refused send leaves no dedup record: once carol is in, the same key commits.
	addMember(t, ctx, b, "ops", "carol", false)
	c := must[protocol.Message](t)(b.AppendMember(ctx, sendAs("carol", "ops", "in now"), "carol-1", 0))
	if c.Text != "in now" || c.ID == m.ID {
		t.Errorf("AppendMember after a refusal with the same dedup key = %+v, want a new message", c)
	}
	stored = append(stored, c)
	// A removed member is refused.
	check(t, func() error { _, err := b.RemoveMember(ctx, "ops", "bob"); return err }())
	if _, err := peer.AppendMember(ctx, sendAs("bob", "ops", "still here?"), "", 0); !errors.Is(err, chat.ErrForbidden) {
		t.Errorf("AppendMember by a removed member = %v, want ErrForbidden", err)
	}
	if diff := cmp.Diff(stored, must[[]protocol.Message](t)(b.After(ctx, "ops", "", 100))); diff != "" {
		t.Errorf("stored messages (-want +got):\n%s", diff)
	}
	if got := must[string](t)(b.LastID(ctx, "nope")); got != "" {
		t.Errorf("LastID of no channel = %q after refused appends", got)
	}

	// maxLen trims as Append's does: the newest are kept, in order.
	const maxLen, n = 10, 300
	var appended []string
	for i := range n {
		m := must[protocol.Message](t)(b.AppendMember(ctx, sendAs("alice", "ops", fmt.Sprint(i)), "", maxLen))
		appended = append(appended, m.ID)
	}
	kept := ids(must[[]protocol.Message](t)(b.After(ctx, "ops", "", 2*n)))
	if len(kept) < maxLen {
		t.Fatalf("kept %d messages, want at least maxLen=%d", len(kept), maxLen)
	}
	tail := min(len(kept), n)
	if diff := cmp.Diff(appended[n-tail:], kept[len(kept)-tail:]); diff != "" {
		t.Errorf("kept messages are not the newest %d (-want +got):\n%s", tail, diff)
	}
}

func testAppendMemberDedup(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	newChannel(t, ctx, b, "desk", "alice", false)
	first := must[protocol.Message](t)(b.AppendMember(ctx, sendAs("alice", "desk", "once"), "client-1", 100))
	// A retry (through another server, with the text edited) returns the
	// first message and commits nothing.
	again := must[protocol.Message](t)(peer.AppendMember(ctx, sendAs("alice", "desk", "once, edited"), "client-1", 100))
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("second AppendMember with the same dedup key (-first +second):\n%s", diff)
	}
	other := must[protocol.Message](t)(b.AppendMember(ctx, sendAs("alice", "desk", "twice"), "client-2", 100))
	if other.ID == first.ID {
		t.Errorf("a different dedup key returned the same id %s", other.ID)
	}
	n1 := must[protocol.Message](t)(b.AppendMember(ctx, sendAs("alice", "desk", "plain"), "", 100))
	n2 := must[protocol.Message](t)(b.AppendMember(ctx, sendAs("alice", "desk", "plain"), "", 100))
	if n1.ID == n2.ID {
		t.Errorf("two AppendMembers without a dedup key share id %s", n1.ID)
	}
	got := ids(must[[]protocol.Message](t)(b.After(ctx, "desk", "", 100)))
	if diff := cmp.Diff([]string{first.ID, other.ID, n1.ID, n2.ID}, got); diff != "" {
		t.Errorf("stored messages (-want +got):\n%s", diff)
	}
}

func testAppendMemberDelivered(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	newChannel(t, ctx, b, "live", "alice", false)
	r := runFeed(t, peer)
	peer.Follow("live", "")
	if _, err := b.AppendMember(ctx, sendAs("mallory", "live", "refused"), "", 0); !errors.Is(err, chat.ErrForbidden) {
		t.Fatalf("AppendMember by a non-member = %v, want ErrForbidden", err)
	}
	var sent []protocol.Message
	for i := range 3 {
		sent = append(sent, must[protocol.Message](t)(b.AppendMember(ctx, sendAs("alice", "live", fmt.Sprint(i)), "", 0)))
	}
	r.waitID(t, "live", sent[len(sent)-1].ID)
	if diff := cmp.Diff(sent, r.messages("live")); diff != "" {
		t.Errorf("delivered on another server (-want +got):\n%s", diff)
	}
}

// testRemoveWhileAppending races RemoveMember against a member's stream of
// AppendMembers. Only bob writes to the channel, so the channel's last id
// read just after RemoveMember returned is the last id at the removal: an
// append accepted after it would show as a newer id. Each round checks that
// every refusal is ErrForbidden, that once refused bob is never accepted
// again, that every accepted message is stored and nothing refused is, and
// that nothing is stored past the id of the removal.
func testRemoveWhileAppending(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	sender, remover := newBackend(), newBackend()
	const rounds, maxAttempts = 20, 100000
	for round := range rounds {
		channel := fmt.Sprintf("race-%d", round)
		newChannel(t, ctx, remover, channel, "owner", false)
		addMember(t, ctx, remover, channel, "bob", false)
		var (
			accepted []string // ids, in the order appended
			errs     []error  // after the first refusal
			started  = make(chan struct{})
			atRemove string
			wg       sync.WaitGroup
		)
		wg.Go(func() {
			defer func() {
				select {
				case <-started:
				default:
					close(started)
				}
			}()
			for i := range maxAttempts {
				m, err := sender.AppendMember(ctx, sendAs("bob", channel, fmt.Sprint(i)), "", 0)
				if i == 0 {
					close(started) // the remover goes once bob's sends are under way
				}
				switch {
				case err == nil && len(errs) == 0:
					accepted = append(accepted, m.ID)
				case err == nil:
					t.Errorf("round %d: append %d accepted (%s) after bob was refused", round, i, m.ID)
					return
				default:
					errs = append(errs, err)
					if len(errs) == 3 {
						return
					}
				}
			}
			t.Errorf("round %d: bob was not refused in %d appends", round, maxAttempts)
		})
		wg.Go(func() {
			select {
			case <-started:
			case <-ctx.Done():
				return
			}
			removed, err := remover.RemoveMember(ctx, channel, "bob")
			if err != nil || !removed {
				t.Errorf("round %d: RemoveMember(bob) = %v, %v", round, removed, err)
				return
			}
			last, err := remover.LastID(ctx, channel)
			if err != nil {
				t.Error(err)
				return
			}
			atRemove = last
		})
		wg.Wait()
		if t.Failed() {
			return
		}
		for _, err := range errs {
			if !errors.Is(err, chat.ErrForbidden) {
				t.Errorf("round %d: AppendMember racing RemoveMember failed with %v, want ErrForbidden", round, err)
			}
		}
		for _, id := range accepted {
			if atRemove == "" || protocol.CompareIDs(id, atRemove) > 0 {
				t.Errorf("round %d: accepted id %s is past the channel's last id %q when RemoveMember returned", round, id, atRemove)
			}
		}
		stored := ids(must[[]protocol.Message](t)(sender.After(ctx, channel, "", maxAttempts)))
		if diff := cmp.Diff(accepted, stored, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round %d: stored messages are not the accepted ones (-accepted +stored):\n%s", round, diff)
		}
		if _, err := sender.AppendMember(ctx, sendAs("bob", channel, "after"), "", 0); !errors.Is(err, chat.ErrForbidden) {
			t.Errorf("round %d: AppendMember after RemoveMember returned = %v, want ErrForbidden", round, err)
		}
		if last := must[string](t)(sender.LastID(ctx, channel)); last != atRemove {
			t.Errorf("round %d: LastID %q, want %q: something was stored after RemoveMember returned", round, last, atRemove)
		}
	}
}

// must2 is must for calls returning two values and an error.
func must2[A, B any](t *testing.T) func(a A, b B, err error) (A, B) {
	return func(a A, b B, err error) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}
