package pairing

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a per-address token bucket. It is per instance on purpose: it bounds how
// fast one address can try, while the cluster-wide bound on PIN guessing is the failure
// counter in KV.
type limiter struct {
	every time.Duration
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	swept   time.Time
}

func newLimiter(every time.Duration, burst int, now func() time.Time) *limiter {
	return &limiter{every: every, burst: burst, now: now, buckets: map[string]*rate.Limiter{}}
}

// allow takes a token for addr; when there is none it says how long to wait.
func (l *limiter) allow(addr string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	// Forget full buckets now and then, so that a scan from many addresses leaves
	// nothing behind.
	if now.Sub(l.swept) > time.Minute {
		for a, b := range l.buckets {
			if b.TokensAt(now) >= float64(l.burst) {
				delete(l.buckets, a)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[addr]
	if !ok {
		b = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.buckets[addr] = b
	}
	if b.AllowN(now, 1) {
		return true, 0
	}
	r := b.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return false, wait
}

// blocked reports, without taking a token, whether addr has none left, and how long
// until it has one: for checks that must refuse before they look (a code lookup that
// would otherwise answer even past the allowance) and count only what fails.
func (l *limiter) blocked(addr string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[addr]
	if !ok {
		return false, 0
	}
	tokens := b.TokensAt(now)
	if tokens >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - tokens) * float64(l.every))
}
