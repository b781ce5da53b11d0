package pairing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// BucketPairRequests holds the open and recently decided pair requests of the reverse
// flow (docs/protocol.md §3b), so that any instance serves any step: the request itself
// (req.<request_id>), the index from its user code (code.<CODE>) and each client
// address's open requests (addr.<hash of the address>). Keys age out with the bucket's
// TTL, which every write renews; a request's own expiry is the expires_at inside it.
const BucketPairRequests = "kioskfeed_pair_requests"

// Limits of the reverse pairing flow (docs/protocol.md §3b and RFC 8628 §3.2, §3.5).
const (
	// PairRequestTTL is a request's lifetime: expires_in.
	PairRequestTTL = 10 * time.Minute
	// PollInterval is the interval a tablet is told to poll at.
	PollInterval = 5 * time.Second
	// slowDownStep is what RFC 8628 §3.5 makes a client add at each slow_down.
	slowDownStep = 5 * time.Second
	// maxPollInterval bounds how far slow_down answers push a request's interval.
	maxPollInterval = time.Minute
	// pollLeeway forgives a poll that arrives this much early: timers and networks
	// jitter, and instances' clocks differ by a few milliseconds.
	pollLeeway = 500 * time.Millisecond
	// MaxOpenPairRequests is how many undecided, unexpired requests one client
	// address may have at once.
	MaxOpenPairRequests = 5
	// maxRetryAfterFull caps the Retry-After of a refusal for too many open requests:
	// an approval or denial frees a place before the oldest request expires.
	maxRetryAfterFull = time.Minute
	// requestRetention is the bucket's TTL: long enough for a tablet to collect an
	// approval made at the last moment.
	requestRetention = PairRequestTTL + 5*time.Minute
	// approveSettle is how long a poll waits for the device an approval registers
	// to appear in the registry before concluding that it never will.
	approveSettle = 30 * time.Second
)

// Pair request states.
const (
	statusPending  = "pending"
	statusApproved = "approved"
	statusDenied   = "denied"
	statusExpired  = "expired"
)

// pendingPair is one request of the reverse flow as kept in KV.
type pendingPair struct {
	ID         string    `json:"request_id"`
	Code       string    `json:"user_code"` // normalised: eight letters, no hyphen
	JKT        string    `json:"jkt"`
	Name       string    `json:"name,omitempty"` // what the tablet suggested
	RemoteAddr string    `json:"remote_addr"`
	UserAgent  string    `json:"user_agent"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	Status     string    `json:"status"`
	// Interval is the poll interval in seconds; each slow_down adds five.
	Interval  int       `json:"interval"`
	LastPoll  time.Time `json:"last_poll,omitzero"`
	DeviceID  string    `json:"device_id,omitempty"`
	Feed      string    `json:"feed,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
}

// open reports whether an administrator may still approve or deny the request.
func (p *pendingPair) open(now time.Time) bool {
	return p.Status == statusPending && now.Before(p.ExpiresAt)
}

// ErrNoSuchRequest is the one answer, on the admin side, for a code that names no open
// request: never was, mistyped, expired, approved or denied already.
var ErrNoSuchRequest = &httpx.Error{Code: httpx.CodeNotFound, Message: "no open pairing request has that code: it may be mistyped, expired, or approved or denied already"}

// errSlotsFull is a refusal for too many open requests from one address.
type errSlotsFull struct{ wait time.Duration }

func (e errSlotsFull) Error() string { return "too many open pair requests from this address" }

// requestStore keeps pair requests in KV. Every change of a request is a
// compare-and-set on its revision, so of two instances deciding one request (an
// approval and a denial, an approval and a poll that finds it expired) exactly one
// wins, and the loser re-reads what the winner wrote.
type requestStore struct {
	kv  jetstream.KeyValue
	now func() time.Time
	// ipv6Prefix keys an IPv6 address's open requests by its prefix, as the limits do:
	// one /64 holds MaxOpenPairRequests, not that many per address of it.
	ipv6Prefix int
}

// PairRequestMaxBytes bounds the pair request bucket. Strangers fill it: each client
// address may hold MaxOpenPairRequests open requests, each about 1 KB with its code
// and the address's list, and every key ages out within requestRetention, so 64 MiB
// holds the requests of some 10,000 addresses at once. Full, the bucket refuses new
// requests (a KV bucket discards new writes): POST /api/pair/requests answers 503
// unavailable with Retry-After, and PIN pairing, approvals of the requests already
// open, and everything else go on.
const PairRequestMaxBytes = 64 << 20

// PairRequestBucketConfig is the pair request bucket's configuration, which every
// instance opens alike.
func PairRequestBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BucketPairRequests,
		Description: "pair requests of the reverse (device code) flow, their codes and per-address counts",
		History:     1,
		TTL:         requestRetention,
		MaxBytes:    PairRequestMaxBytes,
	}
}

func newRequestStore(ctx context.Context, b *broker.Broker, ipv6Prefix int, now func() time.Time) (*requestStore, error) {
	kv, err := b.Bucket(ctx, PairRequestBucketConfig())
	if err != nil {
		return nil, err
	}
	return &requestStore{kv: kv, now: now, ipv6Prefix: ipv6Prefix}, nil
}

// newRequestID makes pr_ plus 20 base32 characters: 100 random bits.
func newRequestID() string { return broker.NewID("pr_") }

// NormalizeCode returns a user code as eight letters of the RFC 8628 alphabet, ignoring
// case, spaces and hyphens, or "" when it cannot be one.
func NormalizeCode(s string) string {
	if len(s) > 32 {
		return ""
	}
	c := NormalizePIN(s)
	if len(c) != pinLength || strings.Trim(c, pinAlphabet) != "" {
		return ""
	}
	return c
}

func reqKey(id string) string    { return "req." + id }
func codeKey(code string) string { return "code." + code }

// addrKey names an address's open requests without writing the address into a key.
func addrKey(remote string) string {
	sum := sha256.Sum256([]byte(remote))
	return "addr." + hex.EncodeToString(sum[:16])
}

// create stores a new pending request for the key jkt, taking one of the address's
// places first; errSlotsFull when there is none. It picks the user code.
func (s *requestStore) create(ctx context.Context, jkt, name, remote, userAgent string) (pendingPair, error) {
	now := s.now().UTC()
	p := pendingPair{
		ID: newRequestID(), JKT: jkt, Name: name, RemoteAddr: remote, UserAgent: broker.CleanText(userAgent, maxUserAgentBytes),
		CreatedAt: now, ExpiresAt: now.Add(PairRequestTTL), Status: statusPending,
		Interval: int(PollInterval / time.Second),
	}
	if err := s.takeSlot(ctx, remote, p.ID, p.ExpiresAt); err != nil {
		return pendingPair{}, err
	}
	for range 3 { // a clash with another open code is rare; draw again
		code := randomPIN()
		_, err := s.kv.Create(ctx, codeKey(code), []byte(p.ID))
		if broker.IsKVConflict(err) {
			continue
		}
		if err != nil {
			return pendingPair{}, err
		}
		p.Code = code
		val, _ := json.Marshal(p)
		if _, err := s.kv.Create(ctx, reqKey(p.ID), val); err != nil {
			return pendingPair{}, err
		}
		return p, nil
	}
	return pendingPair{}, errors.New("could not draw a unique user code")
}

// get reads a request and its revision; found is false when there is none (any more).
func (s *requestStore) get(ctx context.Context, id string) (p pendingPair, rev uint64, found bool, err error) {
	e, err := s.kv.Get(ctx, reqKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return pendingPair{}, 0, false, nil
	}
	if err != nil {
		return pendingPair{}, 0, false, err
	}
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return pendingPair{}, 0, false, fmt.Errorf("pair request %s: %w", id, err)
	}
	return p, e.Revision(), true, nil
}

// byCode finds the request a user code names; found is false when none does.
func (s *requestStore) byCode(ctx context.Context, code string) (pendingPair, bool, error) {
	if code = NormalizeCode(code); code == "" {
		return pendingPair{}, false, nil
	}
	e, err := s.kv.Get(ctx, codeKey(code))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return pendingPair{}, false, nil
	}
	if err != nil {
		return pendingPair{}, false, err
	}
	id := string(e.Value())
	if !broker.ValidPairRequestID(id) {
		return pendingPair{}, false, nil
	}
	p, _, found, err := s.get(ctx, id)
	if err != nil || !found || p.Code != code {
		return pendingPair{}, false, err
	}
	return p, true, nil
}

// errNoChange lets a change function leave the record as it is and return its verdict.
var errNoChange = errors.New("no change")

// change applies fn to the current record of request id and writes the result with a
// compare-and-set, reading again and re-applying fn whenever another writer came
// first. fn sees the record as it is now and returns errNoChange to write nothing, or
// another error to give up with it. change returns the record as it stands
// afterwards; found is false when the request does not exist (any more).
func (s *requestStore) change(ctx context.Context, id string, fn func(p *pendingPair) error) (pendingPair, bool, error) {
	for range 20 {
		p, rev, found, err := s.get(ctx, id)
		if err != nil || !found {
			return pendingPair{}, found, err
		}
		if err := fn(&p); err != nil {
			if errors.Is(err, errNoChange) {
				return p, true, nil
			}
			return p, true, err
		}
		val, _ := json.Marshal(p)
		if _, err := s.kv.Update(ctx, reqKey(id), val, rev); err != nil {
			if broker.IsKVConflict(err) {
				continue
			}
			return pendingPair{}, true, err
		}
		return p, true, nil
	}
	return pendingPair{}, true, errors.New("pair request too contended")
}

// settle forgets a decided request's code and gives its address's place back. Both
// would age out anyway, so a failure here costs nothing but time.
func (s *requestStore) settle(ctx context.Context, p pendingPair) error {
	var errs []error
	if err := s.kv.Delete(ctx, codeKey(p.Code)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		errs = append(errs, err)
	}
	if err := s.releaseSlot(ctx, p.RemoteAddr, p.ID); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// slot is one open request of an address.
type slot struct {
	ID      string    `json:"id"`
	Expires time.Time `json:"exp"`
}

type addrSlots struct {
	Open []slot `json:"open"`
}

// editSlots compare-and-sets an address's list of open requests, dropping expired ones
// before fn sees it. fn returns false to leave the list as it is.
func (s *requestStore) editSlots(ctx context.Context, remote string, fn func(open []slot) ([]slot, bool, error)) error {
	key := addrKey(broker.LimitKey(remote, s.ipv6Prefix))
	for range 20 {
		var cur addrSlots
		var rev uint64
		e, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			rev = e.Revision()
			_ = json.Unmarshal(e.Value(), &cur) // a damaged list counts as empty
		}
		now := s.now()
		open := slices.DeleteFunc(cur.Open, func(o slot) bool { return !now.Before(o.Expires) })
		next, write, err := fn(open)
		if err != nil || !write {
			return err
		}
		val, _ := json.Marshal(addrSlots{Open: next})
		if rev == 0 {
			_, err = s.kv.Create(ctx, key, val)
		} else {
			_, err = s.kv.Update(ctx, key, val, rev)
		}
		if broker.IsKVConflict(err) {
			continue
		}
		return err
	}
	return errors.New("address's pair requests too contended")
}

// takeSlot records request id as open for remote until exp, or returns errSlotsFull.
func (s *requestStore) takeSlot(ctx context.Context, remote, id string, exp time.Time) error {
	return s.editSlots(ctx, remote, func(open []slot) ([]slot, bool, error) {
		if len(open) >= MaxOpenPairRequests {
			first := slices.MinFunc(open, func(x, y slot) int { return x.Expires.Compare(y.Expires) })
			return nil, false, errSlotsFull{wait: min(first.Expires.Sub(s.now()), maxRetryAfterFull)}
		}
		return append(open, slot{ID: id, Expires: exp}), true, nil
	})
}

func (s *requestStore) releaseSlot(ctx context.Context, remote, id string) error {
	return s.editSlots(ctx, remote, func(open []slot) ([]slot, bool, error) {
		i := slices.IndexFunc(open, func(o slot) bool { return o.ID == id })
		if i < 0 {
			return nil, false, nil
		}
		return slices.Delete(open, i, i+1), true, nil
	})
}

// listOpen returns every request an administrator may still decide, oldest first.
func (s *requestStore) listOpen(ctx context.Context) ([]pendingPair, error) {
	w, err := s.kv.WatchFiltered(ctx, []string{reqKey("*")}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	now := s.now()
	var out []pendingPair
	for {
		select {
		case e := <-w.Updates():
			if e == nil { // every current value has been seen
				slices.SortFunc(out, func(x, y pendingPair) int { return x.CreatedAt.Compare(y.CreatedAt) })
				return out, nil
			}
			var p pendingPair
			if json.Unmarshal(e.Value(), &p) == nil && p.open(now) {
				out = append(out, p)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// deviceRevoked reports whether the device an approval registered was removed since:
// its key in the devices bucket holds a delete marker. A key that was never written
// is an approval still registering its device (or one that failed and was put back),
// which a poll may wait for; a revoked device never comes back, so its request is over.
// Only a poll that finds an approved request without its device asks.
func deviceRevoked(ctx context.Context, devices jetstream.KeyValue, id string) (bool, error) {
	if !broker.ValidDeviceID(id) {
		return false, nil
	}
	hist, err := devices.History(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return hist[len(hist)-1].Operation() != jetstream.KeyValuePut, nil
}
