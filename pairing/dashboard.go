package pairing

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
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
	maxPINMinutes = int(MaxPINTTL / time.Minute)
)

// knownAuditTypes fill the audit page's filter; any other valid type may be asked for
// in the URL.
var knownAuditTypes = []string{
	"pair_ok", "pair_fail", "pin_issued", "token_refused", "auth_fail", "duplicate_refused",
	"device_revoked", "pair_request", "pair_approved", "pair_denied", "pair_approve_fail",
	"admin_login", "admin_login_fail", "admin_logout", "admin_password_set",
	"admin_token_created", "admin_token_revoked", "producer_key_created", "producer_key_deleted",
	"test_event_sent", "producer_refused",
}

var auditTypeRe = regexp.MustCompile(`^[a-z][a-z_]{0,39}$`)

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
}

// dashboard is the browser admin UI under /admin: server-rendered pages, a session
// cookie, and CSRF protection on every form (Go's CrossOriginProtection plus a
// per-session token).
type dashboard struct {
	a        *Authority
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

// RegisterDashboard adds the dashboard (/admin, /admin/...) and the password call of
// the admin API (POST /api/admin/password, for `kioskfeed admin passwd`) to mux.
// Call EnsureAdminPassword at start-up as well, so that there is a password to log in
// with.
func (a *Authority) RegisterDashboard(mux *http.ServeMux) {
	d, err := newDashboard(a)
	if err != nil {
		// Templates and files are compiled in and covered by tests; the key was
		// already derived from in New. Neither can fail in a built binary.
		panic("pairing: dashboard: " + err.Error())
	}
	page := func(h sessionHandler) http.Handler { return d.headers(d.withSession(h)) }
	form := func(h sessionHandler) http.Handler {
		return d.headers(d.cop.Handler(d.withSession(d.checkCSRF(h))))
	}
	mux.Handle("GET /admin", page(d.devicesPage))
	mux.Handle("GET /admin/{$}", d.headers(redirectTo("/admin")))
	mux.Handle("GET /admin/login", d.headers(http.HandlerFunc(d.loginPage)))
	mux.Handle("POST /admin/login", d.headers(d.cop.Handler(http.HandlerFunc(d.login))))
	mux.Handle("POST /admin/logout", d.headers(d.cop.Handler(http.HandlerFunc(d.logout))))
	mux.Handle("GET /admin/live", d.headers(http.HandlerFunc(d.live)))
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
	mux.Handle("POST /api/admin/password", a.adminOnly(a.handleSetPassword))
}

func newDashboard(a *Authority) (*dashboard, error) {
	key, err := DeriveKey(a.cfg.SigningKeys[0], "kioskfeed csrf", 32)
	if err != nil {
		return nil, err
	}
	d := &dashboard{
		a: a, sessions: &sessionStore{a: a}, csrfKey: key,
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
		"short":   shortKey,
		"code":    NormalizePIN,
	}
	for _, name := range []string{"login", "devices", "pin", "approve", "producers", "audit", "events", "error"} {
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
type sessionHandler func(w http.ResponseWriter, r *http.Request, s session)

// currentSession returns the request's live session, if any.
func (d *dashboard) currentSession(r *http.Request) (session, bool, error) {
	c, err := r.Cookie(d.a.sessionCookieName())
	if err != nil {
		return session{}, false, nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	s, ok, err := d.sessions.get(ctx, c.Value, d.a.cfg.Now())
	if err != nil {
		return session{}, false, d.a.unavailable("get admin session", err)
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
	return func(w http.ResponseWriter, r *http.Request, s session) {
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
func (d *dashboard) base(s session, title, nav string) view {
	return view{Title: title, Nav: nav, CSRF: csrfToken(d.csrfKey, s.id)}
}

// ---- login and logout ----

type loginBody struct{ Next string }

func (d *dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if _, ok, err := d.currentSession(r); err == nil && ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	d.render(w, http.StatusOK, "login", view{Title: "Log in", Notice: notices[r.URL.Query().Get("notice")], Body: loginBody{Next: next}})
}

func (d *dashboard) login(w http.ResponseWriter, r *http.Request) {
	a := d.a
	remote := a.addr.Of(r)
	if err := parseForm(w, r); err != nil {
		d.fail(w, err)
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	v := view{Title: "Log in", Body: loginBody{Next: next}}
	// Wrong passwords are counted (below); once the address's allowance is used up,
	// every attempt is refused before the bcrypt comparison. Bad bearer tokens have an
	// allowance of their own, so they cannot shut the login.
	if blocked, wait := a.loginFails.blocked(remote); blocked {
		secs := max(int(math.Ceil(wait.Seconds())), 1)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		v.Error = fmt.Sprintf("Too many attempts from your address. Try again in %d seconds.", secs)
		d.render(w, http.StatusTooManyRequests, "login", v)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	hash, err := d.sessions.passwordHash(ctx)
	if err != nil {
		d.fail(w, a.unavailable("get admin password", err))
		return
	}
	if hash == nil {
		v.Error = "No dashboard password is set yet. Set one with: kioskfeed admin passwd"
		d.render(w, http.StatusServiceUnavailable, "login", v)
		return
	}
	ok, err := d.checkPassword(ctx, hash, r.PostForm.Get("password"))
	if err != nil {
		d.errorPage(w, http.StatusServiceUnavailable, "Busy", "The server is busy; try again in a moment.")
		return
	}
	if !ok {
		a.loginFails.allow(remote)
		a.audit("admin_login_fail", "", "", remote, "wrong dashboard password")
		a.log.Info("dashboard login refused", slog.String("remote_addr", remote))
		v.Error = "That password is not right."
		d.render(w, http.StatusUnauthorized, "login", v)
		return
	}
	// A new id at every login: a session id planted before login is worth nothing.
	if c, err := r.Cookie(a.sessionCookieName()); err == nil {
		_ = d.sessions.end(ctx, c.Value)
	}
	s, err := d.sessions.create(ctx, a.cfg.Now(), remote, r.UserAgent())
	if err != nil {
		d.fail(w, a.unavailable("create admin session", err))
		return
	}
	http.SetCookie(w, a.sessionCookie(s.id, int(SessionTTL/time.Second)))
	a.auditCtx(broker.WithActor(r.Context(), broker.ActorDashboard), "admin_login", "", "", remote, "dashboard login")
	a.log.Info("dashboard login", slog.String("remote_addr", remote))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// checkPassword compares in one of loginSlots, waiting for a free one.
func (d *dashboard) checkPassword(ctx context.Context, hash []byte, password string) (bool, error) {
	if password == "" || len(password) > 1024 {
		return false, nil
	}
	select {
	case d.loginSlots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-d.loginSlots }()
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil, nil
}

func (d *dashboard) logout(w http.ResponseWriter, r *http.Request) {
	a := d.a
	s, ok, err := d.currentSession(r)
	if err != nil {
		d.fail(w, err)
		return
	}
	if ok {
		if err := parseForm(w, r); err != nil {
			d.fail(w, err)
			return
		}
		if !validCSRF(d.csrfKey, s.id, r.PostForm.Get("csrf_token")) {
			d.errorPage(w, http.StatusForbidden, "Refused", "This form has expired or did not come from this dashboard. Go back, reload the page and try again.")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := d.sessions.end(ctx, s.id); err != nil {
			d.fail(w, a.unavailable("end admin session", err))
			return
		}
		remote := a.addr.Of(r)
		a.auditCtx(broker.WithActor(r.Context(), broker.ActorDashboard), "admin_logout", "", "", remote, "dashboard logout")
		a.log.Info("dashboard logout", slog.String("remote_addr", remote))
	}
	http.SetCookie(w, a.sessionCookie("", -1))
	http.Redirect(w, r, "/admin/login?notice=logged_out", http.StatusSeeOther)
}

// live is the dashboard's live count, polled by its script.
func (d *dashboard) live(w http.ResponseWriter, r *http.Request) {
	_, ok, err := d.currentSession(r)
	if err != nil {
		httpx.WriteError(w, err)
		return
	}
	if !ok {
		httpx.WriteError(w, httpx.Errorf(httpx.CodeInvalidToken, "log in to the dashboard first"))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]int{"online": d.a.cfg.OnlineCount()})
}

// ---- devices and PINs ----

type feedGroup struct {
	Name    string
	Online  int
	Devices []DeviceView
}

type devicesBody struct {
	Online   int
	Feeds    []feedGroup
	Form     pinForm
	Requests []PairRequestView // open pair requests, oldest first
}

type pinForm struct {
	Feed    string
	Minutes int
	Replace bool
}

func (d *dashboard) devicesPage(w http.ResponseWriter, r *http.Request, s session) {
	v := d.base(s, "Devices", "devices")
	v.Notice = notices[r.URL.Query().Get("notice")]
	d.renderDevices(w, r, http.StatusOK, v, pinForm{Minutes: int(DefaultPINTTL / time.Minute)})
}

func (d *dashboard) renderDevices(w http.ResponseWriter, r *http.Request, status int, v view, form pinForm) {
	requests, err := d.a.OpenPairRequests(r.Context())
	if err != nil {
		d.fail(w, err)
		return
	}
	var groups []feedGroup
	for _, dv := range d.a.DeviceViews("") { // sorted by feed
		if len(groups) == 0 || groups[len(groups)-1].Name != dv.Feed {
			groups = append(groups, feedGroup{Name: dv.Feed})
		}
		g := &groups[len(groups)-1]
		g.Devices = append(g.Devices, dv)
		if dv.Online {
			g.Online++
		}
	}
	v.Body = devicesBody{Online: d.a.cfg.OnlineCount(), Feeds: groups, Form: form, Requests: requests}
	d.render(w, status, "devices", v)
}

type pinBody struct {
	Code      string
	Feed      string
	ExpiresAt time.Time
	Replace   bool
	Minutes   int
}

func (d *dashboard) issuePIN(w http.ResponseWriter, r *http.Request, s session) {
	a := d.a
	form := pinForm{Feed: strings.TrimSpace(r.PostForm.Get("feed")), Replace: r.PostForm.Get("replace") != ""}
	minutes, err := strconv.Atoi(strings.TrimSpace(r.PostForm.Get("ttl")))
	form.Minutes = minutes
	var problem string
	switch {
	case !broker.ValidFeedID(form.Feed):
		problem = "A feed id is lower-case letters, digits and hyphens, such as lobby or floor-2."
	case err != nil || minutes < 1 || minutes > maxPINMinutes:
		problem = fmt.Sprintf("A PIN can be valid for 1 to %d minutes.", maxPINMinutes)
	}
	if problem != "" {
		v := d.base(s, "Devices", "devices")
		v.Error = problem
		d.renderDevices(w, r, http.StatusBadRequest, v, form)
		return
	}
	pin, err := a.pins.issue(r.Context(), form.Feed, time.Duration(minutes)*time.Minute, form.Replace)
	if err != nil {
		d.fail(w, a.unavailable("issue pin", err))
		return
	}
	detail := "expires " + pin.ExpiresAt.Format(time.RFC3339) + ", from the dashboard"
	if form.Replace {
		detail += ", replaces the feed's devices"
	}
	a.auditCtx(r.Context(), "pin_issued", form.Feed, "", a.addr.Of(r), detail)
	v := d.base(s, "Pairing PIN", "devices")
	v.Body = pinBody{Code: pin.PIN, Feed: pin.Feed, ExpiresAt: pin.ExpiresAt, Replace: pin.Replace, Minutes: minutes}
	d.render(w, http.StatusOK, "pin", v)
}

func (d *dashboard) revoke(w http.ResponseWriter, r *http.Request, _ session) {
	a := d.a
	id := r.PathValue("id")
	dev, _ := a.devices.Device(id)
	ok := false
	if recordIDRe.MatchString(id) {
		var err error
		if ok, err = a.devices.revoke(r.Context(), id); err != nil {
			d.fail(w, a.unavailable("revoke device", err))
			return
		}
	}
	if !ok {
		d.errorPage(w, http.StatusNotFound, "No such device", "There is no device with that id; it may have been revoked already.")
		return
	}
	remote := a.addr.Of(r)
	a.auditCtx(r.Context(), "device_revoked", dev.Feed, id, remote, "revoked by an administrator in the dashboard")
	a.log.Info("device revoked", slog.String("device_id", id), slog.String("feed", dev.Feed), slog.String("remote_addr", remote))
	http.Redirect(w, r, "/admin?notice=revoked", http.StatusSeeOther)
}

// ---- producer keys ----

type producersBody struct {
	Keys    []broker.ProducerKey
	Created *createdKey
	Form    producerForm
}

type createdKey struct {
	broker.ProducerKey
	Key string
}

type producerForm struct{ Name, Feeds string }

func (d *dashboard) producersPage(w http.ResponseWriter, r *http.Request, s session) {
	v := d.base(s, "Producer keys", "producers")
	v.Notice = notices[r.URL.Query().Get("notice")]
	d.renderProducers(w, http.StatusOK, v, nil, producerForm{})
}

func (d *dashboard) renderProducers(w http.ResponseWriter, status int, v view, created *createdKey, form producerForm) {
	keys := d.a.b.ProducerKeys()
	slices.SortFunc(keys, func(x, y broker.ProducerKey) int { return x.Created.Compare(y.Created) })
	v.Body = producersBody{Keys: keys, Created: created, Form: form}
	d.render(w, status, "producers", v)
}

func (d *dashboard) createProducer(w http.ResponseWriter, r *http.Request, s session) {
	a := d.a
	form := producerForm{Name: r.PostForm.Get("name"), Feeds: r.PostForm.Get("feeds")}
	var feeds []string
	for f := range strings.SplitSeq(form.Feeds, ",") {
		if f = strings.TrimSpace(f); f != "" {
			feeds = append(feeds, f)
		}
	}
	rec, key, err := a.b.CreateProducerKey(r.Context(), form.Name, feeds)
	v := d.base(s, "Producer keys", "producers")
	var e *httpx.Error
	if errors.As(err, &e) && e.Code == httpx.CodeInvalidRequest {
		v.Error = e.Message
		d.renderProducers(w, http.StatusBadRequest, v, nil, form)
		return
	}
	if err != nil {
		d.fail(w, err)
		return
	}
	remote := a.addr.Of(r)
	a.auditCtx(r.Context(), "producer_key_created", "", "", remote, "key "+rec.ID+" ("+rec.Name+") for "+strings.Join(rec.Feeds, ","))
	a.log.Info("producer key created", slog.String("id", rec.ID), slog.String("name", rec.Name), slog.String("remote_addr", remote))
	d.renderProducers(w, http.StatusOK, v, &createdKey{ProducerKey: rec, Key: key}, producerForm{})
}

func (d *dashboard) deleteProducer(w http.ResponseWriter, r *http.Request, _ session) {
	a := d.a
	id := r.PathValue("id")
	if !recordIDRe.MatchString(id) {
		d.errorPage(w, http.StatusNotFound, "No such key", "There is no producer key with that id.")
		return
	}
	if err := a.b.DeleteProducerKey(r.Context(), id); err != nil {
		d.fail(w, err)
		return
	}
	remote := a.addr.Of(r)
	a.auditCtx(r.Context(), "producer_key_deleted", "", "", remote, "key "+id)
	a.log.Info("producer key deleted", slog.String("id", id), slog.String("remote_addr", remote))
	http.Redirect(w, r, "/admin/producers?notice=key_deleted", http.StatusSeeOther)
}

// ---- audit ----

type auditBody struct {
	Type    string
	Types   []string
	Records []broker.AuditRecord
	Limit   int
}

func (d *dashboard) auditPage(w http.ResponseWriter, r *http.Request, s session) {
	v := d.base(s, "Audit log", "audit")
	typ := r.URL.Query().Get("type")
	types := knownAuditTypes
	if typ != "" && !auditTypeRe.MatchString(typ) {
		v.Error = "That is not an audit type; showing every type."
		typ = ""
	}
	if typ != "" && !slices.Contains(types, typ) {
		types = append(slices.Clone(types), typ)
	}
	recs, err := d.a.b.AuditList(r.Context(), typ, auditPageSize)
	if err != nil {
		d.fail(w, err)
		return
	}
	v.Body = auditBody{Type: typ, Types: types, Records: recs, Limit: auditPageSize}
	d.render(w, http.StatusOK, "audit", v)
}

// ---- test events ----

type eventsBody struct {
	Form   eventForm
	Feeds  []string
	Result *broker.PublishResult
	Failed string
}

type eventForm struct{ Feed, Kind, Data, ID string }

func (d *dashboard) eventsPage(w http.ResponseWriter, r *http.Request, s session) {
	d.renderEvents(w, http.StatusOK, d.base(s, "Test events", "events"), eventsBody{Form: eventForm{Kind: broker.KindState, Data: "{}"}})
}

func (d *dashboard) renderEvents(w http.ResponseWriter, status int, v view, body eventsBody) {
	for _, dv := range d.a.DeviceViews("") {
		if !slices.Contains(body.Feeds, dv.Feed) {
			body.Feeds = append(body.Feeds, dv.Feed)
		}
	}
	v.Body = body
	d.render(w, status, "events", v)
}

func (d *dashboard) sendEvent(w http.ResponseWriter, r *http.Request, s session) {
	a := d.a
	form := eventForm{
		Feed: strings.TrimSpace(r.PostForm.Get("feed")), Kind: r.PostForm.Get("kind"),
		Data: r.PostForm.Get("data"), ID: strings.TrimSpace(r.PostForm.Get("id")),
	}
	v := d.base(s, "Test events", "events")
	res, err := a.b.Publish(r.Context(), form.Feed, broker.EventInput{ID: form.ID, Kind: form.Kind, Data: json.RawMessage(form.Data)})
	if err != nil {
		var e *httpx.Error
		if !errors.As(err, &e) {
			a.log.Warn("test event", slog.String("feed", form.Feed), slog.String("error", err.Error()))
			e = broker.ErrUnavailable
		}
		d.renderEvents(w, httpx.Status(e.Code), v, eventsBody{Form: form, Failed: e.Message})
		return
	}
	remote := a.addr.Of(r)
	a.auditCtx(r.Context(), "test_event_sent", form.Feed, "", remote, fmt.Sprintf("%s event %s, seq %d, from the dashboard", form.Kind, res.ID, res.Seq))
	a.log.Info("test event sent", slog.String("feed", form.Feed), slog.Uint64("seq", res.Seq), slog.String("remote_addr", remote))
	form.ID = "" // the next send is a new event unless the admin means otherwise
	d.renderEvents(w, http.StatusOK, v, eventsBody{Form: form, Result: &res})
}

// ---- formatting ----

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// ago says how long ago, roughly, in the words a person would use.
func ago(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return "just now"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + " s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + " min ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " h ago"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + " days ago"
}

// shortUserAgent names the browser and the system of a User-Agent string, such as
// "Chrome 126 on Android", or shortens it when it is not a browser's.
func shortUserAgent(ua string) string {
	if ua == "" {
		return "unknown"
	}
	browser := ""
	for _, b := range []struct{ token, name string }{
		{"Edg/", "Edge"}, {"SamsungBrowser/", "Samsung Internet"}, {"Firefox/", "Firefox"},
		{"CriOS/", "Chrome"}, {"Chrome/", "Chrome"}, {"Version/", "Safari"},
	} {
		if _, rest, ok := strings.Cut(ua, b.token); ok {
			version, _, _ := strings.Cut(rest, ".")
			version, _, _ = strings.Cut(version, " ")
			browser = b.name + " " + version
			break
		}
	}
	system := ""
	for _, s := range []struct{ token, name string }{
		{"iPad", "iPadOS"}, {"iPhone", "iOS"}, {"Android", "Android"}, {"CrOS", "ChromeOS"},
		{"Windows", "Windows"}, {"Mac OS X", "macOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, s.token) {
			system = s.name
			break
		}
	}
	switch {
	case browser != "" && system != "":
		return browser + " on " + system
	case browser != "":
		return browser
	case len(ua) > 40:
		return truncate(ua, 39) + "…"
	}
	return ua
}
