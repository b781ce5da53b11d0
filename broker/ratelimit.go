package broker

import (
	"hash/maphash"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// Defaults of LimiterConfig.
const (
	// DefaultIPv6Prefix keys IPv6 clients by their /64: one customer network, which a
	// single host can fill with 2^64 fresh addresses.
	DefaultIPv6Prefix = 64
	// DefaultLimiterEntries bounds the addresses one Limiter remembers.
	DefaultLimiterEntries = 16384
)

// limiterShards spreads a Limiter's addresses over this many locks: calls from
// different addresses rarely wait for each other.
const limiterShards = 32

// LimiterEntryBytes is what one remembered address costs at most, measured with
// runtime.MemStats (TestLimiterMemoryIsBounded): a 32-byte slot in its shard's array and
// its index entry in the shard's map, with the map's spare room.
const LimiterEntryBytes = 128

// LimiterConfig configures a Limiter.
type LimiterConfig struct {
	// Every is how often an address earns one more attempt. Required.
	Every time.Duration
	// Burst is how many attempts an address may make at once. Required, at least 1.
	Burst int
	// IPv6Prefix is how many leading bits of an IPv6 address name one client: every
	// address of that prefix shares one allowance. 48 to 128. Default 64. IPv4
	// addresses (and IPv4-mapped IPv6 ones) are keyed whole.
	IPv6Prefix int
	// MaxEntries bounds the addresses remembered. Past it, the address heard from
	// least recently is forgotten (it gets a fresh allowance if it comes back, as if
	// its bucket had refilled). Default DefaultLimiterEntries, so a Limiter holds at
	// most DefaultLimiterEntries × LimiterEntryBytes = 2 MiB, however many
	// addresses call.
	MaxEntries int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Limiter is a token bucket per client address, bounded in memory and O(1) per call.
// It is per instance on purpose: it bounds how fast one address can try here, cheaply;
// cluster-wide bounds (PIN guesses per feed) are counters in KV.
//
// Each address costs one GCRA timestamp (the time its bucket is full again), kept in
// one of 32 shards, each a fixed-capacity array with a map index and an LRU list: a
// call takes one shard's lock, touches one entry and, when the shard is full, reuses
// the least recently used one. There is no sweep. An entry whose bucket is full is the
// same as no entry, so forgetting the least recently used address loses least.
//
// Addresses that are not IP addresses (a Unix socket's "@") all share one key.
type Limiter struct {
	every int64 // ns
	tol   int64 // how far an address's GCRA time may run ahead of now: (burst-1)·every
	bits  int
	now   func() time.Time
	seed  maphash.Seed

	shards [limiterShards]limiterShard
}

type limiterShard struct {
	mu         sync.Mutex
	idx        map[[16]byte]int32
	ents       []limiterEntry // at most cap; grown as addresses arrive
	cap        int
	head, tail int32 // most and least recently used; -1 when empty
}

type limiterEntry struct {
	key        [16]byte
	tat        int64 // unix ns when the bucket is full again (GCRA's theoretical arrival time)
	prev, next int32 // LRU list, towards head and towards tail; -1 at the ends
}

// NewLimiter returns a Limiter. A zero Every or Burst is a programming error: it panics.
func NewLimiter(cfg LimiterConfig) *Limiter {
	if cfg.Every <= 0 || cfg.Burst < 1 {
		panic("broker: NewLimiter needs Every > 0 and Burst >= 1")
	}
	if cfg.IPv6Prefix == 0 {
		cfg.IPv6Prefix = DefaultIPv6Prefix
	}
	cfg.IPv6Prefix = min(max(cfg.IPv6Prefix, 0), 128)
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultLimiterEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Limiter{
		every: int64(cfg.Every), bits: cfg.IPv6Prefix, now: cfg.Now, seed: maphash.MakeSeed(),
	}
	l.tol = int64(cfg.Burst-1) * l.every
	per := max((cfg.MaxEntries+limiterShards-1)/limiterShards, 1)
	for i := range l.shards {
		l.shards[i] = limiterShard{idx: map[[16]byte]int32{}, cap: per, head: -1, tail: -1}
	}
	return l
}

// LimitKey is the text of the allowance an address falls under: the address itself
// for IPv4, its prefix (such as "2001:db8:1:2::/64") for IPv6. For places that keep
// per-address state of their own and must key it as the limiters do.
func LimitKey(addr string, ipv6Prefix int) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	if ipv6Prefix == 0 {
		ipv6Prefix = DefaultIPv6Prefix
	}
	p, _ := a.Prefix(min(max(ipv6Prefix, 0), 128))
	return p.String()
}

func (l *Limiter) key(addr string) [16]byte {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return [16]byte{}
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(l.bits)
		a = p.Addr()
	}
	return a.As16() // IPv4 as ::ffff:a.b.c.d: never equal to a masked IPv6 key above
}

func (l *Limiter) shard(k [16]byte) *limiterShard {
	return &l.shards[maphash.Comparable(l.seed, k)%limiterShards]
}

// Allow takes one attempt for addr's allowance. When there is none left it reports how
// long until there is; a refused call takes nothing, so hammering does not push the
// wait out.
func (l *Limiter) Allow(addr string) (bool, time.Duration) {
	k := l.key(addr)
	now := l.now().UnixNano()
	s := l.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.idx[k]
	if !ok {
		i = s.insert(k, now)
	} else {
		s.touch(i)
	}
	e := &s.ents[i]
	t := max(e.tat, now)
	if t-now > l.tol {
		return false, time.Duration(t - now - l.tol)
	}
	e.tat = t + l.every
	return true, 0
}

// Blocked reports, without taking anything, whether addr has no attempt left and how
// long until it has one: for checks that must refuse before they look (a password
// comparison, a KV lookup) and count only what fails, with Allow.
func (l *Limiter) Blocked(addr string) (bool, time.Duration) {
	k := l.key(addr)
	now := l.now().UnixNano()
	s := l.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.idx[k]
	if !ok {
		return false, 0
	}
	if t := s.ents[i].tat; t-now > l.tol {
		return true, time.Duration(t - now - l.tol)
	}
	return false, 0
}

// Len is how many addresses are remembered now: at most MaxEntries (rounded up to a
// multiple of 32).
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.idx)
		s.mu.Unlock()
	}
	return n
}

// insert makes the entry of k (a full bucket) at the head, reusing the least recently
// used entry when the shard is at its cap.
func (s *limiterShard) insert(k [16]byte, now int64) int32 {
	var i int32
	if len(s.ents) < s.cap {
		s.ents = append(s.ents, limiterEntry{})
		i = int32(len(s.ents) - 1)
	} else {
		i = s.tail
		s.unlink(i)
		delete(s.idx, s.ents[i].key)
	}
	s.ents[i] = limiterEntry{key: k, tat: now, prev: -1, next: -1}
	s.idx[k] = i
	s.pushHead(i)
	return i
}

func (s *limiterShard) touch(i int32) {
	if s.head == i {
		return
	}
	s.unlink(i)
	s.pushHead(i)
}

func (s *limiterShard) unlink(i int32) {
	e := &s.ents[i]
	if e.prev >= 0 {
		s.ents[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.ents[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (s *limiterShard) pushHead(i int32) {
	e := &s.ents[i]
	e.prev, e.next = -1, s.head
	if s.head >= 0 {
		s.ents[s.head].prev = i
	}
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
}

// RateLimited is the 429 answer of a refusal by a Limiter: rate_limited with a
// Retry-After of the wait in whole seconds, at least 1.
func RateLimited(wait time.Duration) *httpx.Error {
	secs := RetryAfterSeconds(wait)
	return &httpx.Error{Code: httpx.CodeRateLimited, Message: "too many attempts from this address; retry after " + strconv.Itoa(secs) + "s", RetryAfter: secs}
}

// RetryAfterSeconds is a wait as a Retry-After value: whole seconds, rounded up, at
// least 1.
func RetryAfterSeconds(wait time.Duration) int {
	return max(int(math.Ceil(wait.Seconds())), 1)
}
