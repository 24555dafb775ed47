// Package web is the chat web page: static HTML, CSS and JavaScript modules
// embedded in the binary and served with strict security headers.
//
// The page is a plain ES-module client (no build step, no CDN, no framework).
// It talks to the server only through the JSON API under /api/v1 and the
// WebSocket at /ws, both same-origin, so the Content-Security-Policy can
// forbid everything else.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// contentTypes is explicit so that module scripts are served as JavaScript
// whatever the host's mime.types says: with nosniff, a wrong type stops the page.
var contentTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".json":        "application/json",
	".webmanifest": "application/manifest+json",
}

// file is one embedded file, ready to serve.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// handler serves the embedded files. It is read-only after construction, so
// it is safe for concurrent use.
type handler struct {
	files map[string]file // keyed by URL path
}

// Handler returns the handler for the web page. Mount it at "/": it serves the
// page at "/" (and "/index.html"), its assets under "/assets/", and 404 for
// everything else.
func Handler() http.Handler {
	h := &handler{files: map[string]file{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("web: no content type for %s", p)
		}
		sum := sha256.Sum256(body)
		h.files[strings.TrimPrefix(p, "static")] = file{
			body:        body,
			contentType: ct,
			etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`,
		}
		return nil
	})
	if err != nil {
		// The files are compiled in; failing here means the binary itself is
		// broken, which a test catches before any release.
		panic(fmt.Errorf("web: reading embedded files: %w", err))
	}
	h.files["/"] = h.files["/index.html"]
	return h
}

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header(), r.Host)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f, ok := h.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", f.contentType)
	hdr.Set("ETag", f.etag)
	// The asset names carry no content hash (there is no build step), so the
	// browser may keep a copy but must revalidate it; the ETag makes that a
	// cheap 304. A new release is therefore picked up on the next load.
	hdr.Set("Cache-Control", "no-cache")
	// A zero modtime leaves Last-Modified out; the ETag does conditional requests.
	http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(f.body))
}

// hostPattern accepts a host[:port] as it may appear in the Host header. The
// value goes into the CSP only when it matches, so a forged Host header
// cannot inject directives.
var hostPattern = regexp.MustCompile(`^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+)(:[0-9]{1,5})?$`)

// ContentSecurityPolicy returns the policy sent with every response of the
// page for a request to host. Scripts, styles, images and fonts come only
// from the page's own origin, inline script and style are forbidden, and
// Trusted Types forbid every HTML-parsing DOM sink, so user text can only
// ever become text. connect-src names ws:// and wss:// of the host besides
// 'self' because older browsers do not count WebSocket URLs as 'self'.
func ContentSecurityPolicy(host string) string {
	connect := "'self'"
	if hostPattern.MatchString(host) {
		connect += " ws://" + host + " wss://" + host
	}
	return strings.Join([]string{
		"default-src 'self'",
		"script-src 'self'",
		"style-src 'self'",
		"img-src 'self' data:",
		"font-src 'self'",
		"connect-src " + connect,
		"object-src 'none'",
		"base-uri 'none'",
		"form-action 'self'",
		"frame-ancestors 'none'",
		"manifest-src 'self'",
		"worker-src 'none'",
		"require-trusted-types-for 'script'",
		"trusted-types 'none'",
	}, "; ")
}

func setSecurityHeaders(h http.Header, host string) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy(host))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY") // frame-ancestors for browsers without CSP2
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
}
