package broker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/internal/kvx"
)

// Mirror keeps every value of a KV bucket in memory, decoded, fed by a watcher: records
// read on hot paths (producer keys on each publish, devices on each handshake) cost no
// KV round trip, and a change made on any instance reaches every instance's mirror.
// A write made through this instance should also be applied with Put or Remove, so that
// it counts here at once rather than when the watcher echoes it.
type Mirror[T any] struct {
	kv  jetstream.KeyValue
	log *slog.Logger

	mu       sync.RWMutex
	vals     map[string]T
	onRemove []func(key string, old T)
	onPut    []func(key string, old T, had bool, now T)

	cancel context.CancelFunc
	done   chan struct{}
}

// NewMirror starts watching kv and returns once every existing value has been loaded.
func NewMirror[T any](kv jetstream.KeyValue, log *slog.Logger) (*Mirror[T], error) {
	return NewMirrorSkipping[T](kv, log, nil)
}

// NewMirrorSkipping is NewMirror that leaves out, undecoded, the keys skip reports (nil:
// none): e.g. an instance's own records, which it holds newer in memory.
func NewMirrorSkipping[T any](kv jetstream.KeyValue, log *slog.Logger, skip func(key string) bool) (*Mirror[T], error) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := kv.WatchAll(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	m := &Mirror[T]{kv: kv, log: log, vals: map[string]T{}, cancel: cancel, done: make(chan struct{})}
	initial := make(chan struct{})
	go m.watch(w, initial, skip)
	select {
	case <-initial:
		return m, nil
	case <-time.After(10 * time.Second):
		m.Stop()
		return nil, errors.New("initial values did not arrive within 10s")
	}
}

// OnRemove registers fn to run (on the watcher's goroutine, so it must not block) when a
// key is deleted, purged or expires, with the value it last had.
func (m *Mirror[T]) OnRemove(fn func(key string, old T)) {
	m.mu.Lock()
	m.onRemove = append(m.onRemove, fn)
	m.mu.Unlock()
}

// OnPut registers fn to run (on the watcher's goroutine, or the goroutine of a local
// Put, so it must not block) whenever a value is stored, with the value it replaced
// (had is false for a new key). A write applied locally and then echoed by the watcher
// runs fn twice, the second time with old equal to now.
func (m *Mirror[T]) OnPut(fn func(key string, old T, had bool, now T)) {
	m.mu.Lock()
	m.onPut = append(m.onPut, fn)
	m.mu.Unlock()
}

func (m *Mirror[T]) watch(w jetstream.KeyWatcher, initial chan struct{}, skip func(string) bool) {
	defer close(m.done)
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			close(initial)
			continue
		}
		if skip != nil && skip(e.Key()) {
			continue
		}
		if e.Operation() == jetstream.KeyValuePut {
			m.Put(e.Key(), e.Value())
		} else {
			m.Remove(e.Key())
		}
	}
}

// Put decodes val and stores it under key.
func (m *Mirror[T]) Put(key string, val []byte) {
	var v T
	if err := json.Unmarshal(val, &v); err != nil {
		m.log.Warn("unreadable KV record", slog.String("bucket", m.kv.Bucket()), slog.String("key", key))
		return
	}
	m.Set(key, v)
}

// Set stores v under key: what a writer that has just stored v's encoding in the
// bucket knows without decoding it again (a lease per handshake).
func (m *Mirror[T]) Set(key string, v T) {
	m.mu.Lock()
	old, had := m.vals[key]
	m.vals[key] = v
	hooks := m.onPut
	m.mu.Unlock()
	for _, fn := range hooks {
		fn(key, old, had, v)
	}
}

// Remove forgets key and tells the OnRemove hooks, once.
func (m *Mirror[T]) Remove(key string) {
	m.mu.Lock()
	old, ok := m.vals[key]
	delete(m.vals, key)
	hooks := m.onRemove
	m.mu.Unlock()
	if ok {
		for _, fn := range hooks {
			fn(key, old)
		}
	}
}

// Get returns the value under key from memory.
func (m *Mirror[T]) Get(key string) (T, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.vals[key]
	return v, ok
}

// Lookup is Get that falls back to the bucket for a key this instance has not seen yet
// (made on another instance a moment ago).
func (m *Mirror[T]) Lookup(ctx context.Context, key string) (T, bool) {
	if v, ok := m.Get(key); ok {
		return v, true
	}
	var v T
	e, err := m.kv.Get(ctx, key)
	if err != nil || json.Unmarshal(e.Value(), &v) != nil {
		return v, false
	}
	return v, true
}

// All returns every value for which keep is true (every value when keep is nil).
func (m *Mirror[T]) All(keep func(T) bool) []T {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]T, 0, len(m.vals))
	for _, v := range m.vals {
		if keep == nil || keep(v) {
			out = append(out, v)
		}
	}
	return out
}

// Each calls fn for every key and its value, under the mirror's read lock: fn must not
// block or call back into the mirror.
func (m *Mirror[T]) Each(fn func(key string, v T)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for k, v := range m.vals {
		fn(k, v)
	}
}

// Len is how many values the mirror holds.
func (m *Mirror[T]) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.vals)
}

// KV is the bucket behind the mirror, for writes.
func (m *Mirror[T]) KV() jetstream.KeyValue { return m.kv }

// Stop ends the watcher and waits for it.
func (m *Mirror[T]) Stop() {
	m.cancel()
	<-m.done
}

// IsKVConflict reports a lost compare-and-set or create: the key existed or changed
// meanwhile (kvx.IsConflict, which says which errors count).
func IsKVConflict(err error) bool { return kvx.IsConflict(err) }
