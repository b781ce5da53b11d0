package broker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Acknowledgements. A tablet sends {"type":"shown","override":"<id>"} once it shows an
// override; the bridge calls Ack. One record per device and override (key
// "<override id>.<device id>", the time as its value), written by one goroutine per
// instance: overrides are rare (at most MaxOverrides active, raised by people), each
// device's acknowledgement is written once per instance (the acked set below), so an
// override costs one small write per device, once: 10,000 tablets are 10,000 writes
// in the second after it is raised, never a write per repeated ack. Records of their
// own need no read-modify-write of a shared record, which instances would contend
// for, and any instance counts them with one watch (Shown). They age out with the
// bucket (overrideKeep).

// ackFlushEvery is how often the queued acknowledgements are written.
const ackFlushEvery = 250 * time.Millisecond

// Ack notes that device showed the active override id, for Shown on every instance. It
// never blocks: the write is queued. It reports whether id names an active override;
// whether the override covers the device's feed is the caller's to check.
func (o *Overrides) Ack(id, device string) bool {
	if _, ok := o.Get(id); !ok || !ValidDeviceID(device) {
		return false
	}
	o.ackMu.Lock()
	defer o.ackMu.Unlock()
	if o.acked[id][device] {
		return true
	}
	if o.acked[id] == nil {
		o.acked[id] = map[string]bool{}
	}
	o.acked[id][device] = true // bounded: active overrides × devices connected here
	if o.pending[id] == nil {
		o.pending[id] = map[string]time.Time{}
	}
	o.pending[id][device] = o.b.Now().UTC()
	select {
	case o.ackKick <- struct{}{}:
	default:
	}
	return true
}

// flushAcks writes the queued acknowledgements, at most every ackFlushEvery, until stop
// ends (then what is queued once more, within a second). The writes do not derive
// from stop: one under way when Stop is called completes.
func (o *Overrides) flushAcks(stop context.Context) {
	defer o.done.Done()
	for {
		select {
		case <-stop.Done():
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			o.writeAcks(ctx)
			cancel()
			return
		case <-o.ackKick:
		}
		o.writeAcks(context.Background())
		select {
		case <-stop.Done():
		case <-time.After(ackFlushEvery):
		}
	}
}

// ackWindow is how many acknowledgement writes are in flight at once. Written one by
// one, each waited for, 10,000 took about 1.4 s on this 2-core machine (some 7,000 a
// second, BenchmarkOverrideAcks); published asynchronously 512 at a time, about 0.5 s
// (16,000 to 21,000 a second).
const ackWindow = 512

type ackWrite struct {
	id, dev string
	f       jetstream.PubAckFuture
}

// writeAcks writes the queued acknowledgements as puts to the acks bucket's subjects,
// ackWindow at a time. One that fails is forgotten by acked, so the device's next
// acknowledgement (after a reconnect) writes it again.
func (o *Overrides) writeAcks(ctx context.Context) {
	o.ackMu.Lock()
	batch := o.pending
	o.pending = map[string]map[string]time.Time{}
	o.ackMu.Unlock()
	window := make([]ackWrite, 0, ackWindow)
	for id, devs := range batch {
		for dev, at := range devs {
			f, err := o.b.js.PublishAsync("$KV."+BucketOverrideAcks+"."+id+"."+dev, []byte(at.Format(time.RFC3339Nano)))
			if err != nil {
				o.ackFailed(id, dev, err)
				continue
			}
			if window = append(window, ackWrite{id, dev, f}); len(window) == ackWindow {
				o.awaitAcks(ctx, window)
				window = window[:0]
			}
		}
	}
	o.awaitAcks(ctx, window)
}

// awaitAcks waits for the writes of window, each within OpTimeout (or ctx).
func (o *Overrides) awaitAcks(ctx context.Context, window []ackWrite) {
	ctx, cancel := o.b.opCtx(ctx)
	defer cancel()
	for _, w := range window {
		select {
		case <-w.f.Ok():
		case err := <-w.f.Err():
			o.ackFailed(w.id, w.dev, err)
		case <-ctx.Done():
			o.ackFailed(w.id, w.dev, ctx.Err())
		}
	}
}

func (o *Overrides) ackFailed(id, dev string, err error) {
	o.ackMu.Lock()
	delete(o.acked[id], dev)
	o.ackMu.Unlock()
	o.log.Debug("override ack not written", slog.String("override", id), slog.String("error", err.Error()))
}

// Shown returns which devices acknowledged override id, and when, as every instance
// wrote it: one watch of the override's records.
func (o *Overrides) Shown(ctx context.Context, id string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	if !ValidOverrideID(id) {
		return out, nil
	}
	ctx, cancel := o.b.opCtx(ctx)
	defer cancel()
	w, err := o.acks.Watch(ctx, id+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, o.b.unavailable("read override acks", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, o.b.unavailable("read override acks", errors.New("watch ended"))
			}
			if e == nil {
				return out, nil
			}
			at, _ := time.Parse(time.RFC3339Nano, string(e.Value()))
			out[strings.TrimPrefix(e.Key(), id+".")] = at
		case <-ctx.Done():
			return nil, o.b.unavailable("read override acks", ctx.Err())
		}
	}
}
