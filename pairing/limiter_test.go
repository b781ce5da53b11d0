package pairing

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	const every, burst = 10 * time.Second, 3
	clk := newTestClock(time.Unix(1_800_000_000, 0))
	l := newLimiter(every, burst, clk.Now)
	allow := func(addr string) bool {
		t.Helper()
		ok, wait := l.allow(addr)
		if ok != (wait == 0) {
			t.Fatalf("allow(%q) = %v, wait %v: want a wait exactly when refused", addr, ok, wait)
		}
		return ok
	}

	// The burst, then refusal with a positive wait no longer than one interval.
	for i := range burst {
		if !allow("192.0.2.1") {
			t.Fatalf("attempt %d of the burst refused", i+1)
		}
	}
	ok, wait := l.allow("192.0.2.1")
	if ok || wait <= 0 || wait > every {
		t.Fatalf("past the burst: allowed %v, wait %v; want a refusal with a wait in (0, %v]", ok, wait, every)
	}
	// Refused attempts take nothing: hammering does not push the wait out.
	for range 50 {
		if _, w := l.allow("192.0.2.1"); w > wait {
			t.Fatalf("wait grew from %v to %v with refused attempts", wait, w)
		}
	}

	// Another address has its own bucket.
	for i := range burst {
		if !allow("192.0.2.2") {
			t.Fatalf("address b, attempt %d: refused while only a is over its limit", i+1)
		}
	}

	// Not before the wait, then exactly one.
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

	// A full refill after burst intervals, and no more.
	clk.Add(10 * every)
	for i := range burst {
		if !allow("192.0.2.1") {
			t.Fatalf("after the refill, attempt %d refused", i+1)
		}
	}
	if allow("192.0.2.1") {
		t.Fatal("refill went past the burst")
	}
}

// TestLimiterMemoryIsBounded: a million distinct addresses from one scan cannot grow
// the limiter without bound (the old one kept every address for at least a minute, and
// swept them all under one lock), while an address over its limit stays limited.
func TestLimiterMemoryIsBounded(t *testing.T) {
	clk := newTestClock(time.Unix(1_800_000_000, 0))
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	l := newLimiter(time.Minute, 2, clk.Now)
	l.allow("203.0.113.50")
	l.allow("203.0.113.50")
	for i := range 1_000_000 {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String())
		if i%1000 == 0 {
			l.allow("203.0.113.50") // heard from: not the one forgotten
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	grown := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	const bound = 4 << 20
	if grown > bound {
		t.Fatalf("a million addresses grew the live heap by %d KiB, want at most %d KiB", grown>>10, bound>>10)
	}
	if ok, _ := l.allow("203.0.113.50"); ok {
		t.Fatal("the busy address got a fresh allowance during the scan")
	}
	runtime.KeepAlive(l)
}
