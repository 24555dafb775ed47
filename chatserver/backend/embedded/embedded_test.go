package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/backend/backendtest"
	"github.com/hubbub-chat/hubbub/chatserver/backend/embedded"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestBehaviour holds the journaled store to the suite every backend
// passes: each subtest gets a fresh data dir, and every further server on it
// is a Peer (sharing the store and its file).
func TestBehaviour(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) func() backendtest.Backend {
		var first *embedded.Backend
		return func() backendtest.Backend {
			if first == nil {
				first = open(t, t.TempDir())
				return first
			}
			p := first.Peer()
			t.Cleanup(func() {
				if err := p.Close(); err != nil {
					t.Error(err)
				}
			})
			return p
		}
	})
}

// open opens dir and closes it when the test ends (if the test has not).
func open(t *testing.T, dir string) *embedded.Backend {
	t.Helper()
	return openAt(t, dir, time.Now)
}

func openAt(t *testing.T, dir string, now func() time.Time) *embedded.Backend {
	t.Helper()
	b, err := embedded.OpenAt(dir, now)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		check(t, err)
		return v
	}
}

func send(t *testing.T, ctx context.Context, b *embedded.Backend, channel, from, text string) protocol.Message {
	t.Helper()
	return must[protocol.Message](t)(b.Append(ctx, protocol.Message{Channel: channel, From: from, Text: text}, "", 100))
}

var lim = chat.MemberLimits{PerUser: 10, Members: 10}

// TestRestart checks each kind of durable state: written in a server's
// first life, it is all there in the next one on the same data dir.
func TestRestart(t *testing.T) {
	tests := []struct {
		name  string
		write func(t *testing.T, ctx context.Context, b *embedded.Backend)
		check func(t *testing.T, ctx context.Context, b *embedded.Backend)
	}{
		{
			"accounts",
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				for _, u := range []string{"alice", "bob"} {
					check(t, b.CreateUser(ctx, auth.User{Username: u, PasswordHash: []byte("hash-of-" + u), CreatedAt: time.UnixMilli(1700000000000)}))
				}
			},
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				u := must[auth.User](t)(b.GetUser(ctx, "alice"))
				want := auth.User{Username: "alice", PasswordHash: []byte("hash-of-alice"), CreatedAt: time.UnixMilli(1700000000000)}
				if diff := cmp.Diff(want, u); diff != "" {
					t.Errorf("GetUser (-want +got):\n%s", diff)
				}
				if got := must[[]string](t)(b.ListUsers(ctx, "", "", 10)); !cmp.Equal(got, []string{"alice", "bob"}) {
					t.Errorf("ListUsers = %v", got)
				}
				if err := b.CreateUser(ctx, auth.User{Username: "bob"}); !errors.Is(err, auth.ErrUserExists) {
					t.Errorf("CreateUser of a restored account: %v, want ErrUserExists", err)
				}
			},
		},
		{
			"sessions",
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				for _, h := range []string{"kept", "touched", "deleted"} {
					check(t, b.CreateSession(ctx, auth.Session{ID: h[:3], TokenHash: h, Username: "alice", UserAgent: "ua", IP: "10.0.0.1"}, time.Hour))
				}
				must[auth.Session](t)(b.TouchSession(ctx, "touched", 2*time.Hour))
				must[auth.Session](t)(b.DeleteSession(ctx, "alice", "del"))
			},
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				s := must[auth.Session](t)(b.TouchSession(ctx, "kept", time.Hour))
				if s.Username != "alice" || s.ID != "kep" || s.UserAgent != "ua" || s.IP != "10.0.0.1" {
					t.Errorf("restored session = %+v", s)
				}
				must[auth.Session](t)(b.TouchSession(ctx, "touched", time.Hour))
				if _, err := b.TouchSession(ctx, "deleted", time.Hour); !errors.Is(err, auth.ErrNotFound) {
					t.Errorf("deleted session after restart: %v, want ErrNotFound", err)
				}
			},
		},
		{
			"history",
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				for i := range 5 {
					send(t, ctx, b, "general", "alice", fmt.Sprint("hello ", i))
				}
				send(t, ctx, b, "dm:alice:bob", "bob", "psst")
			},
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				got := must[[]protocol.Message](t)(b.After(ctx, "general", "", 100))
				if len(got) != 5 || got[0].Text != "hello 0" || got[4].Text != "hello 4" || got[4].From != "alice" {
					t.Fatalf("general after restart = %+v", got)
				}
				last := must[string](t)(b.LastID(ctx, "general"))
				if last != got[4].ID {
					t.Errorf("LastID = %s, want %s", last, got[4].ID)
				}
				// Ids go on increasing from where the last life left off.
				next := send(t, ctx, b, "general", "alice", "after restart")
				if protocol.CompareIDs(next.ID, last) <= 0 {
					t.Errorf("id after restart %s is not after %s", next.ID, last)
				}
				if dm := must[[]protocol.Message](t)(b.After(ctx, "dm:alice:bob", "", 10)); len(dm) != 1 || dm[0].Text != "psst" {
					t.Errorf("DM history after restart = %+v", dm)
				}
			},
		},
		{
			"dedup keys",
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				must[protocol.Message](t)(b.Append(ctx, protocol.Message{Channel: "general", From: "alice", Text: "once"}, "alice:c1", 100))
			},
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				first := must[[]protocol.Message](t)(b.After(ctx, "general", "", 10))
				again := must[protocol.Message](t)(b.Append(ctx, protocol.Message{Channel: "general", From: "alice", Text: "once"}, "alice:c1", 100))
				if len(first) != 1 || again.ID != first[0].ID {
					t.Errorf("resend after restart = %s, history %+v: want the first message back", again.ID, first)
				}
				if n := must[int](t)(b.CountAfter(ctx, "general", "", 100)); n != 1 {
					t.Errorf("resend after restart committed again: %d messages", n)
				}
			},
		},
		{
			"read markers",
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				check(t, b.SetRead(ctx, "alice", "general", "5-0"))
				check(t, b.SetRead(ctx, "alice", "random", "9-1"))
				check(t, b.SetRead(ctx, "alice", "general", "7-0"))
			},
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				got := must[map[string]string](t)(b.ReadMarkers(ctx, "alice"))
				if want := map[string]string{"general": "7-0", "random": "9-1"}; !cmp.Equal(got, want) {
					t.Errorf("ReadMarkers = %v, want %v", got, want)
				}
				check(t, b.SetRead(ctx, "alice", "general", "6-0"))
				if got := must[map[string]string](t)(b.ReadMarkers(ctx, "alice")); got["general"] != "7-0" {
					t.Errorf("a restored marker moved back to %s", got["general"])
				}
			},
		},
		{
			"DMs",
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				must[bool](t)(b.AddDM(ctx, "dm:alice:bob"))
				must[bool](t)(b.AddDM(ctx, "dm:alice:carol"))
			},
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				if got := must[[]string](t)(b.DMs(ctx, "alice", 10)); !cmp.Equal(got, []string{"dm:alice:bob", "dm:alice:carol"}) {
					t.Errorf("DMs(alice) = %v", got)
				}
				if got := must[[]string](t)(b.DMs(ctx, "carol", 10)); !cmp.Equal(got, []string{"dm:alice:carol"}) {
					t.Errorf("DMs(carol) = %v", got)
				}
				if created := must[bool](t)(b.AddDM(ctx, "dm:alice:bob")); created {
					t.Error("AddDM of a restored DM reported created")
				}
			},
		},
		{
			"channels",
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				check(t, b.CreateChannel(ctx, chat.ChannelMeta{Name: "book-club", Creator: "alice", Created: 1700000000000}, lim))
				check(t, b.CreateChannel(ctx, chat.ChannelMeta{Name: "secret", Private: true, Creator: "bob", Created: 1700000000001}, lim))
			},
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				got := must[chat.ChannelMeta](t)(b.GetChannel(ctx, "secret"))
				if want := (chat.ChannelMeta{Name: "secret", Private: true, Creator: "bob", Created: 1700000000001}); got != want {
					t.Errorf("GetChannel = %+v, want %+v", got, want)
				}
				pub := must[[]chat.ChannelMeta](t)(b.PublicChannels(ctx, "", "", 10))
				if len(pub) != 1 || pub[0].Name != "book-club" {
					t.Errorf("PublicChannels = %+v", pub)
				}
				if err := b.CreateChannel(ctx, chat.ChannelMeta{Name: "book-club", Creator: "carol"}, lim); !errors.Is(err, chat.ErrChannelTaken) {
					t.Errorf("CreateChannel of a restored name: %v, want ErrChannelTaken", err)
				}
			},
		},
		{
			"membership",
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				check(t, b.CreateChannel(ctx, chat.ChannelMeta{Name: "book-club", Creator: "alice"}, lim))
				for _, u := range []string{"bob", "carol", "dave"} {
					if _, _, err := b.AddMember(ctx, "book-club", u, u == "carol", lim); err != nil {
						t.Fatal(err)
					}
				}
				must[bool](t)(b.RemoveMember(ctx, "book-club", "dave"))
				send(t, ctx, b, "book-club", "bob", "member's message")
			},
			func(t *testing.T, ctx context.Context, b *embedded.Backend) {
				got := must[[]chat.Member](t)(b.Members(ctx, "book-club", "", 10))
				want := []chat.Member{{Username: "alice", Admin: true}, {Username: "bob"}, {Username: "carol", Admin: true}}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Members (-want +got):\n%s", diff)
				}
				if mine := must[[]chat.MemberOf](t)(b.UserChannels(ctx, "carol", 10)); !cmp.Equal(mine, []chat.MemberOf{{Channel: "book-club", Admin: true}}) {
					t.Errorf("UserChannels(carol) = %+v", mine)
				}
				if n := must[map[string]int](t)(b.MemberCounts(ctx, []string{"book-club"})); n["book-club"] != 3 {
					t.Errorf("MemberCounts = %v", n)
				}
				if _, err := b.AppendMember(ctx, protocol.Message{Channel: "book-club", From: "dave", Text: "let me in"}, "", 100); !errors.Is(err, chat.ErrForbidden) {
					t.Errorf("AppendMember by a member removed before the restart: %v, want ErrForbidden", err)
				}
				must[protocol.Message](t)(b.AppendMember(ctx, protocol.Message{Channel: "book-club", From: "bob", Text: "still in"}, "", 100))
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dir := t.TempDir()
			first, err := embedded.Open(dir)
			check(t, err)
			tc.write(t, ctx, first)
			check(t, first.Close())
			tc.check(t, ctx, open(t, dir))
		})
	}
}

// TestAckedIsOnDisk: once Append returns, the message is in the file, with
// no Close to flush it. The file is copied while the server still has it
// open, as a crash would leave it.
func TestAckedIsOnDisk(t *testing.T) {
	ctx := t.Context()
	b := open(t, t.TempDir())
	m := send(t, ctx, b, "general", "alice", "acked")

	data, err := os.ReadFile(b.Path())
	check(t, err)
	crashed := t.TempDir()
	check(t, os.WriteFile(filepath.Join(crashed, embedded.FileName), data, 0o600))
	got := must[[]protocol.Message](t)(open(t, crashed).After(ctx, "general", "", 10))
	if len(got) != 1 || !cmp.Equal(got[0], m) {
		t.Errorf("history of the file as the server left it = %+v, want [%+v]", got, m)
	}
}

// TestExpiredAtRestart: what expired while the server was down is gone,
// and what had not is kept.
func TestExpiredAtRestart(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	start := time.Now()
	first, err := embedded.OpenAt(dir, func() time.Time { return start })
	check(t, err)
	check(t, first.CreateSession(ctx, auth.Session{ID: "sho", TokenHash: "short", Username: "alice"}, time.Hour))
	check(t, first.CreateSession(ctx, auth.Session{ID: "lon", TokenHash: "long", Username: "alice"}, 3*time.Hour))
	orig := must[protocol.Message](t)(first.Append(ctx, protocol.Message{Channel: "general", From: "alice", Text: "hi"}, "alice:c1", 100))
	check(t, first.Close())

	later := start.Add(25 * time.Hour) // past the session and the 24h dedup window
	b := openAt(t, dir, func() time.Time { return later })
	if _, err := b.TouchSession(ctx, "short", time.Hour); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("expired session after restart: %v, want ErrNotFound", err)
	}
	if got := must[[]auth.Session](t)(b.Sessions(ctx, "alice")); len(got) != 0 {
		t.Errorf("Sessions after restart = %+v, want none", got)
	}
	again := must[protocol.Message](t)(b.Append(ctx, protocol.Message{Channel: "general", From: "alice", Text: "hi"}, "alice:c1", 100))
	if again.ID == orig.ID {
		t.Error("a dedup key past its 24 hours still returned the old message")
	}
	check(t, b.Close())

	// Dropped from the file too, not only skipped: an earlier clock does
	// not bring them back.
	b = openAt(t, dir, func() time.Time { return start })
	if got := must[[]auth.Session](t)(b.Sessions(ctx, "alice")); len(got) != 0 {
		t.Errorf("expired sessions came back from the file: %+v", got)
	}
}

// TestExpiredKeptWhileLive: the same sessions, reopened before they expire.
func TestExpiredKeptWhileLive(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	start := time.Now()
	first, err := embedded.OpenAt(dir, func() time.Time { return start })
	check(t, err)
	check(t, first.CreateSession(ctx, auth.Session{ID: "sho", TokenHash: "short", Username: "alice"}, time.Hour))
	check(t, first.Close())
	b := openAt(t, dir, func() time.Time { return start.Add(59 * time.Minute) })
	must[auth.Session](t)(b.TouchSession(ctx, "short", time.Hour))
}

// TestTouchesAreWrittenAMinuteApart: sliding a session on every request
// costs no disk sync until the expiry has moved a minute; what a restart
// then finds is at most that far behind.
func TestTouchesAreWrittenAMinuteApart(t *testing.T) {
	tests := []struct {
		name      string
		touchedAt time.Duration // after creation
		reopenAt  time.Duration // after creation; the session was created with 1h to live
		alive     bool
	}{
		{"a touch within the minute is not written", 30 * time.Second, 61 * time.Minute, false},
		{"a touch past the minute is written", 2 * time.Minute, 61 * time.Minute, true},
		{"the unwritten touch is at most a minute behind", 30 * time.Second, 59 * time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			dir := t.TempDir()
			start := time.Now()
			now := start
			b, err := embedded.OpenAt(dir, func() time.Time { return now })
			check(t, err)
			check(t, b.CreateSession(ctx, auth.Session{ID: "s", TokenHash: "tok", Username: "alice"}, time.Hour))
			now = start.Add(tt.touchedAt)
			must[auth.Session](t)(b.TouchSession(ctx, "tok", time.Hour))
			check(t, b.Close())
			b = openAt(t, dir, func() time.Time { return start.Add(tt.reopenAt) })
			_, err = b.TouchSession(ctx, "tok", time.Hour)
			if alive := err == nil; alive != tt.alive {
				t.Errorf("session alive after reopening %v later: %t (%v), want %t", tt.reopenAt, alive, err, tt.alive)
			}
		})
	}
}

// TestTrimmedOnDisk: the file keeps what --history-max keeps, not every
// message ever sent.
func TestTrimmedOnDisk(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	const maxLen = 8
	first, err := embedded.Open(dir)
	check(t, err)
	for i := range 100 {
		must[protocol.Message](t)(first.Append(ctx, protocol.Message{Channel: "general", From: "alice", Text: fmt.Sprint(i)}, "", maxLen))
	}
	before := must[[]protocol.Message](t)(first.After(ctx, "general", "", 1000))
	check(t, first.Close())

	db, err := bolt.Open(filepath.Join(dir, embedded.FileName), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	check(t, err)
	var onDisk int
	check(t, db.View(func(tx *bolt.Tx) error {
		onDisk = tx.Bucket([]byte("messages")).Stats().KeyN
		return nil
	}))
	check(t, db.Close())
	if onDisk != len(before) || onDisk > maxLen+maxLen/8+1 {
		t.Errorf("%d messages in the file, %d in memory before restart, history max %d", onDisk, len(before), maxLen)
	}

	after := must[[]protocol.Message](t)(open(t, dir).After(ctx, "general", "", 1000))
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("history after restart (-before +after):\n%s", diff)
	}
}

// TestFailedCommitChangesNothing: a change the file refuses is not made in
// memory either, and the caller is told storage is unavailable.
func TestFailedCommitChangesNothing(t *testing.T) {
	ctx := t.Context()
	b := open(t, t.TempDir())
	send(t, ctx, b, "general", "alice", "before")
	check(t, b.CloseFile())

	_, err := b.Append(ctx, protocol.Message{Channel: "general", From: "alice", Text: "lost"}, "alice:c2", 100)
	if !errors.Is(err, chat.ErrUnavailable) {
		t.Fatalf("Append with the file closed: %v, want ErrUnavailable", err)
	}
	if n := must[int](t)(b.CountAfter(ctx, "general", "", 100)); n != 1 {
		t.Errorf("a refused Append left %d messages, want 1", n)
	}
	if err := b.CreateUser(ctx, auth.User{Username: "alice"}); !errors.Is(err, chat.ErrUnavailable) {
		t.Errorf("CreateUser with the file closed: %v, want ErrUnavailable", err)
	}
	if ok := must[bool](t)(b.UserExists(ctx, "alice")); ok {
		t.Error("a refused CreateUser made the account")
	}
}

// TestInUse: a second server on the same data dir is refused at once, with
// an error that says why, rather than waiting for the lock or sharing it.
func TestInUse(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	done := make(chan error, 1)
	go func() {
		b, err := embedded.Open(dir)
		if err == nil {
			err = errors.Join(errors.New("second Open succeeded"), b.Close())
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Logf("second Open: %v", err)
		if want := "data dir " + dir + " is in use by another chatserver"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("second Open: %v, want an error saying %q", err, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("second Open of a data dir in use hangs")
	}
}

// TestNotADataFile: a file that is not Hubbub's is refused, and left as it was.
func TestNotADataFile(t *testing.T) {
	foreign := func(t *testing.T, path string) {
		db, err := bolt.Open(path, 0o600, nil)
		check(t, err)
		check(t, db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("someone-else"))
			return err
		}))
		check(t, db.Close())
	}
	tests := []struct {
		name  string
		write func(t *testing.T, path string)
		want  string
	}{
		{"text", func(t *testing.T, path string) {
			check(t, os.WriteFile(path, []byte(strings.Repeat("not a database\n", 1000)), 0o600))
		}, "not a Hubbub data file"},
		{"zeros", func(t *testing.T, path string) {
			check(t, os.WriteFile(path, make([]byte, 1<<16), 0o600))
		}, "not a Hubbub data file"},
		{"another program's bbolt file", foreign, "not a Hubbub data file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, embedded.FileName)
			tc.write(t, path)
			orig, err := os.ReadFile(path)
			check(t, err)
			b, err := embedded.Open(dir)
			if err == nil {
				check(t, b.Close())
				t.Fatal("Open succeeded")
			}
			t.Logf("Open: %v", err)
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open: %v, want an error naming %s and saying %q", err, path, tc.want)
			}
			if now, err := os.ReadFile(path); err != nil || string(now) != string(orig) {
				t.Errorf("the refused file was changed (err %v)", err)
			}
		})
	}
}

// TestCreatesPrivately: the data dir and file are the server user's alone
// (they hold password hashes and session token hashes).
func TestCreatesPrivately(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	open(t, dir)
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, embedded.FileName): 0o600} {
		fi, err := os.Stat(path)
		check(t, err)
		if got := fi.Mode().Perm(); got&^want != 0 {
			t.Errorf("%s has mode %v, want at most %v", path, got, want)
		}
	}
}
