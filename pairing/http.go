package pairing

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strings"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing/dpop"
)

// Register adds the device-facing endpoints to mux. The administrators' endpoints
// (/api/admin/*, /admin/*) are the admin package's.
func (a *Authority) Register(mux *http.ServeMux) {
	mux.Handle("POST /api/pair", httpx.HandlerFunc(a.handlePair))
	mux.Handle("POST /api/token", httpx.HandlerFunc(a.handleToken))
	mux.Handle("POST /api/pair/requests", httpx.HandlerFunc(a.handlePairRequest))
	mux.Handle("POST /api/pair/requests/{request_id}/poll", httpx.HandlerFunc(a.handlePairPoll))
	mux.Handle("GET /api/pair/qr.svg", httpx.HandlerFunc(a.handlePairQR))
	mux.Handle("GET /.well-known/jwks.json", httpx.HandlerFunc(a.handleJWKS))
}

// TokenResponse is the answer of /api/pair (201) and /api/token (200).
type TokenResponse struct {
	DeviceID    string `json:"device_id"`
	Feed        string `json:"feed"`
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

type pairRequest struct {
	Feed string `json:"feed"`
	PIN  string `json:"pin"`
	Name string `json:"name"`
}

// maxNameRunes bounds a device name: it is shown in the dashboard, not a document.
const maxNameRunes = 64

// decodePairRequest parses and checks /api/pair's body.
func decodePairRequest(body []byte) (pairRequest, error) {
	var req pairRequest
	if err := httpx.StrictJSON(body, &req); err != nil {
		return req, err
	}
	req.Name = strings.TrimSpace(req.Name)
	switch {
	case !broker.ValidFeedID(req.Feed):
		return req, httpx.Errorf(httpx.CodeInvalidRequest, `"feed" must be a feed id such as "lobby"`)
	case req.PIN == "" || len(req.PIN) > 32:
		return req, httpx.Errorf(httpx.CodeInvalidRequest, `"pin" is required: the PIN the administrator gave, such as "WDJB-MJHT"`)
	}
	var err error
	req.Name, err = broker.CheckName("name", req.Name, maxNameRunes)
	return req, err
}

// begin opens a device-facing call: a fresh DPoP-Nonce on every answer, the per-address
// limit, and the JSON body; an error is the call's answer.
func (a *Authority) begin(w http.ResponseWriter, r *http.Request, lim *limiter) (remote string, body []byte, err error) {
	a.setNonce(w)
	remote = a.addr.Of(r)
	if allowed, wait := lim.allow(remote); !allowed {
		return remote, nil, httpx.RateLimited(wait)
	}
	body, err = httpx.ReadJSONBody(w, r, 4<<10)
	return remote, body, err
}

func (a *Authority) handlePair(w http.ResponseWriter, r *http.Request) error {
	remote, body, err := a.begin(w, r, a.pairLimit)
	if err != nil {
		return err
	}
	req, err := decodePairRequest(body)
	if err != nil {
		return err
	}
	jkt, err := a.checkProof(r, "/api/pair")
	if err != nil {
		return err
	}
	ctx := r.Context()
	rec, err := a.pins.redeem(ctx, req.Feed, req.PIN)
	if err != nil {
		if errors.Is(err, errInvalidPIN) {
			a.audit(broker.AuditRecord{Type: string(broker.AuditPairFail), Feed: req.Feed, RemoteAddr: remote, Detail: "wrong, expired or used PIN"})
			return err
		}
		return a.unavailable("redeem pin", err)
	}
	if rec.Replace {
		a.revokeFeed(ctx, req.Feed, remote)
	}
	d := Device{
		ID: newDeviceID(), Feed: req.Feed, Name: req.Name, JKT: jkt, PairedAt: a.cfg.Now().UTC(),
		UserAgent: broker.CleanText(r.UserAgent(), maxUserAgentBytes), RemoteAddr: remote,
		Tags: rec.Tags,
	}
	if err := a.devices.add(ctx, d); err != nil {
		return a.unavailable("add device", err)
	}
	resp, err := a.issue(d)
	if err != nil {
		return err
	}
	a.audit(broker.AuditRecord{Type: string(broker.AuditPairOK), Feed: d.Feed, DeviceID: d.ID, RemoteAddr: remote, Detail: "paired with a PIN"})
	a.log.Info("device paired", slog.String("device_id", d.ID), slog.String("feed", d.Feed), slog.String("remote_addr", remote))
	httpx.WriteJSON(w, http.StatusCreated, resp)
	return nil
}

func (a *Authority) handleToken(w http.ResponseWriter, r *http.Request) error {
	remote, body, err := a.begin(w, r, a.tokenLimit)
	if err != nil {
		return err
	}
	var req struct {
		DeviceID string `json:"device_id"`
	}
	if err := httpx.StrictJSON(body, &req); err != nil {
		return err
	}
	if req.DeviceID == "" || len(req.DeviceID) > 64 {
		return httpx.Errorf(httpx.CodeInvalidRequest, `"device_id" is required`)
	}
	// An address whose refusals are used up is refused before the proof is checked:
	// trying device ids or keys costs it no verification and no lookup.
	if blocked, wait := a.tokenFails.blocked(remote); blocked {
		return httpx.RateLimited(wait)
	}
	jkt, err := a.checkProof(r, "/api/token")
	if err != nil {
		if e := (*httpx.Error)(nil); errors.As(err, &e) && e.Code != httpx.CodeUseDPoPNonce {
			a.tokenFails.allow(remote) // a bad proof; asking for a nonce is the normal first step
		}
		return err
	}
	refused := &httpx.Error{Code: httpx.CodeInvalidToken, Message: "this device is not paired (or was revoked): pair it again"}
	if !broker.ValidDeviceID(req.DeviceID) { // no device has it, and NATS would refuse it as a key
		a.tokenFails.allow(remote)
		a.audit(broker.AuditRecord{Type: string(broker.AuditTokenRefused), RemoteAddr: remote, Detail: "malformed device id"})
		return refused
	}
	// From the bucket, not the mirror: a revocation made elsewhere a moment ago counts.
	d, ok, err := a.devices.current(r.Context(), req.DeviceID)
	if err != nil {
		return a.unavailable("get device", err)
	}
	if !ok {
		a.tokenFails.allow(remote)
		a.audit(broker.AuditRecord{Type: string(broker.AuditTokenRefused), DeviceID: req.DeviceID, RemoteAddr: remote, Detail: "unknown or revoked device"})
		return refused
	}
	if d.JKT != jkt {
		a.tokenFails.allow(remote)
		a.audit(broker.AuditRecord{Type: string(broker.AuditTokenRefused), Feed: d.Feed, DeviceID: d.ID, RemoteAddr: remote, Detail: "proof key is not the device's key"})
		return refused
	}
	resp, err := a.issue(d)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
	return nil
}

func (a *Authority) handleJWKS(w http.ResponseWriter, _ *http.Request) error {
	set, err := a.tokens.JWKS()
	if err != nil {
		a.log.Error("jwks", slog.String("error", err.Error()))
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(set)
	return nil
}

// checkProof verifies the request's DPoP header for POST <public_url><path> with a
// server nonce, and returns the key's thumbprint.
func (a *Authority) checkProof(r *http.Request, path string) (string, error) {
	proofs := r.Header.Values("DPoP")
	if len(proofs) != 1 {
		return "", &httpx.Error{Code: httpx.CodeInvalidDPoPProof, Message: "send exactly one DPoP proof header", HTTPStatus: http.StatusBadRequest}
	}
	jkt, err := a.verifier.Verify(r.Context(), proofs[0], dpop.ProofWant{Method: http.MethodPost, URL: a.cfg.PublicURL + path, NonceValid: a.nonces.Valid})
	switch {
	case err == nil:
		return jkt, nil
	case errors.Is(err, dpop.ErrUseNonce):
		return "", &httpx.Error{Code: httpx.CodeUseDPoPNonce, Message: "retry with the nonce in the DPoP-Nonce header"}
	case errors.Is(err, dpop.ErrInvalidProof):
		return "", &httpx.Error{Code: httpx.CodeInvalidDPoPProof, Message: "the DPoP proof was refused: " + reasonOf(err), HTTPStatus: http.StatusBadRequest}
	default:
		return "", a.unavailable("dpop replay cache", err)
	}
}

func (a *Authority) setNonce(w http.ResponseWriter) {
	w.Header().Set("DPoP-Nonce", a.nonces.Nonce())
}

func (a *Authority) issue(d Device) (TokenResponse, error) {
	tok, exp, err := a.tokens.Issue(d.ID, d.Feed, d.JKT)
	if err != nil {
		a.log.Error("issue token", slog.String("error", err.Error()))
		return TokenResponse{}, err
	}
	return TokenResponse{
		DeviceID: d.ID, Feed: d.Feed, AccessToken: tok, TokenType: "DPoP",
		ExpiresIn: int(math.Round(exp.Sub(a.cfg.Now()).Seconds())),
	}, nil
}

// revokeFeed revokes every device of feed: a PIN issued with replace was redeemed.
func (a *Authority) revokeFeed(ctx context.Context, feed, remote string) {
	for _, d := range a.devices.List(feed) {
		if ok, err := a.devices.revoke(ctx, d.ID); err != nil {
			a.log.Warn("revoke on re-pair failed", slog.String("device_id", d.ID), slog.String("error", err.Error()))
		} else if ok {
			a.audit(broker.AuditRecord{Type: string(broker.AuditDeviceRevoked), Feed: feed, DeviceID: d.ID, RemoteAddr: remote, Detail: "replaced by re-pairing"})
		}
	}
}
