package pairing

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
