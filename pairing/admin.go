package pairing

import (
	"cmp"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

func (a *Authority) registerAdmin(mux *http.ServeMux) {
	mux.Handle("POST /api/admin/feeds/{feed}/pins", a.adminOnly(a.handleIssuePIN))
	mux.Handle("GET /api/admin/devices", a.adminOnly(a.handleDevices))
	mux.Handle("DELETE /api/admin/devices/{id}", a.adminOnly(a.handleRevoke))
	mux.Handle("GET /api/admin/audit", a.adminOnly(a.handleAudit))
	mux.Handle("GET /api/admin/pair-requests", a.adminOnly(a.handleListPairRequests))
	mux.Handle("POST /api/admin/pair-requests/{user_code}/approve", a.adminOnly(a.handleApprovePairRequest))
	mux.Handle("POST /api/admin/pair-requests/{user_code}/deny", a.adminOnly(a.handleDenyPairRequest))
	mux.Handle("POST /api/admin/tokens", a.adminOnly(a.handleCreateAdminToken))
	mux.Handle("GET /api/admin/tokens", a.adminOnly(a.handleListAdminTokens))
	mux.Handle("DELETE /api/admin/tokens/{id}", a.adminOnly(a.handleRevokeAdminToken))
}

func (a *Authority) adminOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor, err := a.AuthorizeAdmin(r)
		if err != nil {
			httpx.WriteError(w, err)
			return
		}
		h(w, a.withActor(r, actor))
	})
}

// readOptionalJSON decodes a body that may be left out entirely.
func readOptionalJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 && r.Header.Get("Content-Type") == "" {
		return nil
	}
	body, err := httpx.ReadJSONBody(w, r, 4<<10)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	return httpx.StrictJSON(body, v)
}

func (a *Authority) handleIssuePIN(w http.ResponseWriter, r *http.Request) {
	feed := r.PathValue("feed")
	if !broker.ValidFeedID(feed) {
		httpx.WriteError(w, httpx.Errorf(httpx.CodeInvalidRequest, "feed id must match ^[a-z0-9][a-z0-9-]{0,62}$"))
		return
	}
	var req struct {
		TTL     string `json:"ttl"`
		Replace bool   `json:"replace"`
	}
	if err := readOptionalJSON(w, r, &req); err != nil {
		httpx.WriteError(w, err)
		return
	}
	ttl := DefaultPINTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < time.Second || d > MaxPINTTL {
			httpx.WriteError(w, httpx.Errorf(httpx.CodeInvalidRequest, `"ttl" must be a duration from 1s to 1h, such as "5m"`))
			return
		}
		ttl = d
	}
	pin, err := a.pins.issue(r.Context(), feed, ttl, req.Replace)
	if err != nil {
		httpx.WriteError(w, a.unavailable("issue pin", err))
		return
	}
	detail := "expires " + pin.ExpiresAt.Format(time.RFC3339)
	if req.Replace {
		detail += ", replaces the feed's devices"
	}
	a.auditCtx(r.Context(), "pin_issued", feed, "", a.addr.Of(r), detail)
	httpx.WriteJSON(w, http.StatusCreated, pin)
}

// DeviceView is a device as the admin API lists it (docs/protocol.md §6).
type DeviceView struct {
	ID         string     `json:"device_id"`
	Feed       string     `json:"feed"`
	Name       string     `json:"name"`
	PairedAt   time.Time  `json:"paired_at"`
	Online     bool       `json:"online"`
	LastSeen   *time.Time `json:"last_seen"`
	RemoteAddr string     `json:"remote_addr"`
	UserAgent  string     `json:"user_agent"`
}

// DeviceViews lists the devices of feed (all when empty), oldest pairing first, with
// their presence.
func (a *Authority) DeviceViews(feed string) []DeviceView {
	devs := a.devices.List(feed)
	slices.SortFunc(devs, func(x, y Device) int {
		return cmp.Or(cmp.Compare(x.Feed, y.Feed), x.PairedAt.Compare(y.PairedAt), cmp.Compare(x.ID, y.ID))
	})
	out := make([]DeviceView, len(devs))
	for i, d := range devs {
		online, seen := (*a.presence.Load())(d.ID)
		v := DeviceView{ID: d.ID, Feed: d.Feed, Name: d.Name, PairedAt: d.PairedAt, Online: online, RemoteAddr: d.RemoteAddr, UserAgent: d.UserAgent}
		if !seen.IsZero() {
			v.LastSeen = &seen
		}
		out[i] = v
	}
	return out
}

func (a *Authority) handleDevices(w http.ResponseWriter, r *http.Request) {
	feed := r.URL.Query().Get("feed")
	if feed != "" && !broker.ValidFeedID(feed) {
		httpx.WriteError(w, httpx.Errorf(httpx.CodeInvalidRequest, "feed id must match ^[a-z0-9][a-z0-9-]{0,62}$"))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, a.DeviceViews(feed))
}

func (a *Authority) handleRevoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !validDeviceID(id) {
		httpx.WriteError(w, httpx.Errorf(httpx.CodeNotFound, "no device with that id"))
		return
	}
	d, _ := a.devices.Device(id)
	ok, err := a.devices.revoke(r.Context(), id)
	if err != nil {
		httpx.WriteError(w, a.unavailable("revoke device", err))
		return
	}
	if !ok {
		httpx.WriteError(w, httpx.Errorf(httpx.CodeNotFound, "no device with that id"))
		return
	}
	remote := a.addr.Of(r)
	a.auditCtx(r.Context(), "device_revoked", d.Feed, id, remote, "revoked by an administrator")
	a.log.Info("device revoked", slog.String("device_id", id), slog.String("feed", d.Feed), slog.String("remote_addr", remote))
	w.WriteHeader(http.StatusNoContent)
}

func (a *Authority) handleAudit(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			httpx.WriteError(w, httpx.Errorf(httpx.CodeInvalidRequest, `"limit" must be a number from 1 to 1000`))
			return
		}
		limit = n
	}
	recs, err := a.b.AuditList(r.Context(), r.URL.Query().Get("type"), limit)
	if err != nil {
		httpx.WriteError(w, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, recs)
}

func (a *Authority) handleCreateAdminToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := readOptionalJSON(w, r, &req); err != nil {
		httpx.WriteError(w, err)
		return
	}
	name, err := broker.CheckName("name", req.Name, 100)
	if err != nil {
		httpx.WriteError(w, err)
		return
	}
	req.Name = name
	if req.Name == "" {
		httpx.WriteError(w, httpx.Errorf(httpx.CodeInvalidRequest, `"name" is required (who or what uses the token), at most 100 characters`))
		return
	}
	rec, token, err := a.admin.create(r.Context(), req.Name, a.cfg.Now())
	if err != nil {
		httpx.WriteError(w, a.unavailable("create admin token", err))
		return
	}
	a.auditCtx(r.Context(), "admin_token_created", "", "", a.addr.Of(r), "token "+rec.ID+" ("+rec.Name+")")
	httpx.WriteJSON(w, http.StatusCreated, struct {
		AdminToken
		Token string `json:"token"`
	}{rec, token})
}

func (a *Authority) handleListAdminTokens(w http.ResponseWriter, _ *http.Request) {
	toks := a.admin.list()
	slices.SortFunc(toks, func(x, y AdminToken) int { return x.Created.Compare(y.Created) })
	httpx.WriteJSON(w, http.StatusOK, toks)
}

func (a *Authority) handleRevokeAdminToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !broker.ValidKeyID(id) { // before it reaches NATS as a key
		httpx.WriteError(w, httpx.Errorf(httpx.CodeNotFound, "no admin token with that id"))
		return
	}
	ok, err := a.admin.revoke(r.Context(), id)
	if err != nil {
		httpx.WriteError(w, a.unavailable("revoke admin token", err))
		return
	}
	if !ok {
		httpx.WriteError(w, httpx.Errorf(httpx.CodeNotFound, "no admin token with that id"))
		return
	}
	a.auditCtx(r.Context(), "admin_token_revoked", "", "", a.addr.Of(r), "token "+id)
	w.WriteHeader(http.StatusNoContent)
}
