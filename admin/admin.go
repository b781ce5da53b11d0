package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/alerts"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// Presence is what the admin side needs to know of the tablets' live connections: the
// device list's online flag and last-seen time, and the dashboard's live count. It is
// declared here, where it is used, and satisfied by *bridge.Bridge (from its leases),
// which cmd/kioskfeed passes to New; admin never imports the bridge.
type Presence interface {
	// Presence tells whether a device has a live connection and when it was last seen.
	Presence(deviceID string) (online bool, lastSeen time.Time)
	// OnlineCount is how many tablets have a live connection now.
	OnlineCount() int
}

// nobodyOnline is the Presence of a server without a bridge (tests, tools).
type nobodyOnline struct{}

func (nobodyOnline) Presence(string) (bool, time.Time) { return false, time.Time{} }
func (nobodyOnline) OnlineCount() int                  { return 0 }

// Config configures an Admin. cmd/kioskfeed fills it from config.Config.
type Config struct {
	// PublicURL is the URL administrators use, without a trailing slash: it decides
	// whether cookies are Secure and is the origin the forms' cross-origin check
	// trusts (never taken from request headers). Required.
	PublicURL string
	// CSRFKey keys the dashboard forms' CSRF tokens: 32 bytes shared by every
	// instance, so that a form made by one is accepted by another (cmd/kioskfeed
	// derives it from the signing key with pairing.DeriveKey). Required.
	CSRFKey []byte
	// TokenHashes are SHA-256 hashes (HashToken) of the configured or generated admin
	// bearer tokens; named tokens live in KV besides.
	TokenHashes [][32]byte
	// TrustedProxies are IPs or CIDRs whose X-Forwarded-For is believed.
	TrustedProxies []string
	// IPv6Prefix is how many leading bits of an IPv6 client address the failure
	// allowances key on. 48 to 128. Default 64.
	IPv6Prefix int
	// Logger takes the service's logs. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Webhooks keeps the alert webhooks the API and dashboard manage (webhooks.go).
	// Default nil: no webhook endpoints or page.
	Webhooks *alerts.Service
}

// Failure allowances of the admin surfaces, per client address (IPv6: per prefix).
// Each surface has its own, so that failures on one cannot shut another (bad bearer
// tokens must not lock the dashboard login); they count failures only, and refuse
// before they look once an address's failures are used up.
const (
	// loginFailBurst wrong dashboard passwords at once, then one per loginFailEvery.
	loginFailBurst = 40
	loginFailEvery = 3 * time.Second
	// bearerFailBurst bad admin bearer tokens at once, then one per bearerFailEvery.
	bearerFailBurst = 20
	bearerFailEvery = 3 * time.Second
)

// Admin is the administrators' side of kioskfeed: their credentials (bearer tokens,
// the dashboard password and login sessions), the admin API and the dashboard. What
// it decides about devices it asks pairing to do.
type Admin struct {
	cfg      Config
	b        *broker.Broker
	p        *pairing.Authority
	presence Presence
	log      *slog.Logger
	tokens   *tokenStore
	kv       jetstream.KeyValue // the dashboard's password and sessions
	addr     *httpx.ClientAddr
	dash     *dashboard
	// overrides are the emergency overrides (overrides.go).
	overrides *broker.Overrides
	// schedules are the feeds' screen schedules (schedules.go).
	schedules *broker.Schedules
	// timeline holds every device's recent state changes (timeline.go).
	timeline *broker.Timeline

	// loginFails bounds wrong dashboard passwords per address.
	loginFails *broker.Limiter
	// bearerFails bounds bad admin bearer tokens per address.
	bearerFails *broker.Limiter
}

// New opens the admin buckets and returns the admin side of p. presence may be nil:
// then nobody is ever online.
func New(ctx context.Context, cfg Config, b *broker.Broker, p *pairing.Authority, presence Presence) (*Admin, error) {
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if cfg.PublicURL == "" || len(cfg.CSRFKey) != 32 {
		return nil, errors.New("admin: PublicURL and a 32-byte CSRFKey are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if presence == nil {
		presence = nobodyOnline{}
	}
	a := &Admin{cfg: cfg, b: b, p: p, presence: presence, log: cfg.Logger}
	var err error
	if a.addr, err = httpx.NewClientAddr(cfg.TrustedProxies); err != nil {
		return nil, err
	}
	if a.kv, err = b.Bucket(ctx, BucketConfig()); err != nil {
		return nil, err
	}
	if a.tokens, err = newTokenStore(ctx, b, a.log, cfg.TokenHashes...); err != nil {
		return nil, err
	}
	if a.dash, err = newDashboard(a); err != nil {
		a.tokens.stop()
		return nil, err
	}
	if err = a.dash.parseOverridesPage(); err != nil {
		a.tokens.stop()
		return nil, err
	}
	if err = a.dash.parseSchedulesPage(); err != nil {
		a.tokens.stop()
		return nil, err
	}
	if err = a.dash.parseFleet(); err != nil { // fleetpage.go
		a.tokens.stop()
		return nil, err
	}
	if a.overrides, err = broker.NewOverrides(ctx, b); err != nil {
		a.tokens.stop()
		return nil, err
	}
	if a.schedules, err = broker.NewSchedules(ctx, b); err != nil {
		a.tokens.stop()
		a.overrides.Stop()
		return nil, err
	}
	if a.timeline, err = broker.NewTimeline(ctx, b); err == nil {
		err = a.timeline.Follow(ctx)
	}
	if err != nil {
		a.tokens.stop()
		a.overrides.Stop()
		a.schedules.Stop()
		return nil, err
	}
	limiter := func(every time.Duration, burst int) *broker.Limiter {
		return broker.NewLimiter(broker.LimiterConfig{Every: every, Burst: burst, IPv6Prefix: cfg.IPv6Prefix, Now: cfg.Now})
	}
	a.loginFails = limiter(loginFailEvery, loginFailBurst)
	a.bearerFails = limiter(bearerFailEvery, bearerFailBurst)
	return a, nil
}

// Close stops the named admin tokens', the overrides' and the timelines' watchers.
func (a *Admin) Close() {
	a.tokens.stop()
	a.overrides.Stop()
	a.timeline.Stop()
	a.schedules.Stop()
}

// Register adds the admin API (/api/admin/*, docs/protocol.md §6, but for the producer
// keys, which broker serves) and the dashboard (/admin, /admin/...) to mux. Call
// EnsurePassword at start-up as well, so that there is a password to log in with.
func (a *Admin) Register(mux *http.ServeMux) {
	a.registerAPI(mux)
	a.registerDelivery(mux)
	a.dash.register(mux)
	a.registerOverrides(mux)
	a.registerSchedules(mux)
	a.registerWebhooks(mux)
	a.registerFleetPages(mux)
	a.registerTimeline(mux)
}

// audit writes rec, stamped with the time and the actor ctx carries (see
// broker.WithActor; none for a refused credential).
func (a *Admin) audit(ctx context.Context, rec broker.AuditRecord) {
	rec.Time = a.cfg.Now()
	rec.Actor = broker.ActorOf(ctx)
	a.b.Audit(rec)
}

// unavailable logs a NATS failure and answers 503: the client did nothing wrong.
func (a *Admin) unavailable(op string, err error) error {
	a.log.Warn("admin store unreachable", slog.String("op", op), slog.String("error", err.Error()))
	return broker.ErrUnavailable
}
