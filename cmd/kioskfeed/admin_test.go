package main

import (
	"context"
	"errors"
	"io"
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
	tab := s.routedTablet(t, public)
	addr := strings.TrimPrefix(s.base, "http://")
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

// TestAdminCLIApprovesACode walks the reverse pairing flow with the CLI: a Go tablet
// asks for a code as the PWA does, the admin lists, approves and denies codes.
func TestAdminCLIApprovesACode(t *testing.T) {
	const public = "http://kioskfeed.test"
	s := startServe(t, t.TempDir(), "--public-url", public)
	admin := func(args ...string) (string, error) {
		var out syncBuffer
		err := run(context.Background(), append([]string{"admin"}, args...), env(map[string]string{
			"KIOSKFEED_PUBLIC_URL": s.base, "KIOSKFEED_ADMIN_TOKEN": s.token,
		}), &out, io.Discard)
		return out.String(), err
	}
	tablet := func() *pairingtest.Tablet { return s.routedTablet(t, public) }
	tab := tablet()
	pr, err := tab.RequestPairing(context.Background(), "Lobby left")
	if err != nil {
		t.Fatalf("request pairing: %v", err)
	}
	if pr.VerificationURIComplete != public+"/admin/approve?code="+strings.ReplaceAll(pr.UserCode, "-", "") {
		t.Fatalf("verification_uri_complete %q: want it on the public URL", pr.VerificationURIComplete)
	}

	out, err := admin("requests")
	if err != nil || !strings.Contains(out, pr.UserCode) || !strings.Contains(out, "Lobby left") || !strings.Contains(out, tab.Key.JKT()[:8]) {
		t.Fatalf("admin requests: %v, printed %q; want the code, name and short key", err, out)
	}
	if _, err := admin("approve", pr.UserCode); err == nil || !strings.Contains(err.Error(), "--feed") {
		t.Fatalf("approve without --feed: %v, want a usage error naming --feed", err)
	}
	if _, err := admin("approve", "--feed", "lobby"); err == nil || exitCode(err) != 2 {
		t.Fatalf("approve without a code: %v, want a usage error", err)
	}
	// The code as a person types it, flags after it.
	out, err = admin("approve", strings.ToLower(pr.UserCode), "--feed", "lobby", "--name", "Lobby right")
	m := regexp.MustCompile(`paired as (dev_\S+) on feed "lobby"`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("admin approve: %v, printed %q", err, out)
	}
	if err := tab.Poll(context.Background(), pr.RequestID); err != nil || tab.DeviceID != m[1] || tab.Feed != "lobby" {
		t.Fatalf("poll after the CLI's approval: %v, device %s; want %s on lobby", err, tab.DeviceID, m[1])
	}
	if out, err = admin("devices", "--feed", "lobby"); err != nil || !strings.Contains(out, m[1]) || !strings.Contains(out, "Lobby right") {
		t.Fatalf("admin devices: %v, printed %q", err, out)
	}
	if _, err := admin("approve", pr.UserCode, "--feed", "lobby"); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("approving the code twice: %v, want not_found", err)
	}

	// Deny, and --replace on a second approval.
	other := tablet()
	pr2, err := other.RequestPairing(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if out, err = admin("deny", pr2.UserCode); err != nil || !strings.Contains(out, "denied") {
		t.Fatalf("admin deny: %v, printed %q", err, out)
	}
	var apiErr *pairingtest.APIError
	if err := other.Poll(context.Background(), pr2.RequestID); !errors.As(err, &apiErr) || apiErr.Status != 403 || apiErr.Code != "access_denied" {
		t.Fatalf("poll after deny: %v, want 403 access_denied", err)
	}
	third := tablet()
	pr3, err := third.RequestPairing(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if out, err = admin("approve", pr3.UserCode, "--feed", "lobby", "--replace"); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("admin approve --replace: %v, printed %q", err, out)
	}
	if err := tab.Refresh(context.Background()); !errors.As(err, &apiErr) || apiErr.Code != "invalid_token" {
		t.Fatalf("the replaced tablet's refresh: %v, want invalid_token", err)
	}
	if out, err = admin("requests"); err != nil || !strings.Contains(out, "(none)") {
		t.Fatalf("admin requests at the end: %v, printed %q; want none", err, out)
	}

	// The audit log has the flow and the failed approval, without any code.
	want := []string{"pair_request", "pair_approved", "pair_denied", "pair_approve_fail", "device_revoked"}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, err = admin("audit", "--limit", "50")
		missing := ""
		for _, typ := range want {
			if !strings.Contains(out, typ) {
				missing = typ
			}
		}
		if err == nil && missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin audit lacks %s: %v, printed %q", missing, err, out)
		}
	}
	for _, code := range []string{pr.UserCode, pr2.UserCode, pr3.UserCode} {
		if strings.Contains(out, code) || strings.Contains(out, strings.ReplaceAll(code, "-", "")) {
			t.Fatalf("the audit log shows the code %s:\n%s", code, out)
		}
	}
	if strings.Contains(s.stderr.String(), strings.ReplaceAll(pr.UserCode, "-", "")) || strings.Contains(s.stderr.String(), pr.UserCode) {
		t.Fatal("the server log shows a pairing code")
	}
}
