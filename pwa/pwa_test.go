package pwa_test

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/html"

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
		// the code screen of the reverse pairing flow (PROTOCOL.md §3b)
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

func TestServiceWorkerPrecachesTheShell(t *testing.T) {
	srv := mustStartApp(t, pwa.Config{})
	_, sw := get(t, srv, "/sw.js")
	_, index := get(t, srv, "/")
	want := append([]string{"/", "/help", "/manifest.webmanifest"}, parsePage(t, index).assets...)
	for _, ic := range getManifest(t, srv).Icons {
		want = append(want, ic.Src)
	}
	m := regexp.MustCompile(`const PRECACHE = (\[.*\]);`).FindSubmatch(sw)
	if m == nil {
		t.Fatalf("sw.js has no PRECACHE list:\n%s", sw)
	}
	var precache []string
	if err := json.Unmarshal(m[1], &precache); err != nil {
		t.Fatalf("PRECACHE: %v", err)
	}
	for _, u := range want {
		if !slices.Contains(precache, u) {
			t.Errorf("PRECACHE %q lacks %q", precache, u)
		}
	}
	if !regexp.MustCompile(`const VERSION = "kioskfeed-[0-9a-f]{12}";`).Match(sw) {
		t.Error("sw.js has no content-derived VERSION")
	}
	for _, never := range []string{"'/api/'", "'/ws'"} {
		if !bytes.Contains(sw, []byte(never)) {
			t.Errorf("sw.js does not exclude %s", never)
		}
	}
}

func TestCacheVersionFollowsContent(t *testing.T) {
	version := func(name string) string {
		_, sw := get(t, mustStartApp(t, pwa.Config{Name: name}), "/sw.js")
		return regexp.MustCompile(`const VERSION = "([^"]+)"`).FindStringSubmatch(string(sw))[1]
	}
	if a, b := version("lobby"), version("lobby"); a != b {
		t.Errorf("same build: versions %q and %q differ", a, b)
	}
	if a, b := version("lobby"), version("entrance"); a == b {
		t.Errorf("different shell: both versions are %q", a)
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

// TestScriptRules reads app.js for what must never be in it: a token or key written
// somewhere readable, content parsed as HTML, console noise.
func TestScriptRules(t *testing.T) {
	srv := mustStartApp(t, pwa.Config{})
	_, index := get(t, srv, "/")
	var js []byte
	for _, u := range parsePage(t, index).assets {
		if strings.HasSuffix(u, ".js") {
			_, js = get(t, srv, u)
		}
	}
	if js == nil {
		t.Fatal("no script on the page")
	}
	for _, never := range []string{"console.", "localStorage", "sessionStorage", "innerHTML", "outerHTML",
		"insertAdjacentHTML", "document.write", "eval(", "new Function", "exportKey('jwk', keys.privateKey"} {
		if bytes.Contains(js, []byte(never)) {
			t.Errorf("app.js contains %q", never)
		}
	}
	for _, must := range []string{
		`crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign'])`,
		`typ: 'dpop+jwt', alg: 'ES256'`,
		`navigator.storage?.persist?.()`,
		`navigator.wakeLock.request('screen')`,
		`'/api/pair/requests'`,
		`'/poll'`,
		`'/api/pair/qr.svg?code='`,
		`case 'slow_down':`,
		`req.interval += SLOW_DOWN_S`,
		`const SLOW_DOWN_S = 5;`,
	} {
		if !bytes.Contains(js, []byte(must)) {
			t.Errorf("app.js lacks %q", must)
		}
	}
}
