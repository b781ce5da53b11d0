package broker

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// AdminAuthorizer decides whether a request carries admin rights. It is declared here,
// where it is used, and satisfied by pairing, which owns admin authentication. A
// refusal is an *httpx.Error (401 invalid_token or 403 forbidden).
type AdminAuthorizer interface {
	// AuthorizeAdmin accepts r, naming the credential that authorised it as the audit
	// log does (AuditRecord.Actor), or refuses it.
	AuthorizeAdmin(r *http.Request) (actor string, err error)
}

// API serves the producer endpoints of docs/protocol.md §8 and the producer-key admin calls
// of §6.
type API struct {
	b     *Broker
	admin AdminAuthorizer
	log   *slog.Logger
}

// NewAPI returns the producer HTTP API of b; admin guards the admin calls.
func NewAPI(b *Broker, admin AdminAuthorizer) *API {
	return &API{b: b, admin: admin, log: b.log}
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/feeds/{feed}/events", a.publish)
	mux.HandleFunc("GET /api/feeds/{feed}/state", a.state)
	mux.Handle("GET /api/admin/producer-keys", a.adminOnly(a.listKeys))
	mux.Handle("POST /api/admin/producer-keys", a.adminOnly(a.createKey))
	mux.Handle("DELETE /api/admin/producer-keys/{id}", a.adminOnly(a.deleteKey))
}

var errNoKey = &httpx.Error{Code: httpx.CodeInvalidToken, Message: "send a producer key: Authorization: Bearer <key>"}

// Bad producer keys are limited per client address (IPv6: per Config.IPv6Prefix), on
// their own, apart from the admin and device limits: producerFailBurst at once, then one
// per producerFailEvery. Past that every key from the address is answered 429 before
// it is looked at, so a flood of kfp.<unknown id>.x costs no KV lookup; good keys take
// nothing from the allowance.
const (
	producerFailBurst = 20
	producerFailEvery = 3 * time.Second
)

// producer returns the producer key r presents, counting a bad one against the client
// address's failure allowance.
func (a *API) producer(r *http.Request) (ProducerKey, error) {
	remote := a.b.clientAddr.Of(r)
	if blocked, wait := a.b.producerFails.Blocked(remote); blocked {
		return ProducerKey{}, RateLimited(wait)
	}
	key, ok := a.b.AuthenticateProducer(r.Context(), httpx.Bearer(r))
	if !ok {
		a.b.producerFails.Allow(remote)
		return ProducerKey{}, errNoKey
	}
	return key, nil
}

func (a *API) publish(w http.ResponseWriter, r *http.Request) {
	feed := r.PathValue("feed")
	key, err := a.producer(r)
	if err != nil {
		reason := "unauthorized"
		if err != errNoKey {
			reason = "rate_limited"
		}
		a.reject(w, reason, err)
		return
	}
	if !ValidFeedID(feed) {
		a.reject(w, "invalid_feed", httpx.Errorf(httpx.CodeInvalidRequest, "feed id must match ^[a-z0-9][a-z0-9-]{0,62}$"))
		return
	}
	if !key.Allows(feed) {
		a.b.Audit(AuditRecord{Type: string(AuditProducerRefused), Feed: feed, RemoteAddr: a.b.clientAddr.Of(r), Actor: ProducerKeyActor(key.ID),
			Detail: "publish to a feed the key may not publish to"})
		a.reject(w, "forbidden", httpx.Errorf(httpx.CodeForbidden, "this producer key may not publish to that feed"))
		return
	}
	body, err := httpx.ReadJSONBody(w, r, int64(a.b.cfg.MaxEventBytes)+16<<10)
	if err != nil {
		a.reject(w, "invalid_body", err)
		return
	}
	in, err := DecodeEventInput(body, a.b.cfg.MaxEventBytes)
	if err != nil {
		reason := "invalid_event"
		var e *httpx.Error
		if errors.As(err, &e) && e.Code == httpx.CodeTooLarge {
			reason = "too_large"
		}
		a.reject(w, reason, err)
		return
	}
	res, err := a.b.Publish(r.Context(), feed, in)
	if err != nil {
		a.reject(w, "unavailable", err)
		return
	}
	httpx.WriteJSON(w, http.StatusAccepted, res)
}

func (a *API) state(w http.ResponseWriter, r *http.Request) {
	feed := r.PathValue("feed")
	if err := a.canRead(r, feed); err != nil {
		httpx.WriteError(w, err)
		return
	}
	if !ValidFeedID(feed) {
		httpx.WriteError(w, httpx.Errorf(httpx.CodeInvalidRequest, "feed id must match ^[a-z0-9][a-z0-9-]{0,62}$"))
		return
	}
	st, err := a.b.State(r.Context(), feed)
	if err != nil {
		httpx.WriteError(w, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, st)
}

// canRead lets a producer key read the feeds it may publish to, and an admin any feed.
func (a *API) canRead(r *http.Request, feed string) error {
	if strings.HasPrefix(httpx.Bearer(r), producerKeyPrefix) {
		key, err := a.producer(r)
		if err != nil {
			return err
		}
		if key.Allows(feed) {
			return nil
		}
		return httpx.Errorf(httpx.CodeForbidden, "this producer key may not read that feed")
	}
	_, err := a.admin.AuthorizeAdmin(r)
	return err
}

func (a *API) listKeys(w http.ResponseWriter, _ *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, a.b.ProducerKeys())
}

func (a *API) createKey(w http.ResponseWriter, r *http.Request) {
	body, err := httpx.ReadJSONBody(w, r, 16<<10)
	if err != nil {
		httpx.WriteError(w, err)
		return
	}
	var req struct {
		Name   string   `json:"name"`
		Feeds  []string `json:"feeds"`
		Scopes []string `json:"scopes"`
	}
	if err := httpx.StrictJSON(body, &req); err != nil {
		httpx.WriteError(w, err)
		return
	}
	rec, key, err := a.b.CreateProducerKey(r.Context(), req.Name, req.Feeds, req.Scopes...)
	if err != nil {
		httpx.WriteError(w, err)
		return
	}
	a.log.Info("producer key created", slog.String("id", rec.ID), slog.String("name", rec.Name))
	a.b.Audit(AuditRecord{Type: string(AuditProducerKeyCreated), RemoteAddr: a.b.clientAddr.Of(r), Actor: ActorOf(r.Context()),
		Detail: "key " + rec.ID + " (" + rec.Name + ") for " + strings.Join(rec.Feeds, ",") + scopesDetail(rec.Scopes)})
	httpx.WriteJSON(w, http.StatusCreated, struct {
		ProducerKey
		Key string `json:"key"`
	}{rec, key})
}

// scopesDetail names a key's scopes in its audit record ("" for none).
func scopesDetail(scopes []string) string {
	if len(scopes) == 0 {
		return ""
	}
	return ", scopes " + strings.Join(scopes, ",")
}

func (a *API) deleteKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.b.DeleteProducerKey(r.Context(), id); err != nil {
		httpx.WriteError(w, err)
		return
	}
	a.log.Info("producer key deleted", slog.String("id", id))
	a.b.Audit(AuditRecord{Type: string(AuditProducerKeyDeleted), RemoteAddr: a.b.clientAddr.Of(r), Actor: ActorOf(r.Context()), Detail: "key " + id})
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) adminOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor, err := a.admin.AuthorizeAdmin(r)
		if err != nil {
			httpx.WriteError(w, err)
			return
		}
		h(w, r.WithContext(WithActor(r.Context(), actor)))
	})
}

func (a *API) reject(w http.ResponseWriter, reason string, err error) {
	a.b.metrics.rejected.WithLabelValues(reason).Inc()
	if reason == "unauthorized" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="kioskfeed"`)
	}
	httpx.WriteError(w, err)
}
