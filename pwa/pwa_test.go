package pwa_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"golang.org/x/net/html"

	"github.com/kioskfeed/kioskfeed/admin"
	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pwa"
)

const wantCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"worker-src 'self'; manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"

var wantSecurityHeaders = map[string]string{
	"Content-Security-Policy":    wantCSP,
	"Referrer-Policy":            "no-referrer",
	"X-Content-Type-Options":     "nosniff",
	"Permissions-Policy":         "camera=(), microphone=(), geolocation=()",
	"Cross-Origin-Opener-Policy": "same-origin",
}

func mustStartApp(tb testing.TB, cfg pwa.Config) *httptest.Server {
	tb.Helper()
	app, err := pwa.New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	mux := http.NewServeMux()
	app.Register(mux)
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return srv
}

func get(tb testing.TB, srv *httptest.Server, path string) (*http.Response, []byte) {
	tb.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp, body
}

func checkSecurityHeaders(tb testing.TB, path string, h http.Header) {
	tb.Helper()
	for k, want := range wantSecurityHeaders {
		if got := h.Get(k); got != want {
			tb.Errorf("GET %s: %s = %q, want %q", path, k, got, want)
		}
	}
}

func TestRoutes(t *testing.T) {
	srv := mustStartApp(t, pwa.Config{})
	tests := []struct {
		name, path  string
		status      int
		contentType string
		cache       string
	}{
		{"app", "/", 200, "text/html; charset=utf-8", "no-cache"},
		{"help", "/help", 200, "text/html; charset=utf-8", "no-cache"},
		{"manifest", "/manifest.webmanifest", 200, "application/manifest+json", "no-cache"},
		{"service worker", "/sw.js", 200, "text/javascript; charset=utf-8", "no-cache"},
		{"unknown asset", "/assets/app.00000000.js", 404, "application/json", "no-store"},
		{"unhashed asset", "/assets/app.js", 404, "application/json", "no-store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv, tt.path)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", got, tt.contentType)
			}
			if got := resp.Header.Get("Cache-Control"); got != tt.cache {
				t.Errorf("Cache-Control = %q, want %q", got, tt.cache)
			}
			checkSecurityHeaders(t, tt.path, resp.Header)
			if tt.status == 404 {
				var e struct{ Error, Message string }
				if err := json.Unmarshal(body, &e); err != nil || e.Error != "not_found" || e.Message == "" {
					t.Errorf("body = %s, want {\"error\":\"not_found\",\"message\":...}", body)
				}
			}
		})
	}
}

func TestRootIsNotACatchAll(t *testing.T) {
	srv := mustStartApp(t, pwa.Config{})
	for _, path := range []string{"/nope", "/help/more", "/index.html"} {
		if resp, _ := get(t, srv, path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status = %d, want 404", path, resp.StatusCode)
		}
	}
}

func TestCSPAllowsNothingInline(t *testing.T) {
	srv := mustStartApp(t, pwa.Config{})
	resp, _ := get(t, srv, "/")
	csp := resp.Header.Get("Content-Security-Policy")
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "unsafe-hashes", "*", "http:", "https:"} {
		if strings.Contains(csp, bad) {
			t.Errorf("CSP %q contains %q", csp, bad)
		}
	}
}

type manifest struct {
	ID              string   `json:"id"`
	Name            string   `json:"name"`
	ShortName       string   `json:"short_name"`
	StartURL        string   `json:"start_url"`
	Scope           string   `json:"scope"`
	Display         string   `json:"display"`
	DisplayOverride []string `json:"display_override"`
	Orientation     string   `json:"orientation"`
	BackgroundColor string   `json:"background_color"`
	ThemeColor      string   `json:"theme_color"`
	Icons           []struct {
		Src, Sizes, Type, Purpose string
	} `json:"icons"`
}

func getManifest(t *testing.T, srv *httptest.Server) manifest {
	t.Helper()
	_, body := get(t, srv, "/manifest.webmanifest")
	var m manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("manifest: %v\n%s", err, body)
	}
	return m
}

func TestManifest(t *testing.T) {
	srv := mustStartApp(t, pwa.Config{})
	m := getManifest(t, srv)
	if m.StartURL != "/" || strings.ContainsAny(m.StartURL, "?#") {
		t.Errorf("start_url = %q, want \"/\" with no query: a URL must never carry a secret", m.StartURL)
	}
	checks := []struct{ field, got, want string }{
		{"id", m.ID, "/"},
		{"name", m.Name, "kioskfeed"},
		{"short_name", m.ShortName, "kioskfeed"},
		{"scope", m.Scope, "/"},
		{"display", m.Display, "fullscreen"},
		{"orientation", m.Orientation, "any"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if !slices.Equal(m.DisplayOverride, []string{"fullscreen", "standalone"}) {
		t.Errorf("display_override = %q, want [fullscreen standalone]", m.DisplayOverride)
	}
	colour := regexp.MustCompile(`^#[0-9a-f]{6}$`)
	if !colour.MatchString(m.BackgroundColor) || !colour.MatchString(m.ThemeColor) {
		t.Errorf("background_color, theme_color = %q, %q, want #rrggbb", m.BackgroundColor, m.ThemeColor)
	}

	var got []string
	for _, ic := range m.Icons {
		got = append(got, ic.Sizes+" "+ic.Purpose)
		if ic.Type != "image/png" {
			t.Errorf("icon %s: type = %q, want image/png", ic.Src, ic.Type)
		}
		resp, body := get(t, srv, ic.Src)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("icon %s: status %d, Content-Type %q", ic.Src, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		img, err := png.Decode(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("icon %s: %v", ic.Src, err)
		}
		b := img.Bounds()
		if size := strings.Split(ic.Sizes, "x"); len(size) != 2 || size[0] != strconv.Itoa(b.Dx()) || size[1] != strconv.Itoa(b.Dy()) {
			t.Errorf("icon %s: declared %s, is %dx%d", ic.Src, ic.Sizes, b.Dx(), b.Dy())
		}
		if ic.Purpose == "maskable" {
			checkSafeZone(t, img, m.BackgroundColor)
		}
	}
	want := []string{"192x192 any", "512x512 any", "512x512 maskable"}
	if !slices.Equal(got, want) {
		t.Errorf("icons = %q, want %q", got, want)
	}
}

// checkSafeZone: a maskable icon may be cut to a circle of 80% of its width, so
// everything outside that circle must be plain, opaque background.
func checkSafeZone(t *testing.T, img image.Image, bg string) {
	t.Helper()
	b := img.Bounds()
	n := float64(b.Dx())
	want := hexColor(bg)
	ink := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			if c != want {
				ink++
			}
			if c != want && math.Hypot(float64(x)+0.5-n/2, float64(y)+0.5-n/2) > 0.4*n {
				t.Fatalf("maskable icon: pixel (%d,%d) = %v outside the safe zone, want background %v", x, y, c, want)
			}
		}
	}
	if ink < int(n*n/50) {
		t.Errorf("maskable icon: only %d pixels of mark, want a visible mark", ink)
	}
}

func hexColor(s string) color.NRGBA {
	var c color.NRGBA
	c.A = 0xff
	for i, p := range []*uint8{&c.R, &c.G, &c.B} {
		v := 0
		for _, ch := range s[1+2*i : 3+2*i] {
			v = v*16 + strings.IndexRune("0123456789abcdef", ch)
		}
		*p = uint8(v)
	}
	return c
}

// page is a parsed HTML document's facts the tests look at.
type page struct {
	ids      map[string]*html.Node
	assets   []string // every src and href under /assets/
	problems []string // inline script or style, event handlers
	body     *html.Node
	viewport string
}

func parsePage(t *testing.T, src []byte) page {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	p := page{ids: map[string]*html.Node{}}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attrs := map[string]string{}
			for _, a := range n.Attr {
				attrs[a.Key] = a.Val
				switch {
				case a.Key == "style":
					p.problems = append(p.problems, "style attribute on <"+n.Data+">")
				case strings.HasPrefix(a.Key, "on"):
					p.problems = append(p.problems, a.Key+" handler on <"+n.Data+">")
				case (a.Key == "src" || a.Key == "href") && strings.HasPrefix(a.Val, "/assets/"):
					p.assets = append(p.assets, a.Val)
				case strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Val)), "javascript:"):
					p.problems = append(p.problems, "javascript: URL on <"+n.Data+">")
				}
			}
			if id, ok := attrs["id"]; ok {
				p.ids[id] = n
			}
			switch n.Data {
			case "script":
				if attrs["src"] == "" || n.FirstChild != nil {
					p.problems = append(p.problems, "inline <script>")
				}
			case "style":
				p.problems = append(p.problems, "<style> element")
			case "body":
				p.body = n
			case "meta":
				if attrs["name"] == "viewport" {
					p.viewport = attrs["content"]
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return p
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func TestPagesHaveNoInlineScriptOrStyle(t *testing.T) {
	srv := mustStartApp(t, pwa.Config{})
	for _, path := range []string{"/", "/help"} {
		_, body := get(t, srv, path)
		p := parsePage(t, body)
		if len(p.problems) > 0 {
			t.Errorf("GET %s: %s", path, strings.Join(p.problems, "; "))
		}
	}
}

func TestHashedAssetsResolveImmutable(t *testing.T) {
	srv := mustStartApp(t, pwa.Config{})
	hashed := regexp.MustCompile(`^/assets/[a-z0-9-]+\.[0-9a-f]{8}\.(js|css|png)$`)
	wantType := map[string]string{"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8", "png": "image/png"}
	seen := map[string]bool{}
	for _, path := range []string{"/", "/help"} {
		_, body := get(t, srv, path)
		for _, u := range parsePage(t, body).assets {
			seen[u] = true
		}
	}
	var kinds []string
	for u := range seen {
		m := hashed.FindStringSubmatch(u)
		if m == nil {
			t.Errorf("asset URL %q is not content-hashed", u)
			continue
		}
		kinds = append(kinds, m[1])
		resp, body := get(t, srv, u)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: status %d", u, resp.StatusCode)
			continue
		}
		if got := resp.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
			t.Errorf("GET %s: Cache-Control = %q", u, got)
		}
		if got := resp.Header.Get("Content-Type"); got != wantType[m[1]] {
			t.Errorf("GET %s: Content-Type = %q, want %q", u, got, wantType[m[1]])
		}
		if len(body) == 0 {
			t.Errorf("GET %s: empty body", u)
		}
		checkSecurityHeaders(t, u, resp.Header)

		req, _ := http.NewRequest(http.MethodGet, srv.URL+u, nil)
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		again, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		again.Body.Close()
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: status %d, want 304", u, again.StatusCode)
		}
	}
	for _, k := range []string{"js", "css", "png"} {
		if !slices.Contains(kinds, k) {
			t.Errorf("no hashed .%s referenced by the pages", k)
		}
	}
}

// TestDOMHooks pins the ids and attributes the browser tests drive.
func TestDOMHooks(t *testing.T) {
	srv := mustStartApp(t, pwa.Config{})
	_, body := get(t, srv, "/")
	p := parsePage(t, body)
	for id, tag := range map[string]string{
		"pair-screen": "main", "pair-form": "form", "feed": "input", "pin": "input", "pair-submit": "button",
		"pair-error": "p", "feed-screen": "main", "title": "h1", "body": "p", "rows": "table", "list": "ul",
		"items": "ul", "status": "div",
		// the code screen of the reverse pairing flow (docs/protocol.md §3b)
		"pair-note": "p", "code-panel": "section", "user-code": "p", "pair-qr": "img", "verification-uri": "span",
		"code-status": "p", "use-pin": "button", "use-code": "button",
	} {
		n, ok := p.ids[id]
		if !ok {
			t.Errorf("no #%s", id)
			continue
		}
		if n.Data != tag {
			t.Errorf("#%s is <%s>, want <%s>", id, n.Data, tag)
		}
	}
	if p.body == nil || attr(p.body, "data-view") == "" {
		t.Error("<body> has no data-view")
	}
	if s, ok := p.ids["status"]; ok && attr(s, "data-state") == "" {
		t.Error("#status has no data-state")
	}
	// Unpaired, the code screen comes first; the PIN form is behind #use-pin.
	if ps, ok := p.ids["pair-screen"]; ok && attr(ps, "data-mode") != "code" {
		t.Errorf("#pair-screen data-mode = %q, want code", attr(ps, "data-mode"))
	}
	if qr, ok := p.ids["pair-qr"]; ok && (attr(qr, "src") != "" || attr(qr, "alt") == "") {
		t.Errorf("img#pair-qr: src %q, alt %q; want no src until there is a code, and an alt text", attr(qr, "src"), attr(qr, "alt"))
	}
	if want := "width=device-width, initial-scale=1, maximum-scale=1, user-scalable=no"; p.viewport != want {
		t.Errorf("viewport = %q, want %q", p.viewport, want)
	}
	if !bytes.Contains(body, []byte(`href="/manifest.webmanifest"`)) || !bytes.Contains(body, []byte(`href="/help"`)) {
		t.Error("the app page must link the manifest and /help")
	}
}

func TestName(t *testing.T) {
	srv := mustStartApp(t, pwa.Config{Name: "  Building 7 lobby screens "})
	m := getManifest(t, srv)
	if m.Name != "Building 7 lobby screens" || m.ShortName != "Building 7 l" {
		t.Errorf("name, short_name = %q, %q", m.Name, m.ShortName)
	}
	_, body := get(t, srv, "/")
	if !bytes.Contains(body, []byte("<title>Building 7 lobby screens</title>")) {
		t.Error("the page title is not the configured name")
	}
	for _, bad := range []string{"line\nbreak", strings.Repeat("x", 65)} {
		if _, err := pwa.New(pwa.Config{Name: bad}); err == nil {
			t.Errorf("New(Name: %q) accepted it", bad)
		}
	}
}

// ---------- the app and its service worker at work, in real Chromium ----------
//
// What the app and its worker do is tested by running them: the worker's cache and its
// offline answers are read back from the browser, and the app is paired and fed by a
// real server (embedded NATS, pairing, the socket bridge), not searched for lines of
// source text.

// chromiumPath finds the browser. Missing Chromium is a failure with the fix in the
// message, never a skip: CI must not count an unrun browser test as passed.
func chromiumPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("KIOSKFEED_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("Chromium not found. Install it with 'apt-get update && apt-get install -y chromium' " +
		"('go tool -modfile=tools/go.mod task test' does this when it can), or set KIOSKFEED_CHROMIUM to its path.")
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile, kept off the network
// (NOTES.md), and returns its first tab; js runs in every document before its scripts.
func newBrowser(t testing.TB, js ...string) context.Context {
	t.Helper()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath(t)), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800),
		chromedp.Flag("no-first-run", true), chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true), chromedp.Flag("disable-default-apps", true))
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	js = append([]string{`window.__csp = []; document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective));`}, js...)
	for _, src := range js {
		if err := chromedp.Do(ctx, func(ctx context.Context, _ *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Call(ctx, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: src})
			return chromedp.Void{}, err
		}); err != nil {
			t.Fatalf("start Chromium: %v", err)
		}
	}
	return ctx
}

// waitJS evaluates expr every 100 ms until it is true, within d.
func waitJS(t testing.TB, ctx context.Context, expr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		evalCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := chromedp.Run(evalCtx, chromedp.Evaluate[bool](expr, chromedp.EvalAwaitPromise))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the page never satisfied %q within %v (last error: %v)", expr, d, last)
}

// evalJSON evaluates js (a promise of a JSON string) and decodes it into v.
func evalJSON(t testing.TB, ctx context.Context, js string, v any) {
	t.Helper()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate: %v", err)
	}
	if err := json.Unmarshal([]byte(raw), v); err != nil {
		t.Fatalf("evaluate: %v in %s", err, raw)
	}
}

// shellServer serves the app on a fixed loopback port that outlives it: stopped, the
// origin is offline; started again (with another build, perhaps), the same origin is
// back. Next to the app it has /api/probe and /ws, which count their requests, to show
// that the worker passes those through and never answers them itself.
type shellServer struct {
	t      *testing.T
	addr   string
	srv    *http.Server
	probes atomic.Int64
}

func startShell(t *testing.T, cfg pwa.Config) *shellServer {
	t.Helper()
	s := &shellServer{t: t, addr: "127.0.0.1:0"}
	s.start(cfg)
	t.Cleanup(s.stop)
	return s
}

func (s *shellServer) url() string { return "http://" + s.addr }

func (s *shellServer) start(cfg pwa.Config) {
	s.t.Helper()
	app, err := pwa.New(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	mux := http.NewServeMux()
	app.Register(mux)
	probe := func(w http.ResponseWriter, r *http.Request) {
		s.probes.Add(1)
		w.Header().Set("Cache-Control", "no-store") // so only a worker's cache could answer it offline
		fmt.Fprint(w, "from the server")
	}
	mux.HandleFunc("GET /api/probe", probe)
	mux.HandleFunc("GET /ws", probe)
	var ln net.Listener
	for i := 0; ; i++ { // the port of the last start may linger a moment
		ln, err = net.Listen("tcp", s.addr)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
}

func (s *shellServer) stop() {
	if s.srv != nil {
		_ = s.srv.Close()
		s.srv = nil
	}
}

// cachedJS lists the worker's caches and the paths (with query) each one holds.
const cachedJS = `(async () => {
  const out = {};
  for (const k of await caches.keys()) {
    const c = await caches.open(k);
    out[k] = (await c.keys()).map(r => { const u = new URL(r.url); return u.pathname + u.search; });
  }
  return JSON.stringify(out);
})()`

// shellURLs is what the shell of srv is made of: its pages, the manifest, every asset
// the app page references and every icon of the manifest.
func shellURLs(t *testing.T, srv *httptest.Server) []string {
	t.Helper()
	_, index := get(t, srv, "/")
	want := append([]string{"/", "/help", "/manifest.webmanifest"}, parsePage(t, index).assets...)
	for _, ic := range getManifest(t, srv).Icons {
		want = append(want, ic.Src)
	}
	return want
}

// TestServiceWorkerKeepsTheShellOffline: once the worker controls the app, its one cache
// holds the whole shell (pages, manifest, hashed assets, icons); with the server gone
// the app and its help page still load from it and the app's script runs, while the API
// and the socket are never answered from the cache: they pass through to the server
// when it is there, and fail when it is not.
func TestServiceWorkerKeepsTheShellOffline(t *testing.T) {
	s := startShell(t, pwa.Config{})
	ctx := newBrowser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(s.url()+"/")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, `!!navigator.serviceWorker.controller`, 20*time.Second)

	// Through the worker to the server, while it is up: each call reaches it.
	var online struct{ API, WS string }
	evalJSON(t, ctx, `(async () => JSON.stringify({
	  api: await (await fetch('/api/probe')).text(),
	  ws: await (await fetch('/ws')).text(),
	}))()`, &online)
	if online.API != "from the server" || online.WS != "from the server" || s.probes.Load() != 2 {
		t.Fatalf("online /api/probe and /ws through the worker: %+v, %d reached the server; want both from the server", online, s.probes.Load())
	}

	var cached map[string][]string
	evalJSON(t, ctx, cachedJS, &cached)
	if len(cached) != 1 {
		t.Fatalf("caches %v, want exactly one (this build's)", cached)
	}
	want := shellURLs(t, mustStartApp(t, pwa.Config{}))
	for name, urls := range cached {
		if !regexp.MustCompile(`^kioskfeed-[0-9a-f]{12}$`).MatchString(name) {
			t.Errorf("cache name %q, want kioskfeed-<content hash>", name)
		}
		for _, u := range want {
			if !slices.Contains(urls, u) {
				t.Errorf("cache %s lacks %s (holds %v)", name, u, urls)
			}
		}
		for _, u := range urls {
			if strings.HasPrefix(u, "/api/") || u == "/ws" {
				t.Errorf("cache %s holds %s: the API and the socket must never be cached", name, u)
			}
		}
	}

	// The server goes away: the shell still starts, and its script runs (it tries the
	// network and says it cannot reach the server).
	s.stop()
	if err := chromedp.Do(ctx, chromedp.Navigate(s.url()+"/")); err != nil {
		t.Fatalf("the app offline: %v", err)
	}
	waitJS(t, ctx, `document.title === 'kioskfeed' && document.body.dataset.view === 'pair' && document.querySelector('#code-status').textContent.includes('Cannot reach the server')`, 20*time.Second)
	var offline struct {
		API, WS string
		Asset   bool
	}
	evalJSON(t, ctx, `(async () => {
	  const fails = async (u) => { try { await fetch(u); return 'answered'; } catch (e) { return 'failed'; } };
	  const asset = document.querySelector('script[src^="/assets/"]').getAttribute('src');
	  return JSON.stringify({api: await fails('/api/probe'), ws: await fails('/ws'), asset: (await fetch(asset)).ok});
	})()`, &offline)
	if offline.API != "failed" || offline.WS != "failed" || !offline.Asset {
		t.Fatalf("offline: /api/probe %s, /ws %s, hashed asset served %v; want the API and socket to fail and the asset from the cache", offline.API, offline.WS, offline.Asset)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(s.url()+"/help")); err != nil {
		t.Fatalf("the help page offline: %v", err)
	}
	waitJS(t, ctx, `document.title === 'Help: kioskfeed' && location.pathname === '/help'`, 10*time.Second)
	// A page of the origin that is not the app's is not served by its worker.
	if err := chromedp.Do(ctx, chromedp.Navigate(s.url()+"/admin")); err == nil {
		if title, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.title`)); strings.Contains(title, "kioskfeed") {
			t.Fatalf("/admin offline was answered by the worker (title %q)", title)
		}
	}
}

// TestNewBuildReplacesTheCachedShell: a server restarted with the same build leaves the
// tablet's worker and cache as they are; one restarted with another build (here another
// app name, so other bytes) gets a new worker onto the tablet without a person, which
// replaces the old cache with its own, and the new shell is what the tablet shows, also
// offline.
func TestNewBuildReplacesTheCachedShell(t *testing.T) {
	s := startShell(t, pwa.Config{Name: "lobby"})
	ctx := newBrowser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(s.url()+"/")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, `!!navigator.serviceWorker.controller`, 20*time.Second)
	cacheNames := func() []string {
		var c map[string][]string
		evalJSON(t, ctx, cachedJS, &c)
		var names []string
		for k := range c {
			names = append(names, k)
		}
		return names
	}
	first := cacheNames()
	if len(first) != 1 {
		t.Fatalf("caches %v, want one", first)
	}
	update := `navigator.serviceWorker.ready.then(r => r.update()).then(() => navigator.serviceWorker.ready).then(r => !r.installing && !r.waiting)`

	s.stop()
	s.start(pwa.Config{Name: "lobby"})
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, update, 20*time.Second)
	if got := cacheNames(); !slices.Equal(got, first) {
		t.Fatalf("same build again: caches %v, want %v unchanged", got, first)
	}

	s.stop()
	s.start(pwa.Config{Name: "entrance"})
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, update+`.then(ok => ok && caches.keys()).then(k => !!k && k.length === 1 && k[0] !== '`+first[0]+`')`, 30*time.Second)
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, `document.title === 'entrance'`, 10*time.Second)
	s.stop()
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatalf("reload offline: %v", err)
	}
	waitJS(t, ctx, `document.title === 'entrance' && document.body.dataset.view === 'pair'`, 20*time.Second)
}

const adminToken = "test-admin-token-0123456789"

// appStack is the tablet app with the real server behind it: an embedded NATS with
// JetStream, pairing, the socket bridge and the producer API, on one loopback listener
// whose address is the public URL, wired as cmd/kioskfeed wires them.
type appStack struct {
	url string
	b   *broker.Broker
}

// startAppStack starts it; pairNow, when not nil, is the pairing side's clock.
func startAppStack(t *testing.T, pairNow func() time.Time) *appStack {
	t.Helper()
	b := brokertest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	public := "http://" + ln.Addr().String()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if pairNow == nil {
		pairNow = b.Now
	}
	auth, err := pairing.New(context.Background(), pairing.Config{PublicURL: public, SigningKeys: []*ecdsa.PrivateKey{key},
		PairBurst: 1000, Now: pairNow}, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(auth.Close)
	br, err := bridge.New(context.Background(), bridge.Config{PublicURL: public, Heartbeat: 2 * time.Second, Now: b.Now}, b, b, auth, auth.Devices())
	if err != nil {
		t.Fatal(err)
	}
	adm, err := admin.New(context.Background(), admin.Config{PublicURL: public, CSRFKey: make([]byte, 32),
		TokenHashes: [][32]byte{admin.HashToken(adminToken)}, Now: pairNow}, b, auth, br)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(adm.Close)
	app, err := pwa.New(pwa.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	broker.NewAPI(b, adm).Register(mux)
	auth.Register(mux)
	adm.Register(mux)
	br.Register(mux)
	app.Register(mux)
	srv := &http.Server{Handler: httpx.JSONErrors(mux), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = br.Shutdown(ctx)
		_ = srv.Close()
	})
	return &appStack{url: public, b: b}
}

// pin issues a PIN for feed through the admin API.
func (s *appStack) pin(t *testing.T, feed string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", s.url+"/api/admin/feeds/"+feed+"/pins", strings.NewReader(`{"ttl":"5m"}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ PIN string }
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&p) != nil {
		t.Fatalf("issue PIN: %d", resp.StatusCode)
	}
	return p.PIN
}

func (s *appStack) publish(t *testing.T, feed, kind, data string) uint64 {
	t.Helper()
	res, err := s.b.Publish(context.Background(), feed, broker.EventInput{Kind: kind, Data: json.RawMessage(data)})
	if err != nil {
		t.Fatal(err)
	}
	return res.Seq
}

// watchJS records, from before the app's script runs, what the app asks of the
// browser: console output, wake locks, persistent storage, and Web Storage writes.
const watchJS = `(() => {
  const w = window.__watch = {console: 0, wakeLock: [], persist: 0, webStorage: 0};
  for (const m of ['log', 'info', 'warn', 'error', 'debug', 'trace', 'dir', 'table']) {
    const orig = console[m];
    console[m] = function (...a) { w.console++; return orig.apply(this, a); };
  }
  if (navigator.wakeLock) {
    const orig = navigator.wakeLock.request.bind(navigator.wakeLock);
    navigator.wakeLock.request = (type) => { w.wakeLock.push(type); return orig(type); };
  }
  if (navigator.storage && navigator.storage.persist) {
    const orig = navigator.storage.persist.bind(navigator.storage);
    navigator.storage.persist = () => { w.persist++; return orig(); };
  }
  const set = Storage.prototype.setItem;
  Storage.prototype.setItem = function (...a) { w.webStorage++; return set.apply(this, a); };
})();`

// TestAppPairsShowsContentAsTextAndKeepsNoSecret: a person pairs the real app with a
// PIN; the device key it keeps is a non-extractable CryptoKey whose export is refused;
// it asks for persistent storage and a screen wake lock; feed content full of markup is
// shown as text, never parsed as HTML or run; and nothing lands in Web Storage, the
// console or the CSP's refusals.
func TestAppPairsShowsContentAsTextAndKeepsNoSecret(t *testing.T) {
	s := startAppStack(t, nil)
	const title = `<img src=x onerror="window.__pwned=1">Room <b>Aurora</b>`
	s.publish(t, "lobby", "state", `{"title":`+strconv.Quote(title)+`,"body":"<script>window.__pwned=2</script>",`+
		`"rows":[["<i>09:00</i>","<a href=\"javascript:window.__pwned=3\">x</a>"]],"list":["<iframe src=/></iframe>"]}`)
	s.publish(t, "lobby", "item", `{"text":"<svg onload=\"window.__pwned=4\"></svg>ready"}`)
	pin := s.pin(t, "lobby")

	ctx := newBrowser(t, watchJS)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.url+"/"),
		chromedp.WaitVisible(chromedp.ID("use-pin")),
		chromedp.Click(chromedp.ID("use-pin")),
		chromedp.WaitVisible(chromedp.ID("pair-form")),
		chromedp.SendKeys(chromedp.ID("feed"), "lobby"),
		chromedp.SendKeys(chromedp.ID("pin"), pin),
		chromedp.Click(chromedp.ID("pair-submit")),
	); err != nil {
		t.Fatalf("pairing form: %v", err)
	}
	waitJS(t, ctx, `document.body.dataset.view === 'feed' && document.querySelector('#status').dataset.state === 'live'`, 30*time.Second)
	waitJS(t, ctx, `document.querySelector('#title').textContent === `+strconv.Quote(title)+` && document.querySelector('#items').textContent.includes('ready')`, 10*time.Second)

	var seen struct {
		Body, Cell, Link, List, Item string
		Elements                     []string
		Pwned                        any
		Key                          struct{ IsKey, Extractable, ExportRejected bool }
		Watch                        struct {
			Console, Persist, WebStorage int
			WakeLock                     []string
		}
		LS, SS int
		CSP    []string
	}
	evalJSON(t, ctx, `(async () => {
	  const screen = document.querySelector('#feed-screen');
	  const db = await new Promise((ok, no) => { const r = indexedDB.open('kioskfeed'); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
	  const rec = await new Promise((ok, no) => { const q = db.transaction('kv').objectStore('kv').get('device'); q.onsuccess = () => ok(q.result); q.onerror = () => no(q.error); });
	  let exportRejected = false;
	  try { await crypto.subtle.exportKey('jwk', rec.privateKey); } catch (e) { exportRejected = e.name === 'InvalidAccessError'; }
	  return JSON.stringify({
	    body: document.querySelector('#body').textContent,
	    cell: document.querySelector('#rows td').textContent,
	    link: document.querySelectorAll('#rows td')[1].textContent,
	    list: document.querySelector('#list').textContent,
	    item: document.querySelector('#items').textContent,
	    elements: [...screen.querySelectorAll('img, b, i, a, script, iframe, svg')].map(e => e.tagName),
	    pwned: window.__pwned ?? null,
	    key: {isKey: rec.privateKey instanceof CryptoKey, extractable: rec.privateKey.extractable, exportRejected},
	    watch: window.__watch, ls: localStorage.length, ss: sessionStorage.length, csp: window.__csp,
	  });
	})()`, &seen)
	if seen.Body != "<script>window.__pwned=2</script>" || seen.Cell != "<i>09:00</i>" || !strings.Contains(seen.Link, "<a href=") ||
		seen.List != "<iframe src=/></iframe>" || !strings.Contains(seen.Item, `<svg onload="window.__pwned=4"></svg>ready`) {
		t.Errorf("content as shown: %+v; want every string as the producer sent it, as text", seen)
	}
	if len(seen.Elements) > 0 || seen.Pwned != nil {
		t.Errorf("feed markup became elements %v (and ran: %v); want text only", seen.Elements, seen.Pwned)
	}
	if !seen.Key.IsKey || seen.Key.Extractable || !seen.Key.ExportRejected {
		t.Errorf("device key %+v: want a non-extractable CryptoKey whose export is refused", seen.Key)
	}
	if seen.Watch.Persist == 0 || !slices.Contains(seen.Watch.WakeLock, "screen") {
		t.Errorf("asked the browser for: %+v; want persistent storage (the key must not be evicted) and a screen wake lock", seen.Watch)
	}
	if seen.Watch.Console != 0 || seen.Watch.WebStorage != 0 || seen.LS != 0 || seen.SS != 0 || len(seen.CSP) != 0 {
		t.Errorf("console calls %d, Web Storage writes %d (local %d, session %d), CSP refusals %v; want none",
			seen.Watch.Console, seen.Watch.WebStorage, seen.LS, seen.SS, seen.CSP)
	}
}

// pollWatchJS records each pairing poll the app makes: when (ms) and the server's answer.
const pollWatchJS = `(() => {
  window.__polls = [];
  const orig = window.fetch;
  window.fetch = async function (input, init) {
    const url = typeof input === 'string' ? input : input.url;
    const at = performance.now();
    const res = await orig.apply(this, arguments);
    if (url.endsWith('/poll')) {
      let code = String(res.status);
      try { code = (await res.clone().json()).error || code; } catch {}
      window.__polls.push({at, code});
    }
    return res;
  };
})();`

// TestAppPollSlowsDownOnSlowDown: the app polls its pairing request at the interval the
// server gave, and after a slow_down waits 5 s longer (RFC 8628 §3.5). The server's
// pairing clock runs at a quarter of real speed, so the app's polls, on time by the
// app's clock, come too early by the server's: a real slow_down from the real server.
func TestAppPollSlowsDownOnSlowDown(t *testing.T) {
	start := time.Now()
	slow := func() time.Time { return start.Add(time.Since(start) / 4) }
	s := startAppStack(t, slow)
	ctx := newBrowser(t, pollWatchJS)
	if err := chromedp.Do(ctx, chromedp.Navigate(s.url+"/")); err != nil {
		t.Fatal(err)
	}
	type poll struct {
		At   float64
		Code string
	}
	var polls []poll
	deadline := time.Now().Add(60 * time.Second)
	for len(polls) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("polls within 60 s: %+v; want 3", polls)
		}
		time.Sleep(250 * time.Millisecond)
		evalJSON(t, ctx, `Promise.resolve(JSON.stringify(window.__polls || []))`, &polls)
	}
	gap1 := time.Duration((polls[1].At - polls[0].At) * float64(time.Millisecond))
	gap2 := time.Duration((polls[2].At - polls[1].At) * float64(time.Millisecond))
	t.Logf("polls %+v; gaps %v, %v", polls, gap1, gap2)
	if polls[0].Code != "authorization_pending" || polls[1].Code != "slow_down" {
		t.Fatalf("answers %+v; want authorization_pending, then slow_down (the server's clock is slow)", polls)
	}
	if gap2 < gap1+4*time.Second {
		t.Fatalf("after slow_down the app polled %v after the previous poll, before it %v apart; want 5 s more", gap2, gap1)
	}
}
