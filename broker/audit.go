package broker

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const auditSubjectPrefix = "audit."

// AuditRecord is one entry of the audit log (docs/protocol.md §6). Detail is a short reason
// for people; it must never hold a PIN, token, key or proof.
type AuditRecord struct {
	Time       time.Time `json:"time"`
	Type       string    `json:"type"`
	DeviceID   string    `json:"device_id"`
	Feed       string    `json:"feed"`
	RemoteAddr string    `json:"remote_addr"`
	Detail     string    `json:"detail"`
	// Actor names the credential that acted, on the records of admin and producer
	// actions: "admin_token:<id>" (a named admin token), "admin_token:config" (the
	// configured or generated one), "dashboard" (a dashboard session) or
	// "producer_key:<id>". Empty (and left out of the JSON) on a tablet's records.
	Actor string `json:"actor,omitempty"`
	// Count is how many events of this type from this address the record stands for:
	// more than one only on a record that sums up repeated failures (see Audit). Left
	// out of the JSON when it is one.
	Count int `json:"count,omitempty"`
}

// Actors of AuditRecord.Actor that name no key of their own.
const (
	ActorDashboard   = "dashboard"
	ActorConfigAdmin = "admin_token:config"
)

// AdminTokenActor is the actor of a named admin token.
func AdminTokenActor(id string) string { return "admin_token:" + id }

// ProducerKeyActor is the actor of a producer key.
func ProducerKeyActor(id string) string { return "producer_key:" + id }

type actorKey struct{}

// WithActor returns ctx carrying the credential that authorised a request, for the
// audit records written while serving it. Whatever authenticated the request sets it.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorOf is the actor WithActor put in ctx, "" when none.
func ActorOf(ctx context.Context) string {
	s, _ := ctx.Value(actorKey{}).(string)
	return s
}

// aggregatedTypes are the audit types summed up per client address and window: the
// refusals an outsider can cause as often as it likes. Successes, admin actions and
// anything else are never aggregated: each is one record.
var aggregatedTypes = map[AuditType]bool{
	AuditAuthFail:         true,
	AuditDuplicateRefused: true,
	AuditTokenRefused:     true,
	AuditPairFail:         true,
	AuditPairApproveFail:  true,
	AuditAdminLoginFail:   true,
	AuditProducerRefused:  true,
}

// Audit appends a record without waiting for its acknowledgement: audit writes sit on
// paths (handshakes, refused pairings) that must not slow down when NATS does. A record
// that cannot be sent is logged instead.
//
// Refusals of the aggregated types (aggregatedTypes) are summed up, so that an
// outsider's flood of bad attempts costs a few records, not one each: the first refusal
// of a type from an address is written at once (whoever watches the log sees it
// promptly), the repeats within the next AuditAggregateWindow are only counted, and
// when the window ends one record with their Count stands for them all. IPv6 clients
// are followed per IPv6Prefix, as the limiters follow them (the summing record of
// several addresses names the prefix, such as "2001:db8:1:2::/64"). At most
// maxAuditAggregate addresses are followed at once; past that the repeats of any other
// address are counted per type under no address.
func (b *Broker) Audit(rec AuditRecord) {
	if !ValidAuditType(rec.Type) {
		b.log.Error("audit record with invalid type dropped", slog.String("type", rec.Type))
		return
	}
	if rec.Time.IsZero() {
		rec.Time = b.Now()
	}
	rec.Time = rec.Time.UTC()
	if b.agg != nil && aggregatedTypes[AuditType(rec.Type)] && b.agg.absorb(rec) {
		return
	}
	b.writeAudit(rec)
}

// writeAudit sends one record.
func (b *Broker) writeAudit(rec AuditRecord) {
	data, _ := json.Marshal(rec)
	if _, err := b.js.PublishMsgAsync(&nats.Msg{Subject: auditSubjectPrefix + rec.Type, Data: data}); err != nil {
		b.log.Warn("audit record not stored", slog.String("type", rec.Type), slog.String("feed", rec.Feed),
			slog.String("device_id", rec.DeviceID), slog.String("remote_addr", rec.RemoteAddr), slog.String("error", err.Error()))
	}
}

// AuditList returns up to limit records, newest first, of one type when typ is not empty.
func (b *Broker) AuditList(ctx context.Context, typ string, limit int) ([]AuditRecord, error) {
	if typ != "" && !ValidAuditType(typ) {
		return nil, httpx.Errorf(httpx.CodeInvalidRequest, "unknown audit type")
	}
	filter := auditSubjectPrefix + ">"
	if typ != "" {
		filter = auditSubjectPrefix + typ
	}
	ctx, cancel := context.WithTimeout(ctx, 4*b.cfg.OpTimeout)
	defer cancel()
	info, err := b.audit.Info(ctx)
	if err != nil {
		return nil, b.unavailable("audit info", err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	out := make([]AuditRecord, 0, limit)
	// Walk back from the end in windows, so the newest records cost one read however long
	// the log is.
	window := uint64(max(limit, 64))
	for end := last; end >= first && end > 0 && len(out) < limit; {
		start := first
		if end >= first+window {
			start = end - window + 1
		}
		recs, err := b.readAudit(ctx, filter, start, end)
		if err != nil {
			return nil, err
		}
		for i := len(recs) - 1; i >= 0 && len(out) < limit; i-- {
			out = append(out, recs[i])
		}
		if start == first {
			break
		}
		end = start - 1
		window *= 4
	}
	return out, nil
}

func (b *Broker) readAudit(ctx context.Context, filter string, from, to uint64) ([]AuditRecord, error) {
	var out []AuditRecord
	err := b.scan(ctx, StreamAudit, filter, from, to, func(msg jetstream.Msg, _ *jetstream.MsgMetadata) {
		var rec AuditRecord
		if json.Unmarshal(msg.Data(), &rec) == nil {
			out = append(out, rec)
		}
	})
	return out, err
}
