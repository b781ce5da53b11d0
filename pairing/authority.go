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
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Authority is the pairing service: PINs, pair requests, the device registry,
// DPoP-bound access tokens, the device-facing HTTP endpoints, the authenticator the
// bridge asks, and the small Go API through which the admin package acts on them
// (IssuePIN, RevokeDevice, ApprovePairRequest, DenyPairRequest, ...).
type Authority struct {
	cfg      Config
	b        *broker.Broker
	log      *slog.Logger
	tokens   *TokenIssuer
	known    *knownShare // the tokens' known digests, shared (knownshare.go)
	verifier *dpop.Verifier
	nonces   *dpop.NonceSource
	devices  *Registry
	pins     *pinStore
	// requests are the pair requests of the reverse flow (docs/protocol.md §3b).
	requests *requestStore
	addr     *httpx.ClientAddr

	// Each surface has limits of its own, so that failures on one cannot shut another.
	// The device endpoints count every attempt; the administrators' code lookups count
	// misses only, and refuse before they look once an address's misses are used up.
	pairLimit  *limiter // POST /api/pair and /api/pair/requests
	tokenLimit *limiter // POST /api/token: every call, loosely
	// tokenFails bounds refused token calls (bad proofs, unknown devices) per address,
	// strictly: a lobby behind one NAT address that needs 300 new tokens at once after
	// a long outage is not throttled, a script trying device ids is.
	tokenFails *limiter
	pollLimit  *limiter // the pair requests' polls
	// guessLimit bounds, per address, admin lookups of codes that name no open request.
	guessLimit *limiter
}

// Allowances of POST /api/token per client address (IPv6: per prefix). Every call
// counts against tokenBurst (as many as the socket's handshakes: each token is followed
// by one), refusals also against tokenFailBurst (Config.TokenFailBurst).
const (
	tokenBurst     = 1000
	tokenEvery     = 20 * time.Millisecond
	tokenFailBurst = 20
	tokenFailEvery = 3 * time.Second
)

// tokenLimitClock is the clock of the token endpoint's allowance: cfg.Now, unless a test
// holds its refill (export_test.go).
var tokenLimitClock = func(now func() time.Time) func() time.Time { return now }

// New sets up the buckets pairing keeps its state in and returns the service.
func New(ctx context.Context, cfg Config, b *broker.Broker) (*Authority, error) {
	cfg.setDefaults()
	if cfg.PublicURL == "" || len(cfg.SigningKeys) == 0 {
		return nil, errors.New("pairing: PublicURL and SigningKeys are required")
	}
	a := &Authority{cfg: cfg, b: b, log: cfg.Logger}
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
	replayKV, err := b.SoftBucket(ctx, dpop.ReplayBucketConfig())
	if err != nil {
		return nil, err
	}
	replay := dpop.NewKVReplayCache(replayKV, cfg.Now)
	replay.SetRecreate(func(ctx context.Context) (jetstream.KeyValue, error) {
		return b.SoftBucket(ctx, dpop.ReplayBucketConfig())
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
	bits := cfg.IPv6Prefix
	a.pairLimit = newPrefixLimiter(cfg.PairEvery, cfg.PairBurst, bits, cfg.Now)
	a.tokenLimit = newPrefixLimiter(tokenEvery, tokenBurst, bits, tokenLimitClock(cfg.Now))
	a.tokenFails = newPrefixLimiter(tokenFailEvery, cfg.TokenFailBurst, bits, cfg.Now)
	// A tablet polls every 5 s (RFC 8628): this bounds only a script.
	a.pollLimit = newPrefixLimiter(200*time.Millisecond, 120, bits, cfg.Now)
	a.guessLimit = newPrefixLimiter(codeGuessEvery, codeGuessBurst, bits, cfg.Now)
	// Last: the only part with goroutines besides the registry's.
	if a.known, err = newKnownShare(ctx, b, a.tokens.known, a.tokens.ttl+a.tokens.leeway, cfg.Now, a.log); err != nil {
		a.devices.stop()
		return nil, err
	}
	a.tokens.issued = a.known.offer
	return a, nil
}

// Devices is the device registry, for the bridge's revocation watch (OnRevoke) and the
// admin device list.
func (a *Authority) Devices() *Registry { return a.devices }

// Close stops the registry's watcher and the known tokens' sharing.
func (a *Authority) Close() {
	a.devices.stop()
	a.known.stop()
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

// audit writes rec, stamped with the time, for a device-facing call: no actor.
func (a *Authority) audit(rec broker.AuditRecord) {
	rec.Time = a.cfg.Now()
	a.b.Audit(rec)
}

// auditCtx writes rec, stamped with the time and with the actor ctx carries (an
// administrator's credential, put there by the admin package: see broker.WithActor),
// so that the audit log names who approved, denied or issued.
func (a *Authority) auditCtx(ctx context.Context, rec broker.AuditRecord) {
	rec.Time = a.cfg.Now()
	rec.Actor = broker.ActorOf(ctx)
	a.b.Audit(rec)
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
	return broker.Identity{DeviceID: d.ID, Feed: d.Feed, Expires: claims.Expires, MovedSeq: d.MovedSeq}, nil
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
