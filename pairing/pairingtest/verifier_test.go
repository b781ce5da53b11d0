package pairingtest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing/dpop"
)

// TestProofAcceptedByServerVerifier signs WebSocket and HTTP proofs with a DeviceKey,
// both the client's own (no jti chosen) and one with a chosen jti, and has the server's
// own verifier (with its replay cache on a real NATS KV bucket) check them: they must
// be accepted, and the jkt it derives must be the key's JKT, the thumbprint the server
// computes. (It was internal/devkey's test, whose key is now the client's.)
func TestProofAcceptedByServerVerifier(t *testing.T) {
	n := brokertest.StartNATS(t)
	nc, err := nats.Connect(n.URL(), nats.Timeout(10*time.Second)) // 2 s fails on a loaded machine
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
	k := MustDeviceKey(t)

	ws := k.MustProof(t, ProofParams{Method: "GET", URL: "ws://kiosk.example/ws", Nonce: "challenge-1", AccessToken: "tok"})
	jkt, err := v.Verify(ctx, ws, dpop.ProofWant{Method: "GET", URL: "ws://kiosk.example/ws", Nonce: "challenge-1", AccessToken: "tok"})
	if err != nil {
		t.Fatalf("WebSocket proof refused: %v", err)
	}
	if jkt != k.JKT() {
		t.Errorf("verifier's jkt %q, key's JKT %q", jkt, k.JKT())
	}
	postWant := dpop.ProofWant{Method: "POST", URL: "http://kiosk.example/api/pair", NonceValid: func(n string) bool { return n == "server-nonce" }}
	for _, jti := range []string{"", NewJTI()} {
		post := k.MustProof(t, ProofParams{Method: "POST", URL: "http://kiosk.example/api/pair", Nonce: "server-nonce", JTI: jti})
		if _, err := v.Verify(ctx, post, postWant); err != nil {
			t.Errorf("HTTP proof (jti %q) refused: %v", jti, err)
		}
		// The same proof twice is a replay: the jti is recorded.
		if _, err := v.Verify(ctx, post, postWant); err == nil {
			t.Errorf("the same HTTP proof (jti %q) was accepted twice", jti)
		}
	}
	// The wrong token's ath is refused: the ath is really bound (a fresh proof, so
	// that it is not refused as a replay instead).
	ws = k.MustProof(t, ProofParams{Method: "GET", URL: "ws://kiosk.example/ws", Nonce: "challenge-1", AccessToken: "tok"})
	if _, err := v.Verify(ctx, ws, dpop.ProofWant{Method: "GET", URL: "ws://kiosk.example/ws", Nonce: "challenge-1", AccessToken: "other"}); err == nil {
		t.Error("a proof for token tok was accepted for another token")
	}

	want, err := dpop.Thumbprint(&k.PrivateKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if k.JKT() != want {
		t.Errorf("JKT %q, dpop.Thumbprint %q", k.JKT(), want)
	}
}
