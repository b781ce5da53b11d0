package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
)

// auditReplay is how far back the audit log is read at start: records written just
// before a restart are looked at again, and the alerts they raise then are
// de-duplicated by the ALERTS stream (whose window, DuplicateWindow, is longer, so an
// alert raised from a record that old is still remembered). It also refills the burst
// windows.
const auditReplay = DuplicateWindow - time.Minute

// maxBurstKeys bounds the devices and addresses the burst rules follow at once; past it
// the oldest is forgotten. maxBurstEntries bounds one key's remembered records (older
// ones are merged).
const (
	maxBurstKeys    = 4096
	maxBurstEntries = 64
)

// tamperRule turns audit records into alerts: every duplicate_refused and
// device_revoked, and bursts of auth_fail and pair_approve_fail. Each instance reads
// the whole audit log of these types with an ordered consumer and decides alike, and
// names each alert after the audit record's stream sequence, so that the instances'
// alerts are one.
type tamperRule struct {
	s    *Service
	cons jetstream.ConsumeContext

	// emitFrom is the oldest record time that raises an alert: older records replayed
	// at start only refill the burst windows (their alerts, if any, were raised before
	// and may be past the duplicate window).
	emitFrom time.Time

	// Only the consumer's callback touches the fields below (one at a time).
	bursts map[string]*burst
}

type burst struct {
	entries []burstEntry
	alerted time.Time // the record time of the last alert for this key
	touched time.Time
}

type burstEntry struct {
	at time.Time
	n  int
}

func newTamperRule(s *Service) *tamperRule {
	return &tamperRule{s: s, bursts: map[string]*burst{}}
}

func (t *tamperRule) start(ctx context.Context) error {
	now := t.s.cfg.Now()
	t.emitFrom = now.Add(-auditReplay)
	from := now.Add(-max(auditReplay, t.s.cfg.BurstWindow))
	c, err := t.s.js.OrderedConsumer(ctx, broker.StreamAudit, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{
			"audit." + string(broker.AuditDuplicateRefused), "audit." + string(broker.AuditDeviceRevoked),
			"audit." + string(broker.AuditAuthFail), "audit." + string(broker.AuditPairApproveFail),
		},
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &from,
	})
	if err != nil {
		return err
	}
	t.cons, err = c.Consume(t.onMsg)
	return err
}

func (t *tamperRule) shutdown() {
	if t.cons != nil {
		t.cons.Stop()
		<-t.cons.Closed()
	}
}

func (t *tamperRule) onMsg(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		return
	}
	var rec broker.AuditRecord
	if json.Unmarshal(msg.Data(), &rec) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*t.s.cfg.OpTimeout)
	defer cancel()
	seq := strconv.FormatUint(meta.Sequence.Stream, 10)
	n := max(rec.Count, 1)
	switch broker.AuditType(rec.Type) {
	case broker.AuditDuplicateRefused:
		detail := "a second live connection for the device was refused: its credentials may be in two places"
		if n > 1 {
			detail = fmt.Sprintf("%d more second connections for the device were refused", n)
		}
		t.emit(ctx, TypeDuplicateRefused+"/"+seq, Alert{Type: TypeDuplicateRefused, Time: rec.Time, Feed: rec.Feed,
			DeviceID: rec.DeviceID, RemoteAddr: rec.RemoteAddr, Count: n, Detail: detail})
	case broker.AuditDeviceRevoked:
		t.emit(ctx, TypeDeviceRevoked+"/"+seq, Alert{Type: TypeDeviceRevoked, Time: rec.Time, Feed: rec.Feed,
			DeviceID: rec.DeviceID, Detail: rec.Detail})
	case broker.AuditAuthFail:
		if rec.DeviceID != "" {
			t.count(ctx, seq, TypeAuthFailBurst, "device:"+rec.DeviceID, rec, n, t.s.cfg.AuthFailBurst)
		}
		if rec.RemoteAddr != "" {
			t.count(ctx, seq, TypeAuthFailBurst, "addr:"+rec.RemoteAddr, rec, n, t.s.cfg.AuthFailBurst)
		}
	case broker.AuditPairApproveFail:
		if rec.RemoteAddr != "" {
			t.count(ctx, seq, TypePairApproveFailBurst, "addr:"+rec.RemoteAddr, rec, n, t.s.cfg.PairApproveFailBurst)
		}
	}
}

// count adds n refusals at rec.Time to key's window and raises typ when the window
// holds at least limit and key has not raised it within the last window.
func (t *tamperRule) count(ctx context.Context, seq, typ, key string, rec broker.AuditRecord, n, limit int) {
	window := t.s.cfg.BurstWindow
	k := typ + "|" + key
	b := t.bursts[k]
	if b == nil {
		if len(t.bursts) >= maxBurstKeys {
			t.forget(rec.Time)
		}
		b = &burst{}
		t.bursts[k] = b
	}
	b.touched = rec.Time
	b.entries = append(b.entries, burstEntry{at: rec.Time, n: n})
	cut := 0
	for cut < len(b.entries) && rec.Time.Sub(b.entries[cut].at) > window {
		cut++
	}
	b.entries = b.entries[cut:]
	if len(b.entries) > maxBurstEntries { // merge the two oldest: the sum stays right
		b.entries[1].n += b.entries[0].n
		b.entries = b.entries[1:]
	}
	total := 0
	for _, e := range b.entries {
		total += e.n
	}
	if total < limit || (!b.alerted.IsZero() && rec.Time.Sub(b.alerted) <= window) {
		return
	}
	b.alerted = rec.Time
	what := "refused socket auths"
	if typ == TypePairApproveFailBurst {
		what = "approve or deny attempts naming no open pairing request"
	}
	a := Alert{Type: typ, Time: rec.Time, Feed: rec.Feed, Count: total,
		Detail: fmt.Sprintf("%d %s within %s", total, what, window)}
	if d, ok := strings.CutPrefix(key, "device:"); ok {
		a.DeviceID = d
		a.Detail += " for this device"
	} else if addr, ok := strings.CutPrefix(key, "addr:"); ok {
		a.RemoteAddr = addr
		a.Detail += " from " + addr
		a.DeviceID = rec.DeviceID
	}
	t.emit(ctx, typ+"/"+key+"/"+seq, a)
}

// forget drops the keys whose window has passed, and then keys chosen at random (the
// map's order) until a quarter of the table is free, so that a flood of addresses
// costs O(1) a record on average.
func (t *tamperRule) forget(now time.Time) {
	for k, b := range t.bursts {
		if now.Sub(b.touched) > t.s.cfg.BurstWindow {
			delete(t.bursts, k)
		}
	}
	for k := range t.bursts {
		if len(t.bursts) <= maxBurstKeys*3/4 {
			break
		}
		delete(t.bursts, k)
	}
}

// emit publishes an alert, retrying a few times while NATS is away: the consumer does
// not move on without it.
func (t *tamperRule) emit(ctx context.Context, msgID string, a Alert) {
	if a.Time.Before(t.emitFrom) {
		return
	}
	for attempt := range 3 {
		if _, err := t.s.publish(ctx, msgID, a); err == nil {
			return
		} else if attempt == 2 {
			t.s.log.Warn("alert not published", slog.String("type", a.Type), slog.String("device_id", a.DeviceID), slog.String("error", err.Error()))
			return
		}
		select {
		case <-t.s.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}
