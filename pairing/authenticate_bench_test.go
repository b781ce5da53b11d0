package pairing_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// BenchmarkAuthenticate is the server's share of a WebSocket handshake that pairing
// does (issue 15): Authenticate with a real access token and a real DPoP proof over a
// challenge, against a real Authority on an embedded JetStream, the device found in the
// registry's mirror. Two ES256 verifications are its floor (BenchmarkES256Floor); what
// is above it is parsing, hashing and allocation.
func BenchmarkAuthenticate(b *testing.B) {
	a, token, proof, nonce, ws := authenticateFixture(b)
	ctx := context.Background()
	if _, err := a.Authenticate(ctx, token, proof, nonce, ws); err != nil {
		b.Fatalf("Authenticate: %v", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(ctx, token, proof, nonce, ws); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateParallel is BenchmarkAuthenticate from as many goroutines as
// GOMAXPROCS, as a connect storm calls it.
func BenchmarkAuthenticateParallel(b *testing.B) {
	a, token, proof, nonce, ws := authenticateFixture(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Authenticate(ctx, token, proof, nonce, ws); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// authenticateFixture pairs one tablet with a real Authority behind a loopback HTTP
// server and signs the proof of its WebSocket auth message over a challenge. A WebSocket
// proof's jti is not recorded (the challenge makes it single-use), so the one proof
// verifies on every call.
func authenticateFixture(b *testing.B) (a *pairing.Authority, token, proof, nonce, ws string) {
	b.Helper()
	br := brokertest.New(b)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	a, err = pairing.New(context.Background(), pairing.Config{
		PublicURL: "http://" + srv.Listener.Addr().String(), SigningKeys: []*ecdsa.PrivateKey{k},
	}, br)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(a.Close)
	mux := http.NewServeMux()
	a.Register(mux)
	srv.Config.Handler = httpx.JSONErrors(mux)
	srv.Start()
	b.Cleanup(srv.Close)

	pin, err := a.IssuePIN(context.Background(), "lobby", 5*time.Minute, false)
	if err != nil {
		b.Fatal(err)
	}
	tab, err := pairingtest.NewTablet(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	tab.HTTP = srv.Client()
	if err := tab.Pair(context.Background(), "lobby", pin.PIN, "bench tablet"); err != nil {
		b.Fatalf("pair: %v", err)
	}
	ws = "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	nonce = challenge()
	if proof, err = tab.WSProof(ws, nonce); err != nil {
		b.Fatal(err)
	}
	return a, tab.Token, proof, nonce, ws
}

// BenchmarkES256Floor is the cryptography Authenticate cannot skip: two P-256
// verifications through crypto/ecdsa, the SHA-256 of their signing inputs included.
func BenchmarkES256Floor(b *testing.B) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 600)
	digest := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, k, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for range 2 {
			d := sha256.Sum256(msg)
			if !ecdsa.VerifyASN1(&k.PublicKey, d[:], sig) {
				b.Fatal("signature refused")
			}
		}
	}
}
