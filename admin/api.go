package admin

import (
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// The admin API of docs/protocol.md §6, for scripts and `kioskfeed admin`: every call
// needs an admin bearer token (or, same-origin, the dashboard's session cookie).

// maxBody bounds an admin API call's JSON body.
const maxBody = 4 << 10

func (a *Admin) registerAPI(mux *http.ServeMux) {
	mux.Handle("POST /api/admin/feeds/{feed}/pins", a.adminOnly(a.handleIssuePIN))
	mux.Handle("GET /api/admin/devices", a.adminOnly(a.handleDevices))
	mux.Handle("DELETE /api/admin/devices/{id}", a.adminOnly(a.handleRevoke))
	mux.Handle("PATCH /api/admin/devices/{id}", a.adminOnly(a.handleEditDevice))
	mux.Handle("POST /api/admin/devices/bulk", a.adminOnly(a.handleBulk))
	mux.Handle("GET /api/admin/audit", a.adminOnly(a.handleAudit))
	mux.Handle("GET /api/admin/pair-requests", a.adminOnly(a.handleListPairRequests))
	mux.Handle("POST /api/admin/pair-requests/{user_code}/approve", a.adminOnly(a.handleApprovePairRequest))
	mux.Handle("POST /api/admin/pair-requests/{user_code}/deny", a.adminOnly(a.handleDenyPairRequest))
	mux.Handle("POST /api/admin/tokens", a.adminOnly(a.handleCreateAdminToken))
	mux.Handle("GET /api/admin/tokens", a.adminOnly(a.handleListAdminTokens))
	mux.Handle("DELETE /api/admin/tokens/{id}", a.adminOnly(a.handleRevokeAdminToken))
	mux.Handle("POST /api/admin/password", a.adminOnly(a.handleSetPassword))
}

// adminOnly runs h for an administrator, with the credential it found in the request's
// context: the audit log names it (AuditRecord.Actor).
func (a *Admin) adminOnly(h httpx.HandlerFunc) http.Handler {
	return httpx.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		actor, err := a.AuthorizeAdmin(r)
		if err != nil {
			return err
		}
		return h(w, r.WithContext(broker.WithActor(r.Context(), actor)))
	})
}

func (a *Admin) handleIssuePIN(w http.ResponseWriter, r *http.Request) error {
	feed := r.PathValue("feed")
	if !broker.ValidFeedID(feed) {
		return httpx.Errorf(httpx.CodeInvalidRequest, "feed id must match ^[a-z0-9][a-z0-9-]{0,62}$")
	}
	var req struct {
		TTL     string   `json:"ttl"`
		Replace bool     `json:"replace"`
		Tags    []string `json:"tags"`
	}
	if err := httpx.ReadOptionalJSON(w, r, maxBody, &req); err != nil {
		return err
	}
	ttl := pairing.DefaultPINTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < time.Second || d > pairing.MaxPINTTL {
			return httpx.Errorf(httpx.CodeInvalidRequest, `"ttl" must be a duration from 1s to 1h, such as "5m"`)
		}
		ttl = d
	}
	pin, err := a.p.IssueTaggedPIN(r.Context(), feed, ttl, req.Replace, req.Tags)
	if err != nil {
		return err
	}
	detail := "expires " + pin.ExpiresAt.Format(time.RFC3339)
	if len(pin.Tags) > 0 {
		detail += ", tags " + tagList(pin.Tags)
	}
	if req.Replace {
		detail += ", replaces the feed's devices"
	}
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditPinIssued), Feed: feed, RemoteAddr: a.addr.Of(r), Detail: detail})
	httpx.WriteJSON(w, http.StatusCreated, pin)
	return nil
}

func (a *Admin) handleDevices(w http.ResponseWriter, r *http.Request) error {
	f, err := filterOf(r)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.Matching(f))
	return nil
}

func (a *Admin) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !broker.ValidDeviceID(id) {
		return httpx.Errorf(httpx.CodeNotFound, "no device with that id")
	}
	d, ok, err := a.p.RevokeDevice(r.Context(), id)
	if err != nil {
		return err
	}
	if !ok {
		return httpx.Errorf(httpx.CodeNotFound, "no device with that id")
	}
	remote := a.addr.Of(r)
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditDeviceRevoked), Feed: d.Feed, DeviceID: id, RemoteAddr: remote, Detail: "revoked by an administrator"})
	a.log.Info("device revoked", slog.String("device_id", id), slog.String("feed", d.Feed), slog.String("remote_addr", remote))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *Admin) handleAudit(w http.ResponseWriter, r *http.Request) error {
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return httpx.Errorf(httpx.CodeInvalidRequest, `"limit" must be a number from 1 to 1000`)
		}
		limit = n
	}
	recs, err := a.b.AuditList(r.Context(), r.URL.Query().Get("type"), limit)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, recs)
	return nil
}

func (a *Admin) handleListPairRequests(w http.ResponseWriter, r *http.Request) error {
	views, err := a.p.OpenPairRequests(r.Context())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, views)
	return nil
}

// viaAPI names the admin API in the audit records of approvals and denials.
const viaAPI = "the admin API"

func (a *Admin) handleApprovePairRequest(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Feed    string   `json:"feed"`
		Name    string   `json:"name"`
		Replace bool     `json:"replace"`
		Tags    []string `json:"tags"`
	}
	if err := httpx.ReadOptionalJSON(w, r, maxBody, &req); err != nil {
		return err
	}
	ap := pairing.Approval{Feed: req.Feed, Name: req.Name, Replace: req.Replace, Tags: req.Tags}
	d, err := a.p.ApprovePairRequest(r.Context(), r.PathValue("user_code"), ap, a.addr.Of(r), viaAPI)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"device_id": d.ID, "feed": d.Feed})
	return nil
}

func (a *Admin) handleDenyPairRequest(w http.ResponseWriter, r *http.Request) error {
	if err := a.p.DenyPairRequest(r.Context(), r.PathValue("user_code"), a.addr.Of(r), viaAPI); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *Admin) handleCreateAdminToken(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := httpx.ReadOptionalJSON(w, r, maxBody, &req); err != nil {
		return err
	}
	name, err := broker.CheckName("name", req.Name, 100)
	if err != nil {
		return err
	}
	if name == "" {
		return httpx.Errorf(httpx.CodeInvalidRequest, `"name" is required (who or what uses the token), at most 100 characters`)
	}
	rec, token, err := a.tokens.create(r.Context(), name, a.cfg.Now())
	if err != nil {
		return a.unavailable("create admin token", err)
	}
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditAdminTokenCreated), RemoteAddr: a.addr.Of(r), Detail: "token " + rec.ID + " (" + rec.Name + ")"})
	httpx.WriteJSON(w, http.StatusCreated, struct {
		Token
		Secret string `json:"token"`
	}{rec, token})
	return nil
}

func (a *Admin) handleListAdminTokens(w http.ResponseWriter, _ *http.Request) error {
	toks := a.tokens.list()
	slices.SortFunc(toks, func(x, y Token) int { return x.Created.Compare(y.Created) })
	httpx.WriteJSON(w, http.StatusOK, toks)
	return nil
}

func (a *Admin) handleRevokeAdminToken(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !broker.ValidKeyID(id) { // before it reaches NATS as a key
		return httpx.Errorf(httpx.CodeNotFound, "no admin token with that id")
	}
	ok, err := a.tokens.revoke(r.Context(), id)
	if err != nil {
		return a.unavailable("revoke admin token", err)
	}
	if !ok {
		return httpx.Errorf(httpx.CodeNotFound, "no admin token with that id")
	}
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditAdminTokenRevoked), RemoteAddr: a.addr.Of(r), Detail: "token " + id})
	w.WriteHeader(http.StatusNoContent)
	return nil
}
