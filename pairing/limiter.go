package pairing

import (
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
)

// limiter is a per-address token bucket (broker.Limiter: IPv6 clients keyed by prefix,
// at most broker.DefaultLimiterEntries addresses remembered, O(1) a call). It is per
// instance on purpose: it bounds how fast one address can try, while the cluster-wide
// bound on PIN guessing is the failure counter in KV.
type limiter struct{ l *broker.Limiter }

// newLimiter keys IPv6 clients by their /64.
func newLimiter(every time.Duration, burst int, now func() time.Time) *limiter {
	return newPrefixLimiter(every, burst, 0, now)
}

// newPrefixLimiter keys IPv6 clients by their first ipv6Prefix bits (0: 64).
func newPrefixLimiter(every time.Duration, burst, ipv6Prefix int, now func() time.Time) *limiter {
	return &limiter{broker.NewLimiter(broker.LimiterConfig{Every: every, Burst: burst, IPv6Prefix: ipv6Prefix, Now: now})}
}

// allow takes a token for addr; when there is none it says how long to wait.
func (l *limiter) allow(addr string) (bool, time.Duration) { return l.l.Allow(addr) }

// blocked reports, without taking a token, whether addr has none left, and how long
// until it has one: for checks that must refuse before they look (a code lookup that
// would otherwise answer even past the allowance, a password comparison) and count
// only what fails.
func (l *limiter) blocked(addr string) (bool, time.Duration) { return l.l.Blocked(addr) }
