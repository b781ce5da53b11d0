package pairing

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/kioskfeed/kioskfeed/broker"
)

// The audit log names the credential behind every admin action (AuditRecord.Actor):
// the admin wrappers (adminOnly, the dashboard's withSession) put it in the request's
// context, and auditCtx writes it into the record.

// AuditSource is the credential that authorised r, as the audit log names it, and the
// client address: broker's producer-key calls record them. The actor means something
// only once AuthorizeAdmin has accepted r.
func (a *Authority) AuditSource(r *http.Request) (actor, remote string) {
	return a.adminActor(r), a.addr.Of(r)
}

// adminActor names the credential of a request AuthorizeAdmin accepted: a request with
// an Authorization header was let in by its bearer token alone, any other by the
// dashboard's session.
func (a *Authority) adminActor(r *http.Request) string {
	if r.Header.Get("Authorization") == "" {
		return broker.ActorDashboard
	}
	tok := broker.Bearer(r)
	h := HashToken(tok)
	for _, want := range a.admin.hashes {
		if subtle.ConstantTimeCompare(h[:], want[:]) == 1 {
			return broker.ActorConfigAdmin
		}
	}
	if rest, ok := strings.CutPrefix(tok, adminTokenPrefix); ok {
		if id, _, ok := strings.Cut(rest, "."); ok && broker.ValidKeyID(id) {
			return broker.AdminTokenActor(id)
		}
	}
	return ""
}

// withActor runs h with the actor of r in its context.
func (a *Authority) withActor(r *http.Request, actor string) *http.Request {
	return r.WithContext(broker.WithActor(r.Context(), actor))
}

// auditCtx writes one record with the actor ctx carries (see broker.WithActor).
func (a *Authority) auditCtx(ctx context.Context, typ, feed, deviceID, remote, detail string) {
	a.b.Audit(broker.AuditRecord{Time: a.cfg.Now(), Type: typ, Feed: feed, DeviceID: deviceID, RemoteAddr: remote, Detail: detail, Actor: broker.ActorOf(ctx)})
}
