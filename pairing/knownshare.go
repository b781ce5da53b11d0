package pairing

import (
	"context"
	"encoding/hex"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
)

// This file shares the known tokens of tokencache.go between instances and across a
// restart: the instance that signs a token writes its digest to a JetStream bucket, and
// every instance's watcher adds what the bucket holds to its own known set. A tablet
// then pays for its token's ES256 check on no instance at all: not on the one that
// issued it, not on another after a move or a killed instance, not after a restart,
// where a whole building reconnects at once (issue 15: the check was ~130 µs of a
// handshake's server CPU here).
//
// Nothing depends on the bucket: a digest not there yet (a write still in flight, a
// watcher still reading, NATS unreachable) only means the signature is checked. An
// entry says "this token's signature is good" to every instance, so only the internal
// NATS user may write it (producers may publish feeds' events only: broker's
// producerPermissions); its keys and values are checked as they are read.

// BucketKnownTokens holds a digest per access token an instance signed: key the digest
// in hex, value the Unix second the token's checks stop passing.
const BucketKnownTokens = "kioskfeed_known_tokens"

// Bounds of the bucket (docs/protocol.md §10): each entry expires with its token (the
// bucket's TTL is the token's plus the leeway), and the whole is capped, new entries
// refused past it (then only checked the long way).
const (
	knownShareMaxBytes = 16 << 20 // about 100 bytes an entry: some 160,000 tokens
	knownShareQueue    = 4096     // digests waiting to be written; more are dropped
	knownSharePutWait  = 5 * time.Second
)

type knownPut struct {
	d     tokenDigest
	until time.Time
}

// knownShare writes this instance's issued digests and reads everyone's.
type knownShare struct {
	kv     jetstream.KeyValue
	known  *knownTokens
	now    func() time.Time
	log    *slog.Logger
	puts   chan knownPut
	cancel context.CancelFunc
	done   chan struct{}
}

func newKnownShare(ctx context.Context, b *broker.Broker, known *knownTokens, life time.Duration, now func() time.Time, log *slog.Logger) (*knownShare, error) {
	kv, err := b.Bucket(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketKnownTokens,
		Description: "digests of the access tokens the instances signed, to skip their signature check",
		History:     1,
		TTL:         life,
		MaxBytes:    knownShareMaxBytes,
	})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	s := &knownShare{kv: kv, known: known, now: now, log: log,
		puts: make(chan knownPut, knownShareQueue), cancel: cancel, done: make(chan struct{})}
	go s.run(wctx)
	return s, nil
}

// offer queues d to be written; a full queue drops it (its token's next handshake on
// another instance checks the signature).
func (s *knownShare) offer(d tokenDigest, until time.Time) {
	select {
	case s.puts <- knownPut{d, until}:
	default:
	}
}

func (s *knownShare) stop() {
	s.cancel()
	<-s.done
}

// run reads the bucket into the known set, and writes what is offered, until stop.
func (s *knownShare) run(ctx context.Context) {
	defer close(s.done)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		s.watch(ctx)
	}()
	defer func() { <-watched }()
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-s.puts:
			octx, cancel := context.WithTimeout(ctx, knownSharePutWait)
			_, err := s.kv.Put(octx, hex.EncodeToString(p.d[:]), strconv.AppendInt(nil, p.until.Unix(), 10))
			cancel()
			if err != nil && ctx.Err() == nil {
				s.log.Debug("known token not shared", slog.String("error", err.Error()))
			}
		}
	}
}

// watch adds every entry of the bucket, and each new one, to the known set; a watcher
// that ends (NATS went away) is started again.
func (s *knownShare) watch(ctx context.Context) {
	for ctx.Err() == nil {
		w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
		if err == nil {
			for e := range w.Updates() {
				if e != nil {
					s.take(e.Key(), e.Value())
				}
			}
			_ = w.Stop()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// take adds one entry, if it is a well-formed digest whose token has not expired.
func (s *knownShare) take(key string, val []byte) {
	var d tokenDigest
	if len(key) != 2*len(d) {
		return
	}
	if _, err := hex.Decode(d[:], []byte(key)); err != nil {
		return
	}
	until, err := strconv.ParseInt(string(val), 10, 64)
	now := s.now()
	if err != nil || until <= now.Unix() {
		return
	}
	s.known.add(d, time.Unix(until, 0), now)
}
