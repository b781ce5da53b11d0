package pairingtest

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
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

// DeviceKey is one tablet's key pair: a client.Key, with the test-only ways to sign.
type DeviceKey struct {
	key *client.Key
	jwk JWK
}

// NewDeviceKey makes a fresh P-256 key, as generateKey({name:"ECDSA",
// namedCurve:"P-256"}) does.
func NewDeviceKey() (*DeviceKey, error) {
	k, err := client.NewKey()
	if err != nil {
		return nil, err
	}
	return wrapKey(k)
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
	k, err := client.KeyFromECDSA(priv)
	if err != nil {
		return nil, fmt.Errorf("pairingtest: %w", err)
	}
	return wrapKey(k)
}

func wrapKey(k *client.Key) (*DeviceKey, error) {
	dk := &DeviceKey{key: k}
	if err := json.Unmarshal([]byte(k.JWK()), &dk.jwk); err != nil {
		return nil, fmt.Errorf("pairingtest: the client's jwk: %w", err)
	}
	return dk, nil
}

// Client is the key as the public client holds it, for a test that drives a
// client.Device or client.Connect with the same identity.
func (k *DeviceKey) Client() *client.Key { return k.key }

// JWK returns the public key as the proof header carries it.
func (k *DeviceKey) JWK() JWK { return k.jwk }

// JKT returns the key's RFC 7638 SHA-256 thumbprint, base64url, computed by the client
// independently of any JOSE library.
func (k *DeviceKey) JKT() string { return k.key.Thumbprint() }

// PrivateKey returns the private key, for tests that need to sign oddities.
func (k *DeviceKey) PrivateKey() *ecdsa.PrivateKey { return k.key.ECDSA() }

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

// Proof signs a DPoP proof the way the PWA does: the client's own proof, unless the
// test chose the jti, in which case the same header and claims are signed with it.
func (k *DeviceKey) Proof(p ProofParams) (string, error) {
	if p.JTI == "" {
		return k.key.Proof(p.Method, p.URL, p.Nonce, p.AccessToken, p.IssuedAt)
	}
	iat := p.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	c := Claims{JTI: p.JTI, HTM: p.Method, HTU: p.URL, IAT: iat.Unix(), Nonce: p.Nonce}
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
	return client.SignES256(k.key.ECDSA(), h, c)
}

// SignES256 signs header and claims JSON bytes as a compact JWS with priv, raw r‖s
// signature, whatever the header says: client.SignES256, named here for the tests that
// sign with a key of their own.
func SignES256(priv *ecdsa.PrivateKey, header, claims []byte) (string, error) {
	return client.SignES256(priv, header, claims)
}

// ATH is the ath claim for an access token: base64url SHA-256 (client.ATH).
func ATH(accessToken string) string { return client.ATH(accessToken) }

// NewJTI returns 16 random bytes, base64url, as the PWA's proof ids.
func NewJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
