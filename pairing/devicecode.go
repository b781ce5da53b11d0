package pairing

import (
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// The errors a poll answers while it has no token to give (RFC 8628 §3.5). They are not
// in broker's table of codes: they exist only here, with the statuses §3b gives them.
var (
	errAuthorizationPending = &httpx.Error{Code: "authorization_pending", HTTPStatus: http.StatusBadRequest,
		Message: "no administrator has approved this request yet: poll again after the interval"}
	errSlowDown = &httpx.Error{Code: "slow_down", HTTPStatus: http.StatusBadRequest,
		Message: "polled faster than the interval: add 5 seconds to the interval from now on"}
	errExpiredToken = &httpx.Error{Code: "expired_token", HTTPStatus: http.StatusBadRequest,
		Message: "this pairing request has expired or is over: ask for a new one"}
	errAccessDenied = &httpx.Error{Code: "access_denied", HTTPStatus: http.StatusForbidden,
		Message: "an administrator denied this pairing request"}
	errOtherKey = &httpx.Error{Code: httpx.CodeInvalidDPoPProof, HTTPStatus: http.StatusUnauthorized,
		Message: "the DPoP proof was refused: it is not signed by the key that made this request"}
)

// PairRequestResponse is the answer of POST /api/pair/requests (201).
type PairRequestResponse struct {
	RequestID               string `json:"request_id"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// verificationURI is the dashboard page a code is approved on.
func (a *Authority) verificationURI() string { return a.cfg.PublicURL + "/admin/approve" }

// verificationURIComplete is the approval page for one code: what the QR code holds.
func (a *Authority) verificationURIComplete(code string) string {
	return a.verificationURI() + "?code=" + code
}

// decodeRequestName reads the optional body of POST /api/pair/requests.
func decodeRequestName(body []byte) (string, error) {
	if strings.TrimSpace(string(body)) == "" {
		return "", nil
	}
	var req struct {
		Name string `json:"name"`
	}
	if err := httpx.StrictJSON(body, &req); err != nil {
		return "", err
	}
	return broker.CheckName("name", req.Name, maxNameRunes)
}

// ShortKey is the part of a key thumbprint people compare: its first 8 characters (the
// audit details and the dashboard show it).
func ShortKey(jkt string) string {
	if len(jkt) > 8 {
		return jkt[:8]
	}
	return jkt
}

// handlePairRequest is POST /api/pair/requests: a tablet asks to be paired and gets a
// code to show. The request is bound to the key that signed the proof.
func (a *Authority) handlePairRequest(w http.ResponseWriter, r *http.Request) error {
	remote, body, err := a.begin(w, r, a.pairLimit)
	if err != nil {
		return err
	}
	name, err := decodeRequestName(body)
	if err != nil {
		return err
	}
	jkt, err := a.checkProof(r, "/api/pair/requests")
	if err != nil {
		return err
	}
	p, err := a.requests.create(r.Context(), jkt, name, remote, r.UserAgent())
	var full errSlotsFull
	if errors.As(err, &full) {
		secs := max(int(math.Ceil(full.wait.Seconds())), 1)
		return &httpx.Error{Code: httpx.CodeRateLimited, RetryAfter: secs,
			Message: "too many open pairing requests from this address; retry after " + strconv.Itoa(secs) + "s"}
	}
	if err != nil {
		return a.unavailable("create pair request", err)
	}
	a.audit(broker.AuditRecord{Type: string(broker.AuditPairRequest), RemoteAddr: remote,
		Detail: "a tablet asks to be paired (key " + ShortKey(jkt) + "), open until " + p.ExpiresAt.Format(time.RFC3339)})
	a.log.Info("pair request opened", slog.String("key", ShortKey(jkt)), slog.String("remote_addr", remote))
	httpx.WriteJSON(w, http.StatusCreated, PairRequestResponse{
		RequestID: p.ID, UserCode: FormatPIN(p.Code),
		VerificationURI: a.verificationURI(), VerificationURIComplete: a.verificationURIComplete(p.Code),
		ExpiresIn: int(PairRequestTTL / time.Second), Interval: p.Interval,
	})
	return nil
}

// handlePairPoll is POST /api/pair/requests/{request_id}/poll: the tablet asks whether
// its request was decided, with a proof by the key that made it.
func (a *Authority) handlePairPoll(w http.ResponseWriter, r *http.Request) error {
	remote, err := a.beginPoll(w, r)
	if err != nil {
		return err
	}
	id := r.PathValue("request_id")
	if !broker.ValidPairRequestID(id) {
		return httpx.Errorf(httpx.CodeInvalidRequest, "that is not a pairing request id")
	}
	jkt, err := a.checkProof(r, "/api/pair/requests/"+id+"/poll")
	if err != nil {
		return err
	}
	ctx := r.Context()
	var verdict error
	p, found, err := a.requests.change(ctx, id, func(p *pendingPair) error {
		verdict = nil
		now := a.cfg.Now()
		switch {
		case p.JKT != jkt:
			verdict = errOtherKey
			return errNoChange
		case p.Status == statusApproved:
			return errNoChange // collected below
		case p.Status == statusDenied:
			verdict = errAccessDenied
			return errNoChange
		case p.Status != statusPending:
			verdict = errExpiredToken
			return errNoChange
		case !now.Before(p.ExpiresAt):
			// Written, not only answered: an approval racing this poll then loses its
			// compare-and-set, so the tablet and the administrator hear the same story.
			p.Status, p.DecidedAt = statusExpired, now.UTC()
			verdict = errExpiredToken
			return nil
		}
		interval := time.Duration(p.Interval) * time.Second
		if !p.LastPoll.IsZero() && now.Sub(p.LastPoll) < interval-pollLeeway {
			// RFC 8628 §3.5: the client adds 5 s for this and every later request.
			p.Interval = int(min(interval+slowDownStep, maxPollInterval) / time.Second)
			verdict = errSlowDown
		} else {
			verdict = errAuthorizationPending
		}
		p.LastPoll = now.UTC()
		return nil
	})
	switch {
	case err != nil:
		return a.unavailable("poll pair request", err)
	case !found:
		return errExpiredToken
	case verdict == errOtherKey:
		a.audit(broker.AuditRecord{Type: string(broker.AuditPairFail), RemoteAddr: remote, Detail: "a pairing request was polled with another key"})
		return verdict
	case verdict == errExpiredToken && p.Status == statusExpired:
		_ = a.requests.releaseSlot(ctx, p.RemoteAddr, p.ID)
		return verdict
	case verdict != nil:
		return verdict
	}
	// Approved: the device is registered with this key; give it its first token.
	d, ok, err := a.devices.current(ctx, p.DeviceID)
	if err != nil {
		return a.unavailable("get device", err)
	}
	if !ok || d.JKT != jkt {
		revoked, err := deviceRevoked(ctx, a.devices.m.KV(), p.DeviceID)
		if err != nil {
			return a.unavailable("get device history", err)
		}
		if !revoked && a.cfg.Now().Sub(p.DecidedAt) < approveSettle {
			return errAuthorizationPending // the approval is still registering it
		}
		return errExpiredToken // revoked since, or never registered
	}
	resp, err := a.issue(d)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// beginPoll opens a poll: a fresh DPoP-Nonce, the per-address limit, and a body that
// may be empty or an empty JSON object.
func (a *Authority) beginPoll(w http.ResponseWriter, r *http.Request) (remote string, err error) {
	a.setNonce(w)
	remote = a.addr.Of(r)
	if allowed, wait := a.pollLimit.allow(remote); !allowed {
		return remote, httpx.RateLimited(wait)
	}
	var empty struct{}
	return remote, httpx.ReadOptionalJSON(w, r, 4<<10, &empty)
}
