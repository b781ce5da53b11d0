package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// webFS holds the dashboard's templates and its two static files.
//
//go:embed web
var webFS embed.FS

// dashboardCSP allows nothing inline and nothing from elsewhere: every script and style
// is one of our own hashed files.
const dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"

// Limits of the dashboard's forms.
const (
	maxFormBytes  = 512 << 10 // a test event's data may be up to 64 KiB (or more by config)
	auditPageSize = 200
	maxPINMinutes = int(pairing.MaxPINTTL / time.Minute)
)

// recordIDRe is what a device or producer key id in a dashboard URL may look like: a
// KV key token, so that a made-up id is "not found" rather than a store error.
var recordIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// notices are the fixed messages a redirect may ask a page to show (?notice=code), so
// that nothing from the URL is ever echoed as a message.
var notices = map[string]string{
	"revoked":     "The device was revoked. Its tablet is disconnected within seconds and must be paired again.",
	"key_deleted": "The producer key was deleted. Producers using it are refused from now on.",
	"logged_out":  "You are logged out.",
	"approved":    "The tablet is paired. It shows its feed within seconds.",
	"denied":      "The request was denied. The tablet says so and shows a new code.",

	"webhook_deleted": "The webhook was deleted. Deliveries queued for it are dropped.",
}

// dashboard is the browser admin UI under /admin: server-rendered pages, a session
// cookie, and CSRF protection on every form (Go's CrossOriginProtection plus a
// per-session token).
type dashboard struct {
	a        *Admin
	sessions *sessionStore
	pages    map[string]*template.Template
	assets   map[string]asset // by hashed name
	cssURL   string
	jsURL    string
	csrfKey  []byte
	cop      *http.CrossOriginProtection
	// loginSlots bounds concurrent bcrypt comparisons.
	loginSlots chan struct{}
}

type asset struct {
	body        []byte
	contentType string
}

// register adds the dashboard (/admin, /admin/...) to mux.
func (d *dashboard) register(mux *http.ServeMux) {
	page := func(h sessionHandler) http.Handler { return d.headers(d.withSession(h)) }
	form := func(h sessionHandler) http.Handler {
		return d.headers(d.cop.Handler(d.withSession(d.checkCSRF(h))))
	}
	mux.Handle("GET /admin", page(d.devicesPage))
	mux.Handle("GET /admin/{$}", d.headers(redirectTo("/admin")))
	mux.Handle("GET /admin/login", d.headers(http.HandlerFunc(d.loginPage)))
	mux.Handle("POST /admin/login", d.headers(d.cop.Handler(http.HandlerFunc(d.login))))
	mux.Handle("POST /admin/logout", d.headers(d.cop.Handler(http.HandlerFunc(d.logout))))
	mux.Handle("GET /admin/live", d.headers(httpx.HandlerFunc(d.live)))
	mux.Handle("GET /admin/pins", d.headers(redirectTo("/admin")))
	mux.Handle("POST /admin/pins", form(d.issuePIN))
	mux.Handle("POST /admin/devices/{id}/revoke", form(d.revoke))
	mux.Handle("GET /admin/producers", page(d.producersPage))
	mux.Handle("POST /admin/producers", form(d.createProducer))
	mux.Handle("POST /admin/producers/{id}/delete", form(d.deleteProducer))
	mux.Handle("GET /admin/approve", page(d.approvePage))
	mux.Handle("POST /admin/approve", form(d.decide))
	mux.Handle("GET /admin/audit", page(d.auditPage))
	mux.Handle("GET /admin/events", page(d.eventsPage))
	mux.Handle("POST /admin/events", form(d.sendEvent))
	mux.Handle("GET /admin/assets/{name}", d.headers(http.HandlerFunc(d.asset)))
}

func newDashboard(a *Admin) (*dashboard, error) {
	d := &dashboard{
		a: a, sessions: &sessionStore{a: a}, csrfKey: a.cfg.CSRFKey,
		pages: map[string]*template.Template{}, assets: map[string]asset{},
		cop: http.NewCrossOriginProtection(), loginSlots: make(chan struct{}, loginSlots),
	}
	if u, err := url.Parse(a.cfg.PublicURL); err == nil && u.Scheme != "" && u.Host != "" {
		// Behind a proxy that rewrites Host, our own origin still counts as ours.
		if err := d.cop.AddTrustedOrigin(u.Scheme + "://" + u.Host); err != nil {
			return nil, err
		}
	}
	d.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.log.Info("cross-origin dashboard request refused", slog.String("path", r.URL.Path),
			slog.String("origin", truncate(r.Header.Get("Origin"), 100)), slog.String("remote_addr", a.addr.Of(r)))
		d.errorPage(w, http.StatusForbidden, "Refused", "This form was sent from another site, so it was not carried out.")
	}))
	for name, file := range map[string]string{"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"} {
		body, err := fs.ReadFile(webFS, "web/static/"+name)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(body)
		ext := path.Ext(name)
		hashed := strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:6]) + ext
		d.assets[hashed] = asset{body: body, contentType: file}
		if ext == ".css" {
			d.cssURL = "/admin/assets/" + hashed
		} else {
			d.jsURL = "/admin/assets/" + hashed
		}
	}
	funcs := template.FuncMap{
		"ts":      formatTime,
		"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"ago":     func(t time.Time) string { return ago(a.cfg.Now().Sub(t)) },
		"agent":   shortUserAgent,
		"join":    strings.Join,
		"list":    func(s ...string) []string { return s },
		"short":   pairing.ShortKey,
		"code":    pairing.NormalizePIN,
		// "timeline" draws a device's last hour (timeline.go).
		"timeline": a.timelineBar,
	}
	for _, name := range []string{"login", "devices", "pin", "approve", "producers", "audit", "events", "webhooks", "error"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(webFS, "web/templates/layout.html", "web/templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		d.pages[name] = t
	}
	return d, nil
}

// headers sets the security headers of every dashboard answer. Pages are never
// cached; the hashed assets override that.
func (d *dashboard) headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", dashboardCSP)
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func redirectTo(target string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target, http.StatusSeeOther)
	})
}

func (d *dashboard) asset(w http.ResponseWriter, r *http.Request) {
	f, ok := d.assets[r.PathValue("name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("Content-Length", strconv.Itoa(len(f.body)))
	if r.Method != http.MethodHead {
		_, _ = w.Write(f.body)
	}
}

// view is what every page's template gets: the layout's fields and the page's own
// Body.
type view struct {
	Title  string
	Nav    string // the navigation entry to mark as current
	CSRF   string // empty when logged out: then there is no navigation either
	CSS    string
	JS     string
	Notice string
	Error  string
	Body   any
}

func (d *dashboard) render(w http.ResponseWriter, status int, name string, v view) {
	v.CSS, v.JS = d.cssURL, d.jsURL
	var buf bytes.Buffer
	if err := d.pages[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		d.a.log.Error("render dashboard page", slog.String("page", name), slog.String("error", err.Error()))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("internal error\n"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorBody struct{ Message string }

func (d *dashboard) errorPage(w http.ResponseWriter, status int, title, message string) {
	d.render(w, status, "error", view{Title: title, Body: errorBody{Message: message}})
}

// fail answers err: a domain error with its status and message, NATS trouble with 503,
// anything else (logged by whoever made it) with a bare 500.
func (d *dashboard) fail(w http.ResponseWriter, err error) {
	var e *httpx.Error
	if !errors.As(err, &e) {
		d.errorPage(w, http.StatusInternalServerError, "Internal error", "Something went wrong on the server. Try again; if it persists, the server log says more.")
		return
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	status := httpx.Status(e.Code)
	title := http.StatusText(status)
	if e.Code == httpx.CodeUnavailable {
		title = "Temporarily unavailable"
	}
	d.errorPage(w, status, title, e.Message)
}

// sessionHandler serves a request that has a live session.
type sessionHandler func(w http.ResponseWriter, r *http.Request, s adminSession)

// currentSession returns the request's live session, if any.
func (d *dashboard) currentSession(r *http.Request) (adminSession, bool, error) {
	c, err := r.Cookie(d.a.sessionCookieName())
	if err != nil {
		return adminSession{}, false, nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	s, ok, err := d.sessions.get(ctx, c.Value, d.a.cfg.Now())
	if err != nil {
		return adminSession{}, false, d.a.unavailable("get admin session", err)
	}
	return s, ok, nil
}

// withSession runs h with the request's session, or sends the browser to the login
// page (and back here afterwards, for a GET).
func (d *dashboard) withSession(h sessionHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok, err := d.currentSession(r)
		if err != nil {
			d.fail(w, err)
			return
		}
		if !ok {
			target := "/admin/login"
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				target += "?next=" + url.QueryEscape(r.URL.RequestURI())
			}
			http.Redirect(w, r, target, http.StatusSeeOther)
			return
		}
		h(w, r.WithContext(broker.WithActor(r.Context(), broker.ActorDashboard)), s)
	})
}

// parseForm reads a form body of at most maxFormBytes.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return httpx.Errorf(httpx.CodeTooLarge, "The form is too large.")
		}
		return httpx.Errorf(httpx.CodeInvalidRequest, "The form could not be read.")
	}
	return nil
}

// checkCSRF lets a form through only with the session's token: behind
// CrossOriginProtection, this is the second lock, for browsers that send neither
// Sec-Fetch-Site nor Origin.
func (d *dashboard) checkCSRF(h sessionHandler) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, s adminSession) {
		if err := parseForm(w, r); err != nil {
			d.fail(w, err)
			return
		}
		if !validCSRF(d.csrfKey, s.id, r.PostForm.Get("csrf_token")) {
			d.a.log.Info("dashboard form without a valid CSRF token", slog.String("path", r.URL.Path), slog.String("remote_addr", d.a.addr.Of(r)))
			d.errorPage(w, http.StatusForbidden, "Refused", "This form has expired or did not come from this dashboard. Go back, reload the page and try again.")
			return
		}
		h(w, r, s)
	}
}

// base is a view for a logged-in page.
func (d *dashboard) base(s adminSession, title, nav string) view {
	return view{Title: title, Nav: nav, CSRF: csrfToken(d.csrfKey, s.id)}
}
