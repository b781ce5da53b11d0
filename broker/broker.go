package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Names of the streams and buckets kioskfeed keeps its state in.
const (
	StreamFeeds        = "FEEDS"
	StreamAudit        = "AUDIT"
	BucketProducerKeys = "kioskfeed_producer_keys"
)

// Config says where NATS is and how the event log is kept. cmd/kioskfeed fills it from
// config.Config; tests fill only what they need.
type Config struct {
	// URL names an external NATS server or cluster (comma-separated URLs). Empty runs an
	// embedded nats-server with JetStream whose store lives under DataDir.
	URL string
	// CredsFile, User and Password authenticate to an external NATS.
	CredsFile, User, Password string

	// Listen is the embedded server's client listener for producers (host:port; port 0
	// picks a free one). Empty means in-process only: nothing listens.
	Listen string
	// ProducerUser and ProducerPassword are what producers use on Listen. Default user
	// "producer"; an empty password is generated into DataDir on first start.
	ProducerUser, ProducerPassword string
	// SyncAlways makes the embedded server fsync every write before it acknowledges it,
	// so an acknowledged event survives a power cut, not only a process crash.
	SyncAlways bool

	// DataDir holds the embedded store and generated secrets. Required when embedded.
	DataDir string
	// Replicas of every stream and bucket. Default 1; 3 in a cluster.
	Replicas int
	// FeedMaxMsgs bounds the events kept per feed and kind. Default 1000.
	FeedMaxMsgs int64
	// FeedMaxAge drops events older than this. Default 0: kept until FeedMaxMsgs pushes
	// them out, so a feed whose state has not changed for months still has it.
	FeedMaxAge time.Duration
	// DedupWindow is how long an event id is remembered. Default 2m.
	DedupWindow time.Duration
	// MaxEventBytes bounds an event's data. Default 65536.
	MaxEventBytes int
	// ReplayLimit bounds the item events of a feed's state. Default 100.
	ReplayLimit int
	// AuditMaxAge is how long audit records are kept. Default 720h.
	AuditMaxAge time.Duration
	// OpTimeout bounds each JetStream call. Default 5s.
	OpTimeout time.Duration

	// Logger receives the broker's and the embedded server's logs. Default: discard.
	Logger *slog.Logger
	// Registerer takes the broker's metrics. Default: none registered.
	Registerer prometheus.Registerer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.ProducerUser == "" {
		c.ProducerUser = "producer"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.FeedMaxMsgs == 0 {
		c.FeedMaxMsgs = 1000
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = 2 * time.Minute
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = 65536
	}
	if c.ReplayLimit == 0 {
		c.ReplayLimit = 100
	}
	if c.AuditMaxAge == 0 {
		c.AuditMaxAge = 720 * time.Hour
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Broker is the NATS connection with the streams and buckets set up on it. It is safe
// for concurrent use.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	feeds   jetstream.Stream
	audit   jetstream.Stream
	epoch   string
	keys    *Mirror[ProducerKey]
	metrics *metrics

	srv      *server.Server // nil when external
	natsAddr string         // the embedded listener's address, "" when none

	closeOnce sync.Once
	closeErr  error
}

// New connects to NATS (starting the embedded server when cfg.URL is empty) and sets up
// every stream and bucket idempotently. It fails with a message naming what to fix.
func New(ctx context.Context, cfg Config) (*Broker, error) {
	cfg.setDefaults()
	b := &Broker{cfg: cfg, log: cfg.Logger, metrics: newMetrics(cfg.Registerer)}
	var err error
	if cfg.URL == "" {
		err = b.startEmbedded()
	} else {
		err = b.connectExternal()
	}
	if err != nil {
		b.shutdownServer()
		return nil, err
	}
	if err := b.setup(ctx); err != nil {
		b.nc.Close()
		b.shutdownServer()
		return nil, err
	}
	return b, nil
}

func (b *Broker) connOptions() []nats.Option {
	return []nats.Option{
		nats.Name("kioskfeed"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		// No reconnect buffer: a publish while disconnected fails at once (503) instead of
		// being sent later, after its caller was already told it failed.
		nats.ReconnectBufSize(-1),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed it ourselves
				b.log.Warn("nats disconnected", slog.String("reason", err.Error()))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("nats reconnected", slog.String("server", nc.ConnectedServerName()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			b.log.Warn("nats async error", slog.String("error", errString(err)))
		}),
	}
}

func (b *Broker) connectExternal() error {
	opts := b.connOptions()
	if b.cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(b.cfg.CredsFile))
	}
	if b.cfg.User != "" {
		opts = append(opts, nats.UserInfo(b.cfg.User, b.cfg.Password))
	}
	nc, err := nats.Connect(b.cfg.URL, opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", redactURLs(b.cfg.URL), err)
	}
	b.nc = nc
	return nil
}

func (b *Broker) setup(ctx context.Context) error {
	js, err := jetstream.New(b.nc, jetstream.WithDefaultTimeout(b.cfg.OpTimeout))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	b.js = js
	ctx, cancel := context.WithTimeout(ctx, 4*b.cfg.OpTimeout)
	defer cancel()

	b.feeds, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
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
	if err != nil {
		return fmt.Errorf("set up stream %s: %w", StreamFeeds, err)
	}
	b.epoch = strconv.FormatInt(b.feeds.CachedInfo().Created.UnixNano(), 36)

	b.audit, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamAudit,
		Description: "kioskfeed audit records",
		Subjects:    []string{auditSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		MaxAge:      b.cfg.AuditMaxAge,
		Replicas:    b.cfg.Replicas,
		AllowDirect: true,
	})
	if err != nil {
		return fmt.Errorf("set up stream %s: %w", StreamAudit, err)
	}

	kv, err := b.Bucket(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketProducerKeys,
		Description: "producer keys, stored hashed",
		History:     1,
	})
	if err != nil {
		return err
	}
	b.keys, err = NewMirror[ProducerKey](kv, b.log)
	if err != nil {
		return fmt.Errorf("watch producer keys: %w", err)
	}
	return nil
}

// Bucket creates or updates a KV bucket with the broker's replica count and file
// storage, so later components declare only what is theirs (TTLs, history).
func (b *Broker) Bucket(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	cfg.Replicas = b.cfg.Replicas
	cfg.Storage = jetstream.FileStorage
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("set up bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// Conn is the NATS connection, for components that subscribe or request directly.
func (b *Broker) Conn() *nats.Conn { return b.nc }

// JetStream is the JetStream context of the connection.
func (b *Broker) JetStream() jetstream.JetStream { return b.js }

// Epoch names the incarnation of the event log (PROTOCOL.md §5): it changes when the
// FEEDS stream is recreated, which makes every seq a tablet remembers meaningless.
func (b *Broker) Epoch() string { return b.epoch }

// NATSAddr is the embedded server's producer listener ("" when there is none).
func (b *Broker) NATSAddr() string { return b.natsAddr }

// ProducerCredentials are the user and password producers use on NATSAddr (an empty
// password when nothing listens).
func (b *Broker) ProducerCredentials() (user, password string) {
	return b.cfg.ProducerUser, b.cfg.ProducerPassword
}

// Ready reports whether NATS and JetStream answer now; /readyz uses it.
func (b *Broker) Ready(ctx context.Context) error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("nats: %s", strings.ToLower(b.nc.Status().String()))
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := b.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// Close flushes and closes the NATS connection and stops the embedded server. It is
// idempotent; ctx bounds how long the flush may take.
func (b *Broker) Close(ctx context.Context) error {
	b.closeOnce.Do(func() {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
		}
		if b.keys != nil {
			b.keys.Stop()
		}
		// Audit records go out asynchronously; let the pending ones be acknowledged.
		select {
		case <-b.js.PublishAsyncComplete():
		case <-ctx.Done():
		}
		if err := b.nc.FlushWithContext(ctx); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && b.nc.IsConnected() {
			b.closeErr = fmt.Errorf("flush nats: %w", err)
		}
		b.nc.Close()
		b.shutdownServer()
	})
	return b.closeErr
}

func (b *Broker) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.cfg.OpTimeout)
}

// unavailable logs why NATS failed and answers the caller with ErrUnavailable: the
// client did nothing wrong, so it gets a 503 to retry, never a 500.
func (b *Broker) unavailable(op string, err error) error {
	b.log.Warn("nats operation failed", slog.String("op", op), slog.String("error", errString(err)))
	return ErrUnavailable
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// redactURLs drops user info from NATS URLs before they are logged.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "***@" + p[at+1:]
			}
		}
	}
	return strings.Join(parts, ",")
}
