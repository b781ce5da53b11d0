package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/client"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// hookReceiver is a real webhook receiver on loopback that keeps every request.
type hookReceiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	hits []hookHit
}

type hookHit struct {
	delivery, signature string
	body                []byte
	alert               map[string]any
}

func startHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		h := hookHit{delivery: req.Header.Get("X-Kioskfeed-Delivery"), signature: req.Header.Get("X-Kioskfeed-Signature-256"), body: body}
		_ = json.Unmarshal(body, &h.alert)
		r.mu.Lock()
		r.hits = append(r.hits, h)
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// byType is the hits of one alert type, one per delivery id (a receiver de-duplicates
// by it), in arrival order, and how many arrived in all.
func (r *hookReceiver) byType(typ string) (unique []hookHit, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, h := range r.hits {
		if h.alert["type"] != typ {
			continue
		}
		total++
		if !seen[h.delivery] {
			seen[h.delivery] = true
			unique = append(unique, h)
		}
	}
	return unique, total
}

func (r *hookReceiver) waitType(t *testing.T, typ string, d time.Duration) hookHit {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if u, _ := r.byType(typ); len(u) > 0 {
			return u[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s delivery within %s", typ, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func verifySignature(t *testing.T, h hookHit, secret string) {
	t.Helper()
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(h.body)
	if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); !hmac.Equal([]byte(h.signature), []byte(want)) {
		t.Errorf("X-Kioskfeed-Signature-256 %q does not verify over the body with the webhook's secret", h.signature)
	}
	if h.delivery == "" {
		t.Error("no X-Kioskfeed-Delivery")
	}
}

// TestWebhookOfflineAlertSurvivesARestart is issue 14's test: a real tablet's link is
// cut, one signed device_offline reaches a real receiver; the server restarts on the
// same data dir; the tablet comes back and one device_online arrives, resolving it.
func TestWebhookOfflineAlertSurvivesARestart(t *testing.T) {
	const public = "http://kioskfeed.test"
	const wsURL = "ws://kioskfeed.test/ws"
	dir := t.TempDir()
	flags := []string{"--public-url", public, "--alert-offline-after", "1s", "--lease-ttl", "1s", "--webhook-allow-private=true"}
	s := startServe(t, dir, flags...)
	token := s.token
	recv := startHookReceiver(t)

	code, hook := s.call(t, "POST", "/api/admin/webhooks", token, `{"url":"`+recv.srv.URL+`/kioskfeed","types":["device_offline","device_online"]}`)
	secret, _ := hook["secret"].(string)
	if code != 201 || secret == "" || hook["id"] == nil || hook["created"] == nil {
		t.Fatalf("create webhook = %d %v, want 201 with an id and a made secret", code, hook)
	}
	if strings.Contains(s.stderr.String(), secret) {
		t.Fatal("the webhook secret is in the log")
	}

	code, pin := s.call(t, "POST", "/api/admin/feeds/lobby/pins", token, `{}`)
	if code != 201 {
		t.Fatalf("issue PIN = %d %v", code, pin)
	}
	tab, err := pairingtest.NewTablet(public)
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(s.base, "http://")
	dialTo := func(addr *string) *http.Client {
		return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, *addr)
		}}}
	}
	tab.HTTP = dialTo(&addr)
	if err := tab.Pair(context.Background(), "lobby", pin["pin"].(string), "Lobby left"); err != nil {
		t.Fatalf("pair: %v", err)
	}
	connect := func(s *served) *bridgetest.Conn {
		t.Helper()
		ws, err := bridgetest.Dial(context.Background(), wsURL, public, strings.TrimPrefix(s.base, "http://"))
		if err != nil {
			t.Fatalf("dial /ws: %v", err)
		}
		if _, err := ws.Handshake(tab, wsURL, 0, "", 5*time.Second); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if _, _, _, err := ws.Collect(5 * time.Second); err != nil {
			t.Fatalf("catch-up: %v", err)
		}
		waitOnline(t, s, token, tab.DeviceID, true)
		return ws
	}

	ws := connect(s)
	cut := time.Now()
	_ = ws.Abort() // the link dies without a close frame
	waitOnline(t, s, token, tab.DeviceID, false)
	off := recv.waitType(t, "device_offline", 20*time.Second)
	if time.Since(cut) < time.Second {
		t.Errorf("device_offline arrived %s after the link died, before alert_offline_after", time.Since(cut))
	}
	verifySignature(t, off, secret)
	if off.alert["device_id"] != tab.DeviceID || off.alert["feed"] != "lobby" || off.alert["id"] == "" || off.alert["time"] == nil {
		t.Errorf("device_offline body %s", off.body)
	}

	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	s2 := startServe(t, dir, flags...)
	addr = strings.TrimPrefix(s2.base, "http://")
	ws = connect(s2)
	defer ws.Abort()
	on := recv.waitType(t, "device_online", 20*time.Second)
	verifySignature(t, on, secret)
	if on.alert["resolves"] != off.alert["id"] || on.alert["device_id"] != tab.DeviceID {
		t.Errorf("device_online body %s does not resolve %v", on.body, off.alert["id"])
	}

	// Exactly one of each, counted by delivery id as the receiver de-duplicates; the
	// deliveries record on the restarted server names both.
	offs, _ := recv.byType("device_offline")
	ons, _ := recv.byType("device_online")
	if len(offs) != 1 || len(ons) != 1 {
		t.Errorf("got %d device_offline and %d device_online deliveries, want one each", len(offs), len(ons))
	}
	var list []map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for {
		list = adminList(t, s2, token, "/api/admin/webhooks/"+hook["id"].(string)+"/deliveries")
		if len(list) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	delivered := map[string]bool{}
	for _, d := range list {
		if d["outcome"] == "delivered" {
			delivered[d["type"].(string)] = true
		}
	}
	if !delivered["device_offline"] || !delivered["device_online"] {
		t.Errorf("deliveries after the restart: %v, want both delivered", list)
	}
}

// waitOnline polls the device list until the device's online flag is want.
func waitOnline(t *testing.T, s *served, token, device string, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, d := range adminList(t, s, token, "/api/admin/devices") {
			if d["device_id"] == device && d["online"] == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %s never showed online=%v", device, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// adminList is adminAPIList on a served instance with the admin token of its first
// start.
func adminList(t *testing.T, s *served, token, path string) []map[string]any {
	t.Helper()
	s.token = token
	return adminAPIList(t, &system{served: s}, path)
}

// TestWebhookAPIRefusesOwnNetwork: without webhook_allow_private, targets on the
// server's own machine or network are refused at create with a message that says why;
// the secret an administrator chose is never echoed; unknown ids are 404.
func TestWebhookAPIRefusesOwnNetwork(t *testing.T) {
	s := startServe(t, t.TempDir())
	for url, about := range map[string]string{
		"http://127.0.0.1/":          "loopback",
		"http://169.254.169.254/":    "metadata",
		"http://localhost:8080/hook": "loopback",
	} {
		code, body := s.call(t, "POST", "/api/admin/webhooks", s.token, `{"url":"`+url+`"}`)
		if msg, _ := body["message"].(string); code != 400 || body["error"] != "invalid_request" || !strings.Contains(msg, about) {
			t.Errorf("create %s = %d %v, want 400 invalid_request about %s", url, code, body, about)
		}
	}
	code, body := s.call(t, "POST", "/api/admin/webhooks", s.token, `{"url":"https://93.184.215.14/hook","secret":"my-chosen-secret-value"}`)
	if code != 201 || body["secret"] != nil {
		t.Fatalf("create with a chosen secret = %d %v, want 201 without the secret", code, body)
	}
	list := adminList(t, s, s.token, "/api/admin/webhooks")
	if raw, _ := json.Marshal(list); len(list) != 1 || strings.Contains(string(raw), "my-chosen-secret-value") {
		t.Errorf("webhook list %s, want one without its secret", raw)
	}
	for _, path := range []string{"/api/admin/webhooks/wh_00000000000000000000/deliveries", "/api/admin/webhooks/nonsense/deliveries"} {
		if code, body := s.call(t, "GET", path, s.token, ""); code != 404 || body["error"] != "not_found" {
			t.Errorf("GET %s = %d %v, want 404", path, code, body)
		}
	}
	if code, _ := s.call(t, "DELETE", "/api/admin/webhooks/"+body["id"].(string), s.token, ""); code != 204 {
		t.Errorf("delete = %d, want 204", code)
	}
	if code, _ := s.call(t, "DELETE", "/api/admin/webhooks/"+body["id"].(string), s.token, ""); code != 404 {
		t.Errorf("delete again = %d, want 404", code)
	}
	if code, _ := s.call(t, "POST", "/api/admin/webhooks", "", `{"url":"https://93.184.215.14/"}`); code != 401 {
		t.Errorf("create without a token = %d, want 401", code)
	}
}

// TestWebhookTamperAlertsFromARealSocket: a second live connection for a device (its
// credentials in two places) is refused 4409 and reaches the webhook as a signed
// duplicate_refused; revoking the device reaches it as device_revoked.
func TestWebhookTamperAlertsFromARealSocket(t *testing.T) {
	const public = "http://kioskfeed.test"
	const wsURL = "ws://kioskfeed.test/ws"
	s := startServe(t, t.TempDir(), "--public-url", public, "--webhook-allow-private=true")
	recv := startHookReceiver(t)
	code, hook := s.call(t, "POST", "/api/admin/webhooks", s.token, `{"url":"`+recv.srv.URL+`","types":["duplicate_refused","device_revoked"]}`)
	if code != 201 {
		t.Fatalf("create webhook = %d %v", code, hook)
	}
	_, pin := s.call(t, "POST", "/api/admin/feeds/lobby/pins", s.token, `{}`)
	tab := s.routedTablet(t, public)
	if err := tab.Pair(context.Background(), "lobby", pin["pin"].(string), ""); err != nil {
		t.Fatalf("pair: %v", err)
	}
	addr := strings.TrimPrefix(s.base, "http://")
	dial := func() *bridgetest.Conn {
		ws, err := bridgetest.Dial(context.Background(), wsURL, public, addr)
		if err != nil {
			t.Fatalf("dial /ws: %v", err)
		}
		t.Cleanup(func() { _ = ws.Abort() })
		return ws
	}
	first := dial()
	if _, err := first.Handshake(tab, wsURL, 0, "", 5*time.Second); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	// The first tablet keeps reading, so it answers the server's ping: it is alive.
	reading := make(chan struct{})
	go func() {
		defer close(reading)
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			if _, err := first.Next(100 * time.Millisecond); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
		}
	}()
	defer func() { _ = first.Abort(); <-reading }()
	second := dial()
	_, err := second.Handshake(tab, wsURL, 0, "", 5*time.Second)
	var ce *client.CloseError
	if !errors.As(err, &ce) || ce.Code != 4409 {
		t.Fatalf("second connection: %v, want a 4409 close", err)
	}
	dup := recv.waitType(t, "duplicate_refused", 15*time.Second)
	verifySignature(t, dup, hook["secret"].(string))
	if dup.alert["device_id"] != tab.DeviceID || dup.alert["feed"] != "lobby" || dup.alert["remote_addr"] == "" {
		t.Errorf("duplicate_refused body %s", dup.body)
	}
	if code, _ := s.call(t, "DELETE", "/api/admin/devices/"+tab.DeviceID, s.token, ""); code != 204 {
		t.Fatalf("revoke = %d", code)
	}
	rev := recv.waitType(t, "device_revoked", 15*time.Second)
	verifySignature(t, rev, hook["secret"].(string))
	if rev.alert["device_id"] != tab.DeviceID {
		t.Errorf("device_revoked body %s", rev.body)
	}
}
