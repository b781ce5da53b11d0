package pairing

import (
	"fmt"
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
		if !allow("a") {
			t.Fatalf("attempt %d of the burst refused", i+1)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait <= 0 || wait > every {
		t.Fatalf("past the burst: allowed %v, wait %v; want a refusal with a wait in (0, %v]", ok, wait, every)
	}
	// Refused attempts take nothing: hammering does not push the wait out.
	for range 50 {
		if _, w := l.allow("a"); w > wait {
			t.Fatalf("wait grew from %v to %v with refused attempts", wait, w)
		}
	}

	// Another address has its own bucket.
	for i := range burst {
		if !allow("b") {
			t.Fatalf("address b, attempt %d: refused while only a is over its limit", i+1)
		}
	}

	// Not before the wait, then exactly one.
	clk.Add(wait / 2)
	if allow("a") {
		t.Fatal("allowed before the wait was over")
	}
	clk.Add(wait - wait/2)
	if !allow("a") {
		t.Fatal("refused after waiting as told")
	}
	if allow("a") {
		t.Fatal("a second attempt allowed after one interval")
	}

	// A full refill after burst intervals, and no more.
	clk.Add(10 * every)
	for i := range burst {
		if !allow("a") {
			t.Fatalf("after the refill, attempt %d refused", i+1)
		}
	}
	if allow("a") {
		t.Fatal("refill went past the burst")
	}
}

// TestLimiterForgetsIdleAddresses: a scan from many addresses leaves nothing behind once
// their buckets are full again, while a bucket still in use is kept.
func TestLimiterForgetsIdleAddresses(t *testing.T) {
	clk := newTestClock(time.Unix(1_800_000_000, 0))
	l := newLimiter(time.Minute, 2, clk.Now)
	for i := range 1000 {
		l.allow(fmt.Sprintf("198.51.%d.%d", i/256, i%256))
	}
	clk.Add(30 * time.Second)
	l.allow("busy")
	l.allow("busy") // empty now; a minute and a half later it holds 1.5 of 2
	clk.Add(90 * time.Second)
	if ok, _ := l.allow("203.0.113.1"); !ok {
		t.Fatal("new address refused")
	}
	l.mu.Lock()
	n := len(l.buckets)
	_, busy := l.buckets["busy"]
	l.mu.Unlock()
	if n != 2 || !busy {
		t.Fatalf("%d buckets kept (busy kept: %v), want 2: the busy one and the new one", n, busy)
	}
	// The busy address was not given a fresh bucket by the sweep.
	l.allow("busy")
	if ok, _ := l.allow("busy"); ok {
		t.Fatal("busy address got more than its refill")
	}
}
