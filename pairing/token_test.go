package pairing

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/kioskfeed/kioskfeed/pairing/dpop"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

const testIssuer = "https://kiosk.example"

type tokenFixture struct {
	clock      *testClock
	k1, k2     *ecdsa.PrivateKey // k1 signs, k2 only verifies
	kid1, kid2 string
	iss        *TokenIssuer
	dev        *pairingtest.DeviceKey
}

func newTokenFixture(tb testing.TB) *tokenFixture {
	tb.Helper()
	f := &tokenFixture{
		clock: newTestClock(time.Unix(1_800_000_000, 0)),
		k1:    mustKey(tb, elliptic.P256()),
		k2:    mustKey(tb, elliptic.P256()),
		dev:   pairingtest.MustDeviceKey(tb),
	}
	var err error
	if f.kid1, err = dpop.Thumbprint(&f.k1.PublicKey); err != nil {
		tb.Fatal(err)
	}
	if f.kid2, err = dpop.Thumbprint(&f.k2.PublicKey); err != nil {
		tb.Fatal(err)
	}
	f.iss = mustIssuer(tb, []*ecdsa.PrivateKey{f.k1, f.k2}, f.clock.Now)
	return f
}

func mustIssuer(tb testing.TB, keys []*ecdsa.PrivateKey, now func() time.Time) *TokenIssuer {
	tb.Helper()
	iss, err := NewTokenIssuer(TokenConfig{Keys: keys, Issuer: testIssuer, Now: now})
	if err != nil {
		tb.Fatalf("NewTokenIssuer: %v", err)
	}
	return iss
}

func (f *tokenFixture) header() map[string]any {
	return map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": f.kid1}
}

func (f *tokenFixture) claims() map[string]any {
	now := f.clock.Now()
	return map[string]any{
		"iss":  testIssuer,
		"aud":  Audience,
		"sub":  "dev_ABCDEFGHIJKLMNOP",
		"feed": "lobby",
		"iat":  now.Unix(),
		"exp":  now.Add(DefaultTokenTTL).Unix(),
		"jti":  "tok-jti-0001",
		"cnf":  map[string]string{"jkt": f.dev.JKT()},
	}
}

// token signs the standard header and claims, after edits, with key.
func (f *tokenFixture) token(tb testing.TB, key *ecdsa.PrivateKey, editHeader, editClaims func(map[string]any)) string {
	tb.Helper()
	h, c := f.header(), f.claims()
	if editHeader != nil {
		editHeader(h)
	}
	if editClaims != nil {
		editClaims(c)
	}
	return mustSign(tb, key, h, c)
}

func assertTokenError(tb testing.TB, err error, reason string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("err = nil, want reason %q", reason)
	}
	var te *TokenError
	if !errors.As(err, &te) {
		tb.Fatalf("err = %v (%T), want *TokenError %q", err, err, reason)
	}
	if te.Reason != reason {
		tb.Errorf("reason = %q, want %q", te.Reason, reason)
	}
	if !errors.Is(err, ErrInvalidToken) {
		tb.Error("error does not match ErrInvalidToken")
	}
	if errors.Is(err, dpop.ErrInvalidProof) {
		tb.Error("a token error matches ErrInvalidProof")
	}
}

func hs256Token(tb testing.TB, key []byte, header, claims map[string]any) string {
	tb.Helper()
	input := encodeJSON(tb, header) + "." + encodeJSON(tb, claims)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(input))
	return input + "." + b64.EncodeToString(mac.Sum(nil))
}

func TestVerifyToken(t *testing.T) {
	f := newTokenFixture(t)
	attacker := mustKey(t, elliptic.P256())
	attackerKid, _ := dpop.Thumbprint(&attacker.PublicKey)
	attackerJWK, err := jwk.Import(&attacker.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = attackerJWK.Set(jwk.KeyIDKey, attackerKid)
	_ = attackerJWK.Set(jwk.AlgorithmKey, "ES256")
	srv, fetches := countingServer(t, map[string]any{"keys": []any{attackerJWK}})

	// The public key bytes an attacker could use as an HMAC secret.
	pubDER, err := x509.MarshalPKIXPublicKey(&f.k1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pubRaw, _ := f.k1.PublicKey.Bytes()
	jwks, _ := f.iss.JWKS()
	var set struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	pubJWK := []byte(set.Keys[0])

	proof := f.dev.MustProof(t, pairingtest.ProofParams{Method: "POST", URL: testHTU, Nonce: "n"})
	issued, _, err := f.iss.Issue("dev_1", "lobby", f.dev.JKT())
	if err != nil {
		t.Fatal(err)
	}
	leeway := DefaultTokenLeeway
	now := f.clock.Now()
	withAlgNone := func(sig bool) string {
		h := f.header()
		h["alg"] = "none"
		tok := encodeJSON(t, h) + "." + encodeJSON(t, f.claims()) + "."
		if sig {
			tok += strings.Split(f.token(t, f.k1, nil, nil), ".")[2]
		}
		return tok
	}

	tests := []struct {
		name   string
		token  string
		reason string // "" means accepted
		// core is the reason expected when the header pre-checks are
		// bypassed (parseVerified): jwx and the key set alone must refuse.
		core string
	}{
		{name: "issued by Issue", token: issued},
		{name: "valid", token: f.token(t, f.k1, nil, nil)},
		{name: "signed by the verify-only key", token: f.token(t, f.k2, func(h map[string]any) { h["kid"] = f.kid2 }, nil)},
		{name: "aud as an array", token: f.token(t, f.k1, nil, func(c map[string]any) { c["aud"] = []string{"other", Audience} })},
		{name: "expires within the leeway", token: f.token(t, f.k1, nil, func(c map[string]any) { c["exp"] = now.Add(-leeway + time.Second).Unix() })},
		{name: "jku and x5u headers are ignored", token: f.token(t, f.k1, func(h map[string]any) { h["jku"], h["x5u"] = srv.URL, srv.URL }, nil)},

		// Size and shape.
		{name: "1 MB", token: strings.Repeat("A", 1<<20), reason: "token too large"},
		{name: "a million dots", token: strings.Repeat(".", 1_000_000), reason: "token too large"},
		{name: "just over 8 KiB", token: f.token(t, f.k1, nil, func(c map[string]any) { c["pad"] = strings.Repeat("a", MaxTokenBytes) }), reason: "token too large"},
		{name: "empty", token: "", reason: "malformed token"},
		{name: "two parts", token: "e30.e30", reason: "malformed token"},
		{name: "four parts", token: f.token(t, f.k1, nil, nil) + ".AAAA", reason: "malformed token"},
		{name: "header not JSON", token: b64.EncodeToString([]byte("nope")) + ".e30.AAAA", reason: "malformed token"},
		{name: "payload not JSON", token: func() string {
			h, _ := json.Marshal(f.header())
			s, err := pairingtest.SignES256(f.k1, h, []byte("not json"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}(), reason: "malformed token", core: "malformed token"},

		// Algorithm confusion.
		{name: "alg none, signature kept", token: withAlgNone(true), reason: "unsupported alg", core: "bad signature"},
		{name: "alg none, signature stripped", token: withAlgNone(false), reason: "unsupported alg", core: "bad signature"},
		{name: "HS256 keyed with the public key PEM", token: hs256Token(t, pubPEM, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": f.kid1}, f.claims()),
			reason: "unsupported alg", core: "bad signature"},
		{name: "HS256 keyed with the public key DER", token: hs256Token(t, pubDER, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": f.kid1}, f.claims()),
			reason: "unsupported alg", core: "bad signature"},
		{name: "HS256 keyed with the raw public point", token: hs256Token(t, pubRaw, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": f.kid1}, f.claims()),
			reason: "unsupported alg", core: "bad signature"},
		{name: "HS256 keyed with the published JWK", token: hs256Token(t, pubJWK, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": f.kid1}, f.claims()),
			reason: "unsupported alg", core: "bad signature"},
		// The key set verifies with the key's alg, never the header's, so
		// only the header check notices this one; the signature is ES256.
		{name: "ES384 header over an ES256 signature", token: f.token(t, f.k1, func(h map[string]any) { h["alg"] = "ES384" }, nil), reason: "unsupported alg"},
		{name: "crit header", token: f.token(t, f.k1, func(h map[string]any) { h["crit"] = []string{"exp"}; h["exp"] = 1 }, nil), reason: "unsupported header"},

		// Keys.
		{name: "no kid", token: f.token(t, f.k1, func(h map[string]any) { delete(h, "kid") }, nil), reason: "missing kid", core: "bad signature"},
		{name: "unknown kid", token: f.token(t, attacker, func(h map[string]any) { h["kid"] = attackerKid }, nil), reason: "unknown kid", core: "bad signature"},
		{name: "kid a path", token: f.token(t, attacker, func(h map[string]any) { h["kid"] = "../../../dev/null" }, nil), reason: "unknown kid", core: "bad signature"},
		{name: "our kid, attacker's signature", token: f.token(t, attacker, nil, nil), reason: "bad signature", core: "bad signature"},
		{name: "kid of the other server key", token: f.token(t, f.k1, func(h map[string]any) { h["kid"] = f.kid2 }, nil), reason: "bad signature", core: "bad signature"},
		{name: "jku to the attacker's set, attacker's kid", token: f.token(t, attacker, func(h map[string]any) { h["jku"], h["kid"] = srv.URL, attackerKid }, nil),
			reason: "unknown kid", core: "bad signature"},
		{name: "x5u to the attacker, our kid", token: f.token(t, attacker, func(h map[string]any) { h["x5u"] = srv.URL }, nil), reason: "bad signature", core: "bad signature"},
		{name: "embedded jwk of the attacker, our kid", token: f.token(t, attacker, func(h map[string]any) { h["jwk"] = attackerJWK }, nil), reason: "bad signature", core: "bad signature"},
		{name: "from another issuer's keys", token: func() string {
			tok, _, err := mustIssuer(t, []*ecdsa.PrivateKey{attacker}, f.clock.Now).Issue("dev_1", "lobby", f.dev.JKT())
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}(), reason: "unknown kid", core: "bad signature"},

		// Type confusion.
		{name: "a DPoP proof", token: proof, reason: "wrong typ"},
		{name: "typ JWT", token: f.token(t, f.k1, func(h map[string]any) { h["typ"] = "JWT" }, nil), reason: "wrong typ"},
		{name: "no typ", token: f.token(t, f.k1, func(h map[string]any) { delete(h, "typ") }, nil), reason: "wrong typ"},

		// Claims.
		{name: "expired", token: f.token(t, f.k1, nil, func(c map[string]any) { c["exp"] = now.Add(-leeway - time.Second).Unix() }), reason: "token expired", core: "token expired"},
		{name: "nbf in the future", token: f.token(t, f.k1, nil, func(c map[string]any) { c["nbf"] = now.Add(leeway + time.Minute).Unix() }),
			reason: "token not yet valid", core: "token not yet valid"},
		{name: "iat in the future", token: f.token(t, f.k1, nil, func(c map[string]any) { c["iat"] = now.Add(leeway + time.Minute).Unix() }),
			reason: "iat in the future", core: "iat in the future"},
		{name: "no exp", token: f.token(t, f.k1, nil, func(c map[string]any) { delete(c, "exp") }), reason: "missing required claim", core: "missing required claim"},
		{name: "wrong aud", token: f.token(t, f.k1, nil, func(c map[string]any) { c["aud"] = "kioskfeed-admin" }), reason: "wrong audience", core: "wrong audience"},
		{name: "no aud", token: f.token(t, f.k1, nil, func(c map[string]any) { delete(c, "aud") }), reason: "wrong audience", core: "wrong audience"},
		{name: "wrong iss", token: f.token(t, f.k1, nil, func(c map[string]any) { c["iss"] = "https://evil.example" }), reason: "wrong issuer", core: "wrong issuer"},
		{name: "no iss", token: f.token(t, f.k1, nil, func(c map[string]any) { delete(c, "iss") }), reason: "wrong issuer", core: "wrong issuer"},
		{name: "no sub", token: f.token(t, f.k1, nil, func(c map[string]any) { delete(c, "sub") }), reason: "missing sub", core: "missing sub"},
		{name: "no feed", token: f.token(t, f.k1, nil, func(c map[string]any) { delete(c, "feed") }), reason: "missing feed", core: "missing feed"},
		{name: "feed a number", token: f.token(t, f.k1, nil, func(c map[string]any) { c["feed"] = 7 }), reason: "missing feed", core: "missing feed"},
		{name: "no cnf", token: f.token(t, f.k1, nil, func(c map[string]any) { delete(c, "cnf") }), reason: "missing cnf.jkt", core: "missing cnf.jkt"},
		{name: "cnf without jkt", token: f.token(t, f.k1, nil, func(c map[string]any) { c["cnf"] = map[string]string{"x5t#S256": "abc"} }),
			reason: "missing cnf.jkt", core: "missing cnf.jkt"},
		{name: "cnf a string", token: f.token(t, f.k1, nil, func(c map[string]any) { c["cnf"] = f.dev.JKT() }), reason: "missing cnf.jkt", core: "missing cnf.jkt"},
		{name: "no jti", token: f.token(t, f.k1, nil, func(c map[string]any) { delete(c, "jti") }), reason: "missing jti", core: "missing jti"},
		{name: "no iat", token: f.token(t, f.k1, nil, func(c map[string]any) { delete(c, "iat") }), reason: "missing iat", core: "missing iat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims, err := f.iss.Verify(tt.token)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if !claims.BoundTo(f.dev.JKT()) {
					t.Errorf("claims not bound to the device key: cnf.jkt %q", claims.JKT)
				}
				return
			}
			assertTokenError(t, err, tt.reason)
			if claims != nil {
				t.Errorf("claims = %+v on a refused token", claims)
			}
			if tt.core != "" {
				_, err := f.iss.parseVerified(tt.token)
				assertTokenError(t, err, tt.core)
			}
		})
	}
	if n := fetches.Load(); n != 0 {
		t.Errorf("the jku/x5u server got %d requests, want 0", n)
	}
}

func TestIssueToken(t *testing.T) {
	f := newTokenFixture(t)
	f.clock.Set(time.Unix(1_800_000_000, 400_000_000))
	tok, exp, err := f.iss.Issue("dev_5KQ2M8V3W1XJ4T7R9P0A", "floor-2", f.dev.JKT())
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Unix(1_800_000_000, 0).Add(DefaultTokenTTL); !exp.Equal(want) {
		t.Errorf("exp = %v, want %v", exp, want)
	}

	parts := strings.Split(tok, ".")
	var hdr map[string]any
	var claims map[string]any
	for i, dst := range []*map[string]any{&hdr, &claims} {
		raw, err := b64.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			t.Fatal(err)
		}
	}
	if hdr["alg"] != "ES256" || hdr["typ"] != "at+jwt" || hdr["kid"] != f.kid1 {
		t.Errorf("header = %v, want alg ES256, typ at+jwt, kid %s", hdr, f.kid1)
	}
	for name, want := range map[string]any{
		"iss": testIssuer, "aud": Audience, "sub": "dev_5KQ2M8V3W1XJ4T7R9P0A", "feed": "floor-2",
		"iat": float64(1_800_000_000), "exp": float64(exp.Unix()),
	} {
		if claims[name] != want {
			t.Errorf("claim %s = %v (%T), want %v", name, claims[name], claims[name], want)
		}
	}
	if cnf, _ := claims["cnf"].(map[string]any); cnf["jkt"] != f.dev.JKT() {
		t.Errorf("cnf = %v, want jkt %s", claims["cnf"], f.dev.JKT())
	}
	jti, _ := claims["jti"].(string)
	if raw, err := b64.DecodeString(jti); err != nil || len(raw) != 16 {
		t.Errorf("jti %q is not 128 random bits", jti)
	}

	got, err := f.iss.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	want := AccessClaims{DeviceID: "dev_5KQ2M8V3W1XJ4T7R9P0A", Feed: "floor-2", JKT: f.dev.JKT(), JTI: jti,
		IssuedAt: time.Unix(1_800_000_000, 0), Expires: exp}
	if got.DeviceID != want.DeviceID || got.Feed != want.Feed || got.JKT != want.JKT || got.JTI != want.JTI ||
		!got.IssuedAt.Equal(want.IssuedAt) || !got.Expires.Equal(want.Expires) {
		t.Errorf("claims = %+v, want %+v", got, want)
	}

	tok2, _, _ := f.iss.Issue("dev_5KQ2M8V3W1XJ4T7R9P0A", "floor-2", f.dev.JKT())
	if tok2 == tok {
		t.Error("two tokens are identical; jti should differ")
	}
	for _, args := range [][3]string{{"", "lobby", "jkt"}, {"dev", "", "jkt"}, {"dev", "lobby", ""}} {
		if _, _, err := f.iss.Issue(args[0], args[1], args[2]); err == nil {
			t.Errorf("Issue%q succeeded", args)
		}
	}
}

func TestTokenExpiresOnTime(t *testing.T) {
	f := newTokenFixture(t)
	tok, exp, err := f.iss.Issue("dev_1", "lobby", f.dev.JKT())
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Set(exp.Add(DefaultTokenLeeway - time.Second))
	if _, err := f.iss.Verify(tok); err != nil {
		t.Errorf("just before exp+leeway: %v", err)
	}
	f.clock.Set(exp.Add(DefaultTokenLeeway + time.Second))
	_, err = f.iss.Verify(tok)
	assertTokenError(t, err, "token expired")
}

func TestKeyRotation(t *testing.T) {
	f := newTokenFixture(t)
	oldIssuer := mustIssuer(t, []*ecdsa.PrivateKey{f.k2}, f.clock.Now)
	tok, _, err := oldIssuer.Issue("dev_1", "lobby", f.dev.JKT())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.iss.Verify(tok); err != nil {
		t.Errorf("a token of the previous key is refused after rotation: %v", err)
	}
	newTok, _, err := f.iss.Issue("dev_1", "lobby", f.dev.JKT())
	if err != nil {
		t.Fatal(err)
	}
	_, err = oldIssuer.Verify(newTok)
	assertTokenError(t, err, "unknown kid")
}

// TestBoundTo walks the check a handshake makes: token and proof both
// verify, and then the proof's key must be the token's.
func TestBoundTo(t *testing.T) {
	f := newTokenFixture(t)
	thief := pairingtest.MustDeviceKey(t)
	v, err := dpop.NewVerifier(dpop.Config{Replay: &memReplay{}, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}

	tok, _, err := f.iss.Issue("dev_1", "lobby", f.dev.JKT())
	if err != nil {
		t.Fatal(err)
	}
	claims, err := f.iss.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		key  *pairingtest.DeviceKey
		want bool
	}{
		{"the device's own key", f.dev, true},
		{"another key with the stolen token", thief, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proof := tt.key.MustProof(t, pairingtest.ProofParams{Method: "GET", URL: testWSURL, Nonce: "c", AccessToken: tok, IssuedAt: f.clock.Now()})
			jkt, err := v.Verify(context.Background(), proof, dpop.ProofWant{Method: "GET", URL: testWSURL, Nonce: "c", AccessToken: tok})
			if err != nil {
				t.Fatalf("proof: %v", err)
			}
			if got := claims.BoundTo(jkt); got != tt.want {
				t.Errorf("BoundTo = %v, want %v", got, tt.want)
			}
		})
	}
	if claims.BoundTo("") {
		t.Error("BoundTo(\"\") = true")
	}
	if (&AccessClaims{}).BoundTo("") {
		t.Error("empty claims are bound to the empty key")
	}
	var none *AccessClaims
	if none.BoundTo(f.dev.JKT()) {
		t.Error("nil claims are bound")
	}
}

func TestJWKS(t *testing.T) {
	f := newTokenFixture(t)
	raw, err := f.iss.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 2 {
		t.Fatalf("%d keys, want 2", len(doc.Keys))
	}
	for i, want := range []string{f.kid1, f.kid2} {
		k := doc.Keys[i]
		if k["kid"] != want || k["alg"] != "ES256" || k["use"] != "sig" || k["kty"] != "EC" || k["crv"] != "P-256" {
			t.Errorf("key %d = %v, want kid %s, alg ES256, use sig, EC P-256", i, k, want)
		}
		if _, ok := k["d"]; ok {
			t.Errorf("key %d publishes its private part", i)
		}
	}
	set, err := jwk.Parse(raw)
	if err != nil {
		t.Fatalf("jwk.Parse: %v", err)
	}
	if set.Len() != 2 {
		t.Errorf("jwk.Parse: %d keys, want 2", set.Len())
	}
	raw[0] = 'x'
	if again, _ := f.iss.JWKS(); again[0] != '{' {
		t.Error("JWKS returns its internal buffer")
	}
}

func TestNewTokenIssuerConfig(t *testing.T) {
	k := mustKey(t, elliptic.P256())
	p384 := mustKey(t, elliptic.P384())
	for name, cfg := range map[string]TokenConfig{
		"no keys":       {Issuer: testIssuer},
		"no issuer":     {Keys: []*ecdsa.PrivateKey{k}},
		"P-384 key":     {Keys: []*ecdsa.PrivateKey{p384}, Issuer: testIssuer},
		"nil key":       {Keys: []*ecdsa.PrivateKey{nil}, Issuer: testIssuer},
		"duplicate key": {Keys: []*ecdsa.PrivateKey{k, k}, Issuer: testIssuer},
		"negative TTL":  {Keys: []*ecdsa.PrivateKey{k}, Issuer: testIssuer, TTL: -time.Second},
	} {
		if _, err := NewTokenIssuer(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
