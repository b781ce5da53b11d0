package pairing

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// clientAddr finds a request's client address. X-Forwarded-For is believed only when the
// connection comes from a trusted proxy, and then only up to the first address that is
// not itself a trusted proxy, counting from the right: anything to the left of that was
// written by the client and proves nothing.
type clientAddr struct {
	trusted []netip.Prefix
}

func newClientAddr(proxies []string) (*clientAddr, error) {
	c := &clientAddr{}
	for _, p := range proxies {
		if !strings.Contains(p, "/") {
			addr, err := netip.ParseAddr(p)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", p, err)
			}
			addr = addr.Unmap() // addresses are compared unmapped
			c.trusted = append(c.trusted, netip.PrefixFrom(addr, addr.BitLen()))
			continue
		}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", p, err)
		}
		if a := pfx.Addr(); a.Is4In6() {
			if pfx.Bits() < 96 {
				return nil, fmt.Errorf("trusted proxy %q: an IPv4-mapped range needs at least /96", p)
			}
			pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
		}
		c.trusted = append(c.trusted, pfx.Masked())
	}
	return c, nil
}

func (c *clientAddr) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// of returns the client's IP address as text.
func (c *clientAddr) of(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if !c.isTrusted(peer) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if !c.isTrusted(a.Unmap()) {
			return a.Unmap().String()
		}
		peer = a.Unmap()
	}
	return peer.String()
}

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
