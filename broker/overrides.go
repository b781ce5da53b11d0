package broker

// This file owns the emergency overrides (docs/protocol.md §6, #http-post-api-admin-overrides):
// what one is, how it is raised, cleared and expires, and who acknowledged it.
//
// The log is the source of truth. An override is one record in a KV bucket, which is
// a JetStream stream (KV_kioskfeed_overrides: one subject per override, one message
// kept per subject, file storage, the broker's replicas): raising stores it, clearing
// stores the bucket's delete marker on its subject. A KV watch is an ordered consumer
// on that stream that delivers the newest message of every subject first (deletes
// included) and then every change, and starts again where it was after a NATS
// reconnect: every instance, and every instance that starts later, sees the same set.
// Expiry needs no write: every instance evaluates expires_at with the cluster's clock
// (Broker.Now), and the bucket's age limit drops the records of expired overrides.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// Buckets of the overrides and of their acknowledgements.
const (
	BucketOverrides    = "kioskfeed_overrides"
	BucketOverrideAcks = "kioskfeed_override_acks"
)

// Bounds of an override (docs/protocol.md §10). Everything an administrator can make
// every tablet show is bounded: its size, its lifetime and how many are active.
const (
	// MaxOverrides is the most overrides active at once.
	MaxOverrides = 16
	// MaxOverrideTitle and MaxOverrideBody bound the text, in characters.
	MaxOverrideTitle = 120
	MaxOverrideBody  = 2000
	// MaxOverrideFeeds bounds the feeds one override names ("*" is one).
	MaxOverrideFeeds = 100
	// MinOverrideExpiry and MaxOverrideExpiry bound expires_in; DefaultOverrideExpiry is
	// what an override without one gets.
	MinOverrideExpiry     = time.Minute
	MaxOverrideExpiry     = 24 * time.Hour
	DefaultOverrideExpiry = time.Hour
	// DefaultOverrideLevel is the level of an override that names none: an override is
	// an emergency unless it says otherwise.
	DefaultOverrideLevel = "danger"
	// AllFeeds in an override's feeds means every feed, those that appear later too.
	AllFeeds = "*"
)

// overrideKeep is the buckets' age limit: past the longest lifetime, so the record of an
// active override is never dropped, and an expired one's is within an hour.
const overrideKeep = MaxOverrideExpiry + time.Hour

// Override is an emergency message every tablet of its feeds shows full screen until it
// is cleared or expires.
type Override struct {
	ID        string    `json:"id"`
	Feeds     []string  `json:"feeds"`
	Title     string    `json:"title"`
	Body      string    `json:"body"`
	Level     string    `json:"level"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Actor     string    `json:"actor,omitempty"`
}

// Covers reports whether the override is for feed.
func (o *Override) Covers(feed string) bool {
	return slices.Contains(o.Feeds, AllFeeds) || slices.Contains(o.Feeds, feed)
}

// OverrideInput is what raising an override asks for (POST /api/admin/overrides).
type OverrideInput struct {
	Feeds     []string `json:"feeds"`
	Title     string   `json:"title"`
	Body      string   `json:"body"`
	Level     string   `json:"level"`
	ExpiresIn string   `json:"expires_in"`
}

// ValidOverrideID reports whether id has the form of an override id: ovr_ plus 13
// characters of lower-case base32 (64 random bits).
func ValidOverrideID(id string) bool {
	return prefixedID(id, "ovr_", 13, "abcdefghijklmnopqrstuvwxyz234567")
}

// ErrTooManyOverrides: MaxOverrides are active; clear one first.
var ErrTooManyOverrides = httpx.Errorf(httpx.CodeInvalidRequest, fmt.Sprintf("at most %d overrides may be active at once: clear one first", MaxOverrides))

// Overrides is the set of active overrides as this instance sees it, fed by a watch of
// the bucket, and the acknowledgements tablets send. Both admin (raise, clear, list)
// and the bridge (deliver, acknowledge) use one each.
type Overrides struct {
	b    *Broker
	kv   jetstream.KeyValue
	acks jetstream.KeyValue
	log  *slog.Logger

	// mu guards active, subs and the expiry timer. Subscribers are called with mu held,
	// so that the changes reach them one at a time and in order, from the watcher and
	// the timer alike: they must not block or call back into Overrides.
	mu     sync.Mutex
	active map[string]Override
	subs   []func(o Override, cleared bool)
	timer  *time.Timer
	closed bool

	ackMu   sync.Mutex
	acked   map[string]map[string]bool      // override id → device ids written (or queued)
	pending map[string]map[string]time.Time // override id → device → when, not yet written
	ackKick chan struct{}

	cancel context.CancelFunc
	done   sync.WaitGroup
}

// NewOverrides sets up the buckets and returns once every stored override is loaded.
func NewOverrides(ctx context.Context, b *Broker) (*Overrides, error) {
	kv, err := b.Bucket(ctx, jetstream.KeyValueConfig{Bucket: BucketOverrides, Description: "emergency overrides", History: 1, TTL: overrideKeep})
	if err != nil {
		return nil, err
	}
	acks, err := b.Bucket(ctx, jetstream.KeyValueConfig{Bucket: BucketOverrideAcks, Description: "which devices showed which override", History: 1, TTL: overrideKeep})
	if err != nil {
		return nil, err
	}
	o := &Overrides{b: b, kv: kv, acks: acks, log: b.log, active: map[string]Override{},
		acked: map[string]map[string]bool{}, pending: map[string]map[string]time.Time{}, ackKick: make(chan struct{}, 1)}
	wctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	if err := b.followBucket(ctx, wctx, kv, "overrides", &o.done, o.stored, func(e jetstream.KeyValueEntry) {
		o.remove(e.Key())
	}); err != nil {
		o.Stop()
		return nil, err
	}
	o.done.Add(1)
	go o.flushAcks(wctx)
	return o, nil
}

// stored takes a stored override from the bucket.
func (o *Overrides) stored(e jetstream.KeyValueEntry) {
	var ov Override
	if err := json.Unmarshal(e.Value(), &ov); err != nil || ov.ID != e.Key() {
		o.log.Warn("unreadable override record", slog.String("key", e.Key()))
		return
	}
	o.put(ov)
}

// put makes ov active (unless it has expired) and tells the subscribers of a new one.
func (o *Overrides) put(ov Override) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || !ov.ExpiresAt.After(o.b.Now()) {
		return
	}
	if _, ok := o.active[ov.ID]; ok {
		return // the watcher's echo of a write made here
	}
	o.active[ov.ID] = ov
	for _, fn := range o.subs {
		fn(ov, false)
	}
	o.armLocked()
}

// remove ends an override (cleared here or elsewhere) and tells the subscribers.
func (o *Overrides) remove(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.removeLocked(id)
	o.armLocked()
}

func (o *Overrides) removeLocked(id string) {
	ov, ok := o.active[id]
	if !ok {
		return
	}
	delete(o.active, id)
	for _, fn := range o.subs {
		fn(ov, true)
	}
	o.ackMu.Lock()
	delete(o.acked, id) // its acknowledgements stay in the bucket until they age out
	o.ackMu.Unlock()
}

// armLocked sets the timer to the soonest expiry, or a second from now when that is
// sooner: the cluster's clock is this machine's plus a measured offset, which moves.
func (o *Overrides) armLocked() {
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	if o.closed || len(o.active) == 0 {
		return
	}
	var soonest time.Time
	for _, ov := range o.active {
		if soonest.IsZero() || ov.ExpiresAt.Before(soonest) {
			soonest = ov.ExpiresAt
		}
	}
	o.timer = time.AfterFunc(min(soonest.Sub(o.b.Now()), time.Second), o.expire)
}

// expire ends the overrides whose time has come, by the cluster's clock.
func (o *Overrides) expire() {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.b.Now()
	for id, ov := range o.active {
		if !ov.ExpiresAt.After(now) {
			o.removeLocked(id)
		}
	}
	o.armLocked()
}

// Subscribe calls fn for every override active now (cleared false), then for every
// change: a new override (cleared false), one cleared or expired (cleared true). fn
// runs with the set's lock held, one change at a time, in order: it must not block or
// call Overrides.
func (o *Overrides) Subscribe(fn func(o Override, cleared bool)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.subs = append(o.subs, fn)
	for _, ov := range o.sortedLocked() {
		fn(ov, false)
	}
}

// Active lists the active overrides, oldest first.
func (o *Overrides) Active() []Override {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sortedLocked()
}

func (o *Overrides) sortedLocked() []Override {
	now := o.b.Now()
	out := make([]Override, 0, len(o.active))
	for _, ov := range o.active {
		if ov.ExpiresAt.After(now) {
			out = append(out, ov)
		}
	}
	slices.SortFunc(out, func(x, y Override) int {
		if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return out
}

// Get returns an active override.
func (o *Overrides) Get(id string) (Override, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ov, ok := o.active[id]
	return ov, ok && ov.ExpiresAt.After(o.b.Now())
}

// Raise checks in, stores the override it describes and returns it. actor names the
// credential that raised it (AuditRecord.Actor). At most MaxOverrides are active: the
// check is against the set this instance sees, so two instances raising at the same
// instant may store one more each, never more than that.
func (o *Overrides) Raise(ctx context.Context, in OverrideInput, actor string) (Override, error) {
	ov, err := o.check(in)
	if err != nil {
		return Override{}, err
	}
	if len(o.Active()) >= MaxOverrides {
		return Override{}, ErrTooManyOverrides
	}
	ov.ID = "ovr_" + NewKeyID()
	ov.Actor = actor
	val, _ := json.Marshal(ov)
	ctx, cancel := o.b.opCtx(ctx)
	defer cancel()
	if _, err := o.kv.Create(ctx, ov.ID, val); err != nil {
		return Override{}, o.b.unavailable("raise override", err)
	}
	o.put(ov) // at once here; the watcher's echo is then a no-op
	return ov, nil
}

// check validates in and returns the override it describes, without id or actor.
func (o *Overrides) check(in OverrideInput) (Override, error) {
	bad := func(msg string) (Override, error) { return Override{}, httpx.Errorf(httpx.CodeInvalidRequest, msg) }
	if len(in.Feeds) == 0 || len(in.Feeds) > MaxOverrideFeeds {
		return bad(fmt.Sprintf(`"feeds" must list 1 to %d feed ids, or be ["*"] for every feed`, MaxOverrideFeeds))
	}
	var feeds []string
	for _, f := range in.Feeds {
		if f != AllFeeds && !ValidFeedID(f) {
			return bad(`each of "feeds" must be a feed id (^[a-z0-9][a-z0-9-]{0,62}$) or "*" for every feed`)
		}
		if !slices.Contains(feeds, f) {
			feeds = append(feeds, f)
		}
	}
	if slices.Contains(feeds, AllFeeds) {
		feeds = []string{AllFeeds}
	}
	title, err := CheckName("title", in.Title, MaxOverrideTitle)
	if err != nil {
		return Override{}, err
	}
	body := strings.TrimSpace(in.Body)
	if !utf8.ValidString(body) || utf8.RuneCountInString(body) > MaxOverrideBody {
		return bad(fmt.Sprintf(`"body" must be valid UTF-8 text of at most %d characters`, MaxOverrideBody))
	}
	for _, r := range body {
		if r != '\n' && RefusedRune(r) {
			return bad(`"body" may hold line breaks, but no other control or invisible formatting character`)
		}
	}
	if title == "" && body == "" {
		return bad(`an override needs a "title" or a "body"`)
	}
	level := in.Level
	switch level {
	case "":
		level = DefaultOverrideLevel
	case "info", "warning", "danger":
	default:
		return bad(`"level" must be "info", "warning" or "danger"`)
	}
	ttl := DefaultOverrideExpiry
	if in.ExpiresIn != "" {
		d, err := time.ParseDuration(in.ExpiresIn)
		if err != nil || d < MinOverrideExpiry || d > MaxOverrideExpiry {
			return bad(`"expires_in" must be a duration from 1m to 24h, such as "30m"`)
		}
		ttl = d
	}
	now := o.b.Now().UTC().Truncate(time.Second)
	return Override{Feeds: feeds, Title: title, Body: body, Level: level, CreatedAt: now, ExpiresAt: now.Add(ttl)}, nil
}

// Clear ends an active override everywhere; ok is false when no active override has
// that id.
func (o *Overrides) Clear(ctx context.Context, id string) (Override, bool, error) {
	if !ValidOverrideID(id) { // before it reaches NATS as a key
		return Override{}, false, nil
	}
	ov, ok := o.Get(id)
	if !ok {
		return Override{}, false, nil
	}
	ctx, cancel := o.b.opCtx(ctx)
	defer cancel()
	if err := o.kv.Delete(ctx, id); err != nil {
		return Override{}, false, o.b.unavailable("clear override", err)
	}
	o.remove(id)
	return ov, true, nil
}

// Stop ends the watcher and the acknowledgements' writer (writing what is queued
// first, within a second) and waits for them. It is idempotent.
func (o *Overrides) Stop() {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.closed = true
	if o.timer != nil {
		o.timer.Stop()
	}
	o.mu.Unlock()
	o.cancel()
	o.done.Wait()
}
