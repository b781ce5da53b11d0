package pairing_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

func TestNonceDance(t *testing.T) {
	s := startService(t, nil, nil)
	tab := s.tablet(t)
	// A first call without a nonce is answered use_dpop_nonce with one to use.
	resp, err := tab.Post(bg, "/api/pair", []byte(`{"feed":"lobby","pin":"BCDF-GHJK"}`))
	if err != nil {
		t.Fatal(err)
	}
	a := readAnswer(t, resp)
	if a.status != 400 || a.body["error"] != "use_dpop_nonce" || a.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("no nonce: %d %s (DPoP-Nonce %q), want 400 use_dpop_nonce with a nonce", a.status, a.raw, a.header.Get("DPoP-Nonce"))
	}
	// The retry with it reaches the PIN check (and every answer carries a nonce).
	resp, _ = tab.Post(bg, "/api/pair", []byte(`{"feed":"lobby","pin":"BCDF-GHJK"}`))
	a = readAnswer(t, resp)
	if a.status != 401 || a.body["error"] != "invalid_pin" || a.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("with nonce, wrong PIN: %d %s, want 401 invalid_pin with a DPoP-Nonce", a.status, a.raw)
	}
}

func TestBruteForceVoidsTheFeedsPINs(t *testing.T) {
	s := startService(t, nil, nil, func(c *pairing.Config) { c.PairBurst = 100 })
	good := s.pin(t, "lobby", false)
	other := s.pin(t, "kitchen", false)
	for i := range 5 {
		wantAPIError(t, s.tablet(t).Pair(bg, "lobby", "BBBB-BBB"+string("BCDFG"[i]), ""), 401, "invalid_pin")
	}
	// The fifth wrong guess voided every open PIN of lobby: the right one fails now.
	wantAPIError(t, s.tablet(t).Pair(bg, "lobby", good, ""), 401, "invalid_pin")
	// Other feeds are untouched, and a new PIN for lobby works.
	if err := s.tablet(t).Pair(bg, "kitchen", other, ""); err != nil {
		t.Fatalf("kitchen PIN after lobby lockout: %v", err)
	}
	if err := s.tablet(t).Pair(bg, "lobby", s.pin(t, "lobby", false), ""); err != nil {
		t.Fatalf("new lobby PIN after lockout: %v", err)
	}
	fail := s.auditHas(t, "pair_fail", nil)
	if fail.Feed != "lobby" || strings.Contains(fail.Detail, "BBBB") {
		t.Fatalf("pair_fail record %+v: want feed lobby and no PIN in it", fail)
	}
}

func TestPairRateLimit(t *testing.T) {
	s := startService(t, nil, nil, func(c *pairing.Config) { c.PairBurst = 3; c.PairEvery = time.Hour })
	tab := s.tablet(t)
	for range 3 {
		_ = tab.Pair(bg, "lobby", "BCDF-GHJK", "") // each Pair is up to two calls (nonce retry)
	}
	err := tab.Pair(bg, "lobby", "BCDF-GHJK", "")
	wantAPIError(t, err, 429, "rate_limited")
	if err.(*pairingtest.APIError).RetryAfter == "" {
		t.Fatal("429 without Retry-After")
	}
}

func TestTokenNeedsTheDevicesKey(t *testing.T) {
	s := startService(t, nil, nil)
	tab := s.paired(t, "lobby")
	thief := s.tablet(t) // another machine: same device id, its own key
	thief.DeviceID = tab.DeviceID
	wantAPIError(t, thief.Refresh(bg), 401, "invalid_token")
	s.auditHas(t, "token_refused", func(r broker.AuditRecord) bool {
		return r.DeviceID == tab.DeviceID && strings.Contains(r.Detail, "key")
	})
	// The stolen token is no use with the thief's proof either.
	wsURL := "ws" + strings.TrimPrefix(s.URL, "http") + "/ws"
	challenge := challenge()
	thief.Token = tab.Token
	proof, _ := thief.WSProof(wsURL, challenge)
	if _, err := s.a.Authenticate(bg, tab.Token, proof, challenge, wsURL); !errors.Is(err, broker.ErrCredentialInvalid) {
		t.Fatalf("stolen token with another key's proof: %v, want ErrCredentialInvalid", err)
	}
}

func TestJWKS(t *testing.T) {
	s := startService(t, nil, nil)
	resp, err := http.Get(s.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	a := readAnswer(t, resp)
	keys, _ := a.body["keys"].([]any)
	if a.status != 200 || len(keys) != 1 {
		t.Fatalf("jwks: %d %s, want one key", a.status, a.raw)
	}
	k := keys[0].(map[string]any)
	if k["kty"] != "EC" || k["crv"] != "P-256" || k["kid"] == nil || k["d"] != nil {
		t.Fatalf("jwks key %v: want a public EC P-256 key with kid", k)
	}
}
