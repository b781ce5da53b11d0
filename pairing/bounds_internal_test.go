package pairing

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// A wrong-guess count for a made-up feed id does not stay for ever: the PIN bucket's
// TTL drops it after its last guess (here a short TTL stands for FailCountTTL).
func TestFailCountForAnyFeedExpires(t *testing.T) {
	ctx := context.Background()
	b := brokertest.New(t)
	kv, err := b.Bucket(ctx, pinBucketConfig(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	s := &pinStore{kv: kv, key: make([]byte, 32), now: time.Now}
	const feed = "made-up-feed-7f3a"
	for range 2 { // created, then renewed with Update
		if err := s.wrongGuess(ctx, feed); !errors.Is(err, errInvalidPIN) {
			t.Fatalf("wrongGuess = %v, want errInvalidPIN", err)
		}
	}
	e, err := kv.Get(ctx, "fail."+feed)
	if err != nil {
		t.Fatalf("the count was not stored: %v", err)
	}
	if string(e.Value()) != `{"n":2}` {
		t.Fatalf("count = %s, want n 2", e.Value())
	}
	brokertest.Eventually(t, 20*time.Second, "the count to expire", func() bool {
		_, err := kv.Get(ctx, "fail."+feed)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
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
	kv, err := b.SoftBucket(ctx, ReplayBucketConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	c := NewKVReplayCache(kv, nil)
	c.SetRecreate(func(ctx context.Context) (jetstream.KeyValue, error) { return b.SoftBucket(ctx, ReplayBucketConfig(1)) })
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
