package pairing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
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
func ReplayBucketConfig(replicas int) jetstream.KeyValueConfig {
	if replicas < 1 {
		replicas = 1
	}
	return jetstream.KeyValueConfig{
		Bucket:      ReplayBucket,
		Description: "DPoP proof jtis seen, each kept until its proof could no longer be accepted",
		History:     1,
		Storage:     jetstream.MemoryStorage,
		Replicas:    replicas,
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
	kv  jetstream.KeyValue
	now func() time.Time
}

// NewKVReplayCache returns a cache on kv, a bucket made with
// [ReplayBucketConfig]. now is the clock used to turn an expiry time into a
// TTL; nil means time.Now.
func NewKVReplayCache(kv jetstream.KeyValue, now func() time.Time) *KVReplayCache {
	if now == nil {
		now = time.Now
	}
	return &KVReplayCache{kv: kv, now: now}
}

// Remember implements [ReplayCache]. The key is the hex SHA-256 of jti:
// jtis are attacker-chosen strings and KV keys have a restricted alphabet.
func (c *KVReplayCache) Remember(ctx context.Context, jti string, until time.Time) (bool, error) {
	sum := sha256.Sum256([]byte(jti))
	key := hex.EncodeToString(sum[:])
	_, err := c.kv.Create(ctx, key, nil, jetstream.KeyTTL(replayTTL(until.Sub(c.now()))))
	switch {
	case err == nil:
		return true, nil
	case broker.IsKVConflict(err):
		return false, nil
	default:
		return false, fmt.Errorf("record jti: %w", err)
	}
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
