package pairing

import (
	"context"
	"net/http"

	"github.com/kioskfeed/kioskfeed/broker"
)

// The audit log names the credential behind every admin action (AuditRecord.Actor):
// the admin wrappers (adminOnly, the dashboard's withSession) put it in the request's
// context, and auditCtx writes it into the record.

// withActor runs h with the actor of r in its context.
func (a *Authority) withActor(r *http.Request, actor string) *http.Request {
	return r.WithContext(broker.WithActor(r.Context(), actor))
}

// auditCtx writes one record with the actor ctx carries (see broker.WithActor).
func (a *Authority) auditCtx(ctx context.Context, typ, feed, deviceID, remote, detail string) {
	a.b.Audit(broker.AuditRecord{Time: a.cfg.Now(), Type: typ, Feed: feed, DeviceID: deviceID, RemoteAddr: remote, Detail: detail, Actor: broker.ActorOf(ctx)})
}
