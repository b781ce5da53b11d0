package pairing_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	_ "crypto/sha512" // crypto.SHA384, for the ES384 forgeries
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/dpop"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// These tests attack the pairing service where the outside reaches it: /api/pair and
// /api/token over real HTTP, and Authenticate as the bridge calls it for a WebSocket
// handshake. The crypto core's own unit tests (dpop/proof_test.go, token_test.go) check each
// refusal reason in isolation; here each forgery goes through the whole path, next to a
// genuine request that must pass, so a refusal for the wrong reason shows.

var enc = base64.RawURLEncoding

// maxErrorBody bounds a refusal's JSON body: a code and a fixed sentence.
const maxErrorBody = 512

// wsURLOf is the URL a bridge in front of s checks WebSocket proofs against.
func wsURLOf(s *service) string { return "ws" + strings.TrimPrefix(s.URL, "http") + "/ws" }

// postDPoP posts body to path on s with exactly the given DPoP header lines.
func postDPoP(t *testing.T, s *service, path string, proofs []string, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return readAnswer(t, resp)
}

// wantAnswer checks an answer's status and error code ("" for a success), that a
// refusal's message names reason, and that the body is small.
func wantAnswer(t *testing.T, a answer, status int, code, reason string) {
	t.Helper()
	if code == "" {
		if a.status != status {
			t.Fatalf("got %d %s, want %d", a.status, a.raw, status)
		}
		return
	}
	if a.status != status || a.body["error"] != code {
		t.Fatalf("got %d %.300s, want %d %q", a.status, a.raw, status, code)
	}
	msg, _ := a.body["message"].(string)
	if msg == "" || !strings.Contains(msg, reason) {
		t.Fatalf("message %q, want one that names %q", msg, reason)
	}
	if len(a.raw) > maxErrorBody {
		t.Fatalf("refusal body is %d bytes, want at most %d", len(a.raw), maxErrorBody)
	}
}

// fragments are the pieces of a secret whose presence in an answer, error or audit
// record would mean it was echoed: its start and each JWS segment's start.
func fragments(secret string) []string {
	head := func(s string) string { return s[:min(len(s), 48)] }
	out := []string{head(secret)}
	if parts := strings.Split(secret, "."); len(parts) > 1 && len(parts) < 10 {
		for _, p := range parts {
			if len(p) >= 16 {
				out = append(out, head(p))
			}
		}
	}
	return out
}

// mustNotEcho fails when text holds a fragment of any secret.
func mustNotEcho(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for _, f := range fragments(s) {
			if strings.Contains(text, f) {
				t.Fatalf("%s echoes a secret sent (%.24q…): %.300s", what, f, text)
			}
		}
	}
}

// jwkOf is a device key's public JWK as a map, to add members to.
func jwkOf(k *pairingtest.DeviceKey) map[string]any {
	j := k.JWK()
	return map[string]any{"kty": j.Kty, "crv": j.Crv, "x": j.X, "y": j.Y}
}

// signProof signs a DPoP proof by k (good unless edit spoils it): htm, htu, iat, a
// fresh jti, nonce when not empty and ath when token is not empty.
func signProof(t *testing.T, k *pairingtest.DeviceKey, method, htu, nonce, token string, iat time.Time, edit func(h, c map[string]any)) string {
	t.Helper()
	h := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": jwkOf(k)}
	c := map[string]any{"jti": pairingtest.NewJTI(), "htm": method, "htu": htu, "iat": iat.Unix()}
	if nonce != "" {
		c["nonce"] = nonce
	}
	if token != "" {
		c["ath"] = pairingtest.ATH(token)
	}
	if edit != nil {
		edit(h, c)
	}
	p, err := k.Sign(h, c)
	if err != nil {
		t.Fatalf("sign proof: %v", err)
	}
	return p
}

// signRaw makes a compact JWS of header and claims with any signature function.
func signRaw(t *testing.T, header, claims any, sign func(input []byte) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	return input + "." + enc.EncodeToString(sign([]byte(input)))
}

func ecSigner(t *testing.T, priv *ecdsa.PrivateKey, hash crypto.Hash) func([]byte) []byte {
	return func(input []byte) []byte {
		h := hash.New()
		h.Write(input)
		r, s, err := ecdsa.Sign(rand.Reader, priv, h.Sum(nil))
		if err != nil {
			t.Fatal(err)
		}
		size := (priv.Curve.Params().BitSize + 7) / 8
		sig := make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
		return sig
	}
}

func rsaSigner(t *testing.T, priv *rsa.PrivateKey) func([]byte) []byte {
	return func(input []byte) []byte {
		sum := sha256.Sum256(input)
		sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

func hmacSigner(key []byte) func([]byte) []byte {
	return func(input []byte) []byte {
		m := hmac.New(sha256.New, key)
		m.Write(input)
		return m.Sum(nil)
	}
}

// rsaJWK and p384JWK are public keys of the kinds a proof must not carry.
func rsaJWK(k *rsa.PrivateKey) map[string]any {
	return map[string]any{"kty": "RSA", "n": enc.EncodeToString(k.N.Bytes()), "e": enc.EncodeToString(big.NewInt(int64(k.E)).Bytes())}
}

func p384JWK(t *testing.T, k *ecdsa.PrivateKey) map[string]any {
	raw, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"kty": "EC", "crv": "P-384", "x": enc.EncodeToString(raw[1:49]), "y": enc.EncodeToString(raw[49:])}
}

// fetchCounter is an attacker's key server: it serves a JWK set and counts requests,
// so that a test can show nothing ever fetched a jku or x5u.
func fetchCounter(t *testing.T, set any) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// attackerKit is what an attacker brings: a P-256 key of its own, published at its own
// URL, plus RSA and P-384 keys.
type attackerKit struct {
	p256   *ecdsa.PrivateKey
	kid    string
	p384   *ecdsa.PrivateKey
	rsa    *rsa.PrivateKey
	srv    *httptest.Server
	hits   *atomic.Int64
	device *pairingtest.DeviceKey
}

func newAttackerKit(t *testing.T) *attackerKit {
	t.Helper()
	k := &attackerKit{}
	var err error
	if k.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if k.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.kid, err = dpop.Thumbprint(&k.p256.PublicKey); err != nil {
		t.Fatal(err)
	}
	if k.device, err = pairingtest.FromPrivateKey(k.p256); err != nil {
		t.Fatal(err)
	}
	pub := jwkOf(k.device)
	pub["kid"], pub["alg"], pub["use"] = k.kid, "ES256", "sig"
	k.srv, k.hits = fetchCounter(t, map[string]any{"keys": []any{pub}})
	return k
}

// serverKeyMaterial is what anyone can learn of the server's signing key: its kid and
// its public key bytes, as the JWKS publishes them.
type serverKeyMaterial struct {
	kid      string
	xy, sec1 []byte
	jwksText []byte
}

func publicKeyMaterial(t *testing.T, s *service) serverKeyMaterial {
	t.Helper()
	resp, err := s.Client().Get(s.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	a := readAnswer(t, resp)
	keys, _ := a.body["keys"].([]any)
	if a.status != http.StatusOK || len(keys) != 1 {
		t.Fatalf("jwks: %d %s, want one key", a.status, a.raw)
	}
	k, _ := keys[0].(map[string]any)
	x, errX := enc.DecodeString(k["x"].(string))
	y, errY := enc.DecodeString(k["y"].(string))
	if errX != nil || errY != nil {
		t.Fatalf("jwks key %v", k)
	}
	xy := append(append([]byte{}, x...), y...)
	return serverKeyMaterial{kid: k["kid"].(string), xy: xy, sec1: append([]byte{4}, xy...), jwksText: a.raw}
}

// tokenClaims are the claims of a genuine access token for tab, as of now.
func tokenClaims(s *service, tab *pairingtest.Tablet) map[string]any {
	now := s.clock.Now().Truncate(time.Second)
	return map[string]any{
		"iss": s.URL, "aud": pairing.Audience, "sub": tab.DeviceID, "feed": tab.Feed,
		"iat": now, "exp": now.Add(10 * time.Minute), "jti": pairingtest.NewJTI(),
		"cnf": map[string]any{"jkt": tab.Key.JKT()},
	}
}

// unix turns time values into NumericDates, for tokens signed without jwx.
func unix(claims map[string]any) map[string]any {
	out := make(map[string]any, len(claims))
	for k, v := range claims {
		if tm, ok := v.(time.Time); ok {
			v = tm.Unix()
		}
		out[k] = v
	}
	return out
}

// serverSigned signs claims with the server's real signing key through jwx, with the
// header the server uses (ES256, typ at+jwt, kid): only the claims can be wrong.
func serverSigned(t *testing.T, s *service, claims map[string]any) string {
	t.Helper()
	b := jwt.NewBuilder()
	for k, v := range claims {
		b = b.Claim(k, v)
	}
	tok, err := b.Build()
	if err != nil {
		t.Fatalf("build token: %v", err)
	}
	key, err := jwk.Import(s.keys[0])
	if err != nil {
		t.Fatal(err)
	}
	kid, err := dpop.Thumbprint(&s.keys[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "at+jwt"); err != nil {
		t.Fatal(err)
	}
	if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	return string(signed)
}

func without(m map[string]any, key string) map[string]any {
	delete(m, key)
	return m
}

func with(m map[string]any, key string, v any) map[string]any {
	m[key] = v
	return m
}

// TestTokenEndpointRefusesForgedProofs: every proof /api/token must refuse, each next
// to the genuine call that works, and what a refusal says, audits and leaks.
func TestTokenEndpointRefusesForgedProofs(t *testing.T) {
	// Each refusal its own audit record, not summed up, to see what each one holds.
	// Every forgery its own answer: the address's allowance of refusals (which a
	// real attacker meets after 20) is lifted, so that each case is checked.
	s := startService(t, brokertest.New(t, func(c *broker.Config) { c.AuditAggregateWindow = -1 }), nil,
		func(c *pairing.Config) { c.TokenFailBurst = 1 << 20 })
	tab := s.paired(t, "lobby")
	evil := newAttackerKit(t)
	other := startService(t, nil, nil) // another deployment: its own signing key
	htu := s.URL + "/api/token"
	body := []byte(`{"device_id":"` + tab.DeviceID + `"}`)
	var sent []string // every proof, token and device id sent: none may come back

	// The nonce, as a client learns it: from a refusal's DPoP-Nonce header.
	first := postDPoP(t, s, "/api/token", []string{signProof(t, tab.Key, "POST", htu, "", "", s.clock.Now(), nil)}, body)
	wantAnswer(t, first, http.StatusBadRequest, "use_dpop_nonce", "nonce")
	nonce := first.header.Get("DPoP-Nonce")
	if !s.a.Nonces().Valid(nonce) {
		t.Fatalf("DPoP-Nonce %q is not a valid nonce", nonce)
	}

	proof := func(t *testing.T, edit func(h, c map[string]any)) string {
		return signProof(t, tab.Key, "POST", htu, nonce, "", s.clock.Now(), edit)
	}
	one := func(p func(t *testing.T) string) func(t *testing.T) []string {
		return func(t *testing.T) []string { return []string{p(t)} }
	}
	edited := func(edit func(h, c map[string]any)) func(t *testing.T) []string {
		return one(func(t *testing.T) string { return proof(t, edit) })
	}

	tests := []struct {
		name   string
		dpop   func(t *testing.T) []string
		body   []byte // default body
		status int
		code   string // "" for success
		reason string
	}{
		{name: "genuine", dpop: edited(nil), status: 200},
		{name: "genuine with jku and x5u headers (ignored, never fetched)", dpop: edited(func(h, _ map[string]any) { h["jku"], h["x5u"] = evil.srv.URL, evil.srv.URL }), status: 200},

		{name: "no DPoP header", dpop: func(*testing.T) []string { return nil }, status: 400, code: "invalid_dpop_proof", reason: "exactly one"},
		{name: "two DPoP headers", dpop: func(t *testing.T) []string { return []string{proof(t, nil), proof(t, nil)} }, status: 400, code: "invalid_dpop_proof", reason: "exactly one"},
		{name: "empty DPoP header", dpop: func(*testing.T) []string { return []string{""} }, status: 400, code: "invalid_dpop_proof", reason: "malformed proof"},

		{name: "wrong htm", dpop: edited(func(_, c map[string]any) { c["htm"] = "GET" }), status: 400, code: "invalid_dpop_proof", reason: "wrong htm"},
		{name: "htm lower case", dpop: edited(func(_, c map[string]any) { c["htm"] = "post" }), status: 400, code: "invalid_dpop_proof", reason: "wrong htm"},
		{name: "htu of another path", dpop: edited(func(_, c map[string]any) { c["htu"] = s.URL + "/api/pair" }), status: 400, code: "invalid_dpop_proof", reason: "wrong htu"},
		{name: "htu of another host", dpop: edited(func(_, c map[string]any) { c["htu"] = "http://evil.example/api/token" }), status: 400, code: "invalid_dpop_proof", reason: "wrong htu"},
		{name: "htu with ws scheme", dpop: edited(func(_, c map[string]any) { c["htu"] = "ws" + strings.TrimPrefix(htu, "http") }), status: 400, code: "invalid_dpop_proof", reason: "wrong htu"},
		{name: "htu with https scheme", dpop: edited(func(_, c map[string]any) { c["htu"] = "https" + strings.TrimPrefix(htu, "http") }), status: 400, code: "invalid_dpop_proof", reason: "wrong htu"},
		{name: "iat beyond the skew in the past", dpop: edited(func(_, c map[string]any) { c["iat"] = s.clock.Now().Add(-11 * time.Minute).Unix() }), status: 400, code: "invalid_dpop_proof", reason: "iat too old"},
		{name: "iat beyond the skew in the future", dpop: edited(func(_, c map[string]any) { c["iat"] = s.clock.Now().Add(11 * time.Minute).Unix() }), status: 400, code: "invalid_dpop_proof", reason: "iat in the future"},

		{name: "no typ", dpop: edited(func(h, _ map[string]any) { delete(h, "typ") }), status: 400, code: "invalid_dpop_proof", reason: "wrong typ"},
		{name: "typ of an access token", dpop: edited(func(h, _ map[string]any) { h["typ"] = "at+jwt" }), status: 400, code: "invalid_dpop_proof", reason: "wrong typ"},
		{name: "alg none, signature stripped", dpop: one(func(t *testing.T) string {
			p := proof(t, func(h, _ map[string]any) { h["alg"] = "none" })
			return p[:strings.LastIndexByte(p, '.')+1]
		}), status: 400, code: "invalid_dpop_proof", reason: "unsupported alg"},
		{name: "jwk with the private d", dpop: edited(func(h, _ map[string]any) {
			j := jwkOf(tab.Key)
			j["d"] = enc.EncodeToString(tab.Key.PrivateKey().D.FillBytes(make([]byte, 32)))
			h["jwk"] = j
		}), status: 400, code: "invalid_dpop_proof", reason: "private key in jwk"},
		{name: "RSA jwk, RS256", dpop: one(func(t *testing.T) string {
			return signRaw(t, map[string]any{"typ": "dpop+jwt", "alg": "RS256", "jwk": rsaJWK(evil.rsa)},
				map[string]any{"jti": pairingtest.NewJTI(), "htm": "POST", "htu": htu, "iat": s.clock.Now().Unix(), "nonce": nonce}, rsaSigner(t, evil.rsa))
		}), status: 400, code: "invalid_dpop_proof", reason: "unsupported alg"},
		{name: "P-384 jwk, ES384", dpop: one(func(t *testing.T) string {
			return signRaw(t, map[string]any{"typ": "dpop+jwt", "alg": "ES384", "jwk": p384JWK(t, evil.p384)},
				map[string]any{"jti": pairingtest.NewJTI(), "htm": "POST", "htu": htu, "iat": s.clock.Now().Unix(), "nonce": nonce}, ecSigner(t, evil.p384, crypto.SHA384))
		}), status: 400, code: "invalid_dpop_proof", reason: "unsupported alg"},
		{name: "P-384 jwk under alg ES256", dpop: one(func(t *testing.T) string {
			return signRaw(t, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": p384JWK(t, evil.p384)},
				map[string]any{"jti": pairingtest.NewJTI(), "htm": "POST", "htu": htu, "iat": s.clock.Now().Unix(), "nonce": nonce}, ecSigner(t, evil.p384, crypto.SHA256))
		}), status: 400, code: "invalid_dpop_proof", reason: "unsupported curve"},
		{name: "jku to the attacker's key set, no jwk", dpop: one(func(t *testing.T) string {
			return signProof(t, evil.device, "POST", htu, nonce, "", s.clock.Now(), func(h, _ map[string]any) {
				delete(h, "jwk")
				h["jku"], h["kid"] = evil.srv.URL, evil.kid
			})
		}), status: 400, code: "invalid_dpop_proof", reason: "missing jwk"},
		{name: "device's jwk, attacker's signature, jku and x5u to the attacker", dpop: one(func(t *testing.T) string {
			return signProof(t, evil.device, "POST", htu, nonce, "", s.clock.Now(), func(h, _ map[string]any) {
				h["jwk"], h["jku"], h["x5u"], h["kid"] = jwkOf(tab.Key), evil.srv.URL, evil.srv.URL, evil.kid
			})
		}), status: 400, code: "invalid_dpop_proof", reason: "bad signature"},
		{name: "an access token as the proof", dpop: func(*testing.T) []string { return []string{tab.Token} }, status: 400, code: "invalid_dpop_proof", reason: "wrong typ"},
		{name: "replayed proof", dpop: one(func(t *testing.T) string {
			p := proof(t, nil)
			wantAnswer(t, postDPoP(t, s, "/api/token", []string{p}, body), 200, "", "")
			return p
		}), status: 400, code: "invalid_dpop_proof", reason: "replayed jti"},

		{name: "1 MiB proof", dpop: func(*testing.T) []string { return []string{strings.Repeat("A", 1<<20)} }, status: 400, code: "invalid_dpop_proof", reason: "proof too large"},
		{name: "a proof of a million dots", dpop: func(*testing.T) []string { return []string{strings.Repeat(".", 1_000_000)} }, status: 400, code: "invalid_dpop_proof", reason: "proof too large"},
		{name: "1 MiB body", dpop: edited(nil), body: []byte(`{"device_id":"` + strings.Repeat("A", 1<<20) + `"}`), status: 413, code: "too_large", reason: "too large"},

		{name: "no nonce", dpop: edited(func(_, c map[string]any) { delete(c, "nonce") }), status: 400, code: "use_dpop_nonce", reason: "nonce"},
		{name: "nonce of a server with another signing key", dpop: edited(func(_, c map[string]any) { c["nonce"] = other.a.Nonces().Nonce() }), status: 400, code: "use_dpop_nonce", reason: "nonce"},
		{name: "a WebSocket challenge as nonce", dpop: edited(func(_, c map[string]any) { c["nonce"] = challenge() }), status: 400, code: "use_dpop_nonce", reason: "nonce"},

		{name: "another key's proof for this device", dpop: one(func(t *testing.T) string {
			return signProof(t, evil.device, "POST", htu, nonce, "", s.clock.Now(), nil)
		}), status: 401, code: "invalid_token", reason: "pair"},
		{name: "unknown device", dpop: edited(nil), body: []byte(`{"device_id":"dev_` + strings.Repeat("Z", 20) + `"}`), status: 401, code: "invalid_token", reason: "pair"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proofs := tt.dpop(t)
			b := body
			if tt.body != nil {
				b = tt.body
			}
			a := postDPoP(t, s, "/api/token", proofs, b)
			wantAnswer(t, a, tt.status, tt.code, tt.reason)
			if n := a.header.Get("DPoP-Nonce"); !s.a.Nonces().Valid(n) {
				t.Fatalf("answer's DPoP-Nonce %q is not a valid nonce", n)
			}
			if tt.code != "" {
				mustNotEcho(t, "refusal", string(a.raw), append(proofs, tab.Token, string(b))...)
			}
			sent = append(sent, proofs...)
		})
	}
	if n := evil.hits.Load(); n != 0 {
		t.Errorf("the attacker's key server got %d requests, want 0", n)
	}

	// The refusals that are audited are, and no audit record holds what was sent.
	s.auditHas(t, "token_refused", func(r broker.AuditRecord) bool { return r.DeviceID == tab.DeviceID })
	s.auditHas(t, "token_refused", func(r broker.AuditRecord) bool { return strings.HasPrefix(r.DeviceID, "dev_ZZZZ") })
	recs, err := s.b.AuditList(bg, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		text, _ := json.Marshal(r)
		mustNotEcho(t, "audit record", string(text), append(sent, tab.Token)...)
	}
}

// TestPairEndpointRefusesForgedProofs: a bad proof on /api/pair is refused before the PIN
// is looked at, so it neither uses up the PIN nor reveals anything about it.
func TestPairEndpointRefusesForgedProofs(t *testing.T) {
	s := startService(t, nil, nil, func(c *pairing.Config) { c.PairBurst = 100 })
	other := startService(t, nil, nil)
	key := pairingtest.MustDeviceKey(t)
	htu := s.URL + "/api/pair"
	nonce := s.a.Nonces().Nonce()
	pin := s.pin(t, "lobby", false)
	const wrongPIN = "ZXZX-QRQR"
	body := []byte(`{"feed":"lobby","pin":"` + pin + `","name":"Lobby left"}`)
	var sent []string

	proof := func(t *testing.T, edit func(h, c map[string]any)) string {
		return signProof(t, key, "POST", htu, nonce, "", s.clock.Now(), edit)
	}
	edited := func(edit func(h, c map[string]any)) func(t *testing.T) []string {
		return func(t *testing.T) []string { return []string{proof(t, edit)} }
	}
	tests := []struct {
		name   string
		dpop   func(t *testing.T) []string
		status int
		code   string
		reason string
	}{
		{name: "no DPoP header", dpop: func(*testing.T) []string { return nil }, status: 400, code: "invalid_dpop_proof", reason: "exactly one"},
		{name: "two DPoP headers", dpop: func(t *testing.T) []string { return []string{proof(t, nil), proof(t, nil)} }, status: 400, code: "invalid_dpop_proof", reason: "exactly one"},
		{name: "a proof made for /api/token", dpop: edited(func(_, c map[string]any) { c["htu"] = s.URL + "/api/token" }), status: 400, code: "invalid_dpop_proof", reason: "wrong htu"},
		{name: "htu of another host", dpop: edited(func(_, c map[string]any) { c["htu"] = "http://evil.example/api/pair" }), status: 400, code: "invalid_dpop_proof", reason: "wrong htu"},
		{name: "wrong htm", dpop: edited(func(_, c map[string]any) { c["htm"] = "PUT" }), status: 400, code: "invalid_dpop_proof", reason: "wrong htm"},
		{name: "stale iat", dpop: edited(func(_, c map[string]any) { c["iat"] = s.clock.Now().Add(-time.Hour).Unix() }), status: 400, code: "invalid_dpop_proof", reason: "iat too old"},
		{name: "no typ", dpop: edited(func(h, _ map[string]any) { delete(h, "typ") }), status: 400, code: "invalid_dpop_proof", reason: "wrong typ"},
		{name: "jwk with the private d", dpop: edited(func(h, _ map[string]any) {
			j := jwkOf(key)
			j["d"] = enc.EncodeToString(key.PrivateKey().D.FillBytes(make([]byte, 32)))
			h["jwk"] = j
		}), status: 400, code: "invalid_dpop_proof", reason: "private key in jwk"},
		{name: "1 MiB proof", dpop: func(*testing.T) []string { return []string{strings.Repeat("A", 1<<20)} }, status: 400, code: "invalid_dpop_proof", reason: "proof too large"},
		{name: "nonce of a server with another signing key", dpop: edited(func(_, c map[string]any) { c["nonce"] = other.a.Nonces().Nonce() }), status: 400, code: "use_dpop_nonce", reason: "nonce"},
		{name: "replayed proof", dpop: func(t *testing.T) []string {
			p := proof(t, nil)
			// Its first use reaches the PIN check, with a wrong PIN.
			a := postDPoP(t, s, "/api/pair", []string{p}, []byte(`{"feed":"lobby","pin":"`+wrongPIN+`"}`))
			wantAnswer(t, a, 401, "invalid_pin", "PIN")
			mustNotEcho(t, "invalid_pin answer", string(a.raw), wrongPIN, pairing.NormalizePIN(wrongPIN), p)
			return []string{p}
		}, status: 400, code: "invalid_dpop_proof", reason: "replayed jti"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proofs := tt.dpop(t)
			a := postDPoP(t, s, "/api/pair", proofs, body)
			wantAnswer(t, a, tt.status, tt.code, tt.reason)
			mustNotEcho(t, "refusal", string(a.raw), append(proofs, pin, pairing.NormalizePIN(pin))...)
			sent = append(sent, proofs...)
		})
	}

	// None of that used up the PIN: the genuine call pairs.
	p := proof(t, nil)
	a := postDPoP(t, s, "/api/pair", []string{p}, body)
	wantAnswer(t, a, http.StatusCreated, "", "")
	if a.body["feed"] != "lobby" || a.body["token_type"] != "DPoP" {
		t.Fatalf("pair answer %s", a.raw)
	}
	sent = append(sent, p, pin, pairing.NormalizePIN(pin), wrongPIN, pairing.NormalizePIN(wrongPIN))
	if tok, _ := a.body["access_token"].(string); tok != "" {
		sent = append(sent, tok)
	}

	s.auditHas(t, "pair_fail", func(r broker.AuditRecord) bool { return r.Feed == "lobby" })
	s.auditHas(t, "pair_ok", func(r broker.AuditRecord) bool { return r.Feed == "lobby" })
	recs, err := s.b.AuditList(bg, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		text, _ := json.Marshal(r)
		mustNotEcho(t, "audit record", string(text), sent...)
	}
}

// TestAuthenticateRefusesForgeries: the WebSocket path. Each forged token or proof is
// refused with ErrCredentialInvalid (4401) or ErrDeviceRevoked (4403), for the reason
// it was forged for, and the error never carries what was sent.
func TestAuthenticateRefusesForgeries(t *testing.T) {
	s := startService(t, nil, nil)
	tab := s.paired(t, "lobby")
	peer := s.paired(t, "lobby") // another registered device of the same feed
	evil := newAttackerKit(t)
	pub := publicKeyMaterial(t, s)
	ws := wsURLOf(s)

	type attempt struct{ token, proof, nonce string }
	// genuine is tab's token with a proof by key over a fresh challenge.
	proofBy := func(t *testing.T, key *pairingtest.DeviceKey, token string, edit func(h, c map[string]any)) attempt {
		c := challenge()
		return attempt{token, signProof(t, key, "GET", ws, c, token, s.clock.Now(), edit), c}
	}
	genuine := func(t *testing.T, token string, edit func(h, c map[string]any)) attempt {
		return proofBy(t, tab.Key, token, edit)
	}
	withProof := func(edit func(h, c map[string]any)) func(t *testing.T) attempt {
		return func(t *testing.T) attempt { return genuine(t, tab.Token, edit) }
	}
	withToken := func(token func(t *testing.T) string) func(t *testing.T) attempt {
		return func(t *testing.T) attempt { return genuine(t, token(t), nil) }
	}
	forged := func(header map[string]any, sign func(*testing.T) func([]byte) []byte) func(t *testing.T) attempt {
		return withToken(func(t *testing.T) string { return signRaw(t, header, unix(tokenClaims(s, tab)), sign(t)) })
	}
	ourHeader := func(alg string) map[string]any { return map[string]any{"alg": alg, "typ": "at+jwt", "kid": pub.kid} }
	hs256 := func(key []byte) func(*testing.T) func([]byte) []byte {
		return func(*testing.T) func([]byte) []byte { return hmacSigner(key) }
	}
	byAttacker := func(t *testing.T) func([]byte) []byte { return ecSigner(t, evil.p256, crypto.SHA256) }
	algNone := func(keepSig bool) func(t *testing.T) attempt {
		return withToken(func(t *testing.T) string {
			parts := strings.Split(tab.Token, ".")
			h, _ := json.Marshal(ourHeader("none"))
			tok := enc.EncodeToString(h) + "." + parts[1] + "."
			if keepSig {
				tok += parts[2]
			}
			return tok
		})
	}
	rawProof := func(header map[string]any, sign func(*testing.T) func([]byte) []byte) func(t *testing.T) attempt {
		return func(t *testing.T) attempt {
			c := challenge()
			claims := map[string]any{"jti": pairingtest.NewJTI(), "htm": "GET", "htu": ws, "iat": s.clock.Now().Unix(), "nonce": c, "ath": pairingtest.ATH(tab.Token)}
			return attempt{tab.Token, signRaw(t, header, claims, sign(t)), c}
		}
	}

	tests := []struct {
		name   string
		try    func(t *testing.T) attempt
		want   error // nil: accepted
		reason string
	}{
		{name: "genuine: the issued token", try: withProof(nil)},
		{name: "genuine: a token signed by the server's key through jwx", try: withToken(func(t *testing.T) string { return serverSigned(t, s, tokenClaims(s, tab)) })},
		{name: "genuine: jku and x5u on token and proof are ignored", try: func(t *testing.T) attempt {
			h := ourHeader("ES256")
			h["jku"], h["x5u"] = evil.srv.URL, evil.srv.URL
			tok := signRaw(t, h, unix(tokenClaims(s, tab)), ecSigner(t, s.keys[0], crypto.SHA256))
			return genuine(t, tok, func(h, _ map[string]any) { h["jku"], h["x5u"] = evil.srv.URL, evil.srv.URL })
		}},

		// Tokens.
		{name: "alg none, signature kept", try: algNone(true), want: broker.ErrCredentialInvalid, reason: "unsupported alg"},
		{name: "alg none, signature stripped", try: algNone(false), want: broker.ErrCredentialInvalid, reason: "unsupported alg"},
		{name: "HS256 keyed with the JWKS x||y", try: forged(ourHeader("HS256"), hs256(pub.xy)), want: broker.ErrCredentialInvalid, reason: "unsupported alg"},
		{name: "HS256 keyed with the SEC1 public point", try: forged(ourHeader("HS256"), hs256(pub.sec1)), want: broker.ErrCredentialInvalid, reason: "unsupported alg"},
		{name: "HS256 keyed with the JWKS document", try: forged(ourHeader("HS256"), hs256(pub.jwksText)), want: broker.ErrCredentialInvalid, reason: "unsupported alg"},
		{name: "kid of an unknown key", try: forged(map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": evil.kid}, byAttacker), want: broker.ErrCredentialInvalid, reason: "unknown kid"},
		{name: "the server's kid, another P-256 key's signature", try: forged(ourHeader("ES256"), byAttacker), want: broker.ErrCredentialInvalid, reason: "bad signature"},
		{name: "jku to the attacker's key set", try: forged(map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": evil.kid, "jku": evil.srv.URL}, byAttacker), want: broker.ErrCredentialInvalid, reason: "unknown kid"},
		{name: "x5u to the attacker, the server's kid", try: forged(map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": pub.kid, "x5u": evil.srv.URL}, byAttacker), want: broker.ErrCredentialInvalid, reason: "bad signature"},
		{name: "expired", try: func(t *testing.T) attempt {
			tok := tab.Token // issued at pairing, for 10 minutes, with 30 s leeway
			s.clock.Advance(11 * time.Minute)
			t.Cleanup(func() { s.clock.Advance(-11 * time.Minute) })
			return genuine(t, tok, nil)
		}, want: broker.ErrCredentialInvalid, reason: "token expired"},
		{name: "nbf in the future", try: withToken(func(t *testing.T) string {
			return serverSigned(t, s, with(tokenClaims(s, tab), "nbf", s.clock.Now().Add(5*time.Minute)))
		}), want: broker.ErrCredentialInvalid, reason: "token not yet valid"},
		{name: "no exp", try: withToken(func(t *testing.T) string { return serverSigned(t, s, without(tokenClaims(s, tab), "exp")) }), want: broker.ErrCredentialInvalid, reason: "missing required claim"},
		{name: "wrong aud", try: withToken(func(t *testing.T) string {
			return serverSigned(t, s, with(tokenClaims(s, tab), "aud", "kioskfeed-admin"))
		}), want: broker.ErrCredentialInvalid, reason: "wrong audience"},
		{name: "wrong iss", try: withToken(func(t *testing.T) string {
			return serverSigned(t, s, with(tokenClaims(s, tab), "iss", "http://evil.example"))
		}), want: broker.ErrCredentialInvalid, reason: "wrong issuer"},
		{name: "a DPoP proof as the access token", try: withToken(func(t *testing.T) string {
			return signProof(t, tab.Key, "GET", ws, challenge(), "", s.clock.Now(), nil)
		}), want: broker.ErrCredentialInvalid, reason: "wrong typ"},
		{name: "1 MiB token", try: withToken(func(*testing.T) string { return strings.Repeat("A", 1<<20) }), want: broker.ErrCredentialInvalid, reason: "token too large"},
		{name: "a token of a million dots", try: withToken(func(*testing.T) string { return strings.Repeat(".", 1_000_000) }), want: broker.ErrCredentialInvalid, reason: "token too large"},
		{name: "token for a device never registered", try: withToken(func(t *testing.T) string {
			return serverSigned(t, s, with(tokenClaims(s, tab), "sub", "dev_"+strings.Repeat("Z", 20)))
		}), want: broker.ErrDeviceRevoked, reason: "not registered"},
		{name: "token for the device's id with another feed", try: withToken(func(t *testing.T) string {
			return serverSigned(t, s, with(tokenClaims(s, tab), "feed", "kitchen"))
		}), want: broker.ErrCredentialInvalid, reason: "does not match the device record"},

		// Proofs.
		{name: "the token with another registered device's proof", try: func(t *testing.T) attempt { return proofBy(t, peer.Key, tab.Token, nil) },
			want: broker.ErrCredentialInvalid, reason: "not the token's key"},
		{name: "the token with an attacker's proof", try: func(t *testing.T) attempt { return proofBy(t, evil.device, tab.Token, nil) },
			want: broker.ErrCredentialInvalid, reason: "not the token's key"},
		// A proof is bound to its socket's challenge, which is never made again: replayed
		// on another socket it meets another challenge.
		{name: "proof replayed on another socket", try: func(t *testing.T) attempt {
			a := genuine(t, tab.Token, nil)
			if _, err := s.a.Authenticate(bg, a.token, a.proof, a.nonce, ws); err != nil {
				t.Fatalf("first use of the proof: %v, want it accepted", err)
			}
			a.nonce = challenge()
			return a
		}, want: broker.ErrCredentialInvalid, reason: "invalid nonce"},
		{name: "wrong htm", try: withProof(func(_, c map[string]any) { c["htm"] = "POST" }), want: broker.ErrCredentialInvalid, reason: "wrong htm"},
		{name: "htu of another path", try: withProof(func(_, c map[string]any) { c["htu"] = strings.TrimSuffix(ws, "/ws") + "/api/token" }), want: broker.ErrCredentialInvalid, reason: "wrong htu"},
		{name: "htu of another host", try: withProof(func(_, c map[string]any) { c["htu"] = "ws://evil.example/ws" }), want: broker.ErrCredentialInvalid, reason: "wrong htu"},
		{name: "htu with http scheme", try: withProof(func(_, c map[string]any) { c["htu"] = s.URL + "/ws" }), want: broker.ErrCredentialInvalid, reason: "wrong htu"},
		{name: "htu with wss scheme", try: withProof(func(_, c map[string]any) { c["htu"] = "wss" + strings.TrimPrefix(ws, "ws") }), want: broker.ErrCredentialInvalid, reason: "wrong htu"},
		{name: "ath of another token", try: withProof(func(_, c map[string]any) { c["ath"] = pairingtest.ATH(peer.Token) }), want: broker.ErrCredentialInvalid, reason: "wrong ath"},
		{name: "no ath", try: withProof(func(_, c map[string]any) { delete(c, "ath") }), want: broker.ErrCredentialInvalid, reason: "missing ath"},
		{name: "iat beyond the skew in the past", try: withProof(func(_, c map[string]any) { c["iat"] = s.clock.Now().Add(-11 * time.Minute).Unix() }), want: broker.ErrCredentialInvalid, reason: "iat too old"},
		{name: "iat beyond the skew in the future", try: withProof(func(_, c map[string]any) { c["iat"] = s.clock.Now().Add(11 * time.Minute).Unix() }), want: broker.ErrCredentialInvalid, reason: "iat in the future"},
		{name: "no typ", try: withProof(func(h, _ map[string]any) { delete(h, "typ") }), want: broker.ErrCredentialInvalid, reason: "wrong typ"},
		{name: "jwk with the private d", try: withProof(func(h, _ map[string]any) {
			j := jwkOf(tab.Key)
			j["d"] = enc.EncodeToString(tab.Key.PrivateKey().D.FillBytes(make([]byte, 32)))
			h["jwk"] = j
		}), want: broker.ErrCredentialInvalid, reason: "private key in jwk"},
		{name: "RSA jwk, RS256", try: rawProof(map[string]any{"typ": "dpop+jwt", "alg": "RS256", "jwk": rsaJWK(evil.rsa)},
			func(t *testing.T) func([]byte) []byte { return rsaSigner(t, evil.rsa) }), want: broker.ErrCredentialInvalid, reason: "unsupported alg"},
		{name: "RSA jwk under alg ES256", try: rawProof(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": rsaJWK(evil.rsa)}, byAttacker),
			want: broker.ErrCredentialInvalid, reason: "unsupported key type"},
		{name: "P-384 jwk, ES384", try: rawProof(map[string]any{"typ": "dpop+jwt", "alg": "ES384", "jwk": p384JWK(t, evil.p384)},
			func(t *testing.T) func([]byte) []byte { return ecSigner(t, evil.p384, crypto.SHA384) }), want: broker.ErrCredentialInvalid, reason: "unsupported alg"},
		{name: "jku to the attacker's key set, no jwk", try: func(t *testing.T) attempt {
			return proofBy(t, evil.device, tab.Token, func(h, _ map[string]any) { delete(h, "jwk"); h["jku"], h["kid"] = evil.srv.URL, evil.kid })
		}, want: broker.ErrCredentialInvalid, reason: "missing jwk"},
		{name: "device's jwk, attacker's signature, jku and x5u to the attacker", try: func(t *testing.T) attempt {
			return proofBy(t, evil.device, tab.Token, func(h, _ map[string]any) {
				h["jwk"], h["jku"], h["x5u"], h["kid"] = jwkOf(tab.Key), evil.srv.URL, evil.srv.URL, evil.kid
			})
		}, want: broker.ErrCredentialInvalid, reason: "bad signature"},
		{name: "no proof", try: func(*testing.T) attempt { return attempt{tab.Token, "", challenge()} }, want: broker.ErrCredentialInvalid, reason: "malformed proof"},
		{name: "1 MiB proof", try: func(*testing.T) attempt {
			return attempt{tab.Token, strings.Repeat("A", 1<<20), challenge()}
		}, want: broker.ErrCredentialInvalid, reason: "proof too large"},
		{name: "a proof of a million dots", try: func(*testing.T) attempt {
			return attempt{tab.Token, strings.Repeat(".", 1_000_000), challenge()}
		}, want: broker.ErrCredentialInvalid, reason: "proof too large"},
		{name: "the challenge reused against another challenge", try: func(t *testing.T) attempt {
			a := genuine(t, tab.Token, nil)
			a.nonce = challenge() // the connection's challenge is not the one signed
			return a
		}, want: broker.ErrCredentialInvalid, reason: "invalid nonce"},
		{name: "a DPoP-Nonce of the HTTP endpoints in place of the challenge", try: func(t *testing.T) attempt {
			a := genuine(t, tab.Token, func(_, c map[string]any) { c["nonce"] = s.a.Nonces().Nonce() })
			return a
		}, want: broker.ErrCredentialInvalid, reason: "invalid nonce"},
		{name: "no nonce", try: withProof(func(_, c map[string]any) { delete(c, "nonce") }), want: broker.ErrCredentialInvalid, reason: "missing nonce"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.try(t)
			id, err := s.a.Authenticate(bg, a.token, a.proof, a.nonce, ws)
			if tt.want == nil {
				if err != nil || id.DeviceID != tab.DeviceID || id.Feed != "lobby" {
					t.Fatalf("Authenticate = %+v, %v; want %s on lobby", id, err, tab.DeviceID)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Authenticate error = %v, want %v", err, tt.want)
			}
			for _, other := range []error{broker.ErrCredentialInvalid, broker.ErrDeviceRevoked} {
				if other != tt.want && errors.Is(err, other) {
					t.Fatalf("Authenticate error %v also matches %v", err, other)
				}
			}
			if id != (broker.Identity{}) {
				t.Fatalf("refusal came with identity %+v", id)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("Authenticate error = %q, want the reason %q", err, tt.reason)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("error is %d bytes long, want a short reason", len(err.Error()))
			}
			mustNotEcho(t, "error", err.Error(), a.token, a.proof, tab.Token)
		})
	}
	if n := evil.hits.Load(); n != 0 {
		t.Errorf("the attacker's key server got %d requests, want 0", n)
	}
}

// TestNonceOfAnotherKeyGetsAFreshOne: a nonce made by a deployment with another signing
// key is answered use_dpop_nonce with one of ours, and the one retry with it works.
func TestNonceOfAnotherKeyGetsAFreshOne(t *testing.T) {
	s := startService(t, nil, nil)
	other := startService(t, nil, nil)
	tab := s.paired(t, "lobby")
	foreign := other.a.Nonces().Nonce()
	if s.a.Nonces().Valid(foreign) {
		t.Fatal("a nonce made with another signing key is valid here")
	}
	p := signProof(t, tab.Key, "POST", s.URL+"/api/token", foreign, "", s.clock.Now(), nil)
	a := postDPoP(t, s, "/api/token", []string{p}, []byte(`{"device_id":"`+tab.DeviceID+`"}`))
	wantAnswer(t, a, http.StatusBadRequest, "use_dpop_nonce", "nonce")
	fresh := a.header.Get("DPoP-Nonce")
	if !s.a.Nonces().Valid(fresh) || fresh == foreign {
		t.Fatalf("DPoP-Nonce %q: want a nonce of this server", fresh)
	}
	// The client's one retry, with the nonce it was given, works.
	p = signProof(t, tab.Key, "POST", s.URL+"/api/token", fresh, "", s.clock.Now(), nil)
	wantAnswer(t, postDPoP(t, s, "/api/token", []string{p}, []byte(`{"device_id":"`+tab.DeviceID+`"}`)), http.StatusOK, "", "")
}
