package dpop

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

func TestReplayTTL(t *testing.T) {
	tests := []struct {
		in, want time.Duration
	}{
		{-time.Minute, time.Second},
		{0, time.Second},
		{time.Nanosecond, time.Second},
		{time.Second, time.Second},
		{time.Second + time.Nanosecond, 2 * time.Second},
		{1500 * time.Millisecond, 2 * time.Second},
		{20 * time.Minute, 20 * time.Minute},
		{20*time.Minute - time.Millisecond, 20 * time.Minute},
	}
	for _, tt := range tests {
		if got := replayTTL(tt.in); got != tt.want {
			t.Errorf("replayTTL(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestKVReplayCache(t *testing.T) {
	s := mustStartServer(t)
	kv := mustReplayKV(t, s)
	c := NewKVReplayCache(kv, nil)
	ctx := context.Background()
	until := time.Now().Add(time.Minute)

	// jtis are attacker-chosen: none of these may break the KV key.
	for _, jti := range []string{
		"plain-jti-0123456789",
		"with spaces and dots . . and > wildcards * $KV.x",
		"ünïcödé-jti-ünïcödé",
		strings.Repeat("x", 128),
		"",
	} {
		fresh, err := c.Remember(ctx, jti, until)
		if err != nil || !fresh {
			t.Fatalf("Remember(%q) first = %v, %v; want true, nil", jti, fresh, err)
		}
		fresh, err = c.Remember(ctx, jti, until)
		if err != nil || fresh {
			t.Fatalf("Remember(%q) again = %v, %v; want false, nil", jti, fresh, err)
		}
	}

	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bucket() != ReplayBucket || st.History() != 1 || st.LimitMarkerTTL() <= 0 {
		t.Errorf("bucket %s history %d marker TTL %v; want %s, 1, > 0", st.Bucket(), st.History(), st.LimitMarkerTTL(), ReplayBucket)
	}
}

func TestKVReplayCacheExpiry(t *testing.T) {
	s := mustStartServer(t)
	c := NewKVReplayCache(mustReplayKV(t, s), nil)
	ctx := context.Background()
	const jti = "expiring-jti-0123456789"

	if fresh, err := c.Remember(ctx, jti, time.Now().Add(time.Second)); err != nil || !fresh {
		t.Fatalf("Remember = %v, %v; want true, nil", fresh, err)
	}
	// The key lives at least its TTL, then goes; once gone, the jti is
	// fresh again (its proof's iat would be out of skew by then anyway).
	deadline := time.Now().Add(30 * time.Second)
	for {
		fresh, err := c.Remember(ctx, jti, time.Now().Add(time.Minute))
		if err != nil {
			t.Fatalf("Remember: %v", err)
		}
		if fresh {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the jti never expired")
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not a wait for an outcome
	}
	// Re-recorded with a long TTL: a replay again.
	if fresh, err := c.Remember(ctx, jti, time.Now().Add(time.Minute)); err != nil || fresh {
		t.Fatalf("Remember after re-recording = %v, %v; want false, nil", fresh, err)
	}
}

func TestKVReplayCacheDown(t *testing.T) {
	s := mustStartServer(t)
	c := NewKVReplayCache(mustReplayKV(t, s), nil)
	s.Shutdown()
	s.WaitForShutdown()
	// The client would keep trying to reconnect; the deadline only bounds
	// how long this test waits for the failure it expects either way.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	fresh, err := c.Remember(ctx, "jti-while-nats-is-down-0", time.Now().Add(time.Minute))
	if err == nil || fresh {
		t.Errorf("Remember with NATS down = %v, %v; want false and an error", fresh, err)
	}
	if broker.IsKVConflict(err) {
		t.Errorf("an outage looks like a replay: %v", err)
	}
}

// The replay bucket is in memory: a NATS server that restarts comes back without it.
// The cache makes it again instead of failing every proof (503) until kioskfeed
// restarts, and still refuses a jti seen since.
func TestReplayCacheRecreatesItsBucket(t *testing.T) {
	ctx := context.Background()
	n := brokertest.StartNATS(t)
	b, err := broker.New(ctx, broker.Config{URL: n.URL(), OpTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(ctx) })
	kv, err := b.SoftBucket(ctx, ReplayBucketConfig())
	if err != nil {
		t.Fatal(err)
	}
	c := NewKVReplayCache(kv, nil)
	c.SetRecreate(func(ctx context.Context) (jetstream.KeyValue, error) { return b.SoftBucket(ctx, ReplayBucketConfig()) })
	if fresh, err := c.Remember(ctx, "before-the-restart-0001", time.Now().Add(time.Minute)); !fresh || err != nil {
		t.Fatalf("Remember = %v, %v; want fresh", fresh, err)
	}
	n.Stop()
	n.Start()
	var fresh bool
	brokertest.Eventually(t, 20*time.Second, "a jti recorded after the restart", func() bool {
		fresh, err = c.Remember(ctx, "after-the-restart-0001", time.Now().Add(time.Minute))
		return err == nil
	})
	if !fresh {
		t.Fatal("the first jti after the restart was called a replay")
	}
	if again, err := c.Remember(ctx, "after-the-restart-0001", time.Now().Add(time.Minute)); again || err != nil {
		t.Fatalf("the same jti again = %v, %v; want a replay", again, err)
	}
}
