// Package headless starts Debian's Chromium the way every browser test here
// needs it: headless, as root in CI, with the flags that keep it from
// calling out to the network this machine does not have. test/browser and
// test/kind drive the chat page with it.
package headless

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/chromedp/chromedp"
)

// Path finds Chromium: $HUBBUB_CHROMIUM, else chromium or chromium-browser
// on PATH. A missing browser is an error saying how to get one: tests fail
// on it rather than pass by skipping.
func Path() (string, error) {
	if p := os.Getenv("HUBBUB_CHROMIUM"); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("HUBBUB_CHROMIUM=%s: %w", p, err)
		}
		return path, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("chromium not found on PATH: run `make deps` (or `apt-get install chromium`), or set HUBBUB_CHROMIUM")
}

// Options are the allocator options for Chromium at path with its profile
// in userDataDir (a fresh temporary folder the caller removes).
func Options(path, userDataDir string) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(userDataDir),
		chromedp.WindowSize(1280, 800), // wide enough that the sidebar is not a drawer
		// Without these Chromium reaches for Google's hosts at start, and
		// this machine's closed network refuses it, many times over.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("lang", "en-US"),
	}
}

// TypeKeys focuses the visible field sel (CSS) matches and types text into
// it, key by key. chromedp.SendKeys does the same, but reads the field's
// attributes without the node's lock while the tab's event loop may write
// them (the chat page sets the composer's maxlength on every hello): the race
// detector failed a CI run of test/browser on it.
func TypeKeys(sel, text string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(chromedp.Focus(chromedp.CSS(sel), chromedp.NodeVisible), chromedp.KeyEvent(text))
}
