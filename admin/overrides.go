package admin

// The emergency overrides (docs/protocol.md §6, #http-post-api-admin-overrides): the
// admin API that raises, lists and clears them, with which screens acknowledged each,
// and the dashboard page that does the same. broker.Overrides stores them; the bridge
// delivers them.

import (
	"cmp"
	"context"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// maxOverrideBody bounds a raise's JSON body: a body of 2,000 characters, each up to
// 4 bytes of UTF-8 or a 12-byte escaped surrogate pair, and the rest.
const maxOverrideBody = 32 << 10

// OverrideScreen is one device of an override's feeds, and whether it showed it.
type OverrideScreen struct {
	ID       string     `json:"device_id"`
	Name     string     `json:"name"`
	Feed     string     `json:"feed"`
	Online   bool       `json:"online"`
	LastSeen *time.Time `json:"last_seen"`
	ShownAt  *time.Time `json:"shown_at"`
}

// OverrideView is an active override as GET /api/admin/overrides lists it.
type OverrideView struct {
	broker.Override
	Shown   int              `json:"shown"`
	Devices int              `json:"devices"`
	Screens []OverrideScreen `json:"screens"`
}

func (a *Admin) registerOverrides(mux *http.ServeMux) {
	mux.Handle("POST /api/admin/overrides", httpx.HandlerFunc(a.handleRaiseOverride))
	mux.Handle("GET /api/admin/overrides", a.adminOnly(a.handleListOverrides))
	mux.Handle("DELETE /api/admin/overrides/{id}", httpx.HandlerFunc(a.handleClearOverride))
	d := a.dash
	mux.Handle("GET /admin/overrides", d.headers(d.withSession(d.overridesPage)))
	mux.Handle("POST /admin/overrides", d.headers(d.cop.Handler(d.withSession(d.checkCSRF(d.raiseOverride)))))
	mux.Handle("POST /admin/overrides/{id}/clear", d.headers(d.cop.Handler(d.withSession(d.checkCSRF(d.clearOverride)))))
}

// raiseOverride stores in and audits it; ctx carries the actor.
func (a *Admin) raiseOverride(r *http.Request, in broker.OverrideInput, via string) (broker.Override, error) {
	ov, err := a.overrides.Raise(r.Context(), in, broker.ActorOf(r.Context()))
	if err != nil {
		return ov, err
	}
	detail := "override " + ov.ID + " (" + ov.Level + ") for " + strings.Join(ov.Feeds, ",") +
		", expires " + ov.ExpiresAt.Format(time.RFC3339) + via + ": " + ov.Title
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditOverrideRaised), RemoteAddr: a.addr.Of(r), Detail: detail})
	a.log.Info("override raised", slog.String("id", ov.ID), slog.String("level", ov.Level), slog.String("feeds", strings.Join(ov.Feeds, ",")))
	return ov, nil
}

// clearOverride clears id and audits it; ok is false for an id that is not active.
func (a *Admin) clearOverride(r *http.Request, id, via string) (bool, error) {
	ov, ok, err := a.overrides.Clear(r.Context(), id)
	if err != nil || !ok {
		return false, err
	}
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditOverrideCleared), RemoteAddr: a.addr.Of(r),
		Detail: "override " + ov.ID + " for " + strings.Join(ov.Feeds, ",") + via + ": " + ov.Title})
	a.log.Info("override cleared", slog.String("id", ov.ID))
	return true, nil
}

// alerter authorizes a raise or a clear: an administrator (key nil), or a producer key
// with the alert scope (broker.ScopeAlert), whose feeds the caller then checks with
// mayAlert. A bad producer key counts against the address's bearer-token allowance, as
// a bad admin token does. r's context carries the actor afterwards.
func (a *Admin) alerter(r *http.Request) (*http.Request, *broker.ProducerKey, error) {
	tok := httpx.Bearer(r)
	if !strings.HasPrefix(tok, "kfp.") {
		actor, err := a.AuthorizeAdmin(r)
		if err != nil {
			return r, nil, err
		}
		return r.WithContext(broker.WithActor(r.Context(), actor)), nil, nil
	}
	remote := a.addr.Of(r)
	if blocked, wait := a.bearerFails.Blocked(remote); blocked {
		return r, nil, httpx.RateLimited(wait)
	}
	key, ok := a.b.AuthenticateProducer(r.Context(), tok)
	if !ok {
		a.bearerFails.Allow(remote)
		return r, nil, &httpx.Error{Code: httpx.CodeInvalidToken, Message: "unknown or deleted producer key"}
	}
	if !key.HasScope(broker.ScopeAlert) {
		return r, nil, httpx.Errorf(httpx.CodeForbidden, `this producer key has no "alert" scope: it may not raise or clear overrides`)
	}
	return r.WithContext(broker.WithActor(r.Context(), broker.ProducerKeyActor(key.ID))), &key, nil
}

// mayAlert checks that a producer key (nil: an administrator) covers every feed of an
// override; "*" (every feed) needs a key for every feed (feeds ["*"]). A refusal is
// audited as producer_refused.
func (a *Admin) mayAlert(r *http.Request, key *broker.ProducerKey, feeds []string) error {
	if key == nil {
		return nil
	}
	for _, f := range feeds {
		if !key.Allows(f) {
			a.b.Audit(broker.AuditRecord{Type: string(broker.AuditProducerRefused), Feed: f, RemoteAddr: a.addr.Of(r),
				Actor: broker.ProducerKeyActor(key.ID), Detail: "an override for a feed the key may not publish to"})
			return httpx.Errorf(httpx.CodeForbidden, "this producer key may not raise or clear overrides for feed "+strconv.Quote(f))
		}
	}
	return nil
}

func (a *Admin) handleRaiseOverride(w http.ResponseWriter, r *http.Request) error {
	r, key, err := a.alerter(r)
	if err != nil {
		return err
	}
	body, err := httpx.ReadJSONBody(w, r, maxOverrideBody)
	if err != nil {
		return err
	}
	var in broker.OverrideInput
	if err := httpx.StrictJSON(body, &in); err != nil {
		return err
	}
	if key != nil {
		for _, f := range in.Feeds { // refused as malformed by Raise unless well formed
			if f != broker.AllFeeds && !broker.ValidFeedID(f) {
				return httpx.Errorf(httpx.CodeInvalidRequest, `each of "feeds" must be a feed id (^[a-z0-9][a-z0-9-]{0,62}$) or "*" for every feed`)
			}
		}
		if err := a.mayAlert(r, key, in.Feeds); err != nil {
			return err
		}
	}
	ov, err := a.raiseOverride(r, in, "")
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, ov)
	return nil
}

func (a *Admin) handleListOverrides(w http.ResponseWriter, r *http.Request) error {
	views, err := a.OverrideViews(r.Context())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, views)
	return nil
}

func (a *Admin) handleClearOverride(w http.ResponseWriter, r *http.Request) error {
	r, key, err := a.alerter(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if key != nil {
		ov, ok := a.overrides.Get(id)
		if !ok {
			return httpx.Errorf(httpx.CodeNotFound, "no active override with that id")
		}
		if err := a.mayAlert(r, key, ov.Feeds); err != nil {
			return err
		}
	}
	ok, err := a.clearOverride(r, id, "")
	if err != nil {
		return err
	}
	if !ok {
		return httpx.Errorf(httpx.CodeNotFound, "no active override with that id")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// OverrideViews lists the active overrides, oldest first, each with the devices of its
// feeds and which of them acknowledged it (on any instance).
func (a *Admin) OverrideViews(ctx context.Context) ([]OverrideView, error) {
	active := a.overrides.Active()
	out := make([]OverrideView, 0, len(active))
	if len(active) == 0 {
		return out, nil
	}
	devices := a.DeviceViews("")
	for _, ov := range active {
		shown, err := a.overrides.Shown(ctx, ov.ID)
		if err != nil {
			return nil, err
		}
		v := OverrideView{Override: ov, Screens: []OverrideScreen{}}
		for _, d := range devices {
			if !ov.Covers(d.Feed) {
				continue
			}
			sc := OverrideScreen{ID: d.ID, Name: d.Name, Feed: d.Feed, Online: d.Online, LastSeen: d.LastSeen}
			if at, ok := shown[d.ID]; ok {
				sc.ShownAt = &at
				v.Shown++
			}
			v.Screens = append(v.Screens, sc)
		}
		v.Devices = len(v.Screens)
		// Those that have not shown it first: they are what an operator looks for.
		slices.SortStableFunc(v.Screens, func(x, y OverrideScreen) int {
			return cmp.Compare(boolInt(x.ShownAt != nil), boolInt(y.ShownAt != nil))
		})
		out = append(out, v)
	}
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// The dashboard page.

type overrideForm struct {
	Feeds, Title, Body, Level, Expires string
}

type overridesBody struct {
	Overrides []OverrideView
	Form      overrideForm
	Feeds     []string // feeds with devices, for the form's hint
}

var overrideNotices = map[string]string{
	"raised":  "The override is raised: every tablet of its feeds shows it now.",
	"cleared": "The override is cleared: its tablets show their feed again.",
}

// parseOverridesPage adds the page's template to the dashboard's.
func (d *dashboard) parseOverridesPage() error {
	funcs := template.FuncMap{
		"ts":      formatTime,
		"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"join":    strings.Join,
	}
	t, err := template.New("overrides").Funcs(funcs).ParseFS(webFS, "web/templates/layout.html", "web/templates/overrides.html")
	if err != nil {
		return err
	}
	d.pages["overrides"] = t
	return nil
}

func (d *dashboard) overridesPage(w http.ResponseWriter, r *http.Request, s adminSession) {
	v := d.base(s, "Overrides", "overrides")
	v.Notice = overrideNotices[r.URL.Query().Get("notice")]
	d.renderOverrides(w, r, http.StatusOK, v, overrideForm{Feeds: "*", Level: broker.DefaultOverrideLevel, Expires: "1h"})
}

func (d *dashboard) renderOverrides(w http.ResponseWriter, r *http.Request, status int, v view, form overrideForm) {
	views, err := d.a.OverrideViews(r.Context())
	if err != nil {
		d.fail(w, err)
		return
	}
	v.Body = overridesBody{Overrides: views, Form: form, Feeds: d.feeds()}
	d.render(w, status, "overrides", v)
}

func (d *dashboard) raiseOverride(w http.ResponseWriter, r *http.Request, s adminSession) {
	f := r.PostForm
	form := overrideForm{Feeds: strings.TrimSpace(f.Get("feeds")), Title: f.Get("title"), Body: f.Get("body"),
		Level: f.Get("level"), Expires: strings.TrimSpace(f.Get("expires_in"))}
	in := broker.OverrideInput{Title: form.Title, Body: strings.ReplaceAll(form.Body, "\r\n", "\n"), Level: form.Level, ExpiresIn: form.Expires}
	for _, feed := range strings.Split(form.Feeds, ",") {
		if feed = strings.TrimSpace(feed); feed != "" {
			in.Feeds = append(in.Feeds, feed)
		}
	}
	if _, err := d.a.raiseOverride(r, in, ", from the dashboard"); err != nil {
		if e, ok := err.(*httpx.Error); ok && e.Code == httpx.CodeInvalidRequest {
			v := d.base(s, "Overrides", "overrides")
			v.Error = e.Message
			d.renderOverrides(w, r, http.StatusBadRequest, v, form)
			return
		}
		d.fail(w, err)
		return
	}
	http.Redirect(w, r, "/admin/overrides?notice=raised", http.StatusSeeOther)
}

func (d *dashboard) clearOverride(w http.ResponseWriter, r *http.Request, _ adminSession) {
	ok, err := d.a.clearOverride(r, r.PathValue("id"), ", from the dashboard")
	if err != nil {
		d.fail(w, err)
		return
	}
	if !ok {
		d.errorPage(w, http.StatusNotFound, "No such override", "There is no active override with that id; it may have been cleared already, or expired.")
		return
	}
	http.Redirect(w, r, "/admin/overrides?notice=cleared", http.StatusSeeOther)
}
