package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// A soft bucket is in memory storage, and one left in file storage by an older version
// is replaced rather than refused (its state describes processes that are gone).
func TestSoftBucketIsInMemoryAndReplacesAFileBucket(t *testing.T) {
	b := brokertest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := jetstream.KeyValueConfig{Bucket: "soft_test", History: 1}

	old, err := b.Bucket(ctx, cfg)
	if err != nil {
		t.Fatalf("file bucket: %v", err)
	}
	if _, err := old.Put(ctx, "k", []byte("from the file bucket")); err != nil {
		t.Fatal(err)
	}
	kv, err := b.SoftBucket(ctx, cfg)
	if err != nil {
		t.Fatalf("SoftBucket over a file bucket: %v", err)
	}
	st, err := b.JetStream().Stream(ctx, "KV_soft_test")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.Storage; got != jetstream.MemoryStorage {
		t.Fatalf("storage = %v, want memory", got)
	}
	if _, err := kv.Get(ctx, "k"); err == nil {
		t.Error("the file bucket's key survived the move to memory storage")
	}
	if _, err := kv.Create(ctx, "k", []byte("x")); err != nil {
		t.Fatalf("create in the soft bucket: %v", err)
	}
	// Opening it again keeps it (and its keys).
	again, err := b.SoftBucket(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := again.Get(ctx, "k"); err != nil || string(e.Value()) != "x" {
		t.Fatalf("second SoftBucket: Get = %v, %v; want the key kept", e, err)
	}
}
