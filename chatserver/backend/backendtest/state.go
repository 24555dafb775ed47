package backendtest

import (
	"errors"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
)

var stateTests = []test{
	{"ReadMarkersNeverGoBack", testReadMarkers},
	{"AddDMOnce", testAddDM},
	{"UserExists", testUserExists},
	{"ListUsers", testListUsers},
}

func testReadMarkers(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	tests := []struct {
		name string
		sets []string
		want string
	}{
		{"forward", []string{"1-0", "2-0"}, "2-0"},
		{"backward is ignored", []string{"5-0", "3-0"}, "5-0"},
		{"sequence numbers", []string{"1700000000000-9", "1700000000000-10"}, "1700000000000-10"},
		{"numbers, not strings", []string{"9-0", "10-0", "9-5"}, "10-0"},
		{"same id", []string{"7-1", "7-1"}, "7-1"},
	}
	b := newBackend()
	want := map[string]string{}
	for _, tc := range tests {
		channel := "ch-" + tc.name
		for _, id := range tc.sets {
			check(t, b.SetRead(ctx, "alice", channel, id))
		}
		want[channel] = tc.want
	}
	got := must[map[string]string](t)(b.ReadMarkers(ctx, "alice"))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadMarkers (-want +got):\n%s", diff)
	}
	if got := must[map[string]string](t)(b.ReadMarkers(ctx, "bob")); len(got) != 0 {
		t.Errorf("ReadMarkers of a user who read nothing = %v", got)
	}
}

func testAddDM(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	var (
		mu      sync.Mutex
		created int
		wg      sync.WaitGroup
	)
	for i := range 8 {
		via := b
		if i%2 == 1 {
			via = peer
		}
		wg.Go(func() {
			ok, err := via.AddDM(ctx, "dm:alice:bob")
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				mu.Lock()
				created++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if created != 1 {
		t.Errorf("8 concurrent AddDM calls reported created %d times, want exactly 1", created)
	}
	if ok := must[bool](t)(b.AddDM(ctx, "dm:alice:carol")); !ok {
		t.Error("AddDM of a new DM reported not created")
	}
	tests := []struct {
		user  string
		limit int
		want  []string
	}{
		{"alice", 10, []string{"dm:alice:bob", "dm:alice:carol"}},
		{"bob", 10, []string{"dm:alice:bob"}},
		{"carol", 10, []string{"dm:alice:carol"}},
		{"dave", 10, nil},
	}
	for _, tc := range tests {
		got := must[[]string](t)(b.DMs(ctx, tc.user, tc.limit))
		if diff := cmp.Diff(tc.want, got, sortStrings, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("DMs(%s) (-want +got):\n%s", tc.user, diff)
		}
	}
	if got := must[[]string](t)(b.DMs(ctx, "alice", 1)); len(got) != 1 {
		t.Errorf("DMs(alice, limit 1) = %v, want 1 channel", got)
	}
}

func testUserExists(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	if must[bool](t)(b.UserExists(ctx, "alice")) {
		t.Error("UserExists(alice) before she was created")
	}
	createUser(t, ctx, b, "alice")
	if !must[bool](t)(b.UserExists(ctx, "alice")) {
		t.Error("UserExists(alice) = false after CreateUser")
	}
}

func testListUsers(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	if got := must[[]string](t)(b.ListUsers(ctx, "", "", 100)); len(got) != 0 {
		t.Errorf("ListUsers with no accounts = %v", got)
	}
	// Byte order: '-' < '.' < '0' < '_' < 'a'.
	all := []string{"al-x", "al.x", "al0", "al_x", "alice", "bo", "bob", "bobby", "carol", "zed"}
	for i, name := range []string{"bob", "zed", "al_x", "alice", "bo", "al.x", "carol", "al0", "bobby", "al-x"} {
		via := b
		if i%2 == 1 {
			via = peer
		}
		createUser(t, ctx, via, name)
	}
	tests := []struct {
		name          string
		prefix, after string
		limit         int
		want          []string
	}{
		{"all", "", "", 100, all},
		{"limit", "", "", 3, all[:3]},
		{"after a name", "", "bob", 2, []string{"bobby", "carol"}},
		{"after between names", "", "c", 10, []string{"carol", "zed"}},
		{"after the last", "", "zed", 10, nil},
		{"prefix", "bo", "", 10, []string{"bo", "bob", "bobby"}},
		{"whole name as prefix", "bob", "", 10, []string{"bob", "bobby"}},
		{"prefix and after", "bob", "bob", 10, []string{"bobby"}},
		{"prefix and limit", "al", "", 2, []string{"al-x", "al.x"}},
		{"after before the prefix", "b", "a", 10, []string{"bo", "bob", "bobby"}},
		{"after past the prefix", "b", "c", 10, nil},
		{"prefix matching nothing", "x", "", 10, nil},
	}
	for _, tc := range tests {
		got := must[[]string](t)(peer.ListUsers(ctx, tc.prefix, tc.after, tc.limit))
		if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: ListUsers(%q, %q, %d) (-want +got):\n%s", tc.name, tc.prefix, tc.after, tc.limit, diff)
		}
	}
	walked := walk(t, len(all), func(after string) ([]string, error) { return b.ListUsers(ctx, "", after, 3) },
		func(name string) string { return name })
	if diff := cmp.Diff(all, walked); diff != "" {
		t.Errorf("paged by three (-want +got):\n%s", diff)
	}
	// An account made after a listing is listed too; a refused one adds nothing.
	createUser(t, ctx, peer, "bobo")
	if err := b.CreateUser(ctx, auth.User{Username: "bob", PasswordHash: []byte("x")}); !errors.Is(err, auth.ErrUserExists) {
		t.Fatalf("CreateUser of a taken name = %v, want ErrUserExists", err)
	}
	if diff := cmp.Diff([]string{"bo", "bob", "bobby", "bobo"}, must[[]string](t)(b.ListUsers(ctx, "bo", "", 10))); diff != "" {
		t.Errorf("ListUsers after another CreateUser (-want +got):\n%s", diff)
	}
}
