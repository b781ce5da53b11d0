package admin_test

import (
	"context"
	"crypto/ecdsa"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/admin"
	"github.com/kioskfeed/kioskfeed/alerts"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// noFleet is an alerts.Fleet with no devices: these tests raise alerts from the audit
// log only.
type noFleet struct{}

func (noFleet) AppendDevices(dst []alerts.Device) []alerts.Device { return dst }
func (noFleet) Presence(string) (bool, time.Time)                 { return false, time.Time{} }

// startWebhookDashboard runs the admin side with webhooks, wired as cmd/kioskfeed
// wires it: an alerts.Service on the same broker, private receivers allowed (the
// receivers here are on loopback), retries a few milliseconds apart.
func startWebhookDashboard(t *testing.T) *service {
	t.Helper()
	b := brokertest.New(t, func(c *broker.Config) { c.AuditAggregateWindow = -1 })
	al, err := alerts.New(bg, alerts.Config{AllowPrivate: true, RetryBase: 20 * time.Millisecond, MaxAttempts: 2}, b, noFleet{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = al.Shutdown(context.Background()) })
	key := newSigningKey(t)
	srv := httptest.NewUnstartedServer(nil)
	s := &service{Server: srv, b: b, clock: &clock{}, keys: []*ecdsa.PrivateKey{key}, presence: &presence{}}
	cfg := pairing.Config{PublicURL: "http://" + srv.Listener.Addr().String(), SigningKeys: s.keys, Now: s.clock.Now}
	if s.a, err = pairing.New(bg, cfg, b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.a.Close)
	csrf, err := pairing.DeriveKey(key, "kioskfeed csrf", 32)
	if err != nil {
		t.Fatal(err)
	}
	s.ad, err = admin.New(bg, admin.Config{PublicURL: cfg.PublicURL, CSRFKey: csrf, TokenHashes: [][32]byte{admin.HashToken(adminToken)},
		Now: s.clock.Now, Webhooks: al}, b, s.a, s.presence)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.ad.Close)
	mux := http.NewServeMux()
	s.ad.Register(mux)
	srv.Config.Handler = httpx.JSONErrors(mux)
	srv.Start()
	t.Cleanup(srv.Close)
	setPassword(t, b, dashPassword)
	return s
}

// TestDashboardWebhooks makes a webhook on the dashboard page, sees its secret once,
// its deliveries and a failing one's failures, and deletes it; a form without the CSRF
// token does nothing.
func TestDashboardWebhooks(t *testing.T) {
	s := startWebhookDashboard(t)
	c, token := s.login(t)
	var good, bad atomic.Int32
	okRecv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { good.Add(1) }))
	defer okRecv.Close()
	failRecv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		bad.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer failRecv.Close()

	empty := s.get(t, "/admin/webhooks", c)
	if empty.status != http.StatusOK || !strings.Contains(empty.body, `id="no-webhooks"`) || !strings.Contains(empty.body, `id="nav-webhooks"`) {
		t.Fatalf("empty webhooks page: %d\n%s", empty.status, empty.body)
	}
	if p := s.post(t, "/admin/webhooks", c, url.Values{"url": {okRecv.URL}}); p.status != http.StatusForbidden {
		t.Fatalf("a form without the CSRF token: %d, want 403", p.status)
	}
	if p := s.post(t, "/admin/webhooks", c, withToken(token, "url", "http://169.254.169.254/")); p.status != http.StatusBadRequest ||
		!strings.Contains(p.body, `id="page-error"`) || !strings.Contains(p.body, "metadata") {
		t.Fatalf("a metadata URL: %d, want 400 saying why\n%s", p.status, p.body)
	}
	form := withToken(token, "url", okRecv.URL+"/hook")
	form["types"] = []string{alerts.TypeDeviceRevoked}
	p := s.post(t, "/admin/webhooks", c, form)
	if p.status != http.StatusOK {
		t.Fatalf("create: %d\n%s", p.status, p.body)
	}
	secret := byID(t, p.body, "webhook-secret")
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("#webhook-secret = %q, want a made whsec_ secret", secret)
	}
	if p := s.post(t, "/admin/webhooks", c, withToken(token, "url", failRecv.URL, "secret", "a-chosen-secret-1234")); p.status != http.StatusOK || strings.Contains(p.body, "a-chosen-secret-1234") {
		t.Fatalf("create with a chosen secret: %d, or the page shows it", p.status)
	}
	s.auditHas(t, string(broker.AuditWebhookCreated), func(r broker.AuditRecord) bool {
		return r.Actor == broker.ActorDashboard && !strings.Contains(r.Detail, "/hook")
	})

	s.b.Audit(broker.AuditRecord{Type: string(broker.AuditDeviceRevoked), Feed: "lobby", DeviceID: "dev_AAAAAAAAAAAAAAAAAAAA", Detail: "revoked"})
	var page string
	brokertest.Eventually(t, 15*time.Second, "a delivered and a failed delivery on the page", func() bool {
		page = s.get(t, "/admin/webhooks", c).body
		return strings.Contains(page, `data-outcome="delivered"`) && strings.Contains(page, `data-outcome="failed"`)
	})
	if good.Load() != 1 || bad.Load() != 2 {
		t.Errorf("receivers got %d and %d requests, want 1 and 2 (MaxAttempts)", good.Load(), bad.Load())
	}
	if strings.Contains(page, secret) || !strings.Contains(page, "failed or retrying") {
		t.Errorf("the page shows the secret, or not the failures:\n%s", page)
	}

	hooks := s.admin(t, "GET", "/api/admin/webhooks", nil)
	if hooks.status != http.StatusOK || len(hooks.list) != 2 {
		t.Fatalf("GET /api/admin/webhooks = %d %s", hooks.status, hooks.raw)
	}
	id := hooks.list[0]["id"].(string)
	del := s.post(t, "/admin/webhooks/"+id+"/delete", c, withToken(token))
	if del.status != http.StatusSeeOther || del.location() != "/admin/webhooks?notice=webhook_deleted" {
		t.Fatalf("delete: %d to %q", del.status, del.location())
	}
	if p := s.post(t, "/admin/webhooks/"+id+"/delete", c, withToken(token)); p.status != http.StatusNotFound {
		t.Fatalf("delete again: %d, want 404", p.status)
	}
	s.auditHas(t, string(broker.AuditWebhookDeleted), nil)
	if d := s.admin(t, "GET", "/api/admin/webhooks/"+id+"/deliveries", nil); d.status != http.StatusNotFound {
		t.Errorf("deliveries of a deleted webhook: %d, want 404", d.status)
	}
}
