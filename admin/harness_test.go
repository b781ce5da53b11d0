package admin_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/admin"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/internal/apitest"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

const adminToken = "test-admin-token-0123456789"

var bg = context.Background()

// clock is a settable time source: the real time plus an offset tests move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// service is a pairing Authority and its admin side on a real broker (an embedded
// NATS with JetStream) behind a real loopback HTTP server, wired as cmd/kioskfeed
// wires them.
type service struct {
	*httptest.Server
	a  *pairing.Authority
	ad *admin.Admin
	b  *broker.Broker
	// presence stands in for the bridge's leases: who is online, for the device list.
	presence *presence
	clock    *clock
	keys     []*ecdsa.PrivateKey
}

// presence is an admin.Presence that a test sets, as the bridge's leases would change:
// nobody is online until it says otherwise.
type presence struct {
	fn atomic.Pointer[func(string) (bool, time.Time)]
}

func (p *presence) set(fn func(deviceID string) (bool, time.Time)) { p.fn.Store(&fn) }

func (p *presence) Presence(id string) (bool, time.Time) {
	if fn := p.fn.Load(); fn != nil {
		return (*fn)(id)
	}
	return false, time.Time{}
}

func (p *presence) OnlineCount() int { return 0 }

// onlineCount is a Presence with a fixed live count and nobody in the device list
// online, for a test that stands in for the bridge; pass it to startService.
type onlineCount int

func (onlineCount) Presence(string) (bool, time.Time) { return false, time.Time{} }
func (n onlineCount) OnlineCount() int                { return int(n) }

// startService runs an Authority and an Admin whose public URL is their own
// listener's. mod edits the pairing config (the admin config takes its public URL,
// trusted proxies, IPv6 prefix, clock and logger from it) or is an admin.Presence.
func startService(t *testing.T, b *broker.Broker, keys []*ecdsa.PrivateKey, mod ...any) *service {
	t.Helper()
	if b == nil {
		// Repeated refusals are summed up in windows this short, so that a test sees
		// their counts at once.
		b = brokertest.New(t, func(c *broker.Config) { c.AuditAggregateWindow = 200 * time.Millisecond })
	}
	if keys == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys = []*ecdsa.PrivateKey{k}
	}
	srv := httptest.NewUnstartedServer(nil)
	s := &service{Server: srv, b: b, clock: &clock{}, keys: keys, presence: &presence{}}
	cfg := pairing.Config{
		PublicURL:   "http://" + srv.Listener.Addr().String(),
		SigningKeys: keys,
		Now:         s.clock.Now,
	}
	var presence admin.Presence = s.presence
	for _, m := range mod {
		switch m := m.(type) {
		case func(*pairing.Config):
			m(&cfg)
		case admin.Presence:
			presence = m
		default:
			t.Fatalf("startService: unknown option %T", m)
		}
	}
	a, err := pairing.New(bg, cfg, b)
	if err != nil {
		t.Fatalf("pairing.New: %v", err)
	}
	t.Cleanup(a.Close)
	s.a = a
	s.ad = startAdmin(t, b, a, cfg, presence)
	// Wired as cmd/kioskfeed wires them: the producer API, the device endpoints, and
	// the admin API and dashboard, on one mux.
	mux := http.NewServeMux()
	broker.NewAPI(b, s.ad).Register(mux)
	a.Register(mux)
	s.ad.Register(mux)
	srv.Config.Handler = apitest.Handler(t, httpx.JSONErrors(mux))
	srv.Start()
	t.Cleanup(srv.Close)
	return s
}

// startAdmin makes the admin side of a, configured like cmd/kioskfeed does from the
// same settings as a.
func startAdmin(t *testing.T, b *broker.Broker, a *pairing.Authority, cfg pairing.Config, presence admin.Presence) *admin.Admin {
	t.Helper()
	csrf, err := pairing.DeriveKey(cfg.SigningKeys[0], "kioskfeed csrf", 32)
	if err != nil {
		t.Fatal(err)
	}
	ad, err := admin.New(bg, admin.Config{
		PublicURL: cfg.PublicURL, CSRFKey: csrf, TokenHashes: [][32]byte{admin.HashToken(adminToken)},
		TrustedProxies: cfg.TrustedProxies, IPv6Prefix: cfg.IPv6Prefix, Logger: cfg.Logger, Now: cfg.Now,
	}, b, a, presence)
	if err != nil {
		t.Fatalf("admin.New: %v", err)
	}
	t.Cleanup(ad.Close)
	return ad
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	list   []map[string]any
	raw    []byte
}

// admin calls an admin endpoint with the admin token (or auth, when given).
func (s *service) admin(t *testing.T, method, path string, body any, auth ...string) answer {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.URL+path, r)
	tok := adminToken
	if len(auth) > 0 {
		tok = auth[0]
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return readAnswer(t, resp)
}

func readAnswer(t *testing.T, resp *http.Response) answer {
	t.Helper()
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: raw}
	if json.Unmarshal(raw, &a.body) != nil {
		_ = json.Unmarshal(raw, &a.list)
	}
	return a
}

// pin issues a PIN for feed through the admin API.
func (s *service) pin(t *testing.T, feed string, replace bool) string {
	t.Helper()
	a := s.admin(t, "POST", "/api/admin/feeds/"+feed+"/pins", map[string]any{"ttl": "5m", "replace": replace})
	if a.status != http.StatusCreated {
		t.Fatalf("issue PIN: %d %s", a.status, a.raw)
	}
	return a.body["pin"].(string)
}

// tablet makes a Go tablet client for this service.
func (s *service) tablet(t *testing.T) *pairingtest.Tablet {
	t.Helper()
	tab, err := pairingtest.NewTablet(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	tab.HTTP = s.Client()
	return tab
}

// paired makes a tablet and pairs it with feed.
func (s *service) paired(t *testing.T, feed string) *pairingtest.Tablet {
	t.Helper()
	tab := s.tablet(t)
	if err := tab.Pair(bg, feed, s.pin(t, feed, false), "test tablet"); err != nil {
		t.Fatalf("pair: %v", err)
	}
	return tab
}

// wantAPIError checks a refusal's status and code.
func wantAPIError(t *testing.T, err error, status int, code string) {
	t.Helper()
	apiErr, ok := err.(*pairingtest.APIError)
	if !ok {
		t.Fatalf("err = %v, want %d %s", err, status, code)
	}
	if apiErr.Status != status || apiErr.Code != code || apiErr.Message == "" {
		t.Fatalf("err = %d %q (%q), want %d %q with a message", apiErr.Status, apiErr.Code, apiErr.Message, status, code)
	}
}

// auditHas waits until the audit log has a record of typ matching keep.
func (s *service) auditHas(t *testing.T, typ string, keep func(broker.AuditRecord) bool) broker.AuditRecord {
	t.Helper()
	var found broker.AuditRecord
	brokertest.Eventually(t, 5*time.Second, "an audit record of type "+typ, func() bool {
		recs, err := s.b.AuditList(bg, typ, 100)
		if err != nil {
			return false
		}
		for _, r := range recs {
			if keep == nil || keep(r) {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

// startCluster runs two instances on one broker with one signing key, as kioskfeed
// runs as a cluster: they share NATS and derive the same keys.
func startCluster(t *testing.T, mod ...any) (a, b *service) {
	t.Helper()
	br := brokertest.New(t)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := []*ecdsa.PrivateKey{k}
	return startService(t, br, keys, mod...), startService(t, br, keys, mod...)
}

// challenge is a one-time WebSocket challenge as the bridge makes one: 32 random
// bytes, base64url.
func challenge() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
