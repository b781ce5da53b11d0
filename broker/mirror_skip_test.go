package broker_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestMirrorSkipping: the keys skip names are never held, neither those stored before
// the mirror started nor later ones; the others are, as NewMirror holds them. The later
// kept key arriving proves the watcher saw the skipped one before it.
func TestMirrorSkipping(t *testing.T) {
	b := brokertest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := b.Bucket(ctx, jetstream.KeyValueConfig{Bucket: "skip_test", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"mine.0", "theirs.0"} {
		if _, err := kv.Put(ctx, k, []byte(`{"n":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	type rec struct{ N int }
	m, err := broker.NewMirrorSkipping[rec](kv, slog.New(slog.DiscardHandler), func(k string) bool { return strings.HasPrefix(k, "mine.") })
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	if _, ok := m.Get("mine.0"); ok {
		t.Error("a skipped key stored before the start is held")
	}
	if v, ok := m.Get("theirs.0"); !ok || v.N != 1 {
		t.Errorf("theirs.0 = %v, %v; want {1}, true", v, ok)
	}
	for _, k := range []string{"mine.1", "theirs.1"} {
		if _, err := kv.Put(ctx, k, []byte(`{"n":2}`)); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := m.Get("theirs.1"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("theirs.1 never reached the mirror")
		}
	}
	if _, ok := m.Get("mine.1"); ok {
		t.Error("a skipped key stored after the start is held")
	}
	if got := len(m.All(nil)); got != 2 {
		t.Errorf("the mirror holds %d values, want 2 (theirs.0, theirs.1)", got)
	}
}
