package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
)

// BucketState holds one record per device seen online at least once: when it was
// first seen and, while it is offline past the threshold, its open device_offline
// alert. It is written on those transitions only, never per heartbeat; it is bounded
// by the paired devices (a revoked device's record is deleted).
const BucketState = "kioskfeed_alert_state"

// deviceState is a device's record in BucketState.
type deviceState struct {
	Device  string         `json:"device_id"`
	Feed    string         `json:"feed"`
	Seen    time.Time      `json:"seen"`
	Offline *offlineRecord `json:"offline,omitempty"`
	Behind  *offlineRecord `json:"behind,omitempty"`
	// OfflineCleared and BehindCleared are when the last episode of each was resolved:
	// an instance that missed the device's return (its tick was late) must not open a
	// new episode from a time before it.
	OfflineCleared time.Time `json:"offline_cleared,omitzero"`
	BehindCleared  time.Time `json:"behind_cleared,omitzero"`
}

// offlineRecord is an open device_offline alert. Since is the same for every instance:
// the first to record it wins the compare-and-set, the others read it.
type offlineRecord struct {
	Since     time.Time `json:"since"`
	Alert     string    `json:"alert"`
	Published bool      `json:"published"`
}

// maxSeenPerTick bounds the first-seen records one tick writes: after a thousand
// tablets are paired at once their records are spread over a few ticks instead of
// holding one tick (and the store's fsyncs) for all of them. A device not yet recorded
// that goes offline is still recorded, from the bridge's last-seen time (which the bridge
// keeps), within the same bound.
const maxSeenPerTick = 256

// maxEdgesPerTick bounds the alert edges (raises and resolutions, each two or three KV
// operations and a publish) one tick makes, whatever the outage: 12,000 tablets gone
// take twelve ticks, a minute at the default 5 s. The rest wait for the next tick with
// the times they began kept (offFrom, behindFrom, the state record), so a late edge
// carries the same since. One tick used to try all of a killed instance's 12,000
// tablets, ran past its deadline on the busy cluster, and logged an "alert state
// unreadable" for each device after that.
const maxEdgesPerTick = 1024

// forgetAfter is how long a state record of a device the registry does not list is
// kept: a device paired a moment ago on another instance may not have reached this
// one's registry yet.
const forgetAfter = time.Minute

// offlineRule raises device_offline and device_online. It runs on every instance: the
// compare-and-set on the state record settles the offline time, and the Nats-Msg-Id
// built from it (device_offline/<device>/<since unix>) lets JetStream keep one alert.
type offlineRule struct {
	s      *Service
	states *broker.Mirror[deviceState]
	// offFrom is when this instance first saw each device offline (or its last-seen
	// time, when the bridge knows it). Only the rule's goroutine touches it; it holds
	// paired devices only.
	// A zero time marks a device of a feed asleep: its offline time starts at the wake.
	offFrom map[string]time.Time
	// behindFrom is when this instance first saw each online device behind or stale.
	behindFrom map[string]time.Time
	// paired is the tick's set of paired devices, kept from tick to tick so that a
	// tick over 10,000 devices does not allocate and grow a new one.
	paired map[string]bool
	// devs is the tick's list of paired devices, kept for the same reason.
	devs []Device
	// edges is what is left of the tick's maxEdgesPerTick; deferred counts the edges
	// left for the next tick (spend).
	edges, deferred int
}

func newOfflineRule(ctx context.Context, s *Service) (*offlineRule, error) {
	kv, err := s.b.Bucket(ctx, jetstream.KeyValueConfig{Bucket: BucketState, Description: "kioskfeed alert state per device", History: 1})
	if err != nil {
		return nil, err
	}
	m, err := broker.NewMirror[deviceState](kv, s.log)
	if err != nil {
		return nil, err
	}
	return &offlineRule{s: s, states: m, offFrom: map[string]time.Time{}, behindFrom: map[string]time.Time{}}, nil
}

func (o *offlineRule) run(stop <-chan struct{}) {
	t := time.NewTicker(o.s.cfg.Every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 4*o.s.cfg.OpTimeout)
		o.tick(ctx, stop)
		cancel()
	}
}

// tick looks at every paired device once. A KV write happens only on a transition:
// first seen online, offline past the threshold, back online.
func (o *offlineRule) tick(ctx context.Context, stop <-chan struct{}) {
	now := o.s.cfg.Now()
	o.devs = o.s.fleet.AppendDevices(o.devs[:0])
	devs := o.devs
	if o.paired == nil {
		o.paired = make(map[string]bool, len(devs))
	}
	paired := o.paired
	clear(paired)
	o.edges, o.deferred = maxEdgesPerTick, 0
	defer o.reportDeferred(ctx)
	seenWrites, withState := 0, 0
	for _, d := range devs {
		select {
		case <-stop:
			return
		default:
		}
		paired[d.ID] = true
		online, lastSeen := o.s.fleet.Presence(d.ID)
		st, have := o.states.Get(d.ID)
		withState += btoi(have)
		if online {
			delete(o.offFrom, d.ID)
			switch {
			case !have && seenWrites < maxSeenPerTick:
				seenWrites++
				o.markSeen(ctx, d, now)
			case st.Offline != nil:
				o.resolve(ctx, d, offlineEpisode)
				st, have = o.states.Get(d.ID) // as resolved
			}
			o.checkBehind(ctx, d, st, have, now)
			continue
		}
		if !have && !lastSeen.IsZero() && seenWrites < maxSeenPerTick {
			// Online and gone again between two ticks, or gone before a tick had its
			// turn to record it: the bridge saw it go. Within the same bound as the
			// online ones: a killed instance's 12,000 unrecorded tablets used to be 12,000
			// KV creates in one tick, on the cluster that was taking their leases over.
			seenWrites++
			o.markSeen(ctx, d, lastSeen)
			st, have = o.states.Get(d.ID)
		}
		if !have {
			continue // never seen online: no alert
		}
		if o.s.asleep(d.Feed) { // quiet hours (quiet.go): the offline time starts at the wake
			o.offFrom[d.ID] = time.Time{} // "asleep": the first tick that sees it awake starts it
			continue
		}
		if st.Offline != nil {
			if !st.Offline.Published {
				o.raise(ctx, d, offlineEpisode, st.Offline.Since, true)
			}
			continue
		}
		from, ok := o.offFrom[d.ID]
		if ok && from.IsZero() { // the wake, seen by this tick: no earlier
			from = now
			o.offFrom[d.ID] = from
		}
		if !ok {
			from = now
			if !lastSeen.IsZero() && lastSeen.Before(now) {
				from = lastSeen
			}
			o.offFrom[d.ID] = from
		}
		if from.Before(st.OfflineCleared) { // it was back meanwhile, and this instance missed it
			from = st.OfflineCleared
			o.offFrom[d.ID] = from
		}
		if now.Sub(from) >= o.s.cfg.OfflineAfter {
			o.raise(ctx, d, offlineEpisode, from, false)
		}
	}
	for _, m := range []map[string]time.Time{o.offFrom, o.behindFrom} {
		for id := range m {
			if !paired[id] {
				delete(m, id)
			}
		}
	}
	// Records of devices no longer paired, forgotten: none when every record is one of
	// the paired devices' counted above (the steady state), so no look at all of them.
	// The look copies nothing but the ids to forget (usually none: a tick that records
	// first-seen devices makes more records than it counted).
	if o.states.Len() <= withState {
		return
	}
	var gone []string
	o.states.Each(func(_ string, st deviceState) {
		if !paired[st.Device] && now.Sub(st.Seen) > forgetAfter {
			gone = append(gone, st.Device)
		}
	})
	for _, id := range gone {
		if err := o.states.KV().Delete(ctx, id); err == nil {
			o.states.Remove(id)
		}
	}
}

// spend takes one edge from the tick's allowance, or counts it deferred when none is
// left or the tick is past its deadline (its KV calls would only time out, one log
// line each).
func (o *offlineRule) spend(ctx context.Context) bool {
	if o.edges <= 0 || ctx.Err() != nil {
		o.deferred++
		return false
	}
	o.edges--
	return true
}

// reportDeferred logs, once a tick, the edges it left for the next.
func (o *offlineRule) reportDeferred(ctx context.Context) {
	if o.deferred == 0 {
		return
	}
	attrs := []any{slog.Int("deferred", o.deferred), slog.Int("per_tick", maxEdgesPerTick)}
	if err := ctx.Err(); err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	o.s.log.Info("alert edges left for the next tick", attrs...)
}

func (o *offlineRule) markSeen(ctx context.Context, d Device, now time.Time) {
	val, _ := json.Marshal(deviceState{Device: d.ID, Feed: d.Feed, Seen: now.UTC()})
	_, err := o.states.KV().Create(ctx, d.ID, val)
	switch {
	case err == nil:
		o.states.Put(d.ID, val)
	case !broker.IsKVConflict(err): // a conflict: another instance saw it first
		o.s.log.Warn("alert state not stored", slog.String("device_id", d.ID), slog.String("error", err.Error()))
	}
}

// current reads a device's state record with its revision, for a compare-and-set.
func (o *offlineRule) current(ctx context.Context, id string) (deviceState, uint64, error) {
	e, err := o.states.KV().Get(ctx, id)
	if err != nil {
		return deviceState{}, 0, err
	}
	var st deviceState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return deviceState{}, 0, err
	}
	return st, e.Revision(), nil
}

// update writes st over revision rev; a lost race is no error (the next tick reads the
// winner's record).
func (o *offlineRule) update(ctx context.Context, st deviceState, rev uint64) (uint64, bool) {
	val, _ := json.Marshal(st)
	nrev, err := o.states.KV().Update(ctx, st.Device, val, rev)
	if err != nil {
		if !broker.IsKVConflict(err) {
			o.s.log.Warn("alert state not stored", slog.String("device_id", st.Device), slog.String("error", err.Error()))
		}
		return 0, false
	}
	o.states.Put(st.Device, val)
	return nrev, true
}

// episode is a condition a device enters and leaves, with an alert on each edge:
// offline (device_offline, device_online) and behind (device_behind,
// device_caught_up). Its record lives in the device's state record (field).
type episode struct {
	open, clear string
	field       func(*deviceState) **offlineRecord
	cleared     func(*deviceState) *time.Time
	detail      func(since time.Time) string
}

var (
	offlineEpisode = episode{
		open: TypeDeviceOffline, clear: TypeDeviceOnline,
		field:   func(st *deviceState) **offlineRecord { return &st.Offline },
		cleared: func(st *deviceState) *time.Time { return &st.OfflineCleared },
		detail:  func(since time.Time) string { return "no live connection since " + since.Format(time.RFC3339) },
	}
	behindEpisode = episode{
		open: TypeDeviceBehind, clear: TypeDeviceCaughtUp,
		field:   func(st *deviceState) **offlineRecord { return &st.Behind },
		cleared: func(st *deviceState) *time.Time { return &st.BehindCleared },
		detail: func(since time.Time) string {
			return "connected but behind (events not shown, or nothing confirmed) since " + since.Format(time.RFC3339)
		},
	}
)

// msgID is the Nats-Msg-Id of an edge of the episode that began at since: the same on
// every instance, since the first to record since wins.
func msgID(typ, device string, since time.Time) string {
	return typ + "/" + device + "/" + strconv.FormatInt(since.Unix(), 10)
}

// raise records the episode begun at from (unless another instance recorded it first:
// then its time counts), publishes its alert, and marks it published. With retry, it
// only publishes an episode the record holds unpublished (an instance stopped between
// the two writes) and records none: the mirror that asked may be behind the bucket,
// and an episode already resolved must not be opened again with its old time.
func (o *offlineRule) raise(ctx context.Context, d Device, ep episode, from time.Time, retry bool) {
	if !o.spend(ctx) {
		return
	}
	st, rev, err := o.current(ctx, d.ID)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			o.s.log.Warn("alert state unreadable", slog.String("device_id", d.ID), slog.String("error", err.Error()))
		}
		return
	}
	rec := ep.field(&st)
	if *rec == nil && (retry || from.Before(*ep.cleared(&st))) {
		return // the next tick starts from the resolution this mirror had not seen
	}
	if *rec == nil {
		since := from.UTC().Truncate(time.Second)
		*rec = &offlineRecord{Since: since, Alert: alertID(msgID(ep.open, d.ID, since))}
		var ok bool
		if rev, ok = o.update(ctx, st, rev); !ok {
			return
		}
	}
	if (*rec).Published {
		return
	}
	since := (*rec).Since
	_, err = o.s.publish(ctx, msgID(ep.open, d.ID, since), Alert{
		Type: ep.open, Feed: d.Feed, DeviceID: d.ID, Since: &since, Detail: ep.detail(since),
	})
	if err != nil {
		o.s.log.Warn("alert not published", slog.String("type", ep.open), slog.String("device_id", d.ID), slog.String("error", err.Error()))
		return
	}
	(*rec).Published = true
	o.update(ctx, st, rev)
}

// resolve publishes the clearing alert of a device's open episode, then clears it.
// Publishing first means a crash in between repeats the publish, which the
// Nats-Msg-Id (<clear type>/<device>/<since unix>) de-duplicates.
func (o *offlineRule) resolve(ctx context.Context, d Device, ep episode) {
	if !o.spend(ctx) {
		return
	}
	st, rev, err := o.current(ctx, d.ID)
	rec := ep.field(&st)
	if err != nil || *rec == nil {
		return
	}
	if (*rec).Published {
		since := (*rec).Since
		_, err := o.s.publish(ctx, msgID(ep.clear, d.ID, since), Alert{
			Type: ep.clear, Feed: d.Feed, DeviceID: d.ID, Since: &since, Resolves: (*rec).Alert,
			Detail: "resolved after " + o.s.cfg.Now().Sub(since).Truncate(time.Second).String(),
		})
		if err != nil {
			o.s.log.Warn("alert not published", slog.String("type", ep.clear), slog.String("device_id", d.ID), slog.String("error", err.Error()))
			return
		}
	}
	*rec = nil
	*ep.cleared(&st) = o.s.cfg.Now().UTC()
	o.update(ctx, st, rev)
}

// checkBehind runs the behind rule for an online device whose state record is st (have:
// it has one), when the Fleet knows what tablets have shown (Display): behind or stale
// for longer than BehindFor raises device_behind, live again raises device_caught_up.
func (o *offlineRule) checkBehind(ctx context.Context, d Device, st deviceState, have bool, now time.Time) {
	disp, ok := o.s.fleet.(Display)
	if !ok || !have {
		return
	}
	switch disp.DisplayState(d.ID, d.Feed) {
	case "asleep": // quiet hours: behind time starts again at the wake
		delete(o.behindFrom, d.ID)
	case "live":
		delete(o.behindFrom, d.ID)
		if st.Behind != nil {
			o.resolve(ctx, d, behindEpisode)
		}
	case "behind", "stale":
		if st.Behind != nil {
			if !st.Behind.Published {
				o.raise(ctx, d, behindEpisode, st.Behind.Since, true)
			}
			return
		}
		from, ok := o.behindFrom[d.ID]
		if !ok || from.Before(st.BehindCleared) {
			o.behindFrom[d.ID] = now
		} else if now.Sub(from) >= o.s.cfg.BehindFor {
			o.raise(ctx, d, behindEpisode, from, false)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
