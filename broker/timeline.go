package broker

// This file owns the devices' timelines (docs/protocol.md §6,
// #http-get-api-admin-devices-id-timeline): the TIMELINE stream, where the instance that
// holds a tablet's socket writes one small record per change of the tablet's state
// (online, behind, offline, asleep), and an instance's in-memory index of that stream, from
// which any instance draws any device's last hour.
//
// Bounded twice: the stream keeps at most TimelineMaxPerDevice records per device (one
// subject each, the oldest dropped) and none older than TimelineKeep, and the writer
// (the bridge) writes at most one record per device per gap it documents, so a tablet that
// flaps its link costs a bounded rate and a bounded store whatever it does.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamTimeline holds the devices' state changes: subject kioskfeed.timeline.<device id>.
const StreamTimeline = "TIMELINE"

const timelineSubjectPrefix = "kioskfeed.timeline."

// timelineDrainPrefix is the subject of an instance's drains: kioskfeed.timeline.drain_<instance>
// (no device id starts so: they start dev_).
const timelineDrainPrefix = timelineSubjectPrefix + "drain_"

// Bounds of the timelines (docs/protocol.md §10, #limits-timeline).
const (
	// TimelineWindow is what a timeline answers: the last hour.
	TimelineWindow = time.Hour
	// TimelineKeep is the stream's age limit: past TimelineWindow by more than the
	// bridge's refresh of an unchanged state (20 to 25 min), so the record that says what
	// a device was doing when the hour began is still kept.
	TimelineKeep = 90 * time.Minute
	// TimelineMaxPerDevice is how many records the stream (and each instance's index)
	// keeps per device, the oldest dropped first. The bridge writes at most one record
	// per device every 15 s (240 an hour), so the last hour fits.
	TimelineMaxPerDevice = 256
	// timelineMaxBytes bounds the whole stream, whatever the number of devices: at
	// about 150 bytes a record, some 440,000 records.
	timelineMaxBytes = 64 << 20
	// timelineWindow is how many records are written at once, in flight.
	timelineWindow = 256
	// TimelineDrainGap is how soon a tablet of a drained instance must be back (its next
	// record) for the drain to count as a flap rather than draw offline: the writer's
	// gap (the bridge's Timeline.MinGap default), within which a change undone is
	// counted, not drawn.
	TimelineDrainGap = 15 * time.Second
	// maxTimelineDrains bounds the drains an instance's index keeps (the newest): one
	// per instance drained within TimelineKeep.
	maxTimelineDrains = 256
)

// Timeline states. A timeline's record is one of the first four; a span before the
// oldest record there is is TimelineUnknown.
const (
	TimelineOnline  = "online"
	TimelineBehind  = "behind"
	TimelineOffline = "offline"
	TimelineAsleep  = "asleep"
	TimelineUnknown = "unknown"
	// TimelineDrain is the state of an instance's drain record (WriteDrain), never a
	// device's.
	TimelineDrain = "drain"
)

// TimelineRecord is one change of a device's state: the state it entered, and when
// (the cluster's clock).
type TimelineRecord struct {
	State string    `json:"state"`
	At    time.Time `json:"at"`
	// Flaps counts the changes since the record before (from the same instance) that
	// were undone within the writer's gap, so never written: a link dropping and
	// coming back within seconds.
	Flaps int `json:"flaps,omitempty"`
	// By is the instance that wrote it (absent from records of older versions): an
	// instance's drain applies to the devices whose newest record is its own.
	By string `json:"by,omitempty"`
}

// TimelineNote is a record to write, for a device. ID, when set, is its Nats-Msg-Id:
// records that several instances write alike are kept once (the stream's duplicate
// window, 2 min).
type TimelineNote struct {
	Device string
	ID     string
	TimelineRecord
}

// TimelineSpan is a stretch of time in one state. Flaps counts the changes within it
// too short to draw (undone within seconds: see TimelineRecord.Flaps).
type TimelineSpan struct {
	State string    `json:"state"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	Flaps int       `json:"flaps,omitempty"`
}

// Timeline writes the TIMELINE stream (Write, the bridge) and, once Follow is called,
// keeps every device's records in memory (Records, the admin side).
type Timeline struct {
	b   *Broker
	log *slog.Logger

	mu     sync.Mutex
	devs   map[string][]TimelineRecord // oldest first, at most TimelineMaxPerDevice each
	drains []TimelineRecord            // the instances' drains, oldest first, at most maxTimelineDrains
	pruned time.Time                   // when devices without a kept record were last forgotten
	cc     jetstream.ConsumeContext
	// caughtUp closes once Follow has read the records stored before it; Records waits
	// for it until readBy (nil before Follow).
	caughtUp <-chan struct{}
	readBy   time.Time
}

// timelineReadWait bounds how long Records waits for Follow's first read.
const timelineReadWait = 5 * time.Second

// NewTimeline sets up the stream.
//
// On one server (Replicas 1) the stream is written in JetStream's async persist mode:
// with nats_sync_always every message of a file stream is fsynced before its ack, one
// fsync per handshake for the "online" record alone (~100 µs of a handshake's server
// CPU, issue 15), while a timeline record is a view of the last hour that a power cut
// may cost its last seconds of. A process kill loses at most what was not yet flushed
// (milliseconds). Replicated streams are synced by their Raft log, and JetStream refuses
// the mode there. A stream made before (or by an older version) keeps its mode: JetStream
// cannot change it, and dropping the stream would lose the hour.
func NewTimeline(ctx context.Context, b *Broker) (*Timeline, error) {
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	persist := jetstream.DefaultPersistMode
	if b.cfg.Replicas <= 1 {
		persist = jetstream.AsyncPersistMode
	}
	if st, err := b.js.Stream(ctx, StreamTimeline); err == nil {
		persist = st.CachedInfo().Config.PersistMode
	}
	_, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              StreamTimeline,
		Description:       "kioskfeed: each device's state changes, for its last hour",
		Subjects:          []string{timelineSubjectPrefix + "*"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: TimelineMaxPerDevice,
		MaxAge:            TimelineKeep,
		MaxBytes:          timelineMaxBytes,
		MaxMsgSize:        1024,
		Replicas:          b.cfg.Replicas,
		PersistMode:       persist,
	})
	if err != nil {
		return nil, fmt.Errorf("set up stream %s: %w", StreamTimeline, err)
	}
	return &Timeline{b: b, log: b.log, devs: map[string][]TimelineRecord{}}, nil
}

// Write stores notes, timelineWindow in flight at once, each write bounded by the
// broker's OpTimeout and all by ctx, and returns those that failed (to be tried
// again). Notes of
// devices whose id is not a device id are dropped.
func (t *Timeline) Write(ctx context.Context, notes []TimelineNote) (failed []TimelineNote) {
	type write struct {
		n TimelineNote
		f jetstream.PubAckFuture
	}
	window := make([]write, 0, min(len(notes), timelineWindow))
	await := func() {
		wctx, cancel := t.b.opCtx(ctx)
		defer cancel()
		for _, w := range window {
			select {
			case <-w.f.Ok():
			case <-w.f.Err():
				failed = append(failed, w.n)
			case <-wctx.Done():
				failed = append(failed, w.n)
			}
		}
		window = window[:0]
	}
	for _, n := range notes {
		if !ValidDeviceID(n.Device) {
			continue
		}
		if ctx.Err() != nil { // out of time: the rest is not even sent
			failed = append(failed, n)
			continue
		}
		val, _ := json.Marshal(TimelineRecord{State: n.State, At: n.At.UTC(), Flaps: n.Flaps, By: n.By})
		var opts []jetstream.PublishOpt
		if n.ID != "" {
			opts = append(opts, jetstream.WithMsgID(n.ID))
		}
		f, err := t.b.js.PublishAsync(timelineSubjectPrefix+n.Device, val, opts...)
		if err != nil {
			failed = append(failed, n)
			continue
		}
		if window = append(window, write{n, f}); len(window) == timelineWindow {
			await()
		}
	}
	await()
	return failed
}

// Follow fills the in-memory index: one ordered consumer over the stream, from its
// oldest record (at most TimelineKeep old), then every new one, from any instance. It
// returns once the consumer is made, without waiting for the read (a start-up does not
// wait for tens of thousands of records): Records waits for the records stored before
// Follow, at most timelineReadWait after it (the rest then arrive in the background).
func (t *Timeline) Follow(ctx context.Context) error {
	octx, cancel := t.b.opCtx(ctx)
	defer cancel()
	cons, err := t.b.js.OrderedConsumer(octx, StreamTimeline, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return t.b.unavailable("follow timelines", err)
	}
	st, err := t.b.js.Stream(octx, StreamTimeline)
	if err != nil {
		return t.b.unavailable("follow timelines", err)
	}
	caughtUp := make(chan struct{})
	var once sync.Once
	if st.CachedInfo().State.Msgs == 0 {
		once.Do(func() { close(caughtUp) })
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		t.add(msg.Subject(), msg.Data())
		if md, err := msg.Metadata(); err == nil && md.NumPending == 0 {
			once.Do(func() { close(caughtUp) })
		}
	}, jetstream.PullHeartbeat(time.Second), jetstream.PullExpiry(10*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			t.log.Debug("timeline consumer", slog.String("error", err.Error()))
		}))
	if err != nil {
		return t.b.unavailable("follow timelines", fmt.Errorf("consume: %w", err))
	}
	t.mu.Lock()
	t.cc = cc
	t.caughtUp, t.readBy = caughtUp, time.Now().Add(timelineReadWait)
	t.mu.Unlock()
	return nil
}

// awaitRead waits until Follow has read the records stored before it, or its
// timelineReadWait is over.
func (t *Timeline) awaitRead() {
	t.mu.Lock()
	c, by := t.caughtUp, t.readBy
	t.mu.Unlock()
	if c == nil {
		return
	}
	select {
	case <-c:
	default:
		tm := time.NewTimer(time.Until(by))
		defer tm.Stop()
		select {
		case <-c:
		case <-tm.C:
		}
	}
}

// Stop ends Follow's consumer. Idempotent.
func (t *Timeline) Stop() {
	t.mu.Lock()
	cc := t.cc
	t.cc = nil
	t.mu.Unlock()
	if cc != nil {
		cc.Stop()
	}
}

// add puts one stored record into the index, in time order (records of one device
// come from several instances, and a record waits up to the writer's gap, so the
// stream's order is not always the records' order).
func (t *Timeline) add(subject string, data []byte) {
	if inst, ok := strings.CutPrefix(subject, timelineDrainPrefix); ok {
		t.addDrain(inst, data)
		return
	}
	dev, ok := strings.CutPrefix(subject, timelineSubjectPrefix)
	var rec TimelineRecord
	if !ok || !ValidDeviceID(dev) || json.Unmarshal(data, &rec) != nil || !validTimelineState(rec.State) || rec.At.IsZero() {
		return
	}
	now := t.b.Now()
	cut := now.Add(-TimelineKeep)
	if rec.At.Before(cut) {
		return // the stream drops it too
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	recs := t.devs[dev]
	i := len(recs)
	for i > 0 && recs[i-1].At.After(rec.At) {
		i--
	}
	recs = slices.Insert(recs, i, rec)
	drop := max(len(recs)-TimelineMaxPerDevice, 0)
	for drop < len(recs) && recs[drop].At.Before(cut) {
		drop++
	}
	if drop > 0 {
		recs = slices.Clone(recs[drop:])
	}
	t.devs[dev] = recs
	if now.Sub(t.pruned) >= time.Minute {
		t.pruned = now
		t.pruneLocked(cut)
	}
}

// pruneLocked forgets the devices whose every record is older than cut, as the stream
// does, and the drains older than cut: the index holds what the stream holds, within
// its bounds.
func (t *Timeline) pruneLocked(cut time.Time) {
	for d, recs := range t.devs {
		if len(recs) == 0 || recs[len(recs)-1].At.Before(cut) {
			delete(t.devs, d)
		}
	}
	i := 0
	for i < len(t.drains) && t.drains[i].At.Before(cut) {
		i++
	}
	if i > 0 {
		t.drains = slices.Clone(t.drains[i:])
	}
}

func validTimelineState(s string) bool {
	switch s {
	case TimelineOnline, TimelineBehind, TimelineOffline, TimelineAsleep:
		return true
	}
	return false
}

// Records returns a device's records this instance has read (once Follow has read
// those stored before it: see Follow), oldest first, none older than TimelineKeep, with the drains of the instances that held it drawn in
// (TimelineDrains).
func (t *Timeline) Records(device string) []TimelineRecord {
	t.awaitRead()
	now := t.b.Now()
	cut := now.Add(-TimelineKeep)
	t.mu.Lock()
	defer t.mu.Unlock()
	recs := t.devs[device]
	i := 0
	for i < len(recs) && recs[i].At.Before(cut) {
		i++
	}
	return TimelineDrains(slices.Clone(recs[i:]), t.drains, now)
}

// TimelineSpans draws records (oldest first) as the spans from from to to: the state
// at from is that of the newest record at or before it (TimelineUnknown if there is
// none), and each later record that changes the state starts a span. Spans are in
// order, none empty, adjacent ones in different states; each counts the flaps of the
// records within it and of the one that ends it.
func TimelineSpans(recs []TimelineRecord, from, to time.Time) []TimelineSpan {
	state := TimelineUnknown
	i := 0
	for ; i < len(recs) && !recs[i].At.After(from); i++ {
		state = recs[i].State
	}
	spans := []TimelineSpan{{State: state, From: from, To: to}}
	for ; i < len(recs) && recs[i].At.Before(to); i++ {
		last := &spans[len(spans)-1]
		last.Flaps += recs[i].Flaps // they happened before the record: in the span it ends or continues
		if recs[i].State == last.State {
			continue
		}
		last.To = recs[i].At
		spans = append(spans, TimelineSpan{State: recs[i].State, From: recs[i].At, To: to})
	}
	return spans
}

// TimelineOverlay draws state over spans wherever one of over (in order, disjoint)
// covers them: a device of a feed scheduled asleep is asleep then, connected or not,
// as the device list says. Adjacent spans of one state are merged.
func TimelineOverlay(spans []TimelineSpan, state string, over []TimelineSpan) []TimelineSpan {
	if len(over) == 0 || len(spans) == 0 {
		return spans
	}
	var out []TimelineSpan
	add := func(st string, from, to time.Time, flaps int) {
		if !to.After(from) {
			return
		}
		if n := len(out); n > 0 && out[n-1].State == st && out[n-1].To.Equal(from) {
			out[n-1].To = to
			out[n-1].Flaps += flaps
			return
		}
		out = append(out, TimelineSpan{State: st, From: from, To: to, Flaps: flaps})
	}
	j := 0
	for _, s := range spans {
		cur, flaps := s.From, s.Flaps // a span's flaps go with its first piece not drawn over
		for cur.Before(s.To) {
			for j < len(over) && !over[j].To.After(cur) {
				j++
			}
			switch {
			case j == len(over) || !over[j].From.Before(s.To):
				add(s.State, cur, s.To, flaps) // nothing over the rest of s
				cur, flaps = s.To, 0
			case over[j].From.After(cur):
				add(s.State, cur, over[j].From, flaps)
				cur, flaps = over[j].From, 0
			default: // over[j] covers cur
				end := over[j].To
				if end.After(s.To) {
					end = s.To
				}
				add(state, cur, end, 0)
				cur = end
			}
		}
	}
	return out
}
