package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// TestAdminCLIPairsAndRevokes walks the admin's pairing flow with the CLI against a
// served instance, with a Go tablet doing what the PWA does in between.
func TestAdminCLIPairsAndRevokes(t *testing.T) {
	const public = "http://kioskfeed.test"
	s := startServe(t, t.TempDir(), "--public-url", public)
	admin := func(args ...string) (string, error) {
		var out syncBuffer
		err := run(context.Background(), append([]string{"admin"}, args...), env(map[string]string{
			"KIOSKFEED_PUBLIC_URL": s.base, "KIOSKFEED_ADMIN_TOKEN": s.token,
		}), &out, io.Discard)
		return out.String(), err
	}

	out, err := admin("pin", "--feed", "lobby", "--ttl", "10m")
	m := regexp.MustCompile(`PIN ([A-Z]{4}-[A-Z]{4}) for feed "lobby"`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("admin pin: %v, printed %q", err, out)
	}

	// The tablet signs proofs for the public URL; its HTTP client reaches the listener.
	tab, err := pairingtest.NewTablet(public)
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(s.base, "http://")
	tab.HTTP = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	if err := tab.Pair(context.Background(), "lobby", m[1], "Lobby left"); err != nil {
		t.Fatalf("pair with the CLI's PIN: %v", err)
	}

	out, err = admin("devices", "--feed", "lobby")
	if err != nil || !strings.Contains(out, tab.DeviceID) || !strings.Contains(out, "Lobby left") {
		t.Fatalf("admin devices: %v, printed %q", err, out)
	}
	out, err = admin("token", "create", "--name", "ops")
	tm := regexp.MustCompile(`: (kfa\.\S+)`).FindStringSubmatch(out)
	if err != nil || tm == nil {
		t.Fatalf("admin token create: %v, printed %q", err, out)
	}
	// The named token works for the next call.
	var listed syncBuffer
	if err := run(context.Background(), []string{"admin", "token", "list", "--url", s.base, "--token", tm[1]}, env(nil), &listed, io.Discard); err != nil || !strings.Contains(listed.String(), "ops") {
		t.Fatalf("admin token list with the named token: %v, printed %q", err, listed.String())
	}
	// The tablet's socket, through the real wiring: the default allowed origin is the
	// public URL's, the device shows online, and revoking closes it 4403.
	ws, err := bridgetest.Dial(context.Background(), "ws://kioskfeed.test/ws", public, addr)
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	defer ws.Abort()
	if _, err := ws.Handshake(tab, "ws://kioskfeed.test/ws", 0, "", 5*time.Second); err != nil {
		t.Fatalf("socket handshake: %v", err)
	}
	if _, _, _, err := ws.Collect(5 * time.Second); err != nil {
		t.Fatalf("socket catch-up: %v", err)
	}
	if out, err = admin("devices", "--json"); err != nil || !strings.Contains(out, `"online":true`) {
		t.Fatalf("admin devices while connected: %v, printed %q; want online", err, out)
	}
	if _, err := bridgetest.Dial(context.Background(), "ws://kioskfeed.test/ws", "http://evil.example", addr); err == nil {
		t.Fatal("a foreign origin opened the socket")
	}
	if out, err = admin("revoke", tab.DeviceID); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("admin revoke: %v, printed %q", err, out)
	}
	if code, err := ws.ExpectClose(5 * time.Second); err != nil || code != 4403 {
		t.Fatalf("socket after revoke: %d, %v; want 4403", code, err)
	}
	if err := tab.Refresh(context.Background()); err == nil {
		t.Fatal("a revoked tablet still got a token")
	}
	// Audit records are written asynchronously: poll until the newest has landed.
	hasAll := func(out string) bool {
		for _, typ := range []string{"pin_issued", "pair_ok", "device_revoked", "token_refused"} {
			if !strings.Contains(out, typ) {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, err = admin("audit", "--limit", "20")
		if err == nil && hasAll(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin audit lacks a record type: %v, printed %q", err, out)
		}
	}
	if strings.Contains(out, m[1]) || strings.Contains(out, tab.Token) {
		t.Fatal("the audit log shows a PIN or a token")
	}
	out, err = admin("passwd")
	if m := regexp.MustCompile(`password: ([a-z2-9]{5}(-[a-z2-9]{5}){3})`).FindStringSubmatch(out); err != nil || m == nil {
		t.Fatalf("admin passwd: %v, printed %q", err, out)
	}
	if _, err := admin("passwd", "--password", "short"); err == nil || !strings.Contains(err.Error(), "invalid_request") {
		t.Fatalf("admin passwd with a short password: %v, want invalid_request", err)
	}
	if _, err := admin("revoke", tab.DeviceID); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("revoking twice: %v, want a not_found refusal", err)
	}
	if err := run(context.Background(), []string{"admin", "devices", "--url", s.base, "--token", "wrong-token-wrong"}, env(nil), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "invalid_token") {
		t.Fatalf("admin with a wrong token: %v, want invalid_token", err)
	}
}
