package pairing

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// The administrators' side of the reverse flow, as a Go API for the admin package,
// which answers HTTP: pairing decides (the compare-and-set on the request, the device
// it registers, the audit record); admin authenticates the administrator and puts
// their credential in the context (broker.WithActor), which the records name.
//
// Codes looked up by administrators (the API, the dashboard and the CLI alike) that
// name no open request are guesses as far as anyone can tell: each is audited
// (pair_approve_fail) and takes a token from the address's allowance, so that even a
// stolen admin credential cannot sweep the code space unnoticed.
const (
	codeGuessEvery = 30 * time.Second
	codeGuessBurst = 10
)

// PairRequestView is an open pair request as administrators see it (GET
// /api/admin/pair-requests and the dashboard). The request id, the tablet's polling
// handle, is not part of it.
type PairRequestView struct {
	UserCode   string    `json:"user_code"`
	Name       string    `json:"name"`
	RemoteAddr string    `json:"remote_addr"`
	UserAgent  string    `json:"user_agent"`
	JKT        string    `json:"jkt"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	AgeS       int       `json:"age_s"`
}

func (a *Authority) viewOf(p pendingPair) PairRequestView {
	return PairRequestView{
		UserCode: FormatPIN(p.Code), Name: p.Name, RemoteAddr: p.RemoteAddr, UserAgent: p.UserAgent,
		JKT: p.JKT, CreatedAt: p.CreatedAt, ExpiresAt: p.ExpiresAt,
		AgeS: max(int(a.cfg.Now().Sub(p.CreatedAt)/time.Second), 0),
	}
}

// OpenPairRequests lists the requests an administrator may still decide, oldest first.
func (a *Authority) OpenPairRequests(ctx context.Context) ([]PairRequestView, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ps, err := a.requests.listOpen(ctx)
	if err != nil {
		return nil, a.unavailable("list pair requests", err)
	}
	out := make([]PairRequestView, len(ps))
	for i, p := range ps {
		out[i] = a.viewOf(p)
	}
	return out, nil
}

// Approval is what an administrator decides for a request: the feed the tablet joins,
// its name (empty: the one the tablet suggested), its tags (tags.go), and whether it
// replaces the feed's devices.
type Approval struct {
	Feed    string
	Name    string
	Replace bool
	Tags    []string
}

// Check validates and cleans an approval's fields, with messages fit for the API and
// the form. ApprovePairRequest checks again; callers check first to answer a bad form
// without looking the code up.
func (ap *Approval) Check() error {
	ap.Feed = strings.TrimSpace(ap.Feed)
	if !broker.ValidFeedID(ap.Feed) {
		return httpx.Errorf(httpx.CodeInvalidRequest, `"feed" must be a feed id such as "lobby": lower-case letters, digits and hyphens`)
	}
	var err error
	if ap.Name, err = broker.CheckName("name", ap.Name, maxNameRunes); err != nil {
		return err
	}
	ap.Tags, err = CheckTags("tags", ap.Tags)
	return err
}

// LookupPairRequest is the open request of code, for an administrator at remote about
// to decide it (the dashboard's approve page). A code that names none is audited and
// counted like a guess at an approval.
func (a *Authority) LookupPairRequest(ctx context.Context, code, remote, via string) (PairRequestView, error) {
	p, err := a.lookupRequest(ctx, code, remote, "look up", via)
	if err != nil {
		return PairRequestView{}, err
	}
	return a.viewOf(p), nil
}

// lookupRequest finds the open request of a code for an administrator at remote. A
// code that names none is audited and counted as a guess (action and via say what was
// tried, from where); past the allowance every lookup is refused, even of a good code,
// so that the refusal tells nothing.
func (a *Authority) lookupRequest(ctx context.Context, code, remote, action, via string) (pendingPair, error) {
	if blocked, wait := a.guessLimit.blocked(remote); blocked {
		return pendingPair{}, httpx.RateLimited(wait)
	}
	p, found, err := a.requests.byCode(ctx, code)
	if err != nil {
		return pendingPair{}, a.unavailable("find pair request", err)
	}
	if !found || !p.open(a.cfg.Now()) {
		return pendingPair{}, a.codeMiss(ctx, remote, action, via)
	}
	return p, nil
}

// codeMiss audits a code that named no open request and counts it against remote.
func (a *Authority) codeMiss(ctx context.Context, remote, action, via string) error {
	a.guessLimit.allow(remote)
	a.auditCtx(ctx, broker.AuditRecord{Type: string(broker.AuditPairApproveFail), RemoteAddr: remote, Detail: action + " in " + via + ": no open pairing request has that code"})
	a.log.Info("pair request code not found", slog.String("action", action), slog.String("remote_addr", remote))
	return ErrNoSuchRequest
}

// ApprovePairRequest approves the open request of code: the tablet's key becomes a device
// of ap.Feed, registered exactly as a PIN pairing registers one (with replace, the
// feed's earlier devices are revoked and their sockets closed). Of two approvals, or an
// approval and a denial or expiry, only one wins: the request's record is changed by
// compare-and-set before anything else happens. via names where it was decided, for
// the audit record ("the dashboard", "the admin API"). A code that names no open
// request is ErrNoSuchRequest.
func (a *Authority) ApprovePairRequest(ctx context.Context, code string, ap Approval, remote, via string) (Device, error) {
	if err := ap.Check(); err != nil {
		return Device{}, err
	}
	p, err := a.lookupRequest(ctx, code, remote, "approve", via)
	if err != nil {
		return Device{}, err
	}
	name := ap.Name
	if name == "" {
		name = p.Name
	}
	deviceID := newDeviceID()
	var now time.Time
	p, found, err := a.requests.change(ctx, p.ID, func(p *pendingPair) error {
		now = a.cfg.Now()
		if !p.open(now) {
			return ErrNoSuchRequest
		}
		p.Status, p.DeviceID, p.Feed, p.DecidedAt = statusApproved, deviceID, ap.Feed, now.UTC()
		return nil
	})
	switch {
	case errors.Is(err, ErrNoSuchRequest) || (err == nil && !found):
		return Device{}, a.codeMiss(ctx, remote, "approve", via)
	case err != nil:
		return Device{}, a.unavailable("approve pair request", err)
	}
	if ap.Replace {
		a.revokeFeed(ctx, ap.Feed, remote)
	}
	d := Device{
		ID: deviceID, Feed: ap.Feed, Name: name, JKT: p.JKT, PairedAt: now.UTC(),
		UserAgent: p.UserAgent, RemoteAddr: p.RemoteAddr, Tags: ap.Tags,
	}
	if err := a.devices.add(ctx, d); err != nil {
		// Put the request back, so that it can be approved again once NATS is back.
		_, _, _ = a.requests.change(ctx, p.ID, func(p *pendingPair) error {
			if p.Status != statusApproved || p.DeviceID != deviceID {
				return errNoChange
			}
			p.Status, p.DeviceID, p.Feed, p.DecidedAt = statusPending, "", "", time.Time{}
			return nil
		})
		return Device{}, a.unavailable("add device", err)
	}
	if err := a.requests.settle(ctx, p); err != nil {
		a.log.Warn("settle pair request", slog.String("error", err.Error()))
	}
	detail := "approved in " + via + " for the tablet at " + p.RemoteAddr + " (key " + ShortKey(p.JKT) + ")"
	if ap.Replace {
		detail += ", replaces the feed's devices"
	}
	if len(ap.Tags) > 0 {
		detail += ", tags " + strings.Join(ap.Tags, ",")
	}
	a.auditCtx(ctx, broker.AuditRecord{Type: string(broker.AuditPairApproved), Feed: d.Feed, DeviceID: d.ID, RemoteAddr: remote, Detail: detail})
	a.log.Info("device paired by approval", slog.String("device_id", d.ID), slog.String("feed", d.Feed),
		slog.String("remote_addr", p.RemoteAddr), slog.String("approved_from", remote))
	return d, nil
}

// DenyPairRequest denies the open request of code; the tablet's next poll hears
// access_denied. A code that names no open request is ErrNoSuchRequest.
func (a *Authority) DenyPairRequest(ctx context.Context, code, remote, via string) error {
	p, err := a.lookupRequest(ctx, code, remote, "deny", via)
	if err != nil {
		return err
	}
	p, found, err := a.requests.change(ctx, p.ID, func(p *pendingPair) error {
		now := a.cfg.Now()
		if !p.open(now) {
			return ErrNoSuchRequest
		}
		p.Status, p.DecidedAt = statusDenied, now.UTC()
		return nil
	})
	switch {
	case errors.Is(err, ErrNoSuchRequest) || (err == nil && !found):
		return a.codeMiss(ctx, remote, "deny", via)
	case err != nil:
		return a.unavailable("deny pair request", err)
	}
	if err := a.requests.settle(ctx, p); err != nil {
		a.log.Warn("settle pair request", slog.String("error", err.Error()))
	}
	a.auditCtx(ctx, broker.AuditRecord{Type: string(broker.AuditPairDenied), RemoteAddr: remote,
		Detail: "denied in " + via + " for the tablet at " + p.RemoteAddr + " (key " + ShortKey(p.JKT) + ")"})
	a.log.Info("pair request denied", slog.String("remote_addr", p.RemoteAddr), slog.String("denied_from", remote))
	return nil
}
