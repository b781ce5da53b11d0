package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
)

func TestPairByCodeWithSlowDown(t *testing.T) {
	s := shared
	d := client.NewDevice(s.URL, mustKey(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := d.RequestPairing(ctx, "Lobby left")
	if err != nil {
		t.Fatalf("request pairing: %v", err)
	}
	if req.UserCode == "" || req.VerificationURIComplete == "" || req.Interval != 5 {
		t.Fatalf("pair request = %+v", req)
	}
	// Too fast on purpose: the second poll at once is slow_down, and the interval grows
	// by 5 s on both sides (RFC 8628 §3.5).
	var apiErr *client.APIError
	if err := d.Poll(ctx, req); !errors.As(err, &apiErr) || apiErr.Code != "authorization_pending" {
		t.Fatalf("first poll: %v, want authorization_pending", err)
	}
	if err := d.Poll(ctx, req); !errors.As(err, &apiErr) || apiErr.Code != "slow_down" {
		t.Fatalf("second poll at once: %v, want slow_down", err)
	}
	if req.Interval != 10 {
		t.Fatalf("interval after slow_down = %d, want 10", req.Interval)
	}
	if err := s.approve(req.UserCode, "code-feed"); err != nil {
		t.Fatal(err)
	}
	// At the grown interval, the poll is not refused again: it collects the device.
	began := time.Now()
	if err := d.WaitApproved(ctx, req); err != nil {
		t.Fatalf("wait for approval: %v", err)
	}
	if req.Interval != 10 {
		t.Fatalf("interval = %d after waiting, want 10 (no further slow_down)", req.Interval)
	}
	if waited := time.Since(began); waited < 10*time.Second {
		t.Fatalf("WaitApproved polled after %v, before the grown interval", waited)
	}
	if c := d.Credentials(); c.Feed != "code-feed" || c.DeviceID == "" || c.Token == "" {
		t.Fatalf("credentials after approval: %+v", c)
	}

	// Denied: WaitApproved ends with ErrPairingDenied.
	d2 := client.NewDevice(s.URL, mustKey(t))
	req2, err := d2.RequestPairing(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.admin("POST", "/api/admin/pair-requests/"+req2.UserCode+"/deny", "", http.StatusNoContent, nil); err != nil {
		t.Fatal(err)
	}
	if err := d2.WaitApproved(ctx, req2); !errors.Is(err, client.ErrPairingDenied) {
		t.Fatalf("denied request: %v, want ErrPairingDenied", err)
	}
	// An unknown request id is expired_token.
	gone := &client.PairRequest{RequestID: "prq_AAAAAAAAAAAAAAAAAAAAAAAAAA", Interval: 1}
	if err := d2.WaitApproved(ctx, gone); !errors.Is(err, client.ErrPairingExpired) && !isCode(err, "invalid_request") {
		t.Fatalf("unknown request: %v, want ErrPairingExpired", err)
	}
}

func isCode(err error, code string) bool {
	var apiErr *client.APIError
	return errors.As(err, &apiErr) && apiErr.Code == code
}

func TestRunReauthKeepsTheSocket(t *testing.T) {
	// A 10 s token is re-authed 5 s before it expires (docs/protocol.md §5 step 7); a
	// socket not re-authenticated is closed 4401 a second after its token expired.
	s := startServer(t, serverOpts{tokenTTL: 10 * time.Second, heartbeat: time.Second, reauthGrace: time.Second})
	d := pairedDevice(t, s, "reauth-feed")
	tokens := map[string]bool{d.Credentials().Token: true}
	var mu sync.Mutex
	welcomes := 0
	var gone retries
	c := &client.Client{Device: d, OnDisconnect: gone.add, OnWelcome: func(client.Welcome) {
		mu.Lock()
		welcomes++
		mu.Unlock()
	}}
	msgs, _, _ := runClient(t, c)
	msgs.expect(t, client.TypeReset, client.TypeSynced)
	// Two reauths: the server asks again only once it accepted the first answer, so a
	// third token proves the socket was re-authenticated.
	eventually(t, 25*time.Second, func() bool {
		tokens[d.Credentials().Token] = true
		return len(tokens) >= 3
	}, "two reauths answered with fresh tokens")
	seq := s.mustPublish(t, "reauth-feed", "item", `{"x":1}`)
	msgs.expect(t, seq)
	mu.Lock()
	defer mu.Unlock()
	if welcomes != 1 || len(gone.get()) != 0 {
		t.Fatalf("%d welcomes, disconnects %v: want one socket throughout", welcomes, gone.get())
	}
}

func TestRunReconnectsAfterRestartAndStopsWhenRevoked(t *testing.T) {
	s := startServer(t, serverOpts{})
	d := pairedDevice(t, s, "restart-feed")
	first := s.mustPublish(t, "restart-feed", "state", `{"v":1}`)
	var gone retries
	c := &client.Client{Device: d, OnDisconnect: gone.add, Policy: client.Policy{RestartJitter: 100 * time.Millisecond}}
	msgs, done, _ := runClient(t, c)
	msgs.expect(t, client.TypeReset, first, client.TypeSynced)

	// The instance restarts (1012); an event published meanwhile comes in the catch-up
	// of the next socket, without a reset.
	s.stopBridge()
	missed := s.mustPublish(t, "restart-feed", "item", `{"v":2}`)
	if err := s.startBridge(); err != nil {
		t.Fatal(err)
	}
	msgs.expect(t, missed, client.TypeSynced)
	live := s.mustPublish(t, "restart-feed", "item", `{"v":3}`)
	msgs.expect(t, live)
	// A 1012, and perhaps attempts the instance refused (503) while it was down.
	if len(gone.get()) == 0 {
		t.Fatal("the restart was not reported to OnDisconnect")
	}
	for i, r := range gone.get() {
		var apiErr *client.APIError
		if i == 0 && closeCode(r.err) != 1012 || i > 0 && (!errors.As(r.err, &apiErr) || apiErr.Status != 503) {
			t.Fatalf("disconnect %d: %v, want a 1012 then only 503 refusals", i, r.err)
		}
	}

	// Revoked: the socket is closed 4403 and Run ends with ErrRevoked.
	if err := s.revoke(d.Credentials().DeviceID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, client.ErrRevoked) {
			t.Fatalf("Run after revocation: %v, want ErrRevoked", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not end after the device was revoked")
	}
	// And a revoked device cannot get a token any more.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := d.Refresh(ctx); !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("refresh of a revoked device: %v, want ErrRevoked", err)
	}
}

// A reauth the client cannot answer (no token to be had just then) ends in 4401 once
// the token expires; Run then gets a new token and reconnects.
func TestRunRecoversFrom4401(t *testing.T) {
	s := startServer(t, serverOpts{tokenTTL: 10 * time.Second, heartbeat: time.Second, reauthGrace: time.Second})
	d := pairedDevice(t, s, "expiry-feed")
	var offline atomic.Bool // the HTTP side of the network is down while set
	d.HTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if offline.Load() {
			return nil, errors.New("network down")
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	first := s.mustPublish(t, "expiry-feed", "state", `{}`)
	var gone retries
	c := &client.Client{Device: d, OnDisconnect: gone.add, Policy: client.Policy{BackoffBase: 100 * time.Millisecond}}
	msgs, _, _ := runClient(t, c)
	msgs.expect(t, client.TypeReset, first, client.TypeSynced)
	offline.Store(true) // before the reauth, 5 s before the token's expiry
	eventually(t, 20*time.Second, func() bool { return len(gone.get()) >= 1 }, "the socket to be closed at its token's expiry")
	if err := gone.get()[0].err; closeCode(err) != 4401 {
		t.Fatalf("disconnect %v, want 4401", err)
	}
	missed := s.mustPublish(t, "expiry-feed", "item", `{"while":"expired"}`)
	offline.Store(false)
	msgs.expect(t, missed, client.TypeSynced)
}
