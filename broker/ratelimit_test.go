package broker_test

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Unix(1_800_000_000, 0).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func limiterOf(c *fakeClock, every time.Duration, burst int) *broker.Limiter {
	return broker.NewLimiter(broker.LimiterConfig{Every: every, Burst: burst, Now: c.Now})
}

func TestLimiterBurstThenRate(t *testing.T) {
	const every, burst = 10 * time.Second, 3
	clk := newFakeClock()
	l := limiterOf(clk, every, burst)
	allow := func(addr string) bool {
		t.Helper()
		ok, wait := l.Allow(addr)
		if ok != (wait == 0) {
			t.Fatalf("Allow(%q) = %v, wait %v: want a wait exactly when refused", addr, ok, wait)
		}
		return ok
	}
	for i := range burst {
		if blocked, _ := l.Blocked("192.0.2.1"); blocked {
			t.Fatalf("blocked before attempt %d of the burst", i+1)
		}
		if !allow("192.0.2.1") {
			t.Fatalf("attempt %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Allow("192.0.2.1")
	if ok || wait <= 0 || wait > every {
		t.Fatalf("past the burst: allowed %v, wait %v; want a refusal with a wait in (0, %v]", ok, wait, every)
	}
	if blocked, bw := l.Blocked("192.0.2.1"); !blocked || bw != wait {
		t.Fatalf("Blocked past the burst = %v, %v; want true, %v", blocked, bw, wait)
	}
	for range 50 { // refused attempts take nothing
		if _, w := l.Allow("192.0.2.1"); w > wait {
			t.Fatalf("wait grew from %v to %v with refused attempts", wait, w)
		}
	}
	for i := range burst { // another address has its own allowance
		if !allow("192.0.2.2") {
			t.Fatalf("another address, attempt %d: refused", i+1)
		}
	}
	clk.Add(wait / 2)
	if allow("192.0.2.1") {
		t.Fatal("allowed before the wait was over")
	}
	clk.Add(wait - wait/2)
	if !allow("192.0.2.1") {
		t.Fatal("refused after waiting as told")
	}
	if allow("192.0.2.1") {
		t.Fatal("a second attempt allowed after one interval")
	}
	clk.Add(10 * every)
	for i := range burst {
		if !allow("192.0.2.1") {
			t.Fatalf("after the refill, attempt %d refused", i+1)
		}
	}
	if allow("192.0.2.1") {
		t.Fatal("refill went past the burst")
	}
	if blocked, _ := l.Blocked("198.51.100.1"); blocked {
		t.Fatal("an address never seen is blocked")
	}
}

// TestLimiterKeysIPv6ByPrefix: addresses of one /64 share an allowance, another /64
// has its own; IPv4-mapped addresses are their IPv4 address; the prefix is configurable.
func TestLimiterKeysIPv6ByPrefix(t *testing.T) {
	clk := newFakeClock()
	exhaust := func(l *broker.Limiter, addr string) {
		t.Helper()
		for l.Blocked(addr); ; {
			if ok, _ := l.Allow(addr); !ok {
				return
			}
		}
	}
	for _, tc := range []struct {
		name      string
		prefix    int
		first     string
		same      []string
		different []string
	}{
		{"IPv6 /64 by default", 0, "2001:db8:1:2::1",
			[]string{"2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::1%eth0"},
			[]string{"2001:db8:1:3::1", "2001:db8:2:2::1", "192.0.2.1"}},
		{"IPv6 /48", 48, "2001:db8:1:2::1",
			[]string{"2001:db8:1:ffff::1"},
			[]string{"2001:db8:2::1"}},
		{"IPv6 /128", 128, "2001:db8::1",
			nil,
			[]string{"2001:db8::2"}},
		{"IPv4 whole", 0, "192.0.2.1",
			[]string{"::ffff:192.0.2.1"},
			[]string{"192.0.2.2", "::ffff:192.0.2.2", "::192.0.2.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := broker.NewLimiter(broker.LimiterConfig{Every: time.Hour, Burst: 2, IPv6Prefix: tc.prefix, Now: clk.Now})
			exhaust(l, tc.first)
			for _, a := range tc.same {
				if ok, wait := l.Allow(a); ok || wait <= 0 {
					t.Errorf("%s after %s used the allowance: allowed %v; want refused, it is the same client", a, tc.first, ok)
				}
			}
			for _, a := range tc.different {
				if ok, _ := l.Allow(a); !ok {
					t.Errorf("%s refused after %s used its allowance; want its own", a, tc.first)
				}
			}
		})
	}
	if got := broker.LimitKey("2001:db8:1:2:3:4:5:6", 0); got != "2001:db8:1:2::/64" {
		t.Errorf("LimitKey of an IPv6 address = %q, want its /64", got)
	}
	if got := broker.LimitKey("::ffff:192.0.2.7", 64); got != "192.0.2.7" {
		t.Errorf("LimitKey of an IPv4-mapped address = %q, want the IPv4 address", got)
	}
}

// TestLimiterMemoryIsBounded: a million distinct addresses (IPv4, and IPv6 /64s) leave
// at most MaxEntries remembered and grow the live heap by less than
// MaxEntries × LimiterEntryBytes; an address being limited while the flood passes is
// still limited afterwards, because it kept being heard from.
func TestLimiterMemoryIsBounded(t *testing.T) {
	const distinct = 1_000_000
	clk := newFakeClock()
	var live0 uint64
	{
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		live0 = m.HeapAlloc
	}
	l := broker.NewLimiter(broker.LimiterConfig{Every: time.Minute, Burst: 5, Now: clk.Now})
	const victim = "203.0.113.50"
	for range 5 {
		l.Allow(victim)
	}
	var b4 [4]byte
	var b16 [16]byte
	b16[0], b16[1] = 0x20, 0x01
	for i := range distinct {
		var a netip.Addr
		if i%2 == 0 {
			b4 = [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}
			a = netip.AddrFrom4(b4)
		} else {
			b16[4], b16[5], b16[6], b16[7] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
			a = netip.AddrFrom16(b16)
		}
		l.Allow(a.String())
		if i%1000 == 0 {
			if ok, _ := l.Allow(victim); ok {
				t.Fatalf("after %d other addresses the limited address was let through", i)
			}
		}
	}
	n := l.Len()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	grown := int64(m.HeapAlloc) - int64(live0)
	bound := int64(broker.DefaultLimiterEntries * broker.LimiterEntryBytes)
	t.Logf("%d distinct addresses: %d remembered, live heap grew %d KiB (bound %d KiB)", distinct, n, grown>>10, bound>>10)
	if n > broker.DefaultLimiterEntries+31 {
		t.Errorf("%d addresses remembered, want at most %d", n, broker.DefaultLimiterEntries)
	}
	if grown > bound {
		t.Errorf("live heap grew by %d bytes, want at most %d (%d entries × %d bytes)", grown, bound, broker.DefaultLimiterEntries, broker.LimiterEntryBytes)
	}
	runtime.KeepAlive(l)
}

// TestLimiterConcurrent: many goroutines on shared and own addresses, under -race: the
// shared address gets exactly its burst, however the calls interleave. The cap is far
// above the 4,001 addresses, so no eviction (which forgets an allowance by design, see
// MaxEntries) can blur the count; TestLimiterMemoryIsBounded tests the cap.
func TestLimiterConcurrent(t *testing.T) {
	clk := newFakeClock()
	const maxEntries = 1 << 16
	l := broker.NewLimiter(broker.LimiterConfig{Every: time.Hour, Burst: 100, MaxEntries: maxEntries, Now: clk.Now})
	var wg sync.WaitGroup
	var shared atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				if ok, _ := l.Allow("192.0.2.1"); ok {
					shared.Add(1)
				}
				l.Allow(fmt.Sprintf("10.%d.%d.%d", g, i/256, i%256))
				l.Blocked("192.0.2.1")
			}
		})
	}
	wg.Wait()
	if got := shared.Load(); got != 100 {
		t.Fatalf("shared address allowed %d times, want its burst of 100", got)
	}
	if n := l.Len(); n != 8*500+1 {
		t.Fatalf("%d remembered, want the 4,001 addresses that called", n)
	}
}

// BenchmarkLimiterDistinctAddresses: the cost of one call from an address never seen,
// with the limiter at its cap (every call evicts one).
func BenchmarkLimiterDistinctAddresses(b *testing.B) {
	l := broker.NewLimiter(broker.LimiterConfig{Every: time.Second, Burst: 10})
	addrs := make([]string, 1<<16)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String()
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(addrs[i&(len(addrs)-1)])
			i += 7
		}
	})
}

// producerCall publishes with key as if from client (through the trusted proxy
// 127.0.0.1 when client is not empty) and returns the status and Retry-After.
func producerCall(t *testing.T, s *apiServer, key, client string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", s.URL+"/api/feeds/lobby/events", strings.NewReader(`{"kind":"item","data":{}}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	if client != "" {
		req.Header.Set("X-Forwarded-For", client)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// TestUnknownProducerKeysLimitedBeforeLookup: a flood of kfp.<unknown id>.x from one
// client is answered 429 with Retry-After after its failure allowance, and from then on
// costs no NATS message (the key is not looked up); a good key from another client
// still publishes, and the same client's other /64 neighbours share its refusal.
// On the old code every one of the 200 calls was a KV lookup (and none was 429).
func TestUnknownProducerKeysLimitedBeforeLookup(t *testing.T) {
	b := brokertest.New(t, func(c *broker.Config) { c.TrustedProxies = []string{"127.0.0.1"} })
	s := startAPI(t, b)
	good := s.createKey(t, "lobby")
	const flood = 200
	const attacker = "2001:db8:7:7::1"
	first429 := -1
	out0 := b.Conn().Stats().OutMsgs
	for i := range flood {
		status, ra := producerCall(t, s, "kfp.aaaaaaaaaaaaa.x", attacker)
		switch {
		case status == http.StatusTooManyRequests:
			if n, err := strconv.Atoi(ra); err != nil || n < 1 {
				t.Fatalf("call %d: 429 with Retry-After %q, want whole seconds", i, ra)
			}
			if first429 < 0 {
				first429 = i
			}
		case status != http.StatusUnauthorized || first429 >= 0:
			t.Fatalf("call %d: %d (first 429 at %d), want 401 until the first 429, then 429", i, status, first429)
		}
	}
	sent := b.Conn().Stats().OutMsgs - out0
	t.Logf("first 429 at call %d; %d NATS messages for %d calls", first429, sent, flood)
	if first429 < 0 {
		t.Fatalf("%d bad keys from one client: no 429", flood)
	}
	if sent > 60 {
		t.Fatalf("%d NATS messages for %d bad keys, want the lookups bounded by the allowance (~20)", sent, flood)
	}
	if status, _ := producerCall(t, s, "kfp.aaaaaaaaaaaaa.x", "2001:db8:7:7:ffff::9"); status != http.StatusTooManyRequests {
		t.Fatalf("another address of the same /64: %d, want 429 (one allowance per /64)", status)
	}
	if status, _ := producerCall(t, s, good, "198.51.100.20"); status != http.StatusAccepted {
		t.Fatalf("a good key from another client: %d, want 202", status)
	}
}
