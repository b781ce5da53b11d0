package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
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

func (b *Broker) connOptions() []nats.Option {
	return []nats.Option{
		nats.Name("kioskfeed"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		// A NATS node that vanishes without closing its sockets (power loss, partition)
		// is noticed within about 30s rather than the default 4 minutes, so the
		// connection moves to a live node of the cluster.
		nats.PingInterval(15 * time.Second),
		nats.MaxPingsOutstanding(2),
		// No reconnect buffer: a publish while disconnected fails at once (503) instead of
		// being sent later, after its caller was already told it failed.
		nats.ReconnectBufSize(-1),
		// New retries the first connection itself (startExternal), so that it can tell
		// refused credentials from a server that is not up yet.
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
			if errors.Is(err, nats.ErrPermissionViolation) {
				b.denied.Store(&err)
			}
			b.log.Warn("nats async error", slog.String("error", errString(err)))
		}),
	}
}

// externalOptions are the connection options for an external NATS. Files named in the
// config are read here, so a missing or unreadable one fails before any waiting.
func (b *Broker) externalOptions() ([]nats.Option, error) {
	opts := b.connOptions()
	if b.cfg.CredsFile != "" {
		if _, err := os.Stat(b.cfg.CredsFile); err != nil {
			return nil, fmt.Errorf("NATS credentials file (nats_creds_file): %w", err)
		}
		opts = append(opts, nats.UserCredentials(b.cfg.CredsFile))
	}
	if b.cfg.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(b.cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("NATS nkey seed file (nats_nkey_file) %s: %w", b.cfg.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	}
	if b.cfg.User != "" {
		opts = append(opts, nats.UserInfo(b.cfg.User, b.cfg.Password))
	}
	if b.cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(b.cfg.TLSCA))
	}
	if (b.cfg.TLSCert == "") != (b.cfg.TLSKey == "") {
		return nil, errors.New("NATS TLS client certificate: set both nats_tls_cert and nats_tls_key, or neither")
	}
	if b.cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(b.cfg.TLSCert, b.cfg.TLSKey))
	}
	// The TLS options load their files when applied: try them once on scratch options,
	// so that a bad file is reported now, by name, rather than as a failed connection.
	scratch := nats.GetDefaultOptions()
	for _, opt := range opts {
		if err := opt(&scratch); err != nil {
			return nil, fmt.Errorf("NATS TLS files (nats_tls_ca, nats_tls_cert, nats_tls_key): %w", err)
		}
	}
	return opts, nil
}

// startLogEvery spaces the "waiting for NATS JetStream" lines.
const startLogEvery = 5 * time.Second

// startExternal connects to the external NATS and sets up the streams and buckets,
// retrying both until they work, a permanent error comes back, ctx ends or
// StartTimeout passes: NATS may start after kioskfeed, and a cluster answers JetStream
// requests only once it has elected a meta leader and the stream leaders.
func (b *Broker) startExternal(ctx context.Context) error {
	opts, err := b.externalOptions()
	if err != nil {
		return err
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, b.cfg.StartTimeout)
	defer cancel()
	urls := redactURLs(b.cfg.URL)
	start := time.Now()
	var lastLog time.Time
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := b.tryExternal(ctx, opts)
		if err == nil {
			b.log.Info("connected to NATS JetStream", slog.String("url", urls),
				slog.String("server", b.nc.ConnectedServerName()), slog.Int("attempts", attempt),
				slog.Duration("waited", time.Since(start).Round(time.Millisecond)))
			return nil
		}
		if fix := permanentFix(err); fix != "" {
			return fmt.Errorf("NATS at %s: %w; %s", urls, err, fix)
		}
		if time.Since(lastLog) >= startLogEvery {
			b.log.Warn("waiting for NATS JetStream at "+urls+": "+err.Error(),
				slog.Int("attempt", attempt), slog.Duration("waited", time.Since(start).Round(time.Millisecond)))
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("waiting for NATS JetStream at %s: %w (last problem: %v)", urls, parent.Err(), err)
			}
			return fmt.Errorf("NATS JetStream at %s not available within %s (nats_start_timeout): %w; check nats_url, that the servers run with JetStream, and that a majority of the cluster is up", urls, b.cfg.StartTimeout, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// tryExternal is one attempt of startExternal: connect unless connected (the
// connection then reconnects by itself), then set up.
func (b *Broker) tryExternal(ctx context.Context, opts []nats.Option) error {
	if b.nc != nil && b.nc.IsClosed() {
		b.nc = nil
	}
	if b.nc == nil {
		nc, err := nats.Connect(b.cfg.URL, opts...)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		b.nc = nc
	}
	if !b.nc.IsConnected() {
		// Lost since the last attempt; it reconnects by itself meanwhile.
		if err := b.nc.LastError(); err != nil {
			return fmt.Errorf("reconnect: %w", err)
		}
		return fmt.Errorf("connection %s", strings.ToLower(b.nc.Status().String()))
	}
	if err := b.setup(ctx); err != nil {
		if p := b.denied.Swap(nil); p != nil {
			return fmt.Errorf("%w (%w)", err, *p)
		}
		return err
	}
	return nil
}

// permanentFix says what the operator must change when waiting cannot make err go
// away, and "" when it can (NATS not up yet, no JetStream leader yet).
func permanentFix(err error) string {
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired):
		return "NATS refused kioskfeed's credentials: check nats_creds_file, nats_nkey_file, or nats_user and nats_password"
	case errors.Is(err, nats.ErrPermissionViolation):
		return "the NATS user may not use JetStream: allow it to publish to $JS.API.> and feeds.>, and to subscribe to _INBOX.>"
	case errors.Is(err, nats.ErrSecureConnRequired):
		return "the NATS servers require TLS: use tls:// URLs or set nats_tls_ca"
	case errors.Is(err, nats.ErrSecureConnWanted):
		return "TLS is configured but the NATS servers do not offer it: enable TLS on them, or remove nats_tls_ca, nats_tls_cert and nats_tls_key"
	case isTLSFailure(err):
		return "the TLS handshake with NATS failed: check that nats_tls_ca signed the servers' certificates, and nats_tls_cert and nats_tls_key if the servers verify clients"
	}
	var apiErr jetstream.JetStreamError
	if !errors.As(err, &apiErr) || apiErr.APIError() == nil {
		return ""
	}
	switch apiErr.APIError().ErrorCode {
	case jsErrReplicasNotSupported:
		return "the NATS server is not clustered: set nats_replicas to 1, or point nats_url at a JetStream cluster"
	case jetstream.JSErrCodeStreamNameInUse, jsErrSubjectOverlap:
		return "another stream in this NATS account already uses kioskfeed's subjects (" + SubjectPrefix + "*, " + auditSubjectPrefix + ">) or stream names: remove it, or give kioskfeed an account of its own"
	case jsErrInvalidConfig, jsErrUpdate, jsErrReplicasNotUpdatable, jsErrMirrorNotUpdatable, jsErrMaxBytesRequired:
		return "the existing stream's configuration cannot be changed to kioskfeed's: fix the setting named above, or remove the stream"
	}
	return ""
}

// JetStream API error codes (nats-server errors.json) that no retry can fix.
const (
	jsErrMaxBytesRequired     jetstream.ErrorCode = 10113
	jsErrInvalidConfig        jetstream.ErrorCode = 10052
	jsErrMirrorNotUpdatable   jetstream.ErrorCode = 10055
	jsErrReplicasNotUpdatable jetstream.ErrorCode = 10061
	jsErrSubjectOverlap       jetstream.ErrorCode = 10065
	jsErrUpdate               jetstream.ErrorCode = 10069
	jsErrReplicasNotSupported jetstream.ErrorCode = 10074
)

// isTLSFailure reports a TLS handshake that failed on a certificate or a refusal by the
// server, not because the connection dropped: only the first is fixed by configuration.
func isTLSFailure(err error) bool {
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid) {
		return true
	}
	// An alert from the server (a client certificate it refused or missed) has no
	// exported type, and with TLS 1.3 it arrives after the handshake, unwrapped.
	return strings.Contains(err.Error(), "remote error: tls:")
}

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

// Conn is the NATS connection, for components that subscribe or request directly.
func (b *Broker) Conn() *nats.Conn { return b.nc }

// JetStream is the JetStream context of the connection.
func (b *Broker) JetStream() jetstream.JetStream { return b.js }

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
