package bridge

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/prometheus/client_golang/prometheus"
)

// This file holds what the bridge is built from: the feed source it reads and its
// Config, with the defaults every zero field takes.

// FeedSource is what the bridge reads feeds from; *broker.Broker satisfies it.
type FeedSource interface {
	State(ctx context.Context, feed string) (broker.State, error)
	// Catchup reads at most limit+1 events: broker.ErrTooFar past limit, broker.ErrGap
	// when retention dropped some after since.
	Catchup(ctx context.Context, feed string, since uint64, limit int) ([]broker.Event, error)
	// Window is one bounded read of a starting hub's recent events (at most n).
	Window(ctx context.Context, feed string, upTo uint64, n int) (events []broker.Event, base uint64, err error)
	// Retention is how the log drops events, which a hub's window mirrors.
	Retention() (perKind int, maxAge time.Duration)
	Follow(feed string, after uint64, fn func(broker.Event)) (stop func(), err error)
	// LastSeq is the seq of the feed's newest event in the log (0: none), which a
	// reset from a hub that may lag the log waits for (hub.go).
	LastSeq(ctx context.Context, feed string) (uint64, error)
	// CheckEpoch reads the log's epoch now (Epoch is the newest one seen): a hub
	// starts on it, and the lease upkeep looks for a log made anew.
	CheckEpoch(ctx context.Context) (string, error)
	Epoch() string
}

// Config configures a Bridge. Zero fields get the defaults their comments give.
type Config struct {
	// PublicURL is the server's public URL; the DPoP htu of the socket is its ws/wss
	// form plus /ws. Required.
	PublicURL string
	// AllowedOrigins may open the socket. Default: PublicURL's origin.
	AllowedOrigins []string
	// TrustedProxies are IPs or CIDRs whose X-Forwarded-For is believed, so that audit
	// records name the tablet, not the load balancer.
	TrustedProxies []string
	// Heartbeat is how often tablets hear from the server. Default 20s.
	Heartbeat time.Duration
	// LeaseTTL bounds how long a dead instance's leases block its tablets. Default 15s.
	LeaseTTL time.Duration
	// AuthTimeout is how long a new socket has to authenticate. Default 10s.
	AuthTimeout time.Duration
	// ReauthGrace is how long past its token's expiry a socket that did not
	// re-authenticate stays open (docs/protocol.md §5 step 7). Default 30s.
	ReauthGrace time.Duration
	// ProbeTimeout is how long a lease holder's socket has to answer a ping when a
	// duplicate arrives. Default 2s.
	ProbeTimeout time.Duration
	// WriteTimeout bounds one write to a tablet. Default 10s.
	WriteTimeout time.Duration
	// CloseGrace is how long a socket we closed waits for the tablet's close reply, and
	// a refused socket's hang-up for the tablet's FIN. Default 2s.
	CloseGrace time.Duration
	// QueueFrames bounds a tablet's queue of unsent frames; a tablet whose queue fills
	// is closed (1013) so it never slows the others. A catch-up (a reset and the state,
	// or a replay) is never cut short by it: the queue may hold one whole catch-up more.
	// Default 256, or max(ReplayLimit, CatchupLimit) + 16 when that is more, so a
	// catch-up leaves room for live events (config validation asks the same of
	// queue_frames).
	QueueFrames int
	// FanoutWriters is how many writers the fan-out has, shared by every feed: each
	// tablet belongs to one, which delivers its feed's events in order, and the writers
	// of one event run at once. Default 8 a core (8 × GOMAXPROCS): a write waits in the
	// kernel far longer than it runs (fanout.go).
	FanoutWriters int
	// WindowSize is how many recent events per feed are kept in memory for replay; a
	// hub that starts fills it with one bounded read of the log, so a reconnect storm
	// after a restart is served from memory. Default 512, or CatchupLimit when that is
	// more.
	WindowSize int
	// ReplayLimit is the most item events of a feed's state. Default 100.
	ReplayLimit int
	// CatchupLimit is the most events a reconnecting tablet is replayed: one further
	// behind gets a reset and the feed's state instead (docs/protocol.md §5 step 4), so a
	// catch-up never holds more than this many events in memory. Default 200.
	CatchupLimit int
	// CatchupReads bounds the catch-ups read from JetStream at once on this instance,
	// so a reconnect storm cannot hold one history per tablet in memory; the others
	// wait (their live events held back, boundedly). Default 4.
	CatchupReads int
	// HubLinger keeps a feed's hub (consumer and window) this long after its last
	// tablet left, so that reconnects are served from memory. Default 60s.
	HubLinger time.Duration
	// LeasesEndWithProcess says the NATS server runs in this process (embedded), so its
	// memory-stored lease buckets end with it: a drain then closes the sockets without
	// releasing their leases one by one, which made up a third of a 10,000-tablet
	// drain. With an external NATS the leases are released, so that other instances
	// take them over with a plain create.
	LeasesEndWithProcess bool
	// MaxConns bounds the sockets of this instance; past it new ones get 4429.
	// Default 0: no bound.
	MaxConns int
	// WSConnectBurst and WSConnectEvery bound the handshakes of one client address: a
	// burst, then one per interval; past them the upgrade is answered 429 with
	// Retry-After. Loose, because hundreds of tablets behind one NAT address reconnect
	// together after a restart. Default 1000 and 20ms (50 a second).
	WSConnectBurst int
	WSConnectEvery time.Duration
	// WSFailBurst and WSFailEvery bound the failed authentications of one client
	// address (a socket closed 4400, 4401, 4403, 4408 or for a protocol error before
	// its auth succeeded): a burst, then one per interval. Past them a new socket from
	// the address is answered 429 with Retry-After before the upgrade, and an open
	// one whose auth fails is closed 4429. Default 20 and 3s.
	WSFailBurst int
	WSFailEvery time.Duration
	// IPv6Prefix is how many leading bits of an IPv6 client address the limits above
	// key on (one /64 is one customer network). 48 to 128. Default 64.
	IPv6Prefix int
	// Shown configures proof of display (shown.go).
	Shown ShownConfig
	// Timeline configures the records of the devices' timelines (timeline.go).
	Timeline TimelineConfig
	// Logger takes the bridge's logs. Default: discard.
	Logger *slog.Logger
	// Registerer takes the bridge's metrics. Default: none.
	Registerer prometheus.Registerer
	// Now is the cluster's clock (broker.Now), for token expiry and lease records.
	// Socket deadlines always use the machine's own clock, which is what they are
	// compared with. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Heartbeat, 20*time.Second)
	def(&c.LeaseTTL, 15*time.Second)
	def(&c.AuthTimeout, 10*time.Second)
	def(&c.ProbeTimeout, 2*time.Second)
	def(&c.ReauthGrace, 30*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.CloseGrace, 2*time.Second)
	def(&c.HubLinger, 60*time.Second)
	def(&c.WSConnectEvery, DefaultWSConnectEvery)
	def(&c.WSFailEvery, DefaultWSFailEvery)
	if c.WSConnectBurst == 0 {
		c.WSConnectBurst = DefaultWSConnectBurst
	}
	if c.WSFailBurst == 0 {
		c.WSFailBurst = DefaultWSFailBurst
	}
	if c.ReplayLimit == 0 {
		c.ReplayLimit = 100
	}
	if c.CatchupLimit == 0 {
		c.CatchupLimit = 200
	}
	if c.CatchupReads == 0 {
		c.CatchupReads = 4
	}
	if c.QueueFrames == 0 {
		c.QueueFrames = max(256, max(c.ReplayLimit, c.CatchupLimit)+16)
	}
	if c.FanoutWriters <= 0 {
		c.FanoutWriters = 8 * runtime.GOMAXPROCS(0)
	}
	if c.WindowSize == 0 {
		c.WindowSize = max(512, c.CatchupLimit)
	}
	c.Shown.setDefaults()
	c.Timeline.setDefaults()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}
