// Package pairingtest is a tablet's key, for tests: it makes a P-256 key and
// signs DPoP proofs exactly as the PWA does with WebCrypto (ES256 with the
// raw r‖s signature, header typ/alg/jwk with only kty, crv, x and y), so
// server tests exercise the same bytes a browser sends.
//
// It depends on nothing of ours, so any package's tests (pairing's own
// included) can use it.
package pairingtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// JWK is a public P-256 key as the PWA sends it in a proof's jwk header:
// the members WebCrypto's exportKey("jwk") gives, less ext and key_ops.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// Header is a DPoP proof's protected header, members in the order the PWA
// writes them.
type Header struct {
	Typ string `json:"typ"`
	Alg string `json:"alg"`
	JWK *JWK   `json:"jwk,omitempty"`
}

// Claims are a DPoP proof's claims as the PWA writes them.
type Claims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	Nonce string `json:"nonce,omitempty"`
	ATH   string `json:"ath,omitempty"`
}

// DeviceKey is one tablet's key pair.
type DeviceKey struct {
	priv *ecdsa.PrivateKey
	jwk  JWK
	jkt  string
}

// NewDeviceKey makes a fresh P-256 key, as generateKey({name:"ECDSA",
// namedCurve:"P-256"}) does.
func NewDeviceKey() (*DeviceKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return FromPrivateKey(priv)
}

// MustDeviceKey is NewDeviceKey for tests.
func MustDeviceKey(tb testing.TB) *DeviceKey {
	tb.Helper()
	k, err := NewDeviceKey()
	if err != nil {
		tb.Fatalf("device key: %v", err)
	}
	return k
}

// FromPrivateKey wraps an existing P-256 key.
func FromPrivateKey(priv *ecdsa.PrivateKey) (*DeviceKey, error) {
	if priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("pairingtest: key is not P-256")
	}
	raw, err := priv.PublicKey.Bytes() // 0x04 || x || y, each 32 bytes
	if err != nil {
		return nil, err
	}
	enc := base64.RawURLEncoding
	jwk := JWK{Kty: "EC", Crv: "P-256", X: enc.EncodeToString(raw[1:33]), Y: enc.EncodeToString(raw[33:65])}
	// RFC 7638: the required members, lexicographic order, no whitespace.
	canon := `{"crv":"P-256","kty":"EC","x":"` + jwk.X + `","y":"` + jwk.Y + `"}`
	sum := sha256.Sum256([]byte(canon))
	return &DeviceKey{priv: priv, jwk: jwk, jkt: enc.EncodeToString(sum[:])}, nil
}

// JWK returns the public key as the proof header carries it.
func (k *DeviceKey) JWK() JWK { return k.jwk }

// JKT returns the key's RFC 7638 SHA-256 thumbprint, base64url, computed
// here independently of any JOSE library.
func (k *DeviceKey) JKT() string { return k.jkt }

// PrivateKey returns the private key, for tests that need to sign oddities.
func (k *DeviceKey) PrivateKey() *ecdsa.PrivateKey { return k.priv }

// ProofParams says what a proof is for.
type ProofParams struct {
	Method string // htm
	URL    string // htu: the target URL without query and fragment
	Nonce  string // the server nonce or WebSocket challenge; omitted when empty
	// AccessToken, when set, adds its ath.
	AccessToken string
	// IssuedAt is iat; zero means now.
	IssuedAt time.Time
	// JTI is the proof id; empty means 16 random bytes, base64url.
	JTI string
}

// Proof signs a DPoP proof the way the PWA does.
func (k *DeviceKey) Proof(p ProofParams) (string, error) {
	iat := p.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	jti := p.JTI
	if jti == "" {
		jti = NewJTI()
	}
	c := Claims{JTI: jti, HTM: p.Method, HTU: p.URL, IAT: iat.Unix(), Nonce: p.Nonce}
	if p.AccessToken != "" {
		c.ATH = ATH(p.AccessToken)
	}
	jwk := k.jwk
	return k.Sign(Header{Typ: "dpop+jwt", Alg: "ES256", JWK: &jwk}, c)
}

// MustProof is Proof for tests.
func (k *DeviceKey) MustProof(tb testing.TB, p ProofParams) string {
	tb.Helper()
	s, err := k.Proof(p)
	if err != nil {
		tb.Fatalf("proof: %v", err)
	}
	return s
}

// Sign makes a compact JWS over any JSON-encodable header and claims with
// this key, ES256 with the raw 64-byte r‖s signature that
// crypto.subtle.sign returns. The header is used as given (alg is not
// forced), so tests can build malformed proofs.
func (k *DeviceKey) Sign(header, claims any) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return SignES256(k.priv, h, c)
}

// SignES256 signs header and claims JSON bytes as a compact JWS with priv,
// raw r‖s signature, whatever the header says.
func SignES256(priv *ecdsa.PrivateKey, header, claims []byte) (string, error) {
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, priv, digest[:])
	if err != nil {
		return "", err
	}
	size := (priv.Curve.Params().BitSize + 7) / 8
	sig := make([]byte, 2*size)
	r.FillBytes(sig[:size])
	s.FillBytes(sig[size:])
	return input + "." + enc.EncodeToString(sig), nil
}

// ATH is the ath claim for an access token: base64url SHA-256.
func ATH(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// NewJTI returns 16 random bytes, base64url, as the PWA's proof ids.
func NewJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
