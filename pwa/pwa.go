package pwa

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

//go:embed static
var staticFS embed.FS

//go:embed templates
var templateFS embed.FS

// Config says how the app presents itself. Nothing in it is per device: every tablet
// loads the same bytes.
type Config struct {
	// Name shown as the app name (page titles, manifest, home-screen label). Default
	// "kioskfeed".
	Name string
	// Logger; default discard.
	Logger *slog.Logger
}

// App serves the tablet app. Everything it serves is computed once in New, so a
// request costs a map lookup and a write.
type App struct {
	assets   map[string]file // by hashed name, as under /assets/
	index    file
	help     file
	manifest file
	sw       file
}

// file is one response body with what its headers need.
type file struct {
	body  []byte
	ctype string
	etag  string
}

func newFile(body []byte, ctype string) file {
	return file{body: body, ctype: ctype, etag: `"` + shortHash(body) + `"`}
}

// Colours of the app, the manifest and the icons: a dark background keeps a lobby
// screen readable from afar and calm at night.
const (
	backgroundColor = "#0b1d2a"
	themeColor      = "#0b1d2a"
)

// contentSecurityPolicy allows nothing inline and nothing from elsewhere: the app is
// its own origin's scripts, styles, images and socket, and cannot be framed.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; worker-src 'self'; manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; " +
	"form-action 'self'; object-src 'none'"

const (
	cacheImmutable  = "public, max-age=31536000, immutable"
	cacheRevalidate = "no-cache"
)

// New embeds the app: it hashes every static file and generated icon into its URL,
// renders the pages and the service worker with those URLs, and builds the manifest.
func New(cfg Config) (*App, error) {
	name := strings.TrimSpace(cfg.Name)
	if name == "" {
		name = "kioskfeed"
	}
	if utf8.RuneCountInString(name) > 64 || strings.ContainsFunc(name, unicode.IsControl) {
		return nil, errors.New("pwa: Name must be at most 64 printable characters")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &App{assets: map[string]file{}}

	// urls maps a source name (app.css, icon-192.png) to its hashed URL; the modules
	// (static/*.js) are named by buildModules.
	urls := map[string]string{}
	add := func(name string, body []byte) error {
		ext := path.Ext(name)
		ctype, ok := contentTypes[ext]
		if !ok {
			return fmt.Errorf("pwa: no content type for %s", name)
		}
		hashed := strings.TrimSuffix(name, ext) + "." + shortHash(body) + ext
		a.assets[hashed] = newFile(body, ctype)
		urls[name] = "/assets/" + hashed
		return nil
	}
	entries, err := fs.ReadDir(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("pwa: read static files: %w", err)
	}
	modules := map[string][]byte{}
	for _, e := range entries {
		body, err := staticFS.ReadFile("static/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("pwa: read %s: %w", e.Name(), err)
		}
		if path.Ext(e.Name()) == ".js" {
			modules[e.Name()] = body // named together below, since they import each other
			continue
		}
		if err := add(e.Name(), body); err != nil {
			return nil, err
		}
	}
	mods, err := buildModules(modules)
	if err != nil {
		return nil, err
	}
	for name, body := range mods.files {
		a.assets[name] = newFile(body, contentTypes[".js"])
	}
	for _, ic := range icons {
		if err := add(ic.file, ic.render()); err != nil {
			return nil, err
		}
	}

	page := pageData{
		Name: name, ShortName: shortName(name), ThemeColor: themeColor,
		JS: mods.entry, Modules: mods.preload,
		CSS: urls["app.css"], Icon: urls["icon-192.png"], AppleIcon: urls["apple-touch-icon.png"],
	}
	tmpl, err := template.ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("pwa: parse pages: %w", err)
	}
	for _, p := range []struct {
		tmpl string
		dst  *file
	}{{"index.html", &a.index}, {"help.html", &a.help}} {
		var buf bytes.Buffer
		if err := tmpl.ExecuteTemplate(&buf, p.tmpl, page); err != nil {
			return nil, fmt.Errorf("pwa: render %s: %w", p.tmpl, err)
		}
		*p.dst = newFile(buf.Bytes(), "text/html; charset=utf-8")
	}

	m, err := json.MarshalIndent(buildManifest(name, urls), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("pwa: manifest: %w", err)
	}
	a.manifest = newFile(m, "application/manifest+json")

	sw, version, err := a.renderServiceWorker()
	if err != nil {
		return nil, err
	}
	a.sw = newFile(sw, "text/javascript; charset=utf-8")
	log.Debug("tablet app ready", slog.Int("assets", len(a.assets)), slog.String("cache_version", version))
	return a, nil
}

// Register adds the app's routes to mux. The root is "GET /{$}" so that unknown paths
// stay 404s instead of all becoming the app.
func (a *App) Register(mux *http.ServeMux) {
	mux.Handle("GET /{$}", a.serve(a.index, cacheRevalidate))
	mux.Handle("GET /help", a.serve(a.help, cacheRevalidate))
	mux.Handle("GET /manifest.webmanifest", a.serve(a.manifest, cacheRevalidate))
	mux.Handle("GET /sw.js", a.serve(a.sw, cacheRevalidate))
	mux.HandleFunc("GET /assets/{file}", a.handleAsset)
}

type pageData struct {
	Name, ShortName, ThemeColor string
	JS, CSS, Icon, AppleIcon    string
	// Modules are the URLs of the modules JS imports, directly or not, which the page
	// preloads: the browser fetches them at once instead of one import level per
	// round trip.
	Modules []string
}

var contentTypes = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".png": "image/png",
}

// shortName fits the label under a home-screen icon.
func shortName(name string) string {
	if utf8.RuneCountInString(name) <= 12 {
		return name
	}
	return strings.TrimSpace(string([]rune(name)[:12]))
}

func (a *App) serve(f file, cacheControl string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.write(w, r, f, cacheControl)
	})
}

func (a *App) handleAsset(w http.ResponseWriter, r *http.Request) {
	f, ok := a.assets[r.PathValue("file")]
	if !ok {
		// An old page asking for an asset of another build lands here too: answering it
		// with today's bytes under an immutable URL would pin the wrong file for a year.
		setSecurityHeaders(w.Header())
		httpx.WriteError(w, httpx.Errorf(httpx.CodeNotFound, "no such asset"))
		return
	}
	a.write(w, r, f, cacheImmutable)
}

func (a *App) write(w http.ResponseWriter, r *http.Request, f file, cacheControl string) {
	h := w.Header()
	setSecurityHeaders(h)
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", cacheControl)
	h.Set("ETag", f.etag)
	// ServeContent answers If-None-Match with 304 and HEAD without a body.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

// setSecurityHeaders goes on every answer of the package, errors included.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// renderServiceWorker fills in the cache version and the shell to precache. The
// version hashes everything in the shell, so any change to any of it makes a new
// service worker, which replaces the old cache.
func (a *App) renderServiceWorker() (body []byte, version string, err error) {
	shell := []string{"/", "/help", "/manifest.webmanifest"}
	for name := range a.assets {
		shell = append(shell, "/assets/"+name)
	}
	slices.Sort(shell[3:])
	sum := sha256.New()
	for _, f := range []file{a.index, a.help, a.manifest} {
		sum.Write([]byte(f.etag))
	}
	for _, u := range shell[3:] {
		sum.Write([]byte(u))
	}
	version = "kioskfeed-" + hex.EncodeToString(sum.Sum(nil))[:12]
	precache, err := json.Marshal(shell)
	if err != nil {
		return nil, "", fmt.Errorf("pwa: service worker: %w", err)
	}
	v, _ := json.Marshal(version)
	t, err := texttemplate.ParseFS(templateFS, "templates/sw.js")
	if err != nil {
		return nil, "", fmt.Errorf("pwa: parse service worker: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, map[string]string{"Version": string(v), "Precache": string(precache)}); err != nil {
		return nil, "", fmt.Errorf("pwa: render service worker: %w", err)
	}
	return buf.Bytes(), version, nil
}

// shortHash names content: 8 hex digits of its SHA-256.
func shortHash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:4])
}
