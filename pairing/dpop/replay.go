package dpop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/internal/kvx"
)

// ReplayBucket is the JetStream KV bucket that remembers DPoP proof jtis.
const ReplayBucket = "kioskfeed_dpop_jti"

// ReplayMaxBytes bounds the replay bucket (in memory). A jti is recorded only for a
// proof that passed every other check, a server nonce included, so each entry costs
// its sender one call through the token or pairing rate limit; it lives at most twice
// the proof skew (20 minutes by default) and takes about 200 bytes, so 64 MiB holds
// some 300,000 at once: a building of tablets refreshing every few minutes needs a few
// thousand. Full, the bucket refuses new jtis (a KV bucket discards new writes), and
// the token and pairing endpoints answer 503 unavailable with Retry-After until the
// oldest expire: the server's memory is what is protected.
const ReplayMaxBytes = 64 << 20

// ReplayCache remembers DPoP proof identifiers (jti) so each proof is
// accepted once, across every server instance. Remember records jti until
// the given time and reports fresh=false when it was already recorded and has
// not expired; err is for infrastructure failures only (the caller answers
// 503, never "replay").
type ReplayCache interface {
	Remember(ctx context.Context, jti string, until time.Time) (fresh bool, err error)
}

// ReplayBucketConfig is the bucket KVReplayCache expects, for setup code to
// create (CreateOrUpdateKeyValue, or Broker.SoftBucket). Entries expire by
// per-key TTL, which needs LimitMarkerTTL on the bucket; one revision per key
// is all a replay check reads.
//
// It is in memory storage. In file storage, with the embedded server's fsync
// on every write, each token and pairing call waited for a disk sync, and a
// server started after its jtis had expired wrote an fsynced delete marker per
// jti before it could answer: with 30,000 of them it did not start within its
// set-up timeout. What memory storage gives up is small: a NATS restart of
// every node forgets the jtis of the last few minutes, and a proof replayed
// then still needs a valid nonce, and gets a pairing (whose PIN is used) or a
// token bound to a key the attacker does not have.
//
// Replicas is left to the caller, who knows the deployment: Broker.SoftBucket sets
// the broker's (3 in a cluster), and zero is one replica.
func ReplayBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      ReplayBucket,
		Description: "DPoP proof jtis seen, each kept until its proof could no longer be accepted",
		History:     1,
		Storage:     jetstream.MemoryStorage,
		MaxBytes:    ReplayMaxBytes,
		// Markers are only for watchers, and nobody watches this bucket:
		// keep them as briefly as the server allows.
		LimitMarkerTTL: time.Second,
	}
}

// KVReplayCache is the cluster-wide [ReplayCache]: one KV key per jti,
// created atomically with a per-key TTL, so two instances that see the same
// proof at the same moment cannot both accept it. Safe for concurrent use.
type KVReplayCache struct {
	kv  atomic.Pointer[jetstream.KeyValue]
	now func() time.Time

	// recreate makes the bucket again (see SetRecreate); nil: never.
	recreate func(context.Context) (jetstream.KeyValue, error)
	mu       sync.Mutex // one recreation at a time
}

// NewKVReplayCache returns a cache on kv, a bucket made with
// [ReplayBucketConfig]. now is the clock used to turn an expiry time into a
// TTL; nil means time.Now.
func NewKVReplayCache(kv jetstream.KeyValue, now func() time.Time) *KVReplayCache {
	if now == nil {
		now = time.Now
	}
	c := &KVReplayCache{now: now}
	c.kv.Store(&kv)
	return c
}

// SetRecreate gives the cache a way to make its bucket again. The bucket is in
// memory storage: a NATS server that restarts (a single node, or every node of a
// cluster) comes back without it, and every write then fails with "no response
// from stream", so /api/pair and /api/token would answer 503 until kioskfeed
// restarted. With fn, the first write that finds the bucket gone makes it again
// and is retried once; the jtis it held were forgotten with it, which
// ReplayBucketConfig already accepts. Call it before the cache is used.
func (c *KVReplayCache) SetRecreate(fn func(context.Context) (jetstream.KeyValue, error)) {
	c.recreate = fn
}

// Remember implements [ReplayCache]. The key is the hex SHA-256 of jti:
// jtis are attacker-chosen strings and KV keys have a restricted alphabet.
func (c *KVReplayCache) Remember(ctx context.Context, jti string, until time.Time) (bool, error) {
	sum := sha256.Sum256([]byte(jti))
	key := hex.EncodeToString(sum[:])
	ttl := jetstream.KeyTTL(replayTTL(until.Sub(c.now())))
	kv := *c.kv.Load()
	_, err := kv.Create(ctx, key, nil, ttl)
	if bucketGone(err) && c.recreate != nil {
		if kv, err = c.recreateBucket(ctx, kv); err == nil {
			_, err = kv.Create(ctx, key, nil, ttl)
		}
	}
	switch {
	case err == nil:
		return true, nil
	case kvx.IsConflict(err):
		return false, nil
	default:
		return false, fmt.Errorf("record jti: %w", err)
	}
}

// bucketGone reports an error of a write to a bucket whose stream does not exist.
func bucketGone(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrBucketNotFound)
}

// recreateBucket makes the bucket again unless another call did since old failed.
func (c *KVReplayCache) recreateBucket(ctx context.Context, old jetstream.KeyValue) (jetstream.KeyValue, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := *c.kv.Load(); cur != old {
		return cur, nil
	}
	kv, err := c.recreate(ctx)
	if err != nil {
		return nil, err
	}
	c.kv.Store(&kv)
	return kv, nil
}

// replayTTL rounds d up to whole seconds, at least one: per-key TTLs are
// whole seconds, and rounding down could forget a jti while its proof is
// still acceptable.
func replayTTL(d time.Duration) time.Duration {
	if d <= time.Second {
		return time.Second
	}
	return (d + time.Second - 1).Truncate(time.Second)
}
