package admin_test

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// The per-surface limits of issue 12 §4 and §6: each surface (dashboard login, admin
// bearer tokens, device endpoints) has its own allowance per client address, IPv6
// clients are keyed by prefix, and a bad bearer token is refused before it is looked up
// once its address's failures are used up.

// call sends one request with an optional bearer token and X-Forwarded-For, and
// returns the status and Retry-After.
func call(t *testing.T, s *service, method, path, bearer, xff, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// TestBadBearerTokensDoNotLockTheLogin: 30 wrong passwords and 40 bad bearer tokens
// from the admin's own address, and the right password still logs in. On the old code
// both counted against one allowance of 20, and the right password got 429.
func TestBadBearerTokensDoNotLockTheLogin(t *testing.T) {
	s := startDashboard(t)
	for i := range 30 {
		if p := s.loginAnswer(t, "guess "+strconv.Itoa(i), ""); p.status != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d, want 401", i, p.status)
		}
	}
	limited := 0
	for i := range 40 {
		status, _ := call(t, s, "GET", "/api/admin/devices", "bad-token-"+strconv.Itoa(i), "", "")
		switch status {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("bad bearer token %d: %d, want 401 or 429", i, status)
		}
	}
	if limited == 0 {
		t.Fatal("40 bad bearer tokens: no 429; want the bearer surface limited")
	}
	if p := s.loginAnswer(t, dashPassword, ""); p.status != http.StatusSeeOther {
		t.Fatalf("the right password after 30 wrong ones and 40 bad bearer tokens: %d, want 303 (logged in)", p.status)
	}
}

// TestUnknownAdminTokenIDsLimitedBeforeLookup: a flood of kfa.<unknown id>.x is
// answered 429 with Retry-After once its failures are used up, and from then on costs
// no NATS message: the id is not looked up. On the old code each of the 200 was a KV
// lookup, and the limit ran only after it.
func TestUnknownAdminTokenIDsLimitedBeforeLookup(t *testing.T) {
	s := startService(t, nil, nil, func(c *pairing.Config) { c.TrustedProxies = []string{"127.0.0.1"} })
	const flood = 200
	first429 := -1
	out0 := s.b.Conn().Stats().OutMsgs
	for i := range flood {
		status, ra := call(t, s, "GET", "/api/admin/devices", "kfa.aaaaaaaaaaaaa.x", "203.0.113.66", "")
		switch {
		case status == http.StatusTooManyRequests:
			if n, err := strconv.Atoi(ra); err != nil || n < 1 {
				t.Fatalf("call %d: 429 with Retry-After %q, want whole seconds", i, ra)
			}
			if first429 < 0 {
				first429 = i
			}
		case status != http.StatusUnauthorized || first429 >= 0:
			t.Fatalf("call %d: %d (first 429 at %d), want 401 until the first 429, then 429", i, status, first429)
		}
	}
	sent := s.b.Conn().Stats().OutMsgs - out0
	t.Logf("first 429 at call %d; %d NATS messages for %d calls", first429, sent, flood)
	if first429 < 0 {
		t.Fatalf("%d unknown admin token ids: no 429", flood)
	}
	if sent > 60 {
		t.Fatalf("%d NATS messages for %d unknown ids, want the lookups bounded by the allowance (~20)", sent, flood)
	}
	// The admin elsewhere is not shut out.
	if status, _ := call(t, s, "GET", "/api/admin/devices", adminToken, "198.51.100.7", ""); status != http.StatusOK {
		t.Fatalf("the admin token from another address: %d, want 200", status)
	}
}

// TestIPv6ClientsShareTheirPrefixAllowance: through a trusted proxy, 40 addresses of
// one /64 share one pairing allowance (429 appears), while another /64 has its own; with
// ipv6_prefix 128 each address is on its own again. On the old code the 40 addresses
// never saw a 429.
func TestIPv6ClientsShareTheirPrefixAllowance(t *testing.T) {
	const clients = 40
	try := func(t *testing.T, s *service, prefix string) (first429 int) {
		t.Helper()
		for i := range clients {
			xff := prefix + strconv.FormatInt(int64(i+1), 16)
			status, ra := call(t, s, "POST", "/api/pair", "", xff, `{}`)
			if status == http.StatusTooManyRequests {
				if ra == "" {
					t.Fatalf("%s: 429 without Retry-After", xff)
				}
				return i
			}
		}
		return -1
	}
	proxied := func(c *pairing.Config) { c.TrustedProxies = []string{"127.0.0.1"} }
	s := startService(t, nil, nil, proxied)
	if got := try(t, s, "2001:db8:5:6::"); got < 0 {
		t.Fatalf("%d addresses of one /64 at /api/pair: no 429, want one allowance for the /64", clients)
	} else if got != 10 {
		t.Errorf("first 429 at address %d, want 10 (pair_burst)", got)
	}
	if status, _ := call(t, s, "POST", "/api/pair", "", "2001:db8:5:7::1", `{}`); status == http.StatusTooManyRequests {
		t.Fatal("another /64 refused: want an allowance of its own")
	}
	// The login surface is keyed the same way: one /64 shares one allowance of wrong
	// passwords.
	setPassword(t, s.b, dashPassword)
	loginFailures := 0
	for i := range 100 {
		req, _ := http.NewRequest("POST", s.URL+"/admin/login", strings.NewReader(url.Values{"password": {"wrong"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", s.URL)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("X-Forwarded-For", "2001:db8:9:9::"+strconv.Itoa(i+1))
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			break
		}
		loginFailures++
	}
	if loginFailures >= 100 {
		t.Fatal("100 wrong passwords from one /64: no 429")
	}

	wide := startService(t, nil, nil, proxied, func(c *pairing.Config) { c.IPv6Prefix = 128 })
	if got := try(t, wide, "2001:db8:5:6::"); got >= 0 {
		t.Fatalf("ipv6_prefix 128: 429 at address %d, want each address on its own", got)
	}
}

// xffTransport sends every request as if through a proxy that saw addr.
type xffTransport struct {
	base http.RoundTripper
	addr string
}

func (x xffTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", x.addr)
	return x.base.RoundTrip(r)
}

// TestOpenPairRequestsPerIPv6Prefix: the open pairing requests one client may hold are
// counted per /64, as the limits are: tablets at five addresses of one /64 fill it, a
// sixth address of it is refused 429, another /64 is not. On the old code each address
// had places of its own.
func TestOpenPairRequestsPerIPv6Prefix(t *testing.T) {
	s := startService(t, nil, nil, manyPairs, func(c *pairing.Config) { c.TrustedProxies = []string{"127.0.0.1"} })
	at := func(addr string) *pairingtest.Tablet {
		tab := s.codeTablet(t)
		tab.HTTP = &http.Client{Transport: xffTransport{base: s.Client().Transport, addr: addr}}
		return tab
	}
	for i := range pairing.MaxOpenPairRequests {
		s.request(t, at("2001:db8:3:4::"+strconv.Itoa(i+1)), "")
	}
	_, err := at("2001:db8:3:4::ff").RequestPairing(bg, "")
	wantAPIError(t, err, http.StatusTooManyRequests, "rate_limited")
	s.request(t, at("2001:db8:3:5::1"), "")
}
