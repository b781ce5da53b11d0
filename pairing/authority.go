package pairing

import (
	"context"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing/dpop"
)

// Config configures an Authority. cmd/kioskfeed fills it from config.Config.
type Config struct {
	// PublicURL is the URL tablets use, without a trailing slash: the token issuer and
	// the base of every expected DPoP htu (never taken from request headers). Required.
	PublicURL string
	// SigningKeys sign access tokens (the first) and verify them (all). The nonce and
	// PIN keys are derived from the first, so instances that share the key file share
	// everything else too. Required.
	SigningKeys []*ecdsa.PrivateKey
	// AdminTokenHashes are SHA-256 hashes of the configured or generated admin tokens.
	AdminTokenHashes [][32]byte
	// TokenTTL is an access token's lifetime. Default 10m.
	TokenTTL time.Duration
	// ProofSkew is how far a DPoP proof's iat may be from our clock. Default 10m.
	ProofSkew time.Duration
	// TrustedProxies are IPs or CIDRs whose X-Forwarded-For is believed.
	TrustedProxies []string
	// PairEvery and PairBurst rate-limit /api/pair per client address. Default one
	// attempt per 6s with a burst of 10.
	PairEvery time.Duration
	PairBurst int
	// TokenFailBurst refused calls of /api/token (bad proofs, unknown devices) per
	// client address, then one per 3 s; past it the address gets 429 before its proof
	// is checked. Default 20. Good calls have a large allowance of their own.
	TokenFailBurst int
	// IPv6Prefix is how many leading bits of an IPv6 client address every per-address
	// limit keys on (one /64 is one customer network, which a single host can fill
	// with fresh addresses). 48 to 128. Default 64.
	IPv6Prefix int
	// Presence tells whether a device has a live connection and when it was last seen,
	// for the admin device list. Default: nobody is online (no bridge yet).
	Presence func(deviceID string) (online bool, lastSeen time.Time)
	// OnlineCount is how many tablets have a live connection now, for the dashboard's
	// live count (GET /admin/live). Default: 0 (no bridge yet).
	OnlineCount func() int
	// Logger takes the service's logs. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.TokenTTL == 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.ProofSkew == 0 {
		c.ProofSkew = dpop.DefaultSkew
	}
	if c.PairEvery == 0 {
		c.PairEvery = 6 * time.Second
	}
	if c.PairBurst == 0 {
		c.PairBurst = 10
	}
	if c.TokenFailBurst == 0 {
		c.TokenFailBurst = tokenFailBurst
	}
	if c.Presence == nil {
		c.Presence = func(string) (bool, time.Time) { return false, time.Time{} }
	}
	if c.OnlineCount == nil {
		c.OnlineCount = func() int { return 0 }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Authority is the pairing service: PINs, the device registry, DPoP-bound access tokens,
// the device-facing and admin HTTP endpoints, and the authenticator the bridge asks.
type Authority struct {
	cfg      Config
	b        *broker.Broker
	log      *slog.Logger
	tokens   *TokenIssuer
	verifier *dpop.Verifier
	nonces   *dpop.NonceSource
	devices  *Registry
	pins     *pinStore
	// requests are the pair requests of the reverse flow (docs/protocol.md §3b).
	requests *requestStore
	admin    *AdminAuth
	adminKV  jetstream.KeyValue // the dashboard's password and sessions
	addr     *httpx.ClientAddr

	presence atomic.Pointer[func(string) (bool, time.Time)]

	// Each surface has limits of its own, so that failures on one cannot shut another
	// (bad bearer tokens must not lock the dashboard login). The device endpoints
	// count every attempt; the admin surfaces count failures only, and refuse before
	// they look once an address's failures are used up.
	pairLimit  *limiter // POST /api/pair and /api/pair/requests
	tokenLimit *limiter // POST /api/token: every call, loosely
	// tokenFails bounds refused token calls (bad proofs, unknown devices) per address,
	// strictly: a lobby behind one NAT address that needs 300 new tokens at once after
	// a long outage is not throttled, a script trying device ids is.
	tokenFails *limiter
	pollLimit  *limiter // the pair requests' polls
	// loginFails bounds wrong dashboard passwords per address.
	loginFails *limiter
	// bearerFails bounds bad admin bearer tokens per address.
	bearerFails *limiter
	// guessLimit bounds, per address, admin lookups of codes that name no open request.
	guessLimit *limiter
}

// Failure allowances of the admin surfaces, per client address (IPv6: per prefix).
const (
	// loginFailBurst wrong dashboard passwords at once, then one per loginFailEvery.
	loginFailBurst = 40
	loginFailEvery = 3 * time.Second
	// bearerFailBurst bad admin bearer tokens at once, then one per bearerFailEvery.
	bearerFailBurst = 20
	bearerFailEvery = 3 * time.Second
)

// Allowances of POST /api/token per client address (IPv6: per prefix). Every call
// counts against tokenBurst (as many as the socket's handshakes: each token is followed
// by one), refusals also against tokenFailBurst (Config.TokenFailBurst).
const (
	tokenBurst     = 1000
	tokenEvery     = 20 * time.Millisecond
	tokenFailBurst = 20
	tokenFailEvery = 3 * time.Second
)

// New sets up the buckets pairing keeps its state in and returns the service.
func New(ctx context.Context, cfg Config, b *broker.Broker) (*Authority, error) {
	cfg.setDefaults()
	if cfg.PublicURL == "" || len(cfg.SigningKeys) == 0 {
		return nil, errors.New("pairing: PublicURL and SigningKeys are required")
	}
	a := &Authority{cfg: cfg, b: b, log: cfg.Logger}
	a.presence.Store(&cfg.Presence)
	var err error
	if a.addr, err = httpx.NewClientAddr(cfg.TrustedProxies); err != nil {
		return nil, err
	}
	if a.tokens, err = NewTokenIssuer(TokenConfig{Keys: cfg.SigningKeys, Issuer: cfg.PublicURL, TTL: cfg.TokenTTL, Now: cfg.Now}); err != nil {
		return nil, err
	}
	nonceKey, err := DeriveKey(cfg.SigningKeys[0], "kioskfeed dpop nonce", dpop.NonceKeySize)
	if err != nil {
		return nil, err
	}
	if a.nonces, err = dpop.NewNonceSource(dpop.NonceConfig{Key: nonceKey, Now: cfg.Now}); err != nil {
		return nil, err
	}
	replayKV, err := b.SoftBucket(ctx, dpop.ReplayBucketConfig(1))
	if err != nil {
		return nil, err
	}
	replay := dpop.NewKVReplayCache(replayKV, cfg.Now)
	replay.SetRecreate(func(ctx context.Context) (jetstream.KeyValue, error) {
		return b.SoftBucket(ctx, dpop.ReplayBucketConfig(1))
	})
	if a.verifier, err = dpop.NewVerifier(dpop.Config{Replay: replay, Skew: cfg.ProofSkew, Now: cfg.Now}); err != nil {
		return nil, err
	}
	pinKey, err := DeriveKey(cfg.SigningKeys[0], "kioskfeed pin hmac", 32)
	if err != nil {
		return nil, err
	}
	if a.pins, err = newPINStore(ctx, b, pinKey, cfg.Now); err != nil {
		return nil, err
	}
	if a.requests, err = newRequestStore(ctx, b, cfg.IPv6Prefix, cfg.Now); err != nil {
		return nil, err
	}
	if a.devices, err = newRegistry(ctx, b, a.log); err != nil {
		return nil, err
	}
	if a.admin, err = newAdminAuth(ctx, b, a.log, cfg.AdminTokenHashes...); err != nil {
		a.devices.stop()
		return nil, err
	}
	if a.adminKV, err = b.Bucket(ctx, AdminBucketConfig()); err != nil {
		a.devices.stop()
		a.admin.stop()
		return nil, err
	}
	bits := cfg.IPv6Prefix
	a.pairLimit = newPrefixLimiter(cfg.PairEvery, cfg.PairBurst, bits, cfg.Now)
	a.tokenLimit = newPrefixLimiter(tokenEvery, tokenBurst, bits, cfg.Now)
	a.tokenFails = newPrefixLimiter(tokenFailEvery, cfg.TokenFailBurst, bits, cfg.Now)
	// A tablet polls every 5 s (RFC 8628): this bounds only a script.
	a.pollLimit = newPrefixLimiter(200*time.Millisecond, 120, bits, cfg.Now)
	a.loginFails = newPrefixLimiter(loginFailEvery, loginFailBurst, bits, cfg.Now)
	a.bearerFails = newPrefixLimiter(bearerFailEvery, bearerFailBurst, bits, cfg.Now)
	a.guessLimit = newPrefixLimiter(codeGuessEvery, codeGuessBurst, bits, cfg.Now)
	return a, nil
}

// SetPresence installs where the admin device list learns who is online (the bridge's
// leases), once the bridge exists: it is made after the Authority it authenticates with.
func (a *Authority) SetPresence(fn func(deviceID string) (online bool, lastSeen time.Time)) {
	a.presence.Store(&fn)
}

// Devices is the device registry, for the bridge's revocation watch (OnRevoke).
func (a *Authority) Devices() *Registry { return a.devices }

// Nonces makes the WebSocket challenges and DPoP-Nonce values.
func (a *Authority) Nonces() *dpop.NonceSource { return a.nonces }

// Close stops the registry's and admin tokens' watchers.
func (a *Authority) Close() {
	a.devices.stop()
	a.admin.stop()
}

// DeriveKey derives an n-byte secret for one purpose from a signing key (HKDF-SHA256
// over its private scalar), so that every instance sharing the key file shares it.
func DeriveKey(k *ecdsa.PrivateKey, purpose string, n int) ([]byte, error) {
	secret, err := k.Bytes()
	if err != nil {
		return nil, fmt.Errorf("derive %s key: %w", purpose, err)
	}
	return hkdf.Key(sha256.New, secret, nil, purpose, n)
}

// audit writes one record with the request's client address.
func (a *Authority) audit(typ, feed, deviceID, remote, detail string) {
	a.b.Audit(broker.AuditRecord{Time: a.cfg.Now(), Type: typ, Feed: feed, DeviceID: deviceID, RemoteAddr: remote, Detail: detail})
}

// unavailable logs a NATS failure and answers 503: the client did nothing wrong.
func (a *Authority) unavailable(op string, err error) error {
	a.log.Warn("pairing store unreachable", slog.String("op", op), slog.String("error", err.Error()))
	return broker.ErrUnavailable
}

// Authenticate checks a tablet's access token and the DPoP proof that comes with it on
// the WebSocket (htm GET, htu the ws URL, nonce the challenge) and the device's
// standing. nonce must be a challenge made for this one call and never made again (the
// bridge makes one per socket and per re-auth): the proof's jti is not recorded, the
// nonce alone makes it single-use. It returns broker.ErrCredentialInvalid (close 4401) or
// broker.ErrDeviceRevoked (4403), wrapped with a short reason safe to log; any other
// error means the replay cache could not be reached (1011).
func (a *Authority) Authenticate(ctx context.Context, token, proof, nonce, htu string) (broker.Identity, error) {
	claims, err := a.tokens.Verify(token)
	if err != nil {
		return broker.Identity{}, fmt.Errorf("%w: %s", broker.ErrCredentialInvalid, reasonOf(err))
	}
	jkt, err := a.verifier.Verify(ctx, proof, dpop.ProofWant{Method: "GET", URL: htu, AccessToken: token, Nonce: nonce})
	if err != nil {
		if !errors.Is(err, dpop.ErrInvalidProof) {
			return broker.Identity{}, err
		}
		return broker.Identity{}, fmt.Errorf("%w: %s", broker.ErrCredentialInvalid, reasonOf(err))
	}
	if !claims.BoundTo(jkt) {
		return broker.Identity{}, fmt.Errorf("%w: proof key is not the token's key", broker.ErrCredentialInvalid)
	}
	d, ok := a.devices.Device(claims.DeviceID)
	if !ok {
		// Paired on another instance a moment ago, perhaps, before our mirror heard:
		// only the bucket can say the device is unknown (4403 makes the tablet forget
		// its pairing, so it must not be said lightly).
		var err error
		if d, ok, err = a.devices.current(ctx, claims.DeviceID); err != nil {
			return broker.Identity{}, fmt.Errorf("device registry: %w", err)
		}
		if !ok {
			return broker.Identity{}, fmt.Errorf("%w: device is not registered", broker.ErrDeviceRevoked)
		}
	}
	if d.JKT != jkt || d.Feed != claims.Feed {
		return broker.Identity{}, fmt.Errorf("%w: token does not match the device record", broker.ErrCredentialInvalid)
	}
	return broker.Identity{DeviceID: d.ID, Feed: d.Feed, Expires: claims.Expires}, nil
}

// reasonOf is the short, fixed reason of a proof or token refusal.
func reasonOf(err error) string {
	var pe *dpop.ProofError
	if errors.As(err, &pe) {
		return pe.Reason
	}
	var te *TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	return "refused"
}
