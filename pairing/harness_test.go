package pairing_test

import (
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

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/internal/apitest"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

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
		PublicURL:   "http://" + srv.Listener.Addr().String(),
		SigningKeys: keys,
		Now:         s.clock.Now,
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
	// The device endpoints, as cmd/kioskfeed mounts them (the admin side is the admin
	// package's, and tested there).
	mux := http.NewServeMux()
	a.Register(mux)
	srv.Config.Handler = apitest.Handler(t, httpx.JSONErrors(mux))
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

// pin issues a PIN for feed, as the admin side does.
func (s *service) pin(t *testing.T, feed string, replace bool) string {
	t.Helper()
	p, err := s.a.IssuePIN(bg, feed, 5*time.Minute, replace)
	if err != nil {
		t.Fatalf("issue PIN: %v", err)
	}
	return p.PIN
}

// revoke revokes a device, as the admin side does.
func (s *service) revoke(t *testing.T, id string) {
	t.Helper()
	if _, ok, err := s.a.RevokeDevice(bg, id); err != nil || !ok {
		t.Fatalf("revoke %s: existed %v, %v; want it revoked", id, ok, err)
	}
}

// challenge is a one-time WebSocket challenge as the bridge makes one: 32 random
// bytes, base64url.
func challenge() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
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
