package dpop

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

const (
	testHTU   = "https://kiosk.example/api/token"
	testWSURL = "wss://kiosk.example/ws"
	testToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl" // any string: only its hash matters here
)

var b64 = base64.RawURLEncoding

type dpopFixture struct {
	clock  *testClock
	nonces *NonceSource
	v      *Verifier
	dev    *pairingtest.DeviceKey
	replay *countingReplay
}

// countingReplay counts the jtis a verifier records.
type countingReplay struct {
	ReplayCache
	n atomic.Int64
}

func (c *countingReplay) Remember(ctx context.Context, jti string, until time.Time) (bool, error) {
	c.n.Add(1)
	return c.ReplayCache.Remember(ctx, jti, until)
}

// newDPoPFixture builds a verifier whose clock starts at the real time (the
// KV bucket's TTLs run on the server's real clock).
func newDPoPFixture(tb testing.TB, replay ReplayCache, clock *testClock) *dpopFixture {
	tb.Helper()
	ns := mustNonceSource(tb, bytes.Repeat([]byte{9}, NonceKeySize), clock.Now)
	counting := &countingReplay{ReplayCache: replay}
	v, err := NewVerifier(Config{Replay: counting, Now: clock.Now})
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	return &dpopFixture{clock: clock, nonces: ns, v: v, dev: pairingtest.MustDeviceKey(tb), replay: counting}
}

func (f *dpopFixture) want() ProofWant {
	return ProofWant{Method: "POST", URL: testHTU, NonceValid: f.nonces.Valid}
}

func (f *dpopFixture) header() map[string]any {
	return map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": f.dev.JWK()}
}

func (f *dpopFixture) claims() map[string]any {
	return map[string]any{
		"jti":   pairingtest.NewJTI(),
		"htm":   "POST",
		"htu":   testHTU,
		"iat":   f.clock.Now().Unix(),
		"nonce": f.nonces.Nonce(),
	}
}

// proof signs the standard header and claims, after edits, with the device
// key.
func (f *dpopFixture) proof(tb testing.TB, editHeader, editClaims func(map[string]any)) string {
	tb.Helper()
	h, c := f.header(), f.claims()
	if editHeader != nil {
		editHeader(h)
	}
	if editClaims != nil {
		editClaims(c)
	}
	return mustSign(tb, f.dev.PrivateKey(), h, c)
}

func assertProofError(tb testing.TB, err error, reason string, useNonce bool) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("err = nil, want reason %q", reason)
	}
	var pe *ProofError
	if !errors.As(err, &pe) {
		tb.Fatalf("err = %v (%T), want *ProofError %q", err, err, reason)
	}
	if pe.Reason != reason {
		tb.Errorf("reason = %q, want %q", pe.Reason, reason)
	}
	if !errors.Is(err, ErrInvalidProof) {
		tb.Error("error does not match ErrInvalidProof")
	}
	if got := errors.Is(err, ErrUseNonce); got != useNonce {
		tb.Errorf("errors.Is(err, ErrUseNonce) = %v, want %v", got, useNonce)
	}
	if len(err.Error()) > 64 {
		tb.Errorf("error text is %d bytes; it should be a short fixed phrase: %q", len(err.Error()), err.Error())
	}
}

func encodeJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b64.EncodeToString(b)
}

func selfSignedCert(tb testing.TB, priv *ecdsa.PrivateKey) []byte {
	tb.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

func TestVerifyProof(t *testing.T) {
	s := mustStartServer(t)
	clock := newTestClock(time.Now().Truncate(time.Second))
	f := newDPoPFixture(t, NewKVReplayCache(mustReplayKV(t, s), clock.Now), clock)
	other := pairingtest.MustDeviceKey(t)
	otherNonces := mustNonceSource(t, bytes.Repeat([]byte{8}, NonceKeySize), clock.Now)
	skew := DefaultSkew

	p384 := mustKey(t, elliptic.P384())
	p384Raw, _ := p384.PublicKey.Bytes()
	p384JWK := map[string]string{"kty": "EC", "crv": "P-384", "x": b64.EncodeToString(p384Raw[1:49]), "y": b64.EncodeToString(p384Raw[49:])}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaJWK := map[string]string{"kty": "RSA", "n": b64.EncodeToString(rsaKey.N.Bytes()), "e": "AQAB"}
	privBytes, _ := f.dev.PrivateKey().Bytes()

	jkuSrv, fetches := countingServer(t, map[string]any{"keys": []any{other.JWK()}})

	// A valid proof whose header is then swapped; the signature stays.
	swapHeader := func(proof string, header any) string {
		parts := strings.Split(proof, ".")
		return encodeJSON(t, header) + "." + parts[1] + "." + parts[2]
	}
	hs256 := func(key []byte, header, claims map[string]any) string {
		input := encodeJSON(t, header) + "." + encodeJSON(t, claims)
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(input))
		return input + "." + b64.EncodeToString(mac.Sum(nil))
	}
	jwkJSON, _ := json.Marshal(f.dev.JWK())
	pubRaw, _ := f.dev.PrivateKey().PublicKey.Bytes()

	tests := []struct {
		name     string
		proof    func() string
		want     func(*ProofWant)
		reason   string // "" means accepted
		useNonce bool
	}{
		{name: "valid", proof: func() string { return f.proof(t, nil, nil) }},
		{name: "valid, pairingtest client", proof: func() string {
			return f.dev.MustProof(t, pairingtest.ProofParams{Method: "POST", URL: testHTU, Nonce: f.nonces.Nonce(), IssuedAt: clock.Now()})
		}},
		{name: "valid, htu with query, fragment, default port and upper case", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["htu"] = "HTTPS://Kiosk.Example:443/api/token?x=1#frag" })
		}},
		{name: "valid, with access token and ath", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["ath"] = AccessTokenHash(testToken) })
		}, want: func(w *ProofWant) { w.AccessToken = testToken }},
		{name: "valid, ath without a token is ignored", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["ath"] = "whatever" })
		}},
		{name: "valid, WebSocket challenge", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) {
				c["htm"], c["htu"], c["nonce"], c["ath"] = "GET", testWSURL, "the-challenge", AccessTokenHash(testToken)
			})
		}, want: func(w *ProofWant) {
			*w = ProofWant{Method: "GET", URL: testWSURL, Nonce: "the-challenge", AccessToken: testToken}
		}},
		{name: "valid, iat at the skew limit in the past", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["iat"] = clock.Now().Add(-skew).Unix() })
		}},
		{name: "valid, iat at the skew limit in the future", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["iat"] = clock.Now().Add(skew).Unix() })
		}},
		{name: "valid, fractional iat", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["iat"] = float64(clock.Now().Unix()) + 0.25 })
		}},
		{name: "valid, jku x5u x5c kid headers are ignored", proof: func() string {
			return f.proof(t, func(h map[string]any) {
				h["jku"], h["x5u"], h["kid"] = jkuSrv.URL+"/jwks.json", jkuSrv.URL+"/cert.pem", "attacker"
				h["x5c"] = []string{base64.StdEncoding.EncodeToString(selfSignedCert(t, other.PrivateKey()))}
			}, nil)
		}},

		// Size and shape.
		{name: "over 8 KiB", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["pad"] = strings.Repeat("a", MaxProofBytes) })
		}, reason: "proof too large"},
		{name: "1 MB", proof: func() string { return strings.Repeat("A", 1<<20) }, reason: "proof too large"},
		{name: "a million dots", proof: func() string { return strings.Repeat(".", 1_000_000) }, reason: "proof too large"},
		{name: "empty", proof: func() string { return "" }, reason: "malformed proof"},
		{name: "two parts", proof: func() string { p := f.proof(t, nil, nil); return p[:strings.LastIndexByte(p, '.')] }, reason: "malformed proof"},
		{name: "four parts", proof: func() string { return f.proof(t, nil, nil) + ".AAAA" }, reason: "malformed proof"},
		{name: "dots only", proof: func() string { return ".." }, reason: "malformed proof"},
		{name: "header not base64url", proof: func() string { return "e30+.e30.AAAA" }, reason: "malformed proof"},
		{name: "header not JSON", proof: func() string { return b64.EncodeToString([]byte("{nope")) + ".e30.AAAA" }, reason: "malformed proof"},
		{name: "header a JSON array", proof: func() string { return b64.EncodeToString([]byte(`["dpop+jwt"]`)) + ".e30.AAAA" }, reason: "malformed proof"},
		{name: "header with trailing data", proof: func() string {
			return b64.EncodeToString([]byte(`{"typ":"dpop+jwt"}{}`)) + ".e30.AAAA"
		}, reason: "malformed proof"},

		// Header.
		{name: "no typ", proof: func() string { return f.proof(t, func(h map[string]any) { delete(h, "typ") }, nil) }, reason: "wrong typ"},
		{name: "typ JWT", proof: func() string { return f.proof(t, func(h map[string]any) { h["typ"] = "JWT" }, nil) }, reason: "wrong typ"},
		{name: "typ of an access token", proof: func() string { return f.proof(t, func(h map[string]any) { h["typ"] = "at+jwt" }, nil) }, reason: "wrong typ"},
		{name: "typ in upper-case member name", proof: func() string {
			return f.proof(t, func(h map[string]any) { delete(h, "typ"); h["TYP"] = "dpop+jwt" }, nil)
		}, reason: "wrong typ"},
		{name: "alg none, signature kept", proof: func() string {
			h := f.header()
			h["alg"] = "none"
			return swapHeader(f.proof(t, nil, nil), h)
		}, reason: "unsupported alg"},
		{name: "alg none, signature stripped", proof: func() string {
			h := f.header()
			h["alg"] = "none"
			return encodeJSON(t, h) + "." + encodeJSON(t, f.claims()) + "."
		}, reason: "unsupported alg"},
		{name: "alg missing", proof: func() string { return f.proof(t, func(h map[string]any) { delete(h, "alg") }, nil) }, reason: "unsupported alg"},
		{name: "HS256 keyed with the jwk JSON", proof: func() string {
			h := f.header()
			h["alg"] = "HS256"
			return hs256(jwkJSON, h, f.claims())
		}, reason: "unsupported alg"},
		{name: "HS256 keyed with the raw public point", proof: func() string {
			h := f.header()
			h["alg"] = "HS256"
			return hs256(pubRaw, h, f.claims())
		}, reason: "unsupported alg"},
		{name: "ES384 with a P-384 jwk", proof: func() string {
			return mustSign(t, p384, map[string]any{"typ": "dpop+jwt", "alg": "ES384", "jwk": p384JWK}, f.claims())
		}, reason: "unsupported alg"},
		{name: "RS256 with an RSA jwk", proof: func() string {
			return f.proof(t, func(h map[string]any) { h["alg"], h["jwk"] = "RS256", rsaJWK }, nil)
		}, reason: "unsupported alg"},
		{name: "crit header", proof: func() string {
			return f.proof(t, func(h map[string]any) { h["crit"] = []string{"exp"} }, nil)
		}, reason: "unsupported header"},
		{name: "b64 header", proof: func() string { return f.proof(t, func(h map[string]any) { h["b64"] = false }, nil) }, reason: "unsupported header"},

		// The key.
		{name: "no jwk", proof: func() string { return f.proof(t, func(h map[string]any) { delete(h, "jwk") }, nil) }, reason: "missing jwk"},
		{name: "no jwk, kid only", proof: func() string {
			return f.proof(t, func(h map[string]any) { delete(h, "jwk"); h["kid"] = f.dev.JKT() }, nil)
		}, reason: "missing jwk"},
		{name: "no jwk, jku only", proof: func() string {
			return f.proof(t, func(h map[string]any) { delete(h, "jwk"); h["jku"] = jkuSrv.URL }, nil)
		}, reason: "missing jwk"},
		{name: "jwk a string", proof: func() string { return f.proof(t, func(h map[string]any) { h["jwk"] = "EC" }, nil) }, reason: "missing jwk"},
		{name: "jwk with d (a private key)", proof: func() string {
			return f.proof(t, func(h map[string]any) {
				j := f.dev.JWK()
				h["jwk"] = map[string]string{"kty": j.Kty, "crv": j.Crv, "x": j.X, "y": j.Y, "d": b64.EncodeToString(privBytes)}
			}, nil)
		}, reason: "private key in jwk"},
		{name: "RSA jwk", proof: func() string { return f.proof(t, func(h map[string]any) { h["jwk"] = rsaJWK }, nil) }, reason: "unsupported key type"},
		{name: "oct jwk", proof: func() string {
			return f.proof(t, func(h map[string]any) { h["jwk"] = map[string]string{"kty": "oct", "k": "c2VjcmV0"} }, nil)
		}, reason: "unsupported key type"},
		{name: "OKP jwk", proof: func() string {
			return f.proof(t, func(h map[string]any) {
				h["jwk"] = map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64.EncodeToString(make([]byte, 32))}
			}, nil)
		}, reason: "unsupported key type"},
		{name: "P-384 jwk with alg ES256", proof: func() string {
			return mustSign(t, p384, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": p384JWK}, f.claims())
		}, reason: "unsupported curve"},
		{name: "short x coordinate", proof: func() string {
			return f.proof(t, func(h map[string]any) {
				j := f.dev.JWK()
				x, _ := b64.DecodeString(j.X)
				h["jwk"] = map[string]string{"kty": "EC", "crv": "P-256", "x": b64.EncodeToString(x[1:]), "y": j.Y}
			}, nil)
		}, reason: "invalid jwk"},
		{name: "point not on the curve", proof: func() string {
			return f.proof(t, func(h map[string]any) {
				j := f.dev.JWK()
				y, _ := b64.DecodeString(j.Y)
				y[31] ^= 1
				h["jwk"] = map[string]string{"kty": "EC", "crv": "P-256", "x": j.X, "y": b64.EncodeToString(y)}
			}, nil)
		}, reason: "invalid jwk"},
		{name: "missing y", proof: func() string {
			return f.proof(t, func(h map[string]any) {
				j := f.dev.JWK()
				h["jwk"] = map[string]string{"kty": "EC", "crv": "P-256", "x": j.X}
			}, nil)
		}, reason: "invalid jwk"},

		// The signature.
		{name: "signed by another key than the jwk", proof: func() string {
			return mustSign(t, other.PrivateKey(), f.header(), f.claims())
		}, reason: "bad signature"},
		{name: "jku names the signing key, jwk is another", proof: func() string {
			h := f.header()
			h["jku"] = jkuSrv.URL
			return mustSign(t, other.PrivateKey(), h, f.claims())
		}, reason: "bad signature"},
		{name: "x5c holds the signing key, jwk is another", proof: func() string {
			h := f.header()
			h["x5c"] = []string{base64.StdEncoding.EncodeToString(selfSignedCert(t, other.PrivateKey()))}
			return mustSign(t, other.PrivateKey(), h, f.claims())
		}, reason: "bad signature"},
		{name: "claims changed after signing", proof: func() string {
			parts := strings.Split(f.proof(t, nil, nil), ".")
			c := f.claims()
			c["htu"] = "https://kiosk.example/api/pair"
			return parts[0] + "." + encodeJSON(t, c) + "." + parts[2]
		}, reason: "bad signature"},
		{name: "signature empty", proof: func() string {
			p := f.proof(t, nil, nil)
			return p[:strings.LastIndexByte(p, '.')+1]
		}, reason: "bad signature"},
		{name: "signature in DER, not raw r||s", proof: func() string {
			h, c := encodeJSON(t, f.header()), encodeJSON(t, f.claims())
			d := sha256.Sum256([]byte(h + "." + c))
			der, err := ecdsa.SignASN1(rand.Reader, f.dev.PrivateKey(), d[:])
			if err != nil {
				t.Fatal(err)
			}
			return h + "." + c + "." + b64.EncodeToString(der)
		}, reason: "bad signature"},

		// Claims.
		{name: "claims not JSON", proof: func() string {
			h, _ := json.Marshal(f.header())
			s, err := pairingtest.SignES256(f.dev.PrivateKey(), h, []byte("not json"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, reason: "malformed claims"},
		{name: "jti missing", proof: func() string { return f.proof(t, nil, func(c map[string]any) { delete(c, "jti") }) }, reason: "invalid jti"},
		{name: "jti 15 characters", proof: func() string { return f.proof(t, nil, func(c map[string]any) { c["jti"] = strings.Repeat("a", 15) }) }, reason: "invalid jti"},
		{name: "jti 129 characters", proof: func() string { return f.proof(t, nil, func(c map[string]any) { c["jti"] = strings.Repeat("a", 129) }) }, reason: "invalid jti"},
		{name: "jti with control characters", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["jti"] = strings.Repeat("a", 20) + "\n" })
		}, reason: "invalid jti"},
		{name: "jti a number", proof: func() string { return f.proof(t, nil, func(c map[string]any) { c["jti"] = 12345678901234567 }) }, reason: "malformed claims"},
		{name: "wrong htm", proof: func() string { return f.proof(t, nil, func(c map[string]any) { c["htm"] = "GET" }) }, reason: "wrong htm"},
		{name: "lower-case htm", proof: func() string { return f.proof(t, nil, func(c map[string]any) { c["htm"] = "post" }) }, reason: "wrong htm"},
		{name: "htm missing", proof: func() string { return f.proof(t, nil, func(c map[string]any) { delete(c, "htm") }) }, reason: "wrong htm"},
		{name: "wrong htu path", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["htu"] = "https://kiosk.example/api/pair" })
		}, reason: "wrong htu"},
		{name: "wrong htu host", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["htu"] = "https://evil.example/api/token" })
		}, reason: "wrong htu"},
		{name: "wrong htu scheme", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["htu"] = "http://kiosk.example/api/token" })
		}, reason: "wrong htu"},
		{name: "wrong htu port", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["htu"] = "https://kiosk.example:8443/api/token" })
		}, reason: "wrong htu"},
		{name: "htu with user info", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["htu"] = "https://kiosk.example@evil.example/api/token" })
		}, reason: "wrong htu"},
		{name: "htu relative", proof: func() string { return f.proof(t, nil, func(c map[string]any) { c["htu"] = "/api/token" }) }, reason: "wrong htu"},
		{name: "htu missing", proof: func() string { return f.proof(t, nil, func(c map[string]any) { delete(c, "htu") }) }, reason: "wrong htu"},
		{name: "iat missing", proof: func() string { return f.proof(t, nil, func(c map[string]any) { delete(c, "iat") }) }, reason: "missing iat"},
		{name: "iat a string", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["iat"] = "1800000000" })
		}, reason: "malformed claims"},
		{name: "iat huge", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["iat"] = json.RawMessage("1e400") })
		}, reason: "malformed claims"},
		{name: "stale iat", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["iat"] = clock.Now().Add(-skew - time.Second).Unix() })
		}, reason: "iat too old"},
		{name: "future iat", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["iat"] = clock.Now().Add(skew + time.Second).Unix() })
		}, reason: "iat in the future"},
		{name: "token presented, ath missing", proof: func() string { return f.proof(t, nil, nil) },
			want: func(w *ProofWant) { w.AccessToken = testToken }, reason: "missing ath"},
		{name: "token presented, ath of another token", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["ath"] = AccessTokenHash(testToken + "x") })
		}, want: func(w *ProofWant) { w.AccessToken = testToken }, reason: "wrong ath"},
		{name: "token presented, ath a number", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["ath"] = 1 })
		}, want: func(w *ProofWant) { w.AccessToken = testToken }, reason: "malformed claims"},

		// Nonces.
		{name: "nonce missing", proof: func() string { return f.proof(t, nil, func(c map[string]any) { delete(c, "nonce") }) },
			reason: "missing nonce", useNonce: true},
		{name: "nonce empty", proof: func() string { return f.proof(t, nil, func(c map[string]any) { c["nonce"] = "" }) },
			reason: "missing nonce", useNonce: true},
		{name: "nonce from another key", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["nonce"] = otherNonces.Nonce() })
		}, reason: "invalid nonce", useNonce: true},
		{name: "nonce from two steps ago", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) {
				old := mustNonceSource(t, bytes.Repeat([]byte{9}, NonceKeySize), func() time.Time { return clock.Now().Add(-2 * nonceStep) })
				c["nonce"] = old.Nonce()
			})
		}, reason: "invalid nonce", useNonce: true},
		{name: "nonce from the previous step", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) {
				prev := mustNonceSource(t, bytes.Repeat([]byte{9}, NonceKeySize), func() time.Time { return clock.Now().Add(-nonceStep) })
				c["nonce"] = prev.Nonce()
			})
		}},
		{name: "wrong challenge", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["htm"], c["htu"], c["nonce"] = "GET", testWSURL, "another-challenge" })
		}, want: func(w *ProofWant) { *w = ProofWant{Method: "GET", URL: testWSURL, Nonce: "the-challenge"} },
			reason: "invalid nonce", useNonce: true},
		{name: "server nonce where a challenge is expected", proof: func() string {
			return f.proof(t, nil, func(c map[string]any) { c["htm"], c["htu"] = "GET", testWSURL })
		}, want: func(w *ProofWant) { *w = ProofWant{Method: "GET", URL: testWSURL, Nonce: "the-challenge"} },
			reason: "invalid nonce", useNonce: true},
	}

	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := f.want()
			if tt.want != nil {
				tt.want(&want)
			}
			proof := tt.proof()
			recorded := f.replay.n.Load()
			jkt, err := f.v.Verify(ctx, proof, want)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if jkt != f.dev.JKT() {
					t.Errorf("jkt = %q, want %q", jkt, f.dev.JKT())
				}
				if want.Nonce != "" {
					// Bound to a one-time challenge: nothing to record (the
					// caller never accepts that challenge again).
					if n := f.replay.n.Load() - recorded; n != 0 {
						t.Errorf("%d jtis recorded for a challenge-bound proof, want none", n)
					}
					return
				}
				// A second presentation of the same proof is a replay.
				_, err := f.v.Verify(ctx, proof, want)
				assertProofError(t, err, "replayed jti", false)
				return
			}
			assertProofError(t, err, tt.reason, tt.useNonce)
			if jkt != "" {
				t.Errorf("jkt = %q on a refused proof", jkt)
			}
			if len(proof) > 0 && len(proof) < 4096 && strings.Contains(err.Error(), proof) {
				t.Error("error text contains the proof")
			}
		})
	}
	if n := fetches.Load(); n != 0 {
		t.Errorf("the jku/x5u server got %d requests, want 0", n)
	}
}

func TestVerifyProofReplayAcrossInstances(t *testing.T) {
	s := mustStartServer(t)
	clock := newTestClock(time.Now().Truncate(time.Second))
	a := newDPoPFixture(t, NewKVReplayCache(mustReplayKV(t, s), clock.Now), clock)
	b := newDPoPFixture(t, NewKVReplayCache(mustReplayKV(t, s), clock.Now), clock)
	b.dev = a.dev

	ctx := context.Background()
	proof := a.proof(t, nil, nil)
	if _, err := a.v.Verify(ctx, proof, a.want()); err != nil {
		t.Fatalf("first instance: %v", err)
	}
	_, err := b.v.Verify(ctx, proof, b.want())
	assertProofError(t, err, "replayed jti", false)

	// The same jti under another key is a replay too: jtis are global.
	c := a.claims()
	reused := pairingtest.NewJTI()
	c["jti"] = reused
	if _, err := a.v.Verify(ctx, mustSign(t, a.dev.PrivateKey(), a.header(), c), a.want()); err != nil {
		t.Fatalf("fresh jti: %v", err)
	}
	other := pairingtest.MustDeviceKey(t)
	c = a.claims()
	c["jti"] = reused
	h := a.header()
	h["jwk"] = other.JWK()
	_, err = b.v.Verify(ctx, mustSign(t, other.PrivateKey(), h, c), b.want())
	assertProofError(t, err, "replayed jti", false)
}

func TestVerifyProofConcurrentReplay(t *testing.T) {
	s := mustStartServer(t)
	clock := newTestClock(time.Now().Truncate(time.Second))
	const instances = 4
	fixtures := make([]*dpopFixture, instances)
	for i := range fixtures {
		fixtures[i] = newDPoPFixture(t, NewKVReplayCache(mustReplayKV(t, s), clock.Now), clock)
	}
	proof := fixtures[0].proof(t, nil, nil)

	var wg sync.WaitGroup
	errs := make([]error, instances*4)
	for i := range errs {
		wg.Go(func() {
			f := fixtures[i%instances]
			_, errs[i] = f.v.Verify(context.Background(), proof, f.want())
		})
	}
	wg.Wait()
	accepted := 0
	for _, err := range errs {
		switch {
		case err == nil:
			accepted++
		case errors.Is(err, ErrInvalidProof):
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if accepted != 1 {
		t.Errorf("%d of %d concurrent presentations accepted, want exactly 1", accepted, len(errs))
	}
}

func TestVerifyProofBadWant(t *testing.T) {
	clock := newTestClock(time.Now())
	f := newDPoPFixture(t, &memReplay{}, clock)
	proof := f.proof(t, nil, nil)
	for name, want := range map[string]ProofWant{
		"no nonce rule": {Method: "POST", URL: testHTU},
		"no method":     {URL: testHTU, NonceValid: f.nonces.Valid},
		"no URL":        {Method: "POST", NonceValid: f.nonces.Valid},
		"relative URL":  {Method: "POST", URL: "/api/token", NonceValid: f.nonces.Valid},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.v.Verify(context.Background(), proof, want)
			if err == nil || errors.Is(err, ErrInvalidProof) {
				t.Errorf("err = %v, want a configuration error", err)
			}
		})
	}
}

// failingReplay is a replay cache whose store is down.
type failingReplay struct{}

func (failingReplay) Remember(context.Context, string, time.Time) (bool, error) {
	return false, errors.New("nats: no responders")
}

func TestVerifyProofReplayCacheDown(t *testing.T) {
	clock := newTestClock(time.Now())
	f := newDPoPFixture(t, failingReplay{}, clock)
	_, err := f.v.Verify(context.Background(), f.proof(t, nil, nil), f.want())
	if err == nil || errors.Is(err, ErrInvalidProof) {
		t.Errorf("err = %v, want an infrastructure error that is not ErrInvalidProof", err)
	}
}

func TestNormalizeHTU(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"https://kiosk.example/api/token", "https://kiosk.example/api/token"},
		{"HTTPS://KIOSK.Example:443/api/token?a=b#c", "https://kiosk.example/api/token"},
		{"http://kiosk.example:80", "http://kiosk.example/"},
		{"http://kiosk.example:8080/x", "http://kiosk.example:8080/x"},
		{"wss://kiosk.example:443/ws", "wss://kiosk.example/ws"},
		{"ws://127.0.0.1:80/ws", "ws://127.0.0.1/ws"},
		{"https://[::1]:443/p", "https://[::1]/p"},
		{"https://[::1]:8443/p", "https://[::1]:8443/p"},
		{"https://kiosk.example/A%2Fb", "https://kiosk.example/A%2Fb"},
		{"ftp://kiosk.example/", ""},
		{"/api/token", ""},
		{"https://user@kiosk.example/", ""},
		{"https:///path", ""},
		{"mailto:x@y", ""},
		{"%zz", ""},
	}
	for _, tt := range tests {
		got, err := NormalizeHTU(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("NormalizeHTU(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeHTU(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestThumbprintRFC7638(t *testing.T) {
	// RFC 7638 has no EC example; check against the independent
	// computation in pairingtest.
	k := pairingtest.MustDeviceKey(t)
	got, err := Thumbprint(&k.PrivateKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if got != k.JKT() {
		t.Errorf("Thumbprint = %q, pairingtest says %q", got, k.JKT())
	}
}
