package devkey

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing/dpop"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// TestProofAcceptedByServerVerifier signs WebSocket and HTTP proofs with a devkey and
// has the server's own verifier (with its replay cache on a real NATS KV bucket) check
// them: they must be accepted, and the jkt it derives must be the key's JKT, the
// thumbprint pairing computes and the one pairingtest computes for the same key.
func TestProofAcceptedByServerVerifier(t *testing.T) {
	n := brokertest.StartNATS(t)
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, dpop.ReplayBucketConfig())
	if err != nil {
		t.Fatal(err)
	}
	v, err := dpop.NewVerifier(dpop.Config{Replay: dpop.NewKVReplayCache(kv, nil)})
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}

	ws, err := k.Proof("GET", "ws://kiosk.example/ws", "challenge-1", "tok", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := v.Verify(ctx, ws, dpop.ProofWant{Method: "GET", URL: "ws://kiosk.example/ws", Nonce: "challenge-1", AccessToken: "tok"})
	if err != nil {
		t.Fatalf("WebSocket proof refused: %v", err)
	}
	if jkt != k.JKT() {
		t.Errorf("verifier's jkt %q, key's JKT %q", jkt, k.JKT())
	}
	post, err := k.Proof("POST", "http://kiosk.example/api/pair", "server-nonce", "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, post, dpop.ProofWant{Method: "POST", URL: "http://kiosk.example/api/pair", NonceValid: func(n string) bool { return n == "server-nonce" }}); err != nil {
		t.Errorf("HTTP proof refused: %v", err)
	}
	// The same proof twice is a replay: the jti is fresh per proof and recorded.
	if _, err := v.Verify(ctx, post, dpop.ProofWant{Method: "POST", URL: "http://kiosk.example/api/pair", NonceValid: func(n string) bool { return n == "server-nonce" }}); err == nil {
		t.Error("the same HTTP proof was accepted twice")
	}
	// The wrong token's ath is refused: the ath is really bound.
	if _, err := v.Verify(ctx, ws, dpop.ProofWant{Method: "GET", URL: "ws://kiosk.example/ws", Nonce: "challenge-1", AccessToken: "other"}); err == nil {
		t.Error("a proof for token tok was accepted for another token")
	}

	want, err := dpop.Thumbprint(&k.priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if k.JKT() != want {
		t.Errorf("JKT %q, dpop.Thumbprint %q", k.JKT(), want)
	}
	pt, err := pairingtest.FromPrivateKey(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	if pt.JKT() != k.JKT() {
		t.Errorf("JKT %q, pairingtest's %q", k.JKT(), pt.JKT())
	}
}

// TestProofShape checks the bytes against what the PWA sends: header members typ,
// alg and a jwk of kty, crv, x, y only; a 64-byte r‖s signature over the input.
func TestProofShape(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	iat := time.Unix(1_800_000_000, 0)
	proof, err := k.Proof("GET", "wss://kiosk.example/ws", "n0", "tok", iat)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}
	dec := base64.RawURLEncoding
	raw, _ := dec.DecodeString(parts[0])
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(raw, &hdr); err != nil {
		t.Fatal(err)
	}
	if len(hdr) != 3 || string(hdr["typ"]) != `"dpop+jwt"` || string(hdr["alg"]) != `"ES256"` {
		t.Errorf("header = %s", raw)
	}
	var jwk map[string]string
	if err := json.Unmarshal(hdr["jwk"], &jwk); err != nil || len(jwk) != 4 || jwk["kty"] != "EC" || jwk["crv"] != "P-256" {
		t.Errorf("jwk = %s", hdr["jwk"])
	}
	raw, _ = dec.DecodeString(parts[1])
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if c["htm"] != "GET" || c["htu"] != "wss://kiosk.example/ws" || c["nonce"] != "n0" || c["iat"] != float64(iat.Unix()) || c["ath"] != pairingtest.ATH("tok") {
		t.Errorf("claims = %s", raw)
	}
	if jti, _ := c["jti"].(string); len(jti) != 22 {
		t.Errorf("jti %q: want 16 random bytes, base64url", jti)
	}
	sig, err := dec.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature is %d bytes (%v), want 64", len(sig), err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(&k.priv.PublicKey, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Error("signature does not verify")
	}
}
