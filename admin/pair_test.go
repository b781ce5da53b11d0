package admin_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

func TestPairRefreshAndAuthenticate(t *testing.T) {
	s := startService(t, nil, nil)
	a := s.admin(t, "POST", "/api/admin/feeds/lobby/pins", map[string]any{"ttl": "10m"})
	if a.status != 201 || a.body["feed"] != "lobby" || a.body["replace"] != false || a.body["expires_at"] == nil {
		t.Fatalf("issue PIN: %d %s", a.status, a.raw)
	}
	pin := a.body["pin"].(string)
	if len(pin) != 9 || pin[4] != '-' || strings.Trim(strings.ReplaceAll(pin, "-", ""), "BCDFGHJKLMNPQRSTVWXZ") != "" {
		t.Fatalf("PIN %q is not XXXX-XXXX from the RFC 8628 alphabet", pin)
	}

	tab := s.tablet(t)
	// The PIN is compared ignoring case, spaces and hyphens.
	if err := tab.Pair(bg, "lobby", strings.ToLower(" "+pin[:4]+" "+pin[5:]), "Lobby left"); err != nil {
		t.Fatalf("pair: %v", err)
	}
	if !strings.HasPrefix(tab.DeviceID, "dev_") || len(tab.DeviceID) != 24 || tab.Feed != "lobby" {
		t.Fatalf("paired as %q on %q, want dev_ + 20 chars on lobby", tab.DeviceID, tab.Feed)
	}
	if d := time.Until(tab.Expires); d < 9*time.Minute || d > 11*time.Minute {
		t.Fatalf("token lives %v, want the 10m default", d)
	}
	ok := s.auditHas(t, "pair_ok", func(r broker.AuditRecord) bool { return r.DeviceID == tab.DeviceID })
	if ok.Feed != "lobby" || ok.RemoteAddr != "127.0.0.1" {
		t.Fatalf("pair_ok record = %+v, want feed lobby from 127.0.0.1", ok)
	}

	first := tab.Token
	if err := tab.Refresh(bg); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tab.Token == first {
		t.Fatal("refresh returned the same token")
	}

	// The bridge's question: token + proof over the challenge.
	wsURL := "ws" + strings.TrimPrefix(s.URL, "http") + "/ws"
	challenge := challenge()
	proof, _ := tab.WSProof(wsURL, challenge)
	id, err := s.a.Authenticate(bg, tab.Token, proof, challenge, wsURL)
	if err != nil || id.DeviceID != tab.DeviceID || id.Feed != "lobby" || id.Expires.Before(time.Now()) {
		t.Fatalf("Authenticate = %+v, %v; want the device", id, err)
	}

	devs := s.admin(t, "GET", "/api/admin/devices?feed=lobby", nil)
	if devs.status != 200 || len(devs.list) != 1 || devs.list[0]["device_id"] != tab.DeviceID || devs.list[0]["name"] != "Lobby left" ||
		devs.list[0]["online"] != false || devs.list[0]["user_agent"] != "kioskfeed-test-tablet/1" {
		t.Fatalf("devices = %d %s", devs.status, devs.raw)
	}
	for _, k := range []string{"device_id", "feed", "name", "paired_at", "online", "last_seen", "remote_addr", "user_agent"} {
		if _, ok := devs.list[0][k]; !ok {
			t.Fatalf("device record lacks %q: %s", k, devs.raw)
		}
	}
	if _, ok := devs.list[0]["jkt"]; ok {
		t.Fatal("the admin device list shows the key thumbprint it does not promise")
	}

	// Revoke: tokens stop working at once, the bridge hears of it, /api/token refuses.
	revoked := make(chan string, 1)
	s.a.Devices().OnRevoke(func(id, feed string) { revoked <- id + "/" + feed })
	if r := s.admin(t, "DELETE", "/api/admin/devices/"+tab.DeviceID, nil); r.status != 204 {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	select {
	case got := <-revoked:
		if got != tab.DeviceID+"/lobby" {
			t.Fatalf("revocation for %q, want %s/lobby", got, tab.DeviceID)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no revocation reached the watcher within 2s")
	}
	proof, _ = tab.WSProof(wsURL, challenge)
	if _, err := s.a.Authenticate(bg, tab.Token, proof, challenge, wsURL); !errors.Is(err, broker.ErrDeviceRevoked) {
		t.Fatalf("Authenticate after revoke: %v, want ErrDeviceRevoked", err)
	}
	wantAPIError(t, tab.Refresh(bg), 401, "invalid_token")
	if r := s.admin(t, "DELETE", "/api/admin/devices/"+tab.DeviceID, nil); r.status != 404 || r.body["error"] != "not_found" {
		t.Fatalf("revoke twice: %d %s, want 404 not_found", r.status, r.raw)
	}
	s.auditHas(t, "device_revoked", func(r broker.AuditRecord) bool { return r.DeviceID == tab.DeviceID })
	s.auditHas(t, "token_refused", func(r broker.AuditRecord) bool { return r.DeviceID == tab.DeviceID })
}

func TestPINRules(t *testing.T) {
	s := startService(t, nil, nil, func(c *pairing.Config) { c.PairBurst = 100 })
	t.Run("single use", func(t *testing.T) {
		pin := s.pin(t, "lobby", false)
		if err := s.tablet(t).Pair(bg, "lobby", pin, ""); err != nil {
			t.Fatal(err)
		}
		wantAPIError(t, s.tablet(t).Pair(bg, "lobby", pin, ""), 401, "invalid_pin")
	})
	t.Run("other feed", func(t *testing.T) {
		pin := s.pin(t, "kitchen", false)
		wantAPIError(t, s.tablet(t).Pair(bg, "lobby", pin, ""), 401, "invalid_pin")
		if err := s.tablet(t).Pair(bg, "kitchen", pin, ""); err != nil {
			t.Fatalf("the PIN must still work for its own feed: %v", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		pin := s.pin(t, "hall", false)
		s.clock.Advance(6 * time.Minute)
		defer s.clock.Advance(-6 * time.Minute)
		wantAPIError(t, s.tablet(t).Pair(bg, "hall", pin, ""), 401, "invalid_pin")
	})
	t.Run("concurrent redeemers: exactly one wins", func(t *testing.T) {
		pin := s.pin(t, "race", false)
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if s.tablet(t).Pair(bg, "race", pin, "") == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d tablets paired with one PIN, want 1", wins)
		}
	})
	t.Run("ttl bounds", func(t *testing.T) {
		for _, ttl := range []string{"0s", "2h", "soon", "-5m"} {
			a := s.admin(t, "POST", "/api/admin/feeds/lobby/pins", map[string]any{"ttl": ttl})
			if a.status != 400 || a.body["error"] != "invalid_request" {
				t.Fatalf("ttl %q: %d %s, want 400 invalid_request", ttl, a.status, a.raw)
			}
		}
		if a := s.admin(t, "POST", "/api/admin/feeds/Not-A-Feed/pins", nil); a.status != 400 {
			t.Fatalf("bad feed: %d %s, want 400", a.status, a.raw)
		}
		if a := s.admin(t, "POST", "/api/admin/feeds/lobby/pins", nil); a.status != 201 {
			t.Fatalf("no body (defaults): %d %s, want 201", a.status, a.raw)
		}
	})
}

func TestReplacePINRevokesTheFeedsDevices(t *testing.T) {
	s := startService(t, nil, nil)
	old1, old2 := s.paired(t, "lobby"), s.paired(t, "lobby")
	elsewhere := s.paired(t, "kitchen")
	fresh := s.tablet(t)
	if err := fresh.Pair(bg, "lobby", s.pin(t, "lobby", true), ""); err != nil {
		t.Fatal(err)
	}
	for _, tab := range []*pairingtest.Tablet{old1, old2} {
		wantAPIError(t, tab.Refresh(bg), 401, "invalid_token")
	}
	for _, tab := range []*pairingtest.Tablet{fresh, elsewhere} {
		if err := tab.Refresh(bg); err != nil {
			t.Fatalf("refresh of a device the replace must not touch: %v", err)
		}
	}
	if devs := s.admin(t, "GET", "/api/admin/devices?feed=lobby", nil); len(devs.list) != 1 || devs.list[0]["device_id"] != fresh.DeviceID {
		t.Fatalf("lobby devices after replace: %s, want only the new one", devs.raw)
	}
}

func TestAdminAuth(t *testing.T) {
	s := startService(t, nil, nil)
	for _, tok := range []string{"", "wrong-token-wrong-token", adminToken + "x", "kfa.nope.nope"} {
		a := s.admin(t, "GET", "/api/admin/devices", nil, tok)
		if a.status != 401 || a.body["error"] != "invalid_token" {
			t.Fatalf("admin with %q: %d %s, want 401 invalid_token", tok, a.status, a.raw)
		}
	}
	s.auditHas(t, "admin_login_fail", func(r broker.AuditRecord) bool { return r.RemoteAddr == "127.0.0.1" })

	created := s.admin(t, "POST", "/api/admin/tokens", map[string]any{"name": "ops script"})
	if created.status != 201 || created.body["token"] == nil || created.body["hash"] != nil {
		t.Fatalf("create admin token: %d %s", created.status, created.raw)
	}
	named := created.body["token"].(string)
	if a := s.admin(t, "GET", "/api/admin/devices", nil, named); a.status != 200 {
		t.Fatalf("named admin token refused: %d %s", a.status, a.raw)
	}
	list := s.admin(t, "GET", "/api/admin/tokens", nil)
	if len(list.list) != 1 || list.list[0]["name"] != "ops script" || strings.Contains(string(list.raw), named) {
		t.Fatalf("admin token list: %s", list.raw)
	}
	if a := s.admin(t, "DELETE", "/api/admin/tokens/"+created.body["id"].(string), nil); a.status != 204 {
		t.Fatalf("revoke admin token: %d %s", a.status, a.raw)
	}
	if a := s.admin(t, "GET", "/api/admin/devices", nil, named); a.status != 401 {
		t.Fatalf("revoked admin token: %d, want 401", a.status)
	}
}

func TestAuditAPI(t *testing.T) {
	s := startService(t, nil, nil)
	s.paired(t, "lobby")
	s.auditHas(t, "pair_ok", nil)
	a := s.admin(t, "GET", "/api/admin/audit?limit=1&type=pair_ok", nil)
	if a.status != 200 || len(a.list) != 1 || a.list[0]["type"] != "pair_ok" {
		t.Fatalf("audit: %d %s", a.status, a.raw)
	}
	for _, k := range []string{"time", "type", "device_id", "feed", "remote_addr", "detail"} {
		if _, ok := a.list[0][k]; !ok {
			t.Fatalf("audit record lacks %q: %s", k, a.raw)
		}
	}
	for _, q := range []string{"limit=0", "limit=x", "limit=5000", "type=Bad!"} {
		if a := s.admin(t, "GET", "/api/admin/audit?"+q, nil); a.status != 400 {
			t.Fatalf("audit?%s: %d, want 400", q, a.status)
		}
	}
}
