package broker

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketClock holds one key per instance, written only to read back the time the NATS
// server stored it at.
const BucketClock = "kioskfeed_clock"

// clock follows the NATS server's time. Tokens, nonces and PIN expiries made on one
// instance are checked on another, so they must not depend on each machine's clock: an
// instance whose clock is minutes off would mint tokens its peers call future. Every
// instance measures its offset to the server (a KV write and the stored timestamp read
// back, halfway through the round trip) and adds it to its own clock.
type clock struct {
	kv     jetstream.KeyValue
	key    string
	local  func() time.Time
	log    *slog.Logger
	offset atomic.Int64 // server minus local, nanoseconds

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// clockEvery is how often the offset is measured again.
const clockEvery = 30 * time.Second

func newClock(ctx context.Context, b *Broker, key string) (*clock, error) {
	kv, err := b.Bucket(ctx, jetstream.KeyValueConfig{Bucket: BucketClock, Description: "instance clock probes", History: 1, TTL: time.Hour})
	if err != nil {
		return nil, err
	}
	c := &clock{kv: kv, key: key, local: b.cfg.Now, log: b.log, stop: make(chan struct{}), done: make(chan struct{})}
	c.measure(ctx)
	go c.run()
	return c, nil
}

// measure updates the offset; a failed measurement keeps the last one.
func (c *clock) measure(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	before := c.local()
	rev, err := c.kv.Put(ctx, c.key, nil)
	if err != nil {
		return
	}
	after := c.local()
	e, err := c.kv.Get(ctx, c.key)
	if err != nil || e.Revision() != rev {
		return
	}
	mid := before.Add(after.Sub(before) / 2)
	off := e.Created().Sub(mid)
	if prev := time.Duration(c.offset.Swap(int64(off))); (off - prev).Abs() > time.Second {
		c.log.Info("clock offset to NATS", slog.Duration("offset", off.Round(time.Millisecond)))
	}
}

func (c *clock) run() {
	defer close(c.done)
	t := time.NewTicker(clockEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.measure(context.Background())
		}
	}
}

func (c *clock) now() time.Time { return c.local().Add(time.Duration(c.offset.Load())) }

func (c *clock) close() {
	c.once.Do(func() {
		close(c.stop)
		<-c.done
	})
}

// Now is the cluster's time: this machine's clock corrected by its measured offset to
// the NATS server. Components whose times other instances check (tokens, nonces, PIN
// expiry, leases) use it.
func (b *Broker) Now() time.Time {
	if b.clock == nil { // during setup, before the first measurement
		return b.cfg.Now()
	}
	return b.clock.now()
}
