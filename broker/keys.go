package broker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// A producer key reads kfp.<id>.<secret>: the id finds the record without a scan, and only
// the SHA-256 of the whole key is stored, so the bucket leaks nothing usable. The secret
// has 256 random bits, so a fast hash is enough (no password stretching needed).
const producerKeyPrefix = "kfp."

var feedPatternRe = regexp.MustCompile(`^[a-z0-9*][a-z0-9*-]{0,62}$`)

// ScopeAlert is the one scope a producer key may have beyond publishing: it may also
// raise and clear emergency overrides for its feeds (overrides.go).
const ScopeAlert = "alert"

// ProducerKey is a producer key's record, without its secret.
type ProducerKey struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Feeds   []string  `json:"feeds"`
	Scopes  []string  `json:"scopes,omitempty"`
	Created time.Time `json:"created"`
	Hash    string    `json:"hash,omitempty"`
}

// HasScope reports whether the key has scope s (ScopeAlert) besides publishing.
func (k *ProducerKey) HasScope(s string) bool { return slices.Contains(k.Scopes, s) }

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

// CreateProducerKey makes a key for feeds (feed ids or globs such as "floor-*"), with
// scopes beyond publishing (none, or ScopeAlert), and returns its record and the key
// itself, which exists nowhere else afterwards.
func (b *Broker) CreateProducerKey(ctx context.Context, name string, feeds []string, scopes ...string) (ProducerKey, string, error) {
	name, err := CheckName("name", name, 100)
	if err != nil {
		return ProducerKey{}, "", err
	}
	if name == "" {
		return ProducerKey{}, "", httpx.Errorf(httpx.CodeInvalidRequest, `"name" is required, at most 100 characters`)
	}
	if len(feeds) == 0 || len(feeds) > 100 {
		return ProducerKey{}, "", httpx.Errorf(httpx.CodeInvalidRequest, `"feeds" must list 1 to 100 feed ids or globs such as "floor-*"`)
	}
	for _, f := range feeds {
		if !feedPatternRe.MatchString(f) {
			return ProducerKey{}, "", httpx.Errorf(httpx.CodeInvalidRequest, `each of "feeds" must be a feed id, or a glob with * such as "floor-*"`)
		}
	}
	var sc []string
	for _, s := range scopes {
		if s != ScopeAlert {
			return ProducerKey{}, "", httpx.Errorf(httpx.CodeInvalidRequest, `"scopes" may only hold "alert" (raise and clear emergency overrides)`)
		}
		if !slices.Contains(sc, s) {
			sc = append(sc, s)
		}
	}
	var secret [32]byte
	_, _ = rand.Read(secret[:])
	id := NewKeyID()
	key := producerKeyPrefix + id + "." + idEncoding.EncodeToString(secret[:])
	rec := ProducerKey{ID: id, Name: name, Feeds: feeds, Scopes: sc, Created: b.cfg.Now().UTC().Truncate(time.Second), Hash: hashKey(key)}
	val, _ := json.Marshal(rec)
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	if _, err := b.keys.KV().Create(ctx, id, val); err != nil {
		return ProducerKey{}, "", b.unavailable("create producer key", err)
	}
	b.keys.Put(id, val)
	return rec.public(), key, nil
}

// DeleteProducerKey revokes a key at once on this instance and within a watcher's delay
// on the others.
func (b *Broker) DeleteProducerKey(ctx context.Context, id string) error {
	if !ValidKeyID(id) { // before it reaches NATS as a key
		return httpx.Errorf(httpx.CodeNotFound, "no producer key with that id")
	}
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	if _, ok := b.keys.Lookup(ctx, id); !ok {
		return httpx.Errorf(httpx.CodeNotFound, "no producer key with that id")
	}
	if err := b.keys.KV().Delete(ctx, id); err != nil {
		return b.unavailable("delete producer key", err)
	}
	b.keys.Remove(id)
	return nil
}

// ProducerKeys lists every key's record, without secrets or hashes.
func (b *Broker) ProducerKeys() []ProducerKey {
	out := b.keys.All(nil)
	for i := range out {
		out[i] = out[i].public()
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
	if !ok || !ValidKeyID(id) {
		return ProducerKey{}, false
	}
	k, ok := b.keys.Lookup(ctx, id)
	if !ok || subtle.ConstantTimeCompare([]byte(k.Hash), []byte(hashKey(key))) != 1 {
		return ProducerKey{}, false
	}
	return k, true
}

func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
