package pairing_test

// Contract tests of the device endpoints (docs/protocol.md §1, §3, §3b, §4) that no other
// test checked: 503 with Retry-After while NATS is down, 415 for a body that is not
// declared JSON, and 429 from /api/token and from polling past their limits.

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// maxCalls bounds the loops that call an endpoint until it says 429: far past any limit
// a device endpoint may have, so a test fails instead of spinning if none comes.
const maxCalls = 3000

// wantRefusal checks a device call's refusal: the status, the code, a message, and for
// 429 and 503 a Retry-After of whole seconds (docs/protocol.md §1).
func wantRefusal(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var apiErr *pairingtest.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("%s: %v, want %d %s", what, err, status, code)
	}
	if apiErr.Status != status || apiErr.Code != code || apiErr.Message == "" {
		t.Fatalf("%s: %d %q (%q), want %d %q with a message", what, apiErr.Status, apiErr.Code, apiErr.Message, status, code)
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		if secs, err := strconv.Atoi(apiErr.RetryAfter); err != nil || secs < 1 {
			t.Fatalf("%s: %d with Retry-After %q, want a positive number of seconds", what, status, apiErr.RetryAfter)
		}
	}
}

// TestContractUnavailableWhileNATSIsDown: with NATS gone, pairing (PIN and code), the
// token endpoint and polling answer 503 unavailable with Retry-After — never a 500, never
// a hang.
func TestContractUnavailableWhileNATSIsDown(t *testing.T) {
	n := brokertest.StartNATS(t)
	b, err := broker.New(bg, broker.Config{URL: n.URL(), OpTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(bg) })
	s := startService(t, b, nil)
	paired := s.paired(t, "lobby")
	pin := s.pin(t, "lobby", false)
	asking := s.tablet(t)
	req, err := asking.RequestPairing(bg, "waiting")
	if err != nil {
		t.Fatal(err)
	}

	n.Stop()
	start := time.Now()
	wantRefusal(t, "POST /api/pair", s.tablet(t).Pair(bg, "lobby", pin, ""), http.StatusServiceUnavailable, "unavailable")
	wantRefusal(t, "POST /api/token", paired.Refresh(bg), http.StatusServiceUnavailable, "unavailable")
	_, err = s.tablet(t).RequestPairing(bg, "")
	wantRefusal(t, "POST /api/pair/requests", err, http.StatusServiceUnavailable, "unavailable")
	wantRefusal(t, "POST /api/pair/requests/{id}/poll", asking.Poll(bg, req.RequestID), http.StatusServiceUnavailable, "unavailable")
	t.Logf("four refusals in %v", time.Since(start).Round(time.Millisecond))

}

// TestContractDeviceEndpointsRecoverAfterNATSRestart: NATS (a single node, its store
// kept) restarts; once it is back, pairing and /api/token work again without a restart
// of kioskfeed: the 503s of the outage were "retry shortly", not "forever".
func TestContractDeviceEndpointsRecoverAfterNATSRestart(t *testing.T) {
	n := brokertest.StartNATS(t)
	b, err := broker.New(bg, broker.Config{URL: n.URL(), OpTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(bg) })
	s := startService(t, b, nil)
	paired := s.paired(t, "lobby")
	pin := s.pin(t, "lobby", false)

	n.Stop()
	wantRefusal(t, "POST /api/token while NATS is down", paired.Refresh(bg), http.StatusServiceUnavailable, "unavailable")
	n.Start()
	var last error
	deadline := time.Now().Add(20 * time.Second)
	for last = paired.Refresh(bg); last != nil && time.Now().Before(deadline); last = paired.Refresh(bg) {
		time.Sleep(100 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("/api/token 20 s after NATS came back: %v", last)
	}
	if err := s.tablet(t).Pair(bg, "lobby", pin, ""); err != nil {
		t.Fatalf("pairing with a PIN once NATS is back: %v", err)
	}
	if _, err := s.tablet(t).RequestPairing(bg, ""); err != nil {
		t.Fatalf("a pairing request once NATS is back: %v", err)
	}
}

// rawPost posts body to path with Content-Type ct (none when "") and a valid DPoP proof
// by key over nonce, and returns the answer.
func rawPost(t *testing.T, s *service, key *pairingtest.DeviceKey, path, ct, body, nonce string) answer {
	t.Helper()
	proof, err := key.Proof(pairingtest.ProofParams{Method: http.MethodPost, URL: s.URL + path, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("DPoP", proof)
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return readAnswer(t, resp)
}

// TestContractDeviceEndpointsWant415: a device endpoint given a body that is not
// declared application/json answers 415 unsupported_media_type (docs/protocol.md §1), with
// the same request otherwise valid: sent as JSON it is taken.
func TestContractDeviceEndpointsWant415(t *testing.T) {
	s := startService(t, nil, nil, func(c *pairing.Config) { c.PairBurst = 1000 })
	tab := s.paired(t, "lobby")
	asking := s.tablet(t)
	req, err := asking.RequestPairing(bg, "")
	if err != nil {
		t.Fatal(err)
	}
	endpoints := []struct {
		name, path, body string
		key              *pairingtest.DeviceKey
		ok               func(answer) bool // the answer to the same call sent as JSON
	}{
		{"pair", "/api/pair", `{"feed":"lobby","pin":"` + s.pin(t, "lobby", false) + `"}`, pairingtest.MustDeviceKey(t),
			func(a answer) bool { return a.status == http.StatusCreated }},
		{"token", "/api/token", `{"device_id":"` + tab.DeviceID + `"}`, tab.Key,
			func(a answer) bool { return a.status == http.StatusOK }},
		{"pair request", "/api/pair/requests", `{"name":"x"}`, pairingtest.MustDeviceKey(t),
			func(a answer) bool { return a.status == http.StatusCreated }},
		{"poll", "/api/pair/requests/" + req.RequestID + "/poll", `{}`, asking.Key,
			func(a answer) bool {
				return a.status == http.StatusBadRequest && a.body["error"] == "authorization_pending"
			}},
	}
	// Every answer of these endpoints carries a fresh nonce; start from one.
	nonce := rawPost(t, s, tab.Key, "/api/token", "application/json", `{"device_id":"`+tab.DeviceID+`"}`, "").header.Get("DPoP-Nonce")
	for _, ep := range endpoints {
		t.Run(ep.name, func(t *testing.T) {
			for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "", "application/jsonx"} {
				a := rawPost(t, s, ep.key, ep.path, ct, ep.body, nonce)
				if a.status != http.StatusUnsupportedMediaType || a.body["error"] != "unsupported_media_type" || a.body["message"] == "" {
					t.Errorf("Content-Type %q: %d %s, want 415 unsupported_media_type with a message", ct, a.status, a.raw)
				}
				if n := a.header.Get("DPoP-Nonce"); n != "" {
					nonce = n
				}
			}
			if a := rawPost(t, s, ep.key, ep.path, "application/json; charset=utf-8", ep.body, nonce); !ep.ok(a) {
				t.Errorf("the same call as application/json: %d %s, want it taken", a.status, a.raw)
			} else if n := a.header.Get("DPoP-Nonce"); n != "" {
				nonce = n
			}
		})
	}
}

// TestContractTokenRateLimited: one address calling /api/token without pause is answered
// 429 rate_limited with Retry-After before long (docs/protocol.md §1).
func TestContractTokenRateLimited(t *testing.T) {
	pairing.HoldTokenRefill(t) // a call slower than the refill (a loaded machine) must not keep it full
	s := startService(t, nil, nil)
	tab := s.paired(t, "lobby")
	var err error
	calls := 0
	for calls < maxCalls {
		calls++
		if err = tab.Refresh(bg); err != nil {
			break
		}
	}
	wantRefusal(t, "/api/token after "+strconv.Itoa(calls)+" calls", err, http.StatusTooManyRequests, "rate_limited")
	if calls < 2 {
		t.Fatalf("the first token call was refused: %v", err)
	}
	t.Logf("429 at call %d", calls)
}

// TestContractPollRateLimited: a tablet polling its pairing request without pause gets
// slow_down first (RFC 8628), and 429 rate_limited with Retry-After before long.
func TestContractPollRateLimited(t *testing.T) {
	s := startService(t, nil, nil)
	tab := s.tablet(t)
	req, err := tab.RequestPairing(bg, "")
	if err != nil {
		t.Fatal(err)
	}
	calls, slowDowns := 0, 0
	for calls < maxCalls {
		calls++
		err = tab.Poll(bg, req.RequestID)
		var apiErr *pairingtest.APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("poll %d: %v, want a refusal", calls, err)
		}
		if apiErr.Code == "slow_down" {
			slowDowns++
			continue
		}
		if apiErr.Code != "authorization_pending" {
			break
		}
	}
	wantRefusal(t, "poll after "+strconv.Itoa(calls)+" calls", err, http.StatusTooManyRequests, "rate_limited")
	if slowDowns == 0 {
		t.Fatalf("no slow_down before the 429 (after %d polls)", calls)
	}
	t.Logf("429 at poll %d, after %d slow_down answers", calls, slowDowns)
}
