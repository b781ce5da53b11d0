package pairing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/jsonx"
	"github.com/kioskfeed/kioskfeed/pairing/dpop"
)

// Audience is the aud of every access token.
const Audience = "kioskfeed"

// MaxTokenBytes caps an access token; longer input is refused before any
// decoding. A real token is about 600 bytes.
const MaxTokenBytes = 8 << 10

// DefaultTokenTTL is an access token's lifetime unless configured: it
// bounds what a missed revocation could cost (DESIGN.md).
const DefaultTokenTTL = 10 * time.Minute

// DefaultTokenLeeway is the clock difference between server instances
// tolerated when checking exp, nbf and iat.
const DefaultTokenLeeway = 30 * time.Second

// accessTokenType is the JOSE typ of an access token (RFC 9068), so a
// token and a DPoP proof can never be taken for one another.
const accessTokenType = "at+jwt"

// ErrInvalidToken matches every refusal of an access token (errors.Is): the
// HTTP layer answers invalid_token, the WebSocket closes 4401.
var ErrInvalidToken = errors.New("invalid access token")

// TokenError is a refused access token. Reason is a short fixed phrase,
// safe to log; it never contains token text.
type TokenError struct {
	Reason string
}

func (e *TokenError) Error() string { return "invalid access token: " + e.Reason }

// Is makes every TokenError match ErrInvalidToken.
func (e *TokenError) Is(target error) bool { return target == ErrInvalidToken }

func tokenErr(reason string) error { return &TokenError{Reason: reason} }

// Reasons a token is refused.
const (
	reasonTokenTooLarge     = "token too large"
	reasonMalformedToken    = "malformed token"
	reasonTokenWrongTyp     = "wrong typ"
	reasonTokenAlg          = "unsupported alg"
	reasonTokenHeader       = "unsupported header"
	reasonMissingKid        = "missing kid"
	reasonUnknownKid        = "unknown kid"
	reasonTokenSignature    = "bad signature"
	reasonTokenExpired      = "token expired"
	reasonTokenNotYetValid  = "token not yet valid"
	reasonTokenIATFuture    = "iat in the future"
	reasonWrongAudience     = "wrong audience"
	reasonWrongIssuer       = "wrong issuer"
	reasonMissingClaim      = "missing required claim"
	reasonInvalidClaims     = "invalid claims"
	reasonMissingSubject    = "missing sub"
	reasonMissingFeed       = "missing feed"
	reasonMissingCnf        = "missing cnf.jkt"
	reasonMissingTokenJTI   = "missing jti"
	reasonMissingTokenIAT   = "missing iat"
	reasonMissingExpiration = "missing exp"
)

// TokenConfig configures a [TokenIssuer].
type TokenConfig struct {
	// Keys are P-256 signing keys (LoadOrCreateSigningKeys). The first
	// signs; all verify and are published, so a new key can be put first
	// while the old one still verifies what it signed. Required.
	Keys []*ecdsa.PrivateKey
	// Issuer is the iss claim, the public URL. Required.
	Issuer string
	// TTL is how long an issued token lives. Default DefaultTokenTTL
	// (10 minutes).
	TTL time.Duration
	// Leeway is the clock difference between instances tolerated on exp,
	// nbf and iat. Default DefaultTokenLeeway (30 seconds).
	Leeway time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// TokenIssuer issues the short-lived, key-bound access tokens of
// docs/protocol.md §4 and verifies them against its own key set only (no jku,
// x5u or x5c is ever followed). Safe for concurrent use.
type TokenIssuer struct {
	issuer  string
	ttl     time.Duration
	now     func() time.Time
	leeway  time.Duration
	signKey jwk.Key // private, with kid and alg
	kids    map[string]bool
	pubs    map[string]*ecdsa.PublicKey // by kid: what verifies (tokenverify.go)
	set     jwk.Set                     // the published key set
	jwks    []byte
	known   *knownTokens // tokens whose signature is known good (tokencache.go)
	// issued, when set, is told of each token signed (knownshare.go).
	issued func(d tokenDigest, until time.Time)
}

// AccessClaims are the checked claims of a verified access token.
type AccessClaims struct {
	DeviceID string // sub
	Feed     string
	JKT      string // cnf.jkt: the thumbprint of the only key whose proofs go with this token
	JTI      string
	IssuedAt time.Time
	Expires  time.Time
}

// BoundTo reports whether jkt, the thumbprint a DPoP proof was verified
// with, is the key this token is bound to. A token is useless with any
// other key's proof, so callers must check this after both verifications.
func (c *AccessClaims) BoundTo(jkt string) bool {
	return c != nil && c.JKT != "" && subtle.ConstantTimeCompare([]byte(c.JKT), []byte(jkt)) == 1
}

// NewTokenIssuer checks cfg, fills defaults and prepares the key set.
func NewTokenIssuer(cfg TokenConfig) (*TokenIssuer, error) {
	if len(cfg.Keys) == 0 {
		return nil, errors.New("token issuer: no signing keys")
	}
	if cfg.Issuer == "" {
		return nil, errors.New("token issuer: no issuer")
	}
	if cfg.TTL < 0 || cfg.Leeway < 0 {
		return nil, errors.New("token issuer: negative TTL or leeway")
	}
	t := &TokenIssuer{issuer: cfg.Issuer, ttl: cfg.TTL, now: cfg.Now, kids: make(map[string]bool), pubs: make(map[string]*ecdsa.PublicKey), known: newKnownTokens()}
	if t.ttl == 0 {
		t.ttl = DefaultTokenTTL
	}
	t.leeway = cfg.Leeway
	if t.leeway == 0 {
		t.leeway = DefaultTokenLeeway
	}
	if t.now == nil {
		t.now = time.Now
	}

	set := jwk.NewSet()
	for i, priv := range cfg.Keys {
		if priv == nil || priv.Curve != elliptic.P256() {
			return nil, fmt.Errorf("token issuer: key %d is not a P-256 key", i)
		}
		kid, err := dpop.Thumbprint(&priv.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("token issuer: key %d: %w", i, err)
		}
		if t.kids[kid] {
			return nil, fmt.Errorf("token issuer: key %d is listed twice", i)
		}
		t.kids[kid] = true
		t.pubs[kid] = &priv.PublicKey
		pub, err := jwk.Import(&priv.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("token issuer: key %d: %w", i, err)
		}
		if err := setKeyFields(pub, kid); err != nil {
			return nil, fmt.Errorf("token issuer: key %d: %w", i, err)
		}
		if err := set.AddKey(pub); err != nil {
			return nil, fmt.Errorf("token issuer: key %d: %w", i, err)
		}
		if i == 0 {
			sk, err := jwk.Import(priv)
			if err != nil {
				return nil, fmt.Errorf("token issuer: signing key: %w", err)
			}
			if err := setKeyFields(sk, kid); err != nil {
				return nil, fmt.Errorf("token issuer: signing key: %w", err)
			}
			t.signKey = sk
		}
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("token issuer: encode key set: %w", err)
	}
	t.jwks, t.set = jwks, set
	return t, nil
}

func setKeyFields(k jwk.Key, kid string) error {
	if err := k.Set(jwk.KeyIDKey, kid); err != nil {
		return err
	}
	if err := k.Set(jwk.AlgorithmKey, jwa.ES256()); err != nil {
		return err
	}
	return k.Set(jwk.KeyUsageKey, jwk.ForSignature)
}

// Issue makes an access token for a registered device, bound to the key
// with thumbprint jkt, and returns it with its expiry.
func (t *TokenIssuer) Issue(deviceID, feed, jkt string) (string, time.Time, error) {
	if deviceID == "" || feed == "" || jkt == "" {
		return "", time.Time{}, errors.New("issue token: device id, feed and jkt are required")
	}
	// NumericDates are whole seconds; say so in the returned expiry too.
	iat := t.now().Truncate(time.Second)
	exp := iat.Add(t.ttl)
	tok, err := jwt.NewBuilder().
		Issuer(t.issuer).
		Audience([]string{Audience}).
		Subject(deviceID).
		IssuedAt(iat).
		Expiration(exp).
		JwtID(broker.NewSecret(16)).
		Claim("feed", feed).
		Claim("cnf", map[string]string{"jkt": jkt}).
		Build()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue token: %w", err)
	}
	tok.Options().Enable(jwt.FlattenAudience) // "aud":"kioskfeed", as docs/protocol.md writes it

	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, accessTokenType); err != nil {
		return "", time.Time{}, fmt.Errorf("issue token: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), t.signKey, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue token: sign: %w", err)
	}
	// Signed here: its first handshake need not check the signature (tokencache.go),
	// on this instance or, once shared, on any (knownshare.go).
	d, until := digestToken(string(signed)), exp.Add(t.leeway)
	t.known.add(d, until, iat)
	if t.issued != nil {
		t.issued(d, until)
	}
	return string(signed), exp, nil
}

// Verify checks an access token's size, shape, header, signature (ES256,
// one of this issuer's keys, chosen by kid) and claims, and returns the
// claims. A refusal is a *TokenError (errors.Is ErrInvalidToken). It does
// not check the device's standing in the registry or the DPoP binding: the
// caller does both (see AccessClaims.BoundTo).
func (t *TokenIssuer) Verify(token string) (*AccessClaims, error) {
	if len(token) > MaxTokenBytes {
		return nil, tokenErr(reasonTokenTooLarge)
	}
	if strings.Count(token, ".") != 2 {
		return nil, tokenErr(reasonMalformedToken)
	}
	encHeader, _, _ := strings.Cut(token, ".")
	kid, err := t.checkHeader(encHeader)
	if err != nil {
		return nil, err
	}
	return t.verifySigned(token, kid)
}

// checkHeader refuses, with a precise reason, what the signature check would refuse
// anyway, and what it would not look at (typ, crit), and returns the kid.
func (t *TokenIssuer) checkHeader(encHeader string) (string, error) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(encHeader)
	if err != nil {
		return "", tokenErr(reasonMalformedToken)
	}
	var hdr jsonx.Object
	if err := hdr.Parse(raw); err != nil {
		return "", tokenErr(reasonMalformedToken)
	}
	if alg, ok := hdr.String("alg"); !ok || alg != "ES256" {
		return "", tokenErr(reasonTokenAlg)
	}
	if typ, ok := hdr.String("typ"); !ok || typ != accessTokenType {
		return "", tokenErr(reasonTokenWrongTyp)
	}
	if hdr.Has("crit") || hdr.Has("b64") {
		return "", tokenErr(reasonTokenHeader)
	}
	kid, ok := hdr.String("kid")
	if !ok || kid == "" {
		return "", tokenErr(reasonMissingKid)
	}
	if !t.kids[kid] {
		return "", tokenErr(reasonUnknownKid)
	}
	return kid, nil
}

// JWKS returns the public key set as JSON, for /.well-known/jwks.json: each
// key with kid, alg ES256 and use sig.
func (t *TokenIssuer) JWKS() ([]byte, error) {
	return append([]byte(nil), t.jwks...), nil
}
