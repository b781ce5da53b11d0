package pairing_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// Two Authority instances on one broker with one signing key are how kioskfeed runs as a
// cluster: they share NATS (replay cache, PINs, wrong-guess counts, devices) and derive
// the same nonce and PIN keys. Each has its own listener and, unless a test gives them
// one, its own public URL.

func startCluster(t *testing.T, mod ...func(*pairing.Config)) (a, b *service) {
	t.Helper()
	br := brokertest.New(t)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := []*ecdsa.PrivateKey{k}
	return startService(t, br, keys, mod...), startService(t, br, keys, mod...)
}

func deviceBody(id string) []byte { return []byte(`{"device_id":"` + id + `"}`) }

// authenticate asks s, as its bridge would, with a fresh challenge and a proof by key
// for the WebSocket URL ws.
func authenticate(t *testing.T, s *service, key *pairingtest.DeviceKey, token, ws string) (broker.Identity, error) {
	t.Helper()
	c := challenge()
	return s.a.Authenticate(bg, token, signProof(t, key, "GET", ws, c, token, s.clock.Now(), nil), c, ws)
}

func TestClusterNonceFromOneInstanceWorksOnTheOther(t *testing.T) {
	a, b := startCluster(t)
	tab := a.tablet(t)

	// A's nonce, as a tablet learns it: from A's answer.
	first := postDPoP(t, a, "/api/token", []string{signProof(t, tab.Key, "POST", a.URL+"/api/token", "", "", a.clock.Now(), nil)}, deviceBody("dev_unpaired"))
	wantAnswer(t, first, http.StatusBadRequest, "use_dpop_nonce", "nonce")
	nonceA := first.header.Get("DPoP-Nonce")

	// Pair on A with it.
	pin := a.pin(t, "lobby", false)
	p := signProof(t, tab.Key, "POST", a.URL+"/api/pair", nonceA, "", a.clock.Now(), nil)
	paired := postDPoP(t, a, "/api/pair", []string{p}, []byte(`{"feed":"lobby","pin":"`+pin+`"}`))
	wantAnswer(t, paired, http.StatusCreated, "", "")
	id, _ := paired.body["device_id"].(string)

	// Refresh on B with A's nonce: accepted the first time, no use_dpop_nonce round.
	p = signProof(t, tab.Key, "POST", b.URL+"/api/token", nonceA, "", b.clock.Now(), nil)
	refreshed := postDPoP(t, b, "/api/token", []string{p}, deviceBody(id))
	wantAnswer(t, refreshed, http.StatusOK, "", "")
	if refreshed.body["device_id"] != id || refreshed.body["access_token"] == "" {
		t.Fatalf("refresh on B: %s, want a token for %s", refreshed.raw, id)
	}

	// And the other way: B's nonce on A.
	nonceB := refreshed.header.Get("DPoP-Nonce")
	p = signProof(t, tab.Key, "POST", a.URL+"/api/token", nonceB, "", a.clock.Now(), nil)
	wantAnswer(t, postDPoP(t, a, "/api/token", []string{p}, deviceBody(id)), http.StatusOK, "", "")
}

func TestClusterProofAcceptedOnceAcrossInstances(t *testing.T) {
	a, b := startCluster(t)
	tab := a.paired(t, "lobby")
	nonce := a.a.Nonces().Nonce()
	jti := pairingtest.NewJTI()
	withJTI := func(_, c map[string]any) { c["jti"] = jti }

	pa := signProof(t, tab.Key, "POST", a.URL+"/api/token", nonce, "", a.clock.Now(), withJTI)
	wantAnswer(t, postDPoP(t, a, "/api/token", []string{pa}, deviceBody(tab.DeviceID)), http.StatusOK, "", "")

	// The same jti at B, in a proof that is right for B in every other way.
	pb := signProof(t, tab.Key, "POST", b.URL+"/api/token", nonce, "", b.clock.Now(), withJTI)
	wantAnswer(t, postDPoP(t, b, "/api/token", []string{pb}, deviceBody(tab.DeviceID)), http.StatusBadRequest, "invalid_dpop_proof", "replayed jti")

	// A fresh jti at B works: it was the jti B refused.
	pb = signProof(t, tab.Key, "POST", b.URL+"/api/token", nonce, "", b.clock.Now(), nil)
	wantAnswer(t, postDPoP(t, b, "/api/token", []string{pb}, deviceBody(tab.DeviceID)), http.StatusOK, "", "")
}

// sharedPublicURL is the one address of a cluster behind a load balancer.
const sharedPublicURL = "https://kiosk.example"

// pairBehind pairs key for feed through s, building the proof for the cluster's public
// URL (the request itself goes to s's listener), and returns the device id and token.
func pairBehind(t *testing.T, s *service, key *pairingtest.DeviceKey, feed, pin string) (string, string) {
	t.Helper()
	p := signProof(t, key, "POST", sharedPublicURL+"/api/pair", s.a.Nonces().Nonce(), "", s.clock.Now(), nil)
	ans := postDPoP(t, s, "/api/pair", []string{p}, []byte(`{"feed":"`+feed+`","pin":"`+pin+`"}`))
	wantAnswer(t, ans, http.StatusCreated, "", "")
	var tr pairing.TokenResponse
	if err := json.Unmarshal(ans.raw, &tr); err != nil || tr.DeviceID == "" || tr.AccessToken == "" {
		t.Fatalf("pair answer %s", ans.raw)
	}
	return tr.DeviceID, tr.AccessToken
}

// A handshake's proof, accepted by A, replayed at B: B's socket has a challenge of its
// own (challenges are never made twice), so the proof is refused there.
func TestClusterWebSocketProofRefusedOnAnotherInstance(t *testing.T) {
	a, b := startCluster(t, func(c *pairing.Config) { c.PublicURL = sharedPublicURL })
	key := pairingtest.MustDeviceKey(t)
	id, token := pairBehind(t, a, key, "lobby", a.pin(t, "lobby", false))
	const ws = "wss://kiosk.example/ws"

	// B knows the device (its registry mirror has caught up).
	brokertest.Eventually(t, 5*time.Second, "B to authenticate the device paired on A", func() bool {
		got, err := authenticate(t, b, key, token, ws)
		return err == nil && got.DeviceID == id
	})

	c := challenge()
	proof := signProof(t, key, "GET", ws, c, token, a.clock.Now(), nil)
	if got, err := a.a.Authenticate(bg, token, proof, c, ws); err != nil || got.DeviceID != id {
		t.Fatalf("A: Authenticate = %+v, %v; want %s", got, err, id)
	}
	_, err := b.a.Authenticate(bg, token, proof, challenge(), ws)
	if !errors.Is(err, broker.ErrCredentialInvalid) {
		t.Fatalf("B, the same proof: %v, want ErrCredentialInvalid", err)
	}
	if want := "invalid nonce"; !strings.Contains(err.Error(), want) {
		t.Fatalf("B, the same proof: %q, want the reason %q", err, want)
	}
}

func TestClusterRefreshElsewhereAndRevocationReachesEveryInstance(t *testing.T) {
	a, b := startCluster(t)
	tab := a.paired(t, "lobby")
	tokenA := tab.Token // A's issuer; A verifies it
	wsA := wsURLOf(a)

	// Refresh on B.
	tab.BaseURL = b.URL
	if err := tab.Refresh(bg); err != nil {
		t.Fatalf("refresh on B of a device paired on A: %v", err)
	}
	if tab.Token == tokenA {
		t.Fatal("B answered with A's token")
	}
	if got, err := authenticate(t, a, tab.Key, tokenA, wsA); err != nil || got.DeviceID != tab.DeviceID {
		t.Fatalf("A before the revocation: %+v, %v; want the device", got, err)
	}

	// Revoke on B: A refuses the device within 2 s.
	b.revoke(t, tab.DeviceID)
	brokertest.Eventually(t, 2*time.Second, "A's Authenticate to answer ErrDeviceRevoked", func() bool {
		_, err := authenticate(t, a, tab.Key, tokenA, wsA)
		switch {
		case errors.Is(err, broker.ErrDeviceRevoked):
			return true
		case err != nil:
			t.Fatalf("A after the revocation: %v, want nil until it hears, then ErrDeviceRevoked", err)
		}
		return false
	})
	// And A's token endpoint refuses it at once (it reads the bucket).
	tab.BaseURL = a.URL
	wantAPIError(t, tab.Refresh(bg), http.StatusUnauthorized, "invalid_token")
}

func TestClusterWrongGuessesCountAcrossInstances(t *testing.T) {
	a, b := startCluster(t, func(c *pairing.Config) { c.PairBurst = 100 })
	good := a.pin(t, "lobby", false)
	kept := b.pin(t, "kitchen", false)
	guess := func(s *service, feed, pin string) {
		t.Helper()
		wantAPIError(t, s.tablet(t).Pair(bg, feed, pin, ""), http.StatusUnauthorized, "invalid_pin")
	}

	// Kitchen: four wrong guesses, two on each, leave its PIN open.
	for _, s := range []*service{a, b, a, b} {
		guess(s, "kitchen", "BBBB-BBBB")
	}
	if err := a.tablet(t).Pair(bg, "kitchen", kept, ""); err != nil {
		t.Fatalf("kitchen PIN after 4 wrong guesses: %v, want it still valid", err)
	}

	// Lobby: three on A and two on B are five: the feed's PIN is void.
	for _, s := range []*service{a, a, a, b, b} {
		guess(s, "lobby", "CCCC-CCCC")
	}
	guess(b, "lobby", good)
}

// TestClusterAuthenticateSeesADevicePairedElsewhere: a tablet pairs through one instance
// and its WebSocket lands on another whose registry mirror has not heard of the device
// yet (its watcher is behind: load, a slow replica). The device is registered; the
// answer must not be ErrDeviceRevoked, which makes the PWA forget its pairing (4403)
// after its PIN is used up. Here B's watcher is held in an OnRevoke hook, a stand-in for
// any delay.
func TestClusterAuthenticateSeesADevicePairedElsewhere(t *testing.T) {
	a, b := startCluster(t, func(c *pairing.Config) { c.PublicURL = sharedPublicURL })
	const ws = "wss://kiosk.example/ws"

	// Hold B's watcher: revoke a decoy B knows, and block in B's hook for it.
	decoyKey := pairingtest.MustDeviceKey(t)
	decoy, _ := pairBehind(t, a, decoyKey, "decoy", a.pin(t, "decoy", false))
	brokertest.Eventually(t, 5*time.Second, "B's mirror to have the decoy", func() bool {
		_, ok := b.a.Devices().Device(decoy)
		return ok
	})
	held, release := make(chan struct{}), make(chan struct{})
	b.a.Devices().OnRevoke(func(id, _ string) {
		if id == decoy {
			close(held)
			<-release
		}
	})
	t.Cleanup(func() { close(release) }) // before the services close (cleanups run last first)
	a.revoke(t, decoy)
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("B's watcher never reached the decoy's revocation")
	}

	key := pairingtest.MustDeviceKey(t)
	id, token := pairBehind(t, a, key, "lobby", a.pin(t, "lobby", false))
	if got, err := authenticate(t, a, key, token, ws); err != nil || got.DeviceID != id {
		t.Fatalf("A: %+v, %v; want the device", got, err)
	}
	got, err := authenticate(t, b, key, token, ws)
	if err != nil || got.DeviceID != id || got.Feed != "lobby" {
		t.Fatalf("B, device paired on A a moment ago: Authenticate = %+v, %v; want %s on lobby (the device is in the bucket)", got, err, id)
	}
}
