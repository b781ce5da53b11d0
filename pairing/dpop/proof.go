package dpop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/jsonx"
)

// MaxProofBytes caps a DPoP proof; longer input is refused before any
// decoding. A real proof is about 600 bytes.
const MaxProofBytes = 8 << 10

// DefaultSkew is how far a proof's iat may differ from server time: tablet
// clocks drift (docs/protocol.md §2).
const DefaultSkew = 10 * time.Minute

// dpopType is the JOSE typ of a DPoP proof (RFC 9449 §4.2).
const dpopType = "dpop+jwt"

// jti bounds: 16 base64url characters carry 96 bits, the least the
// protocol asks for; the upper bound keeps cache keys and logs sane.
const (
	minJTILen = 16
	maxJTILen = 128
)

var (
	// ErrInvalidProof matches every refusal of a DPoP proof (errors.Is);
	// the HTTP layer answers invalid_dpop_proof, the WebSocket closes 4401.
	ErrInvalidProof = errors.New("invalid dpop proof")
	// ErrUseNonce matches refusals for a missing, wrong or stale nonce: the
	// HTTP layer answers use_dpop_nonce with a fresh DPoP-Nonce header. Such
	// an error also matches ErrInvalidProof, so check ErrUseNonce first.
	ErrUseNonce = errors.New("use dpop nonce")
)

// ProofError is a refused DPoP proof. Reason is a short fixed phrase, safe
// to log and to compare in tests; it never contains proof or token text.
type ProofError struct {
	Reason   string
	useNonce bool
}

func (e *ProofError) Error() string { return "invalid dpop proof: " + e.Reason }

// Is makes every ProofError match ErrInvalidProof, and nonce refusals also
// ErrUseNonce.
func (e *ProofError) Is(target error) bool {
	return target == ErrInvalidProof || (e.useNonce && target == ErrUseNonce)
}

func proofErr(reason string) error { return &ProofError{Reason: reason} }

func nonceErr(reason string) error { return &ProofError{Reason: reason, useNonce: true} }

// Reasons a proof is refused, one per check.
const (
	reasonProofTooLarge   = "proof too large"
	reasonMalformedProof  = "malformed proof"
	reasonWrongTyp        = "wrong typ"
	reasonUnsupportedAlg  = "unsupported alg"
	reasonUnsupportedHdr  = "unsupported header"
	reasonMissingJWK      = "missing jwk"
	reasonPrivateJWK      = "private key in jwk"
	reasonUnsupportedKty  = "unsupported key type"
	reasonUnsupportedCrv  = "unsupported curve"
	reasonInvalidJWK      = "invalid jwk"
	reasonBadSignature    = "bad signature"
	reasonMalformedClaims = "malformed claims"
	reasonInvalidJTI      = "invalid jti"
	reasonWrongHTM        = "wrong htm"
	reasonWrongHTU        = "wrong htu"
	reasonMissingIAT      = "missing iat"
	reasonIATTooOld       = "iat too old"
	reasonIATInFuture     = "iat in the future"
	reasonMissingATH      = "missing ath"
	reasonWrongATH        = "wrong ath"
	reasonMissingNonce    = "missing nonce"
	reasonInvalidNonce    = "invalid nonce"
	reasonReplayedJTI     = "replayed jti"
)

// Config configures a [Verifier].
type Config struct {
	// Replay records each accepted proof's jti; share one across
	// instances ([KVReplayCache]) so a proof is accepted once cluster-wide.
	// Required.
	Replay ReplayCache
	// Skew is how far a proof's iat may be from Now, either way. Default
	// DefaultSkew (10 minutes).
	Skew time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Verifier checks DPoP proofs (RFC 9449) as docs/protocol.md §2 profiles
// them: ES256 over a P-256 key carried in the proof's own jwk header, nothing
// fetched from anywhere. Safe for concurrent use.
type Verifier struct {
	replay ReplayCache
	skew   time.Duration
	now    func() time.Time

	lastWant atomic.Pointer[[2]string] // a ProofWant.URL and its NormalizeHTU
}

// NewVerifier checks cfg, fills defaults and returns a verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.Replay == nil {
		return nil, errors.New("dpop verifier: no replay cache")
	}
	if cfg.Skew < 0 {
		return nil, fmt.Errorf("dpop verifier: negative skew %s", cfg.Skew)
	}
	v := &Verifier{replay: cfg.Replay, skew: cfg.Skew, now: cfg.Now}
	if v.skew == 0 {
		v.skew = DefaultSkew
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// ProofWant is what the request the proof came with expects of it.
type ProofWant struct {
	// Method is the expected htm, e.g. "POST"; compared exactly.
	Method string
	// URL is the expected htu, made from the configured public URL (never
	// from request headers). Both it and the proof's htu are normalised
	// with NormalizeHTU before an exact comparison.
	URL string
	// AccessToken, when not empty, is the token presented with the proof;
	// the proof's ath must then be its base64url SHA-256. When empty, ath is
	// ignored.
	AccessToken string
	// Nonce, when not empty, is the one value the nonce claim must equal: a
	// challenge the caller made for this one verification and never makes again
	// (the WebSocket's). A proof over it cannot be used anywhere else, so its
	// jti is not recorded (RFC 9449 §11.1: server nonces limit replay), which
	// spares every tablet handshake a replicated, fsynced write.
	Nonce string
	// NonceValid decides the nonce claim when Nonce is empty (a
	// NonceSource's Valid). One of Nonce and NonceValid is required.
	NonceValid func(string) bool
}

// Verify checks proof against want and, when it is acceptable, records its
// jti (unless want.Nonce makes it single-use already) and returns the RFC 7638 SHA-256 thumbprint (base64url) of its key,
// the jkt. A refusal is a *ProofError (errors.Is ErrInvalidProof, and
// ErrUseNonce for nonce problems); any other error is a broken ProofWant or
// an unreachable replay cache.
func (v *Verifier) Verify(ctx context.Context, proof string, want ProofWant) (string, error) {
	if want.Method == "" || want.URL == "" || (want.Nonce == "" && want.NonceValid == nil) {
		return "", errors.New("dpop verify: ProofWant needs Method, URL and Nonce or NonceValid")
	}
	wantHTU, err := v.normalizedWant(want.URL)
	if err != nil {
		return "", fmt.Errorf("dpop verify: expected URL: %w", err)
	}

	if len(proof) > MaxProofBytes {
		return "", proofErr(reasonProofTooLarge)
	}
	if strings.Count(proof, ".") != 2 {
		return "", proofErr(reasonMalformedProof)
	}
	encHeader, _, _ := strings.Cut(proof, ".")

	pub, jkt, err := proofKey(encHeader)
	if err != nil {
		return "", err
	}

	// The algorithm is fixed, not taken from the header, and the key is the
	// one just validated (proofKey refused crit and b64 headers).
	payload, ok := verifyCompact(pub, proof)
	if !ok {
		return "", proofErr(reasonBadSignature)
	}

	c, err := parseProofClaims(payload)
	if err != nil {
		return "", err
	}
	if n := len(c.jti); n < minJTILen || n > maxJTILen || !printableASCII(c.jti) {
		return "", proofErr(reasonInvalidJTI)
	}
	if c.htm != want.Method {
		return "", proofErr(reasonWrongHTM)
	}
	if htu, err := NormalizeHTU(c.htu); err != nil || htu != wantHTU {
		return "", proofErr(reasonWrongHTU)
	}
	if !c.hasIAT {
		return "", proofErr(reasonMissingIAT)
	}
	now := v.now()
	nowSec := float64(now.UnixNano()) / 1e9
	switch skew := v.skew.Seconds(); {
	case c.iat < nowSec-skew:
		return "", proofErr(reasonIATTooOld)
	case c.iat > nowSec+skew:
		return "", proofErr(reasonIATInFuture)
	}
	if want.AccessToken != "" {
		if !c.hasATH {
			return "", proofErr(reasonMissingATH)
		}
		if !athMatches(c.ath, want.AccessToken) {
			return "", proofErr(reasonWrongATH)
		}
	}
	if c.nonce == "" {
		return "", nonceErr(reasonMissingNonce)
	}
	if want.Nonce != "" {
		if subtle.ConstantTimeCompare([]byte(c.nonce), []byte(want.Nonce)) != 1 {
			return "", nonceErr(reasonInvalidNonce)
		}
	} else if !want.NonceValid(c.nonce) {
		return "", nonceErr(reasonInvalidNonce)
	}

	if want.Nonce != "" {
		return jkt, nil // bound to a challenge made for this verification alone
	}
	// Remember the jti for as long as a proof with this iat is acceptable.
	sec, frac := math.Modf(c.iat)
	until := time.Unix(int64(sec), int64(frac*1e9)).Add(v.skew)
	fresh, err := v.replay.Remember(ctx, c.jti, until)
	if err != nil {
		return "", fmt.Errorf("dpop verify: %w", err)
	}
	if !fresh {
		return "", proofErr(reasonReplayedJTI)
	}
	return jkt, nil
}

// AccessTokenHash is the ath value for token: base64url SHA-256 of its
// ASCII bytes (RFC 9449 §4.2).
func AccessTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// athMatches reports, in constant time, whether ath is AccessTokenHash(token), with
// the hash encoded on the stack.
func athMatches(ath, token string) bool {
	sum := sha256.Sum256([]byte(token))
	var enc [43]byte // base64url of 32 bytes, unpadded
	base64.RawURLEncoding.Encode(enc[:], sum[:])
	return subtle.ConstantTimeCompare([]byte(ath), enc[:]) == 1
}

// normalizedWant is NormalizeHTU(u), remembered for the last u: every handshake
// expects the same WebSocket URL, and parsing it each time cost a url.Parse and three
// allocations.
func (v *Verifier) normalizedWant(u string) (string, error) {
	if last := v.lastWant.Load(); last != nil && last[0] == u {
		return last[1], nil
	}
	n, err := NormalizeHTU(u)
	if err != nil {
		return "", err
	}
	v.lastWant.Store(&[2]string{u, n})
	return n, nil
}

// proofKey decodes and checks a proof's protected header and returns the
// public key it carries and that key's thumbprint.
func proofKey(encHeader string) (*ecdsa.PublicKey, string, error) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(encHeader)
	if err != nil {
		return nil, "", proofErr(reasonMalformedProof)
	}
	// Member names are compared exactly, as JOSE requires (a struct would let "ALG"
	// fill Alg).
	var hdr jsonx.Object
	if err := hdr.Parse(raw); err != nil {
		return nil, "", proofErr(reasonMalformedProof)
	}
	if typ, ok := hdr.String("typ"); !ok || typ != dpopType {
		return nil, "", proofErr(reasonWrongTyp)
	}
	if alg, ok := hdr.String("alg"); !ok || alg != "ES256" {
		return nil, "", proofErr(reasonUnsupportedAlg)
	}
	// jku, x5u, x5c and kid are ignored: the key is the jwk. crit and b64
	// change how the JWS is read, and nothing here understands them.
	if hdr.Has("crit") || hdr.Has("b64") {
		return nil, "", proofErr(reasonUnsupportedHdr)
	}
	rawJWK, ok := hdr.Get("jwk")
	if !ok {
		return nil, "", proofErr(reasonMissingJWK)
	}
	var key jsonx.Object
	if err := key.Parse(rawJWK); err != nil {
		return nil, "", proofErr(reasonMissingJWK)
	}
	if key.Has("d") {
		return nil, "", proofErr(reasonPrivateJWK)
	}
	if kty, ok := key.String("kty"); !ok || kty != "EC" {
		return nil, "", proofErr(reasonUnsupportedKty)
	}
	if crv, ok := key.String("crv"); !ok || crv != "P-256" {
		return nil, "", proofErr(reasonUnsupportedCrv)
	}
	var point [65]byte // 0x04 || X || Y
	point[0] = 4
	okX := coordinate(&key, "x", point[1:33])
	okY := coordinate(&key, "y", point[33:])
	if !okX || !okY {
		return nil, "", proofErr(reasonInvalidJWK)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point[:])
	if err != nil { // not on the curve
		return nil, "", proofErr(reasonInvalidJWK)
	}
	return pub, thumbprintXY(point[1:33], point[33:]), nil
}

// coordinate decodes a P-256 coordinate member into dst: base64url of exactly 32
// bytes (RFC 7518 §6.2.1.2 forbids shortened coordinates).
func coordinate(key *jsonx.Object, name string, dst []byte) bool {
	raw, ok := key.Get(name)
	if !ok {
		return false
	}
	s, ok := jsonx.String(raw)
	if !ok {
		return false
	}
	if len(s) != base64.RawURLEncoding.EncodedLen(32) {
		// The decoder skips line breaks, so a longer string can still hold 32 bytes.
		b, err := base64.RawURLEncoding.Strict().DecodeString(s)
		return err == nil && copy(dst, b) == 32 && len(b) == 32
	}
	n, err := base64.RawURLEncoding.Strict().Decode(dst, []byte(s))
	return err == nil && n == 32
}

type proofClaims struct {
	jti, htm, htu, nonce, ath string
	iat                       float64
	hasIAT, hasATH            bool
}

// proofStringClaim is one of a proof's string claims: where it goes, and (ath) whether
// it was there.
type proofStringClaim struct {
	name string
	dst  *string
	has  *bool
}

func (c *proofClaims) stringClaims() [5]proofStringClaim {
	return [...]proofStringClaim{
		{"jti", &c.jti, nil},
		{"htm", &c.htm, nil},
		{"htu", &c.htu, nil},
		{"nonce", &c.nonce, nil},
		{"ath", &c.ath, &c.hasATH},
	}
}

// parseProofClaims reads the claims this package checks from a verified
// payload. Members of the wrong JSON type are refused rather than ignored.
func parseProofClaims(payload []byte) (proofClaims, error) {
	var m jsonx.Object
	if err := m.Parse(payload); err != nil {
		return proofClaims{}, proofErr(reasonMalformedClaims)
	}
	var c proofClaims
	for _, f := range c.stringClaims() {
		raw, ok := m.Get(f.name)
		if !ok {
			continue
		}
		s, ok := jsonx.String(raw)
		if !ok {
			return proofClaims{}, proofErr(reasonMalformedClaims)
		}
		*f.dst = s
		if f.has != nil {
			*f.has = true
		}
	}
	if raw, ok := m.Get("iat"); ok {
		iat, ok := iatClaim(raw)
		if !ok {
			return proofClaims{}, proofErr(reasonMalformedClaims)
		}
		c.iat, c.hasIAT = iat, true
	}
	return c, nil
}

// iatClaim is a proof's iat: a finite JSON number only (json.Number would also take a
// quoted one).
func iatClaim(raw []byte) (float64, bool) {
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, false
	}
	iat, err := strconv.ParseFloat(string(raw), 64)
	return iat, err == nil && !math.IsInf(iat, 0) && !math.IsNaN(iat)
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// NormalizeHTU brings an http(s) or ws(s) URL to the form DPoP htu values
// are compared in: scheme and host lower-case, the scheme's default port
// removed, an empty path made "/", query and fragment dropped. URLs without
// a scheme or host, or with user info, are refused. The path is kept as
// sent (no percent-decoding), so a comparison stays exact.
func NormalizeHTU(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("unparsable URL")
	}
	scheme := strings.ToLower(u.Scheme)
	var defaultPort string
	switch scheme {
	case "http", "ws":
		defaultPort = "80"
	case "https", "wss":
		defaultPort = "443"
	default:
		return "", errors.New("scheme is not http, https, ws or wss")
	}
	if u.Opaque != "" || u.User != nil || u.Host == "" {
		return "", errors.New("URL needs a host and no user info")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", errors.New("URL has an empty host")
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port := u.Port(); port != "" && port != defaultPort {
		host += ":" + port
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, nil
}
