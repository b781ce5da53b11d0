package broker

import (
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const auditSubjectPrefix = "audit."

var auditTypeRe = regexp.MustCompile(`^[a-z][a-z_]{0,39}$`)

// AuditRecord is one entry of the audit log (PROTOCOL.md §6). Detail is a short reason
// for people; it must never hold a PIN, token, key or proof.
type AuditRecord struct {
	Time       time.Time `json:"time"`
	Type       string    `json:"type"`
	DeviceID   string    `json:"device_id"`
	Feed       string    `json:"feed"`
	RemoteAddr string    `json:"remote_addr"`
	Detail     string    `json:"detail"`
}

// Audit appends a record without waiting for its acknowledgement: audit writes sit on
// paths (handshakes, refused pairings) that must not slow down when NATS does. A record
// that cannot be sent is logged instead.
func (b *Broker) Audit(rec AuditRecord) {
	if !auditTypeRe.MatchString(rec.Type) {
		b.log.Error("audit record with invalid type dropped", slog.String("type", rec.Type))
		return
	}
	if rec.Time.IsZero() {
		rec.Time = b.Now()
	}
	rec.Time = rec.Time.UTC()
	data, _ := json.Marshal(rec)
	if _, err := b.js.PublishMsgAsync(&nats.Msg{Subject: auditSubjectPrefix + rec.Type, Data: data}); err != nil {
		b.log.Warn("audit record not stored", slog.String("type", rec.Type), slog.String("feed", rec.Feed),
			slog.String("device_id", rec.DeviceID), slog.String("remote_addr", rec.RemoteAddr), slog.String("error", err.Error()))
	}
}

// AuditList returns up to limit records, newest first, of one type when typ is not empty.
func (b *Broker) AuditList(ctx context.Context, typ string, limit int) ([]AuditRecord, error) {
	if typ != "" && !auditTypeRe.MatchString(typ) {
		return nil, Errorf(CodeInvalidRequest, "unknown audit type")
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
