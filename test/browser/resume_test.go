package browser

import (
	"fmt"
	"testing"
	"time"
)

// TestTrimmedWhileAway: a page that was away while its channel's history was
// trimmed past what it holds learns so from the server's resumed object,
// starts that channel afresh from the newest messages and says older ones
// are gone, instead of showing a silent hole.
func TestTrimmedWhileAway(t *testing.T) {
	cfg := testConfig()
	cfg.HistoryMax = 5
	srv := startServerWith(t, cfg)
	bob := newPerson(t, "bob")
	net := startProxy(t, srv.addr) // bob's network, which the test can cut
	bob.open(net.url())
	bob.register("bob", password)
	bob.waitOnline()
	bob.send("before the trip")
	bob.waitMessage("before the trip")

	before := bob.connects()
	net.setDown(true)
	bob.waitFor("bob's page to show it is offline", `document.getElementById('conn-state').dataset.state !== 'online'`)
	// 20 messages where 5 are kept: bob's newest message is trimmed away.
	seedHistory(t, srv, "carol", "general", 20)
	net.setDown(false)
	bob.waitForWithin(45*time.Second, "bob to reconnect by himself",
		fmt.Sprintf(`+document.getElementById('conn-state').dataset.connects > %d && document.getElementById('conn-state').dataset.state === 'online'`, before))

	bob.waitFor("a notice that some messages could not be replayed",
		`[...document.querySelectorAll('#toasts .toast-body')].some(e => e.textContent.includes('could not be replayed'))`)
	bob.waitMessage("history 020")
	bob.waitMessage("history 016")
	// The hole is not papered over: what was trimmed does not show, and
	// neither does bob's own message from before, which is gone too.
	bob.waitFor("only what the server keeps",
		`![...document.querySelectorAll('#messages .msg .text')].some(e => e.textContent === 'history 015' || e.textContent === 'before the trip')`)
}
