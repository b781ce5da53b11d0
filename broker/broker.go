package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultAuditMaxBytes is Config.AuditMaxBytes's default: 256 MiB.
const DefaultAuditMaxBytes = 256 << 20

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
	// NKeySeedFile is a file holding a user nkey seed ("SU..."), for an external NATS
	// that authenticates users by nkey. Default empty: no nkey.
	NKeySeedFile string
	// TLSCA is a PEM file of the CAs that sign the external NATS servers' certificates,
	// for a cluster with a private CA. Setting it or TLSCert makes the connection use TLS
	// even with nats:// URLs. Default empty: the system's roots.
	TLSCA string
	// TLSCert and TLSKey are the PEM client certificate and key shown to an external NATS
	// that verifies clients; both or neither. They are read again on every reconnect, so
	// a rotated certificate is picked up without a restart. Default empty: none.
	TLSCert, TLSKey string
	// StartTimeout bounds how long New waits for an external NATS to accept the
	// connection and answer on JetStream, so kioskfeed can start before NATS does or
	// while a cluster elects its leaders. Default 2m. The embedded server never waits.
	StartTimeout time.Duration

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
	// AuditMaxBytes bounds the AUDIT stream's size on disk: past it the oldest records
	// are dropped, so no flood of records fills the disk. Default 256 MiB (about a
	// million records), with AuditMaxAge the other bound.
	AuditMaxBytes int64
	// AuditAggregateWindow is how long repeated refusals of one type from one address
	// are counted into one record after the first is written (see Audit). Default 1m;
	// negative writes every refusal as its own record.
	AuditAggregateWindow time.Duration
	// OpTimeout bounds each JetStream call. Default 5s.
	OpTimeout time.Duration

	// TrustedProxies are IPs or CIDRs whose X-Forwarded-For is believed, so that the
	// producer API's failure limit counts the client, not the load balancer.
	TrustedProxies []string
	// IPv6Prefix is how many leading bits of an IPv6 client address the producer
	// API's failure limit keys on. 48 to 128. Default 64.
	IPv6Prefix int

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
	if c.AuditMaxBytes == 0 {
		c.AuditMaxBytes = DefaultAuditMaxBytes
	}
	if c.AuditAggregateWindow == 0 {
		c.AuditAggregateWindow = time.Minute
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 5 * time.Second
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 2 * time.Minute
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
	epoch   atomic.Pointer[string] // see Epoch; set at start, refreshed by CheckEpoch
	keys    *Mirror[ProducerKey]
	clock   *clock
	metrics *metrics
	agg     *auditAggregator // nil when AuditAggregateWindow is negative

	// clientAddr and producerFails limit bad producer keys per client address (api.go).
	clientAddr    *httpx.ClientAddr
	producerFails *Limiter

	srv      *server.Server // nil when external
	natsAddr string         // the embedded listener's address, "" when none

	// denied holds a permission violation NATS reported while New sets up, which makes
	// the failed setup permanent rather than worth waiting for.
	denied atomic.Pointer[error]

	closeOnce sync.Once
	closeErr  error
}

// New connects to NATS (starting the embedded server when cfg.URL is empty) and sets up
// every stream and bucket idempotently. With an external NATS it waits up to
// cfg.StartTimeout (or until ctx ends) for the servers to accept the connection and for
// JetStream to answer, logging why it waits; a problem that waiting cannot fix (refused
// credentials, TLS, a conflicting stream) fails at once. It fails with a message naming
// what to fix.
func New(ctx context.Context, cfg Config) (*Broker, error) {
	cfg.setDefaults()
	b := &Broker{cfg: cfg, log: cfg.Logger, metrics: newMetrics(cfg.Registerer)}
	b.registerStreamMetrics(cfg.Registerer)
	var err error
	if b.clientAddr, err = httpx.NewClientAddr(cfg.TrustedProxies); err != nil {
		return nil, err
	}
	b.producerFails = NewLimiter(LimiterConfig{Every: producerFailEvery, Burst: producerFailBurst, IPv6Prefix: cfg.IPv6Prefix, Now: cfg.Now})
	if cfg.URL != "" {
		if err := b.startExternal(ctx); err != nil {
			if b.nc != nil {
				b.nc.Close()
			}
			return nil, err
		}
		b.startAggregator()
		return b, nil
	}
	if err := b.startEmbedded(); err != nil {
		b.shutdownServer()
		return nil, err
	}
	if err := b.setup(ctx); err != nil {
		b.nc.Close()
		b.shutdownServer()
		return nil, err
	}
	b.startAggregator()
	return b, nil
}

// startAggregator starts the audit aggregator's goroutine, which Close stops.
func (b *Broker) startAggregator() {
	if b.cfg.AuditAggregateWindow < 0 {
		return
	}
	b.agg = newAuditAggregator(b.cfg.AuditAggregateWindow, b.cfg.IPv6Prefix, b.writeAudit)
	go b.agg.run()
}

// Conn is the NATS connection, for components that subscribe or request directly.
func (b *Broker) Conn() *nats.Conn { return b.nc }

// JetStream is the JetStream context of the connection.
func (b *Broker) JetStream() jetstream.JetStream { return b.js }

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
		if b.clock != nil {
			b.clock.close()
		}
		if b.agg != nil {
			b.agg.close() // writes the counts of the windows still open
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
