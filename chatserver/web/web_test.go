package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestServesPageAndAssets(t *testing.T) {
	h := Handler()
	for _, tc := range []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script type="module" src="/assets/app.js">`},
		{"/index.html", "text/html; charset=utf-8", "<title>Hubbub</title>"},
		{"/assets/app.js", "text/javascript; charset=utf-8", "import "},
		{"/assets/proto.js", "text/javascript; charset=utf-8", "export function compareIds"},
		{"/assets/conn.js", "text/javascript; charset=utf-8", "export class Connection"},
		{"/assets/api.js", "text/javascript; charset=utf-8", "export const api"},
		{"/assets/dom.js", "text/javascript; charset=utf-8", "export function h("},
		{"/assets/people.js", "text/javascript; charset=utf-8", "export class PeopleList"},
		{"/assets/channels.js", "text/javascript; charset=utf-8", "export class ChannelDialogs"},
		{"/assets/drafts.js", "text/javascript; charset=utf-8", "export function loadDraft"},
		{"/assets/app.css", "text/css; charset=utf-8", "prefers-color-scheme: dark"},
		{"/assets/icon.svg", "image/svg+xml", "<svg"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			res := get(t, h, http.MethodGet, tc.path, nil)
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", res.StatusCode)
			}
			if got := res.Header.Get("Content-Type"); got != tc.contentType {
				t.Errorf("Content-Type %q, want %q", got, tc.contentType)
			}
			if !strings.Contains(string(body), tc.contains) {
				t.Errorf("body lacks %q", tc.contains)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("Cache-Control %q, want no-cache", got)
			}
			if res.Header.Get("ETag") == "" {
				t.Error("no ETag")
			}
		})
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	h := Handler()
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/", 200},
		{http.MethodHead, "/assets/app.js", 200},
		{http.MethodGet, "/nope", 404},
		{http.MethodGet, "/assets/", 404},
		{http.MethodGet, "/static/index.html", 404},
		{http.MethodPost, "/", 405},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			res := get(t, h, tc.method, tc.path, nil)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.status)
			}
			want := map[string]string{
				"X-Content-Type-Options": "nosniff",
				"Referrer-Policy":        "no-referrer",
				"X-Frame-Options":        "DENY",
			}
			for k, v := range want {
				if got := res.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if res.Header.Get("Content-Security-Policy") == "" {
				t.Error("no Content-Security-Policy")
			}
			if tc.status == 405 && res.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q", res.Header.Get("Allow"))
			}
		})
	}
}

func TestContentSecurityPolicy(t *testing.T) {
	res := get(t, Handler(), http.MethodGet, "/", map[string]string{"Host": "chat.example.com:8443"})
	csp := res.Header.Get("Content-Security-Policy")
	directives := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	want := map[string]string{
		"default-src":               "'self'",
		"script-src":                "'self'",
		"style-src":                 "'self'",
		"connect-src":               "'self' ws://chat.example.com:8443 wss://chat.example.com:8443",
		"object-src":                "'none'",
		"base-uri":                  "'none'",
		"frame-ancestors":           "'none'",
		"require-trusted-types-for": "'script'",
	}
	for k, v := range want {
		if directives[k] != v {
			t.Errorf("%s = %q, want %q (policy %q)", k, directives[k], v, csp)
		}
	}
	if strings.Contains(csp, "unsafe-") {
		t.Errorf("policy allows something unsafe: %q", csp)
	}
}

func TestCSPIgnoresForgedHost(t *testing.T) {
	for _, host := range []string{"evil.com; script-src *", "a b", "x'y", ""} {
		csp := ContentSecurityPolicy(host)
		if !regexp.MustCompile(`connect-src 'self'; `).MatchString(csp) {
			t.Errorf("host %q: connect-src not just 'self': %q", host, csp)
		}
	}
	if got := ContentSecurityPolicy("[::1]:8080"); !strings.Contains(got, "ws://[::1]:8080 ") {
		t.Errorf("IPv6 host not allowed: %q", got)
	}
}

func TestConditionalGet(t *testing.T) {
	h := Handler()
	first := get(t, h, http.MethodGet, "/assets/app.js", nil)
	etag := first.Header.Get("ETag")
	again := get(t, h, http.MethodGet, "/assets/app.js", map[string]string{"If-None-Match": etag})
	if again.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match with the current ETag: status %d, want 304", again.StatusCode)
	}
	other := get(t, h, http.MethodGet, "/assets/app.css", nil).Header.Get("ETag")
	if other == etag {
		t.Errorf("two different files share the ETag %s", etag)
	}
}

// The page must not depend on anything the CSP forbids: no inline scripts,
// inline styles, style attributes or inline event handlers in the HTML.
func TestPageHasNothingInline(t *testing.T) {
	body, err := static.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	html := string(body)
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), // a script with a body
		regexp.MustCompile(`<style`),
		regexp.MustCompile(`\sstyle=`),
		regexp.MustCompile(`\son[a-z]+=`),
		regexp.MustCompile(`(?:src|href)="(?:https?:)?//`), // nothing from another origin
	} {
		if loc := bad.FindStringIndex(html); loc != nil {
			t.Errorf("index.html has %q at %d: %q", bad, loc[0], html[loc[0]:min(len(html), loc[1]+40)])
		}
	}
}

// Every module the page imports is one the handler serves: with no build
// step, a renamed or forgotten file would only show as a blank page.
func TestModulesResolve(t *testing.T) {
	h := Handler()
	importRe := regexp.MustCompile(`(?m)^\s*(?:import|export)\s[^;]*?from\s+'(\./[^']+)'`)
	entries, err := static.ReadDir("static/assets")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".js") {
			continue
		}
		body, err := static.ReadFile("static/assets/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range importRe.FindAllStringSubmatch(string(body), -1) {
			target := "/assets/" + strings.TrimPrefix(m[1], "./")
			if res := get(t, h, http.MethodGet, target, nil); res.StatusCode != http.StatusOK {
				t.Errorf("%s imports %s: status %d", e.Name(), target, res.StatusCode)
			}
			checked++
		}
	}
	if checked < 10 {
		t.Errorf("only %d imports found: the pattern no longer matches the modules", checked)
	}
}
