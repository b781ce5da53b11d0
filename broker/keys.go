package broker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A producer key reads kfp.<id>.<secret>: the id finds the record without a scan, and only
// the SHA-256 of the whole key is stored, so the bucket leaks nothing usable. The secret
// has 256 random bits, so a fast hash is enough (no password stretching needed).
const producerKeyPrefix = "kfp."

var feedPatternRe = regexp.MustCompile(`^[a-z0-9*][a-z0-9*-]{0,62}$`)

// ProducerKey is a producer key's record, without its secret.
type ProducerKey struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Feeds   []string  `json:"feeds"`
	Created time.Time `json:"created"`
	Hash    string    `json:"hash,omitempty"`
}

// Allows reports whether the key's feed globs cover feed.
func (k *ProducerKey) Allows(feed string) bool {
	for _, p := range k.Feeds {
		if ok, _ := path.Match(p, feed); ok {
			return true
		}
	}
	return false
}

func (k ProducerKey) public() ProducerKey { k.Hash = ""; return k }

// keyStore keeps every producer key record in memory, fed by a KV watcher so that a key
// made or deleted on any instance takes effect on all of them; a publish then costs no
// KV round trip.
type keyStore struct {
	kv  jetstream.KeyValue
	log *slog.Logger

	mu   sync.RWMutex
	keys map[string]ProducerKey

	cancel context.CancelFunc
	done   chan struct{}
}

func newKeyStore(kv jetstream.KeyValue, log *slog.Logger) (*keyStore, error) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := kv.WatchAll(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &keyStore{kv: kv, log: log, keys: map[string]ProducerKey{}, cancel: cancel, done: make(chan struct{})}
	initial := make(chan struct{})
	go s.watch(w, initial)
	select {
	case <-initial:
		return s, nil
	case <-time.After(10 * time.Second):
		s.stop()
		return nil, errors.New("initial producer keys did not arrive within 10s")
	}
}

func (s *keyStore) watch(w jetstream.KeyWatcher, initial chan struct{}) {
	defer close(s.done)
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			close(initial)
			continue
		}
		s.apply(e)
	}
}

func (s *keyStore) apply(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		s.remove(e.Key())
		return
	}
	s.put(e.Key(), e.Value())
}

func (s *keyStore) put(id string, val []byte) {
	var k ProducerKey
	if err := json.Unmarshal(val, &k); err != nil {
		s.log.Warn("unreadable producer key record", slog.String("id", id))
		return
	}
	s.mu.Lock()
	s.keys[id] = k
	s.mu.Unlock()
}

func (s *keyStore) remove(id string) {
	s.mu.Lock()
	delete(s.keys, id)
	s.mu.Unlock()
}

func (s *keyStore) stop() {
	s.cancel()
	<-s.done
}

func (s *keyStore) lookup(ctx context.Context, id string) (ProducerKey, bool) {
	s.mu.RLock()
	k, ok := s.keys[id]
	s.mu.RUnlock()
	if ok {
		return k, true
	}
	// A key made on another instance a moment ago may not have reached our watcher.
	e, err := s.kv.Get(ctx, id)
	if err != nil {
		return ProducerKey{}, false
	}
	if err := json.Unmarshal(e.Value(), &k); err != nil {
		return ProducerKey{}, false
	}
	return k, true
}

// CreateProducerKey makes a key for feeds (feed ids or globs such as "floor-*") and
// returns its record and the key itself, which exists nowhere else afterwards.
func (b *Broker) CreateProducerKey(ctx context.Context, name string, feeds []string) (ProducerKey, string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return ProducerKey{}, "", Errorf(CodeInvalidRequest, `"name" is required, at most 100 characters`)
	}
	if len(feeds) == 0 || len(feeds) > 100 {
		return ProducerKey{}, "", Errorf(CodeInvalidRequest, `"feeds" must list 1 to 100 feed ids or globs such as "floor-*"`)
	}
	for _, f := range feeds {
		if !feedPatternRe.MatchString(f) {
			return ProducerKey{}, "", Errorf(CodeInvalidRequest, `each of "feeds" must be a feed id, or a glob with * such as "floor-*"`)
		}
	}
	var idb [8]byte
	var secret [32]byte
	_, _ = rand.Read(idb[:])
	_, _ = rand.Read(secret[:])
	id := idEncoding.EncodeToString(idb[:])
	key := producerKeyPrefix + id + "." + idEncoding.EncodeToString(secret[:])
	rec := ProducerKey{ID: id, Name: name, Feeds: feeds, Created: b.cfg.Now().UTC().Truncate(time.Second), Hash: hashKey(key)}
	val, _ := json.Marshal(rec)
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	if _, err := b.keys.kv.Create(ctx, id, val); err != nil {
		return ProducerKey{}, "", b.unavailable("create producer key", err)
	}
	// Our own write counts at once here, before the watcher echoes it.
	b.keys.put(id, val)
	return rec.public(), key, nil
}

// DeleteProducerKey revokes a key at once on this instance and within a watcher's delay
// on the others.
func (b *Broker) DeleteProducerKey(ctx context.Context, id string) error {
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	if _, ok := b.keys.lookup(ctx, id); !ok {
		return Errorf(CodeNotFound, "no producer key with that id")
	}
	if err := b.keys.kv.Delete(ctx, id); err != nil {
		return b.unavailable("delete producer key", err)
	}
	b.keys.remove(id)
	return nil
}

// ProducerKeys lists every key's record, without secrets or hashes.
func (b *Broker) ProducerKeys() []ProducerKey {
	b.keys.mu.RLock()
	defer b.keys.mu.RUnlock()
	out := make([]ProducerKey, 0, len(b.keys.keys))
	for _, k := range b.keys.keys {
		out = append(out, k.public())
	}
	return out
}

// AuthenticateProducer returns the record of a presented key, or false. The comparison is
// constant-time on the hashes.
func (b *Broker) AuthenticateProducer(ctx context.Context, key string) (ProducerKey, bool) {
	rest, ok := strings.CutPrefix(key, producerKeyPrefix)
	if !ok || len(key) > 200 {
		return ProducerKey{}, false
	}
	id, _, ok := strings.Cut(rest, ".")
	if !ok || id == "" {
		return ProducerKey{}, false
	}
	k, ok := b.keys.lookup(ctx, id)
	if !ok || subtle.ConstantTimeCompare([]byte(k.Hash), []byte(hashKey(key))) != 1 {
		return ProducerKey{}, false
	}
	return k, true
}

func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
