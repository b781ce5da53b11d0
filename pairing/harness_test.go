package pairing_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
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

// service is a pairing Authority on a real broker behind a real loopback HTTP server.
type service struct {
	*httptest.Server
	a     *pairing.Authority
	b     *broker.Broker
	clock *clock
	keys  []*ecdsa.PrivateKey
}

// startService runs an Authority whose public URL is its own listener's.
func startService(t *testing.T, b *broker.Broker, keys []*ecdsa.PrivateKey, mod ...func(*pairing.Config)) *service {
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
	s := &service{Server: srv, b: b, clock: &clock{}, keys: keys}
	cfg := pairing.Config{
		PublicURL:        "http://" + srv.Listener.Addr().String(),
		SigningKeys:      keys,
		AdminTokenHashes: [][32]byte{pairing.HashToken(adminToken)},
		Now:              s.clock.Now,
	}
	for _, m := range mod {
		m(&cfg)
	}
	a, err := pairing.New(bg, cfg, b)
	if err != nil {
		t.Fatalf("pairing.New: %v", err)
	}
	t.Cleanup(a.Close)
	s.a = a
	// Wired as cmd/kioskfeed wires them: the producer API, the device and admin
	// endpoints, and the dashboard, on one mux.
	mux := http.NewServeMux()
	broker.NewAPI(b, a).Register(mux)
	a.Register(mux)
	a.RegisterDashboard(mux)
	srv.Config.Handler = httpx.JSONErrors(mux)
	srv.Start()
	t.Cleanup(srv.Close)
	return s
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

// pin issues a PIN for feed.
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
