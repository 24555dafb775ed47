package browser

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/hubbub-chat/hubbub/test/headless"
)

// TestTypingWhileTheFieldChanges: the harness types into a field whose
// attributes the page adds and removes meanwhile (as the chat page sets the
// composer's maxlength on every hello), and every key arrives. Under -race
// it also holds headless.TypeKeys to what chromedp.SendKeys failed: SendKeys
// reads the field's attributes without the node's lock while the tab's event
// loop rewrites them, a data race that failed a CI run. With SendKeys in
// TypeKeys' place, this test found that race in each of three runs.
func TestTypingWhileTheFieldChanges(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><input id="f" size="80"><script>
let n = 0;
setInterval(() => { const f = document.getElementById('f'); if (++n % 2) f.setAttribute('data-n', String(n)); else f.removeAttribute('data-n'); }, 1);
</script>`)
	}))
	t.Cleanup(page.Close)
	p := newPerson(t, "typist")
	p.do("opening the page", chromedp.Navigate(page.URL))
	const word, times = "abcdefgh", 60
	for range times {
		p.do("typing "+word, headless.TypeKeys("#f", word))
	}
	if got := eval[string](p, `document.getElementById('f').value`); got != strings.Repeat(word, times) {
		t.Errorf("the field holds %d characters %.40q…, want %d", len(got), got, times*len(word))
	}
}
