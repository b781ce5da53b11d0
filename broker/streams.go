package broker

// This file owns what the broker keeps in JetStream: setting up its streams, the KV
// buckets other components ask for (Bucket, SoftBucket), and the event log's epoch.

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

func (b *Broker) setup(ctx context.Context) error {
	js, err := jetstream.New(b.nc, jetstream.WithDefaultTimeout(b.cfg.OpTimeout))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	b.js = js

	// Each call has its own OpTimeout, so a call that stalls (a cluster without a
	// leader answers nothing) costs one OpTimeout, not the whole setup's budget.
	opCtx, cancel := b.opCtx(ctx)
	b.feeds, err = js.CreateOrUpdateStream(opCtx, jetstream.StreamConfig{
		Name:        StreamFeeds,
		Description: "kioskfeed event log: one subject per feed and kind",
		// Only the three kinds are captured: a publish to any other feeds.* subject gets
		// no acknowledgement instead of being stored and later dropped.
		Subjects:          []string{"feeds.*." + KindState, "feeds.*." + KindItem, "feeds.*." + KindClear},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: b.cfg.FeedMaxMsgs,
		MaxAge:            b.cfg.FeedMaxAge,
		Duplicates:        b.cfg.DedupWindow,
		// Room for the body's wrapping and headers around data of MaxEventBytes.
		MaxMsgSize:  int32(b.cfg.MaxEventBytes + 4096),
		Replicas:    b.cfg.Replicas,
		AllowDirect: true,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("set up stream %s: %w", StreamFeeds, err)
	}
	b.noteEpoch(b.feeds.CachedInfo().Created)

	opCtx, cancel = b.opCtx(ctx)
	b.audit, err = js.CreateOrUpdateStream(opCtx, jetstream.StreamConfig{
		Name:        StreamAudit,
		Description: "kioskfeed audit records",
		Subjects:    []string{auditSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		MaxAge:      b.cfg.AuditMaxAge,
		MaxBytes:    b.cfg.AuditMaxBytes,
		Discard:     jetstream.DiscardOld,
		Replicas:    b.cfg.Replicas,
		AllowDirect: true,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("set up stream %s: %w", StreamAudit, err)
	}

	opCtx, cancel = b.opCtx(ctx)
	kv, err := b.Bucket(opCtx, jetstream.KeyValueConfig{
		Bucket:      BucketProducerKeys,
		Description: "producer keys, stored hashed",
		History:     1,
	})
	cancel()
	if err != nil {
		return err
	}
	b.keys, err = NewMirror[ProducerKey](kv, b.log)
	if err != nil {
		return fmt.Errorf("watch producer keys: %w", err)
	}
	if b.clock, err = newClock(ctx, b, nuid.Next()); err != nil {
		b.keys.Stop()
		return fmt.Errorf("clock: %w", err)
	}
	return nil
}

// Bucket creates or updates a KV bucket with the broker's replica count and file
// storage, so later components declare only what is theirs (TTLs, history).
func (b *Broker) Bucket(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	cfg.Storage = jetstream.FileStorage
	return b.bucket(ctx, cfg)
}

// SoftBucket is Bucket in memory storage, for state that means nothing once the
// processes that wrote it are gone (which instance is alive, which connection holds a
// device): its writes are never fsynced, which is what a reconnect storm of thousands
// of tablets waits on otherwise. It is replicated like every bucket, so one NATS node's
// restart loses nothing; when every node restarts at once, every tablet's connection
// was reset anyway. A bucket of that name left in file storage by an older version is
// replaced.
func (b *Broker) SoftBucket(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	cfg.Storage = jetstream.MemoryStorage
	if st, err := b.js.Stream(ctx, "KV_"+cfg.Bucket); err == nil && st.CachedInfo().Config.Storage != jetstream.MemoryStorage {
		if err := b.js.DeleteKeyValue(ctx, cfg.Bucket); err != nil {
			return nil, fmt.Errorf("move bucket %s to memory storage: %w", cfg.Bucket, err)
		}
	}
	return b.bucket(ctx, cfg)
}

func (b *Broker) bucket(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	cfg.Replicas = b.cfg.Replicas
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("set up bucket %s: %w", cfg.Bucket, err)
	}
	if b.cfg.Replicas > 1 {
		// KV buckets allow direct gets, which any replica answers: a follower that has not
		// applied a write yet says the key is not there. Our buckets hold state read right
		// after it is written elsewhere (a PIN just issued, a device just paired), where a
		// stale "not found" is a wrong PIN or a tablet told it was revoked. Reads go to the
		// stream leader instead.
		if kv, err = b.leaderReads(ctx, cfg.Bucket); err != nil {
			return nil, fmt.Errorf("set up bucket %s: %w", cfg.Bucket, err)
		}
	}
	return kv, nil
}

// leaderReads turns off direct gets on a bucket's stream and reopens the bucket, so that
// its Get is answered by the stream leader.
func (b *Broker) leaderReads(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	st, err := b.js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return nil, err
	}
	if sc := st.CachedInfo().Config; sc.AllowDirect {
		sc.AllowDirect = false
		if _, err := b.js.UpdateStream(ctx, sc); err != nil {
			return nil, err
		}
	}
	return b.js.KeyValue(ctx, bucket)
}

// Epoch names the incarnation of the event log (docs/protocol.md §5): it changes when the
// FEEDS stream is recreated, which makes every seq a tablet remembers meaningless. It
// is the newest this instance has seen: the one at start, or a later one found by
// CheckEpoch or any read of the stream's info.
func (b *Broker) Epoch() string { return *b.epoch.Load() }

// CheckEpoch reads the FEEDS stream's info and returns its epoch, noting a new one. An
// instance that stays up while the stream is deleted and made again (by another
// instance, or an operator) must not go on announcing the old epoch: tablets would take
// the new log's seqs as the old log's, and miss what came before.
func (b *Broker) CheckEpoch(ctx context.Context) (string, error) {
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	info, err := b.feeds.Info(ctx)
	if err != nil {
		return "", b.unavailable("stream info", err)
	}
	return b.noteEpoch(info.Created), nil
}

// noteEpoch records the epoch of a stream created at created, and returns it.
func (b *Broker) noteEpoch(created time.Time) string {
	e := strconv.FormatInt(created.UnixNano(), 36)
	if old := b.epoch.Swap(&e); old != nil && *old != e {
		b.log.Warn("the FEEDS stream was made anew: a new epoch, every tablet resets", slog.String("old", *old), slog.String("epoch", e))
	}
	return e
}
