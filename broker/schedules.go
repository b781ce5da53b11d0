package broker

// This file owns storing the screen schedules (docs/protocol.md §6,
// #http-put-api-admin-feeds-feed-schedule): one record per feed in a KV bucket
// (KV_kioskfeed_schedules, one subject per feed, one message kept per subject), and
// every instance's copy of them, fed by a watch of the bucket as broker.Overrides is.
// What a schedule says at an instant is package schedule's; this file caches each
// feed's answer until its next change, so that the devices list and the alert rules
// ask it per device at the cost of a map lookup.

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

	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/schedule"
)

// BucketSchedules keeps one schedule per feed, keyed by the feed id.
const BucketSchedules = "kioskfeed_schedules"

// MaxSchedules is the most feeds with a schedule (docs/protocol.md §10,
// #limits-schedules): checked against the set the storing instance sees, so two
// instances storing new feeds at the same instant may store one more each.
const MaxSchedules = 1000

// ErrTooManySchedules: MaxSchedules feeds have one; delete one first.
var ErrTooManySchedules = httpx.Errorf(httpx.CodeInvalidRequest, fmt.Sprintf("at most %d feeds may have a schedule: delete one first", MaxSchedules))

// FeedSchedule is a feed's stored schedule.
type FeedSchedule struct {
	Feed      string        `json:"feed"`
	Schedule  schedule.Spec `json:"schedule"`
	UpdatedAt time.Time     `json:"updated_at"`
	Actor     string        `json:"actor,omitempty"`
	// Rev is the record's revision in the bucket: a change makes a larger one.
	Rev uint64 `json:"-"`

	parsed *schedule.Schedule
}

// Parsed is the schedule to evaluate.
func (f FeedSchedule) Parsed() *schedule.Schedule { return f.parsed }

// schedEntry is a feed's schedule and its cached state: asleep from evaluated until
// until (the schedule's next change).
type schedEntry struct {
	fs               FeedSchedule
	deleted          bool // a delete made here whose echo has not arrived: older puts are stale
	asleep           bool
	evaluated, until time.Time
}

// Schedules is every feed's schedule as this instance sees it. admin stores and lists
// them; the bridge delivers them and tells asleep devices; the alert rules keep quiet
// for asleep feeds.
type Schedules struct {
	b   *Broker
	kv  jetstream.KeyValue
	log *slog.Logger

	// mu guards byFeed and subs. Subscribers are called with mu held, one change at a
	// time and in order: they must not block or call back into Schedules.
	mu     sync.Mutex
	byFeed map[string]*schedEntry // at most MaxSchedules (and a race's few) live ones
	subs   []func(feed string, fs *FeedSchedule)
	closed bool

	cancel context.CancelFunc
	done   sync.WaitGroup
}

// NewSchedules sets up the bucket and returns once every stored schedule is loaded.
func NewSchedules(ctx context.Context, b *Broker) (*Schedules, error) {
	kv, err := b.Bucket(ctx, jetstream.KeyValueConfig{Bucket: BucketSchedules, Description: "screen schedules, one per feed", History: 1})
	if err != nil {
		return nil, err
	}
	s := &Schedules{b: b, kv: kv, log: b.log, byFeed: map[string]*schedEntry{}}
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if err := b.followBucket(ctx, wctx, kv, "schedules", &s.done, s.put, func(e jetstream.KeyValueEntry) {
		s.apply(e.Key(), nil, e.Revision())
	}); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// put takes a stored schedule from the bucket.
func (s *Schedules) put(e jetstream.KeyValueEntry) {
	var fs FeedSchedule
	err := json.Unmarshal(e.Value(), &fs)
	if err == nil {
		fs.parsed, err = schedule.Parse(fs.Schedule)
	}
	if err != nil || fs.Feed != e.Key() {
		s.log.Warn("unreadable schedule record", slog.String("key", e.Key()))
		return
	}
	fs.Rev = e.Revision()
	s.apply(fs.Feed, &fs, fs.Rev)
}

// apply makes fs the feed's schedule (nil: it has none) unless rev is older than what
// is known, and tells the subscribers of a change.
func (s *Schedules) apply(feed string, fs *FeedSchedule, rev uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	cur, had := s.byFeed[feed]
	if had && rev <= cur.fs.Rev {
		return // the watcher's echo of a change made here, or older than it
	}
	if fs == nil {
		delete(s.byFeed, feed) // the delete's echo: every older record has come by
		if !had || cur.deleted {
			return
		}
	} else {
		s.byFeed[feed] = &schedEntry{fs: *fs}
	}
	for _, fn := range s.subs {
		fn(feed, fs)
	}
}

// Subscribe calls fn for every stored schedule now, then for every change: a schedule
// stored (fs set) or deleted (fs nil). fn runs with the set's lock held, one change at a
// time, in order: it must not block or call Schedules.
func (s *Schedules) Subscribe(fn func(feed string, fs *FeedSchedule)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs = append(s.subs, fn)
	for feed, e := range s.byFeed {
		if !e.deleted {
			fs := e.fs
			fn(feed, &fs)
		}
	}
}

// Get returns the feed's schedule.
func (s *Schedules) Get(feed string) (FeedSchedule, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byFeed[feed]
	if !ok || e.deleted {
		return FeedSchedule{}, false
	}
	return e.fs, true
}

// All lists the stored schedules by feed id.
func (s *Schedules) All() []FeedSchedule {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FeedSchedule, 0, len(s.byFeed))
	for _, e := range s.byFeed {
		if !e.deleted {
			out = append(out, e.fs)
		}
	}
	slices.SortFunc(out, func(x, y FeedSchedule) int { return strings.Compare(x.Feed, y.Feed) })
	return out
}

// Asleep reports whether feed is scheduled asleep at now (a feed without a schedule
// never is). It evaluates the schedule once per change of its state: a call costs a
// map lookup and a time comparison.
func (s *Schedules) Asleep(feed string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byFeed[feed]
	if !ok || e.deleted {
		return false
	}
	if now.Before(e.evaluated) || !now.Before(e.until) {
		sch := e.fs.parsed
		e.asleep, e.evaluated = !sch.Awake(now), now
		if e.until = sch.Next(now); e.until.IsZero() {
			e.until = now.Add(schedule.NextHorizon / 2)
		}
	}
	return e.asleep
}

// Put checks spec and stores it as feed's schedule, replacing any; actor names the
// credential (AuditRecord.Actor).
func (s *Schedules) Put(ctx context.Context, feed string, spec schedule.Spec, actor string) (FeedSchedule, error) {
	if !ValidFeedID(feed) {
		return FeedSchedule{}, httpx.Errorf(httpx.CodeInvalidRequest, "feed id must match ^[a-z0-9][a-z0-9-]{0,62}$")
	}
	sch, err := schedule.Parse(spec)
	if err != nil {
		return FeedSchedule{}, httpx.Errorf(httpx.CodeInvalidRequest, err.Error())
	}
	s.mu.Lock()
	_, exists := s.byFeed[feed]
	n := len(s.byFeed)
	s.mu.Unlock()
	if !exists && n >= MaxSchedules {
		return FeedSchedule{}, ErrTooManySchedules
	}
	fs := FeedSchedule{Feed: feed, Schedule: sch.Spec(), UpdatedAt: s.b.Now().UTC().Truncate(time.Second), Actor: actor, parsed: sch}
	val, _ := json.Marshal(fs)
	ctx, cancel := s.b.opCtx(ctx)
	defer cancel()
	rev, err := s.kv.Put(ctx, feed, val)
	if err != nil {
		return FeedSchedule{}, s.b.unavailable("store schedule", err)
	}
	fs.Rev = rev
	s.apply(feed, &fs, rev) // at once here; the watcher's echo is then a no-op
	return fs, nil
}

// Delete removes feed's schedule everywhere: its tablets stay awake. ok is false when
// it had none.
func (s *Schedules) Delete(ctx context.Context, feed string) (bool, error) {
	if !ValidFeedID(feed) { // before it reaches NATS as a key
		return false, nil
	}
	if _, ok := s.Get(feed); !ok {
		return false, nil
	}
	ctx, cancel := s.b.opCtx(ctx)
	defer cancel()
	if err := s.kv.Delete(ctx, feed); err != nil {
		return false, s.b.unavailable("delete schedule", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.byFeed[feed]; ok && !e.deleted && !s.closed {
		e.deleted = true // kept, with its revision, until the delete's echo
		for _, fn := range s.subs {
			fn(feed, nil)
		}
	}
	return true, nil
}

// Stop ends the watcher and waits for it. It is idempotent.
func (s *Schedules) Stop() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.done.Wait()
}
