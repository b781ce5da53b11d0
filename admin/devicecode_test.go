package admin_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// The reverse pairing flow of docs/protocol.md §3b: the tablet asks for a code, an
// administrator approves it, the tablet's poll collects its first token.

var (
	userCodeRe  = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)
	requestIDRe = regexp.MustCompile(`^pr_[0-9A-Z]{20}$`)
)

// lockedBuffer is a log destination tests read while handlers write.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// manyPairs lifts the per-address limit on pairing calls (one per 6 s, 10 at once),
// which these tests, all from 127.0.0.1, would otherwise meet before the limits they
// are about.
func manyPairs(c *pairing.Config) { c.PairBurst = 1000 }

// codeTablet is a tablet whose proofs are dated by the service's clock, which these
// tests move past poll intervals and expiries.
func (s *service) codeTablet(t *testing.T) *pairingtest.Tablet {
	t.Helper()
	tab := s.tablet(t)
	tab.Clock = s.clock.Now
	return tab
}

// request asks for a pairing code with tab.
func (s *service) request(t *testing.T, tab *pairingtest.Tablet, name string) *pairingtest.PairRequest {
	t.Helper()
	pr, err := tab.RequestPairing(bg, name)
	if err != nil {
		t.Fatalf("request pairing: %v", err)
	}
	return pr
}

func (s *service) approveCode(t *testing.T, code string, body map[string]any) answer {
	t.Helper()
	return s.admin(t, "POST", "/api/admin/pair-requests/"+url.PathEscape(code)+"/approve", body)
}

func (s *service) denyCode(t *testing.T, code string) answer {
	t.Helper()
	return s.admin(t, "POST", "/api/admin/pair-requests/"+url.PathEscape(code)+"/deny", nil)
}

// auditCount is how many records of typ (at most the newest 1000) keep accepts.
func (s *service) auditCount(t *testing.T, typ string, keep func(broker.AuditRecord) bool) int {
	t.Helper()
	recs, err := s.b.AuditList(bg, typ, 1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if keep == nil || keep(r) {
			n += max(r.Count, 1) // a record summing up repeated refusals counts them all
		}
	}
	return n
}

// noCode fails when a record's detail shows the user code, in any of its spellings.
func noCode(t *testing.T, what, text, code string) {
	t.Helper()
	for _, c := range []string{code, strings.ReplaceAll(code, "-", "")} {
		if strings.Contains(text, c) {
			t.Fatalf("%s shows the user code %s:\n%s", what, code, text)
		}
	}
}

func TestPairRequestApprovedAndCollected(t *testing.T) {
	var logs lockedBuffer
	s := startService(t, nil, nil, func(c *pairing.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	tab := s.codeTablet(t)

	// The request: 201 with every field of §3b, bound to the tablet's key.
	resp, err := tab.Post(bg, "/api/pair/requests", []byte(`{"name":"Lobby left"}`))
	if err != nil {
		t.Fatal(err)
	}
	first := readAnswer(t, resp)
	wantAnswer(t, first, http.StatusBadRequest, "use_dpop_nonce", "nonce") // no nonce yet
	pr := s.request(t, tab, "Lobby left")
	if !requestIDRe.MatchString(pr.RequestID) || !userCodeRe.MatchString(pr.UserCode) {
		t.Fatalf("request_id %q, user_code %q: want pr_ + 20 and XXXX-XXXX from the RFC 8628 alphabet", pr.RequestID, pr.UserCode)
	}
	plain := strings.ReplaceAll(pr.UserCode, "-", "")
	if pr.VerificationURI != s.URL+"/admin/approve" || pr.VerificationURIComplete != s.URL+"/admin/approve?code="+plain {
		t.Fatalf("verification URIs %q, %q; want %s/admin/approve and ...?code=%s", pr.VerificationURI, pr.VerificationURIComplete, s.URL, plain)
	}
	if pr.ExpiresIn != 600 || pr.Interval != 5 {
		t.Fatalf("expires_in %d, interval %d; want 600 and 5", pr.ExpiresIn, pr.Interval)
	}

	// Waiting: 400 authorization_pending, with a nonce for the next poll.
	resp, err = tab.Post(bg, "/api/pair/requests/"+pr.RequestID+"/poll", nil)
	if err != nil {
		t.Fatal(err)
	}
	pending := readAnswer(t, resp)
	wantAnswer(t, pending, http.StatusBadRequest, "authorization_pending", "")
	if pending.header.Get("DPoP-Nonce") == "" {
		t.Fatal("a poll's answer has no DPoP-Nonce")
	}

	// The admin's list: code, address, user agent, key thumbprint, age; no request id.
	list := s.admin(t, "GET", "/api/admin/pair-requests", nil)
	if list.status != http.StatusOK || len(list.list) != 1 {
		t.Fatalf("open requests: %d %s, want one", list.status, list.raw)
	}
	got := list.list[0]
	if got["user_code"] != pr.UserCode || got["remote_addr"] != "127.0.0.1" || got["user_agent"] != "kioskfeed-test-tablet/1" ||
		got["jkt"] != tab.Key.JKT() || got["name"] != "Lobby left" || got["age_s"] == nil || got["created_at"] == nil || got["expires_at"] == nil {
		t.Fatalf("open request %v: want its code, 127.0.0.1, the tablet's user agent and key, its name and age", got)
	}
	if strings.Contains(string(list.raw), pr.RequestID) {
		t.Fatal("the admin list shows the tablet's request id")
	}

	// Approved by code, ignoring case, spaces and hyphens; the name defaults to the
	// tablet's suggestion.
	ap := s.approveCode(t, " "+strings.ToLower(pr.UserCode[:4])+" "+strings.ToLower(pr.UserCode[5:]), map[string]any{"feed": "lobby"})
	if ap.status != http.StatusOK || !strings.HasPrefix(ap.body["device_id"].(string), "dev_") {
		t.Fatalf("approve: %d %s, want 200 with a device id", ap.status, ap.raw)
	}
	deviceID := ap.body["device_id"].(string)

	// The next poll, an interval later, collects the device and its first token: the
	// same body as §3's 201.
	s.clock.Advance(5 * time.Second)
	if err := tab.Poll(bg, pr.RequestID); err != nil {
		t.Fatalf("poll after approval: %v", err)
	}
	if tab.DeviceID != deviceID || tab.Feed != "lobby" || tab.Token == "" {
		t.Fatalf("collected %s on %q, want %s on lobby with a token", tab.DeviceID, tab.Feed, deviceID)
	}
	if d := tab.Expires.Sub(time.Now()); d < 9*time.Minute || d > 11*time.Minute {
		t.Fatalf("token lives %v, want the 10m default", d)
	}
	// The token is bound to the key and works as one from a PIN pairing does.
	wsURL := wsURLOf(s)
	if id, err := authenticate(t, s, tab.Key, tab.Token, wsURL); err != nil || id.DeviceID != deviceID || id.Feed != "lobby" {
		t.Fatalf("Authenticate = %+v, %v; want the approved device", id, err)
	}
	if err := tab.Refresh(bg); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	devs := s.admin(t, "GET", "/api/admin/devices?feed=lobby", nil)
	if len(devs.list) != 1 || devs.list[0]["device_id"] != deviceID || devs.list[0]["name"] != "Lobby left" ||
		devs.list[0]["remote_addr"] != "127.0.0.1" || devs.list[0]["user_agent"] != "kioskfeed-test-tablet/1" {
		t.Fatalf("lobby devices %s: want the approved tablet, named as it asked, with its address and agent", devs.raw)
	}
	// A lost answer is not fatal: the same key may collect again (with a fresh proof).
	if err := tab.Poll(bg, pr.RequestID); err != nil {
		t.Fatalf("second poll after approval: %v", err)
	}

	// The code was single use: it no longer names an open request.
	if again := s.approveCode(t, pr.UserCode, map[string]any{"feed": "kitchen"}); again.status != http.StatusNotFound || again.body["error"] != "not_found" {
		t.Fatalf("approving the used code: %d %s, want 404 not_found", again.status, again.raw)
	}
	if again := s.denyCode(t, pr.UserCode); again.status != http.StatusNotFound {
		t.Fatalf("denying the used code: %d %s, want 404", again.status, again.raw)
	}
	if l := s.admin(t, "GET", "/api/admin/pair-requests", nil); l.status != http.StatusOK || len(l.list) != 0 {
		t.Fatalf("open requests after approval: %s, want []", l.raw)
	}

	// Audited, without the code; logged, without the code or the token.
	req := s.auditHas(t, "pair_request", nil)
	if req.RemoteAddr != "127.0.0.1" || !strings.Contains(req.Detail, tab.Key.JKT()[:8]) {
		t.Fatalf("pair_request record %+v: want the tablet's address and short key", req)
	}
	okRec := s.auditHas(t, "pair_approved", func(r broker.AuditRecord) bool { return r.DeviceID == deviceID })
	if okRec.Feed != "lobby" || !strings.Contains(okRec.Detail, "admin API") {
		t.Fatalf("pair_approved record %+v: want feed lobby, approved through the admin API", okRec)
	}
	s.auditHas(t, "pair_approve_fail", nil)
	recs, _ := s.b.AuditList(bg, "", 100)
	for _, r := range recs {
		noCode(t, "audit record "+r.Type, r.Detail, pr.UserCode)
	}
	noCode(t, "the log", logs.String(), pr.UserCode)
	for _, secret := range []string{tab.Token, pr.RequestID} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("the log shows a token or request id:\n%s", logs.String())
		}
	}
}

func TestPairRequestPollAnswers(t *testing.T) {
	s := startService(t, nil, nil, manyPairs)

	t.Run("another key gets 401 invalid_dpop_proof", func(t *testing.T) {
		tab, thief := s.codeTablet(t), s.codeTablet(t)
		pr := s.request(t, tab, "")
		wantAPIError(t, thief.Poll(bg, pr.RequestID), http.StatusUnauthorized, "invalid_dpop_proof")
		s.auditHas(t, "pair_fail", func(r broker.AuditRecord) bool { return strings.Contains(r.Detail, "another key") })
		// Approved, it still answers the thief 401, and the owner 200.
		if ap := s.approveCode(t, pr.UserCode, map[string]any{"feed": "lobby"}); ap.status != http.StatusOK {
			t.Fatalf("approve: %d %s", ap.status, ap.raw)
		}
		wantAPIError(t, thief.Poll(bg, pr.RequestID), http.StatusUnauthorized, "invalid_dpop_proof")
		if thief.Token != "" {
			t.Fatal("the other key got a token")
		}
		if err := tab.Poll(bg, pr.RequestID); err != nil {
			t.Fatalf("the owner's poll: %v", err)
		}
	})

	t.Run("polling too fast gets slow_down, and the interval grows by 5 s", func(t *testing.T) {
		tab := s.codeTablet(t)
		pr := s.request(t, tab, "")
		wantAPIError(t, tab.Poll(bg, pr.RequestID), http.StatusBadRequest, "authorization_pending")
		wantAPIError(t, tab.Poll(bg, pr.RequestID), http.StatusBadRequest, "slow_down")
		// The interval is now 10 s: 9 s later is still too fast.
		s.clock.Advance(9 * time.Second)
		wantAPIError(t, tab.Poll(bg, pr.RequestID), http.StatusBadRequest, "slow_down")
		// Now 15 s; waiting that long is polite again.
		s.clock.Advance(15 * time.Second)
		wantAPIError(t, tab.Poll(bg, pr.RequestID), http.StatusBadRequest, "authorization_pending")
		s.clock.Advance(15 * time.Second)
		wantAPIError(t, tab.Poll(bg, pr.RequestID), http.StatusBadRequest, "authorization_pending")
	})

	t.Run("denied gets 403 access_denied", func(t *testing.T) {
		tab := s.codeTablet(t)
		pr := s.request(t, tab, "")
		if d := s.denyCode(t, strings.ToLower(pr.UserCode)); d.status != http.StatusNoContent {
			t.Fatalf("deny: %d %s, want 204", d.status, d.raw)
		}
		wantAPIError(t, tab.Poll(bg, pr.RequestID), http.StatusForbidden, "access_denied")
		s.clock.Advance(10 * time.Second)
		wantAPIError(t, tab.Poll(bg, pr.RequestID), http.StatusForbidden, "access_denied")
		s.auditHas(t, "pair_denied", func(r broker.AuditRecord) bool { return strings.Contains(r.Detail, tab.Key.JKT()[:8]) })
		if ap := s.approveCode(t, pr.UserCode, map[string]any{"feed": "lobby"}); ap.status != http.StatusNotFound {
			t.Fatalf("approving a denied code: %d %s, want 404", ap.status, ap.raw)
		}
	})

	t.Run("expired gets expired_token", func(t *testing.T) {
		tab := s.codeTablet(t)
		pr := s.request(t, tab, "")
		s.clock.Advance(pairing.PairRequestTTL + time.Second)
		wantAPIError(t, tab.Poll(bg, pr.RequestID), http.StatusBadRequest, "expired_token")
		wantAPIError(t, tab.Poll(bg, pr.RequestID), http.StatusBadRequest, "expired_token")
		if ap := s.approveCode(t, pr.UserCode, map[string]any{"feed": "lobby"}); ap.status != http.StatusNotFound {
			t.Fatalf("approving an expired code: %d %s, want 404", ap.status, ap.raw)
		}
	})

	t.Run("unknown and malformed request ids", func(t *testing.T) {
		tab := s.codeTablet(t)
		wantAPIError(t, tab.Poll(bg, "pr_ABCDEFGHJKMNPQRSTVWX"), http.StatusBadRequest, "expired_token")
		wantAPIError(t, tab.Poll(bg, "pr_nope"), http.StatusBadRequest, "invalid_request")
	})

	t.Run("a bad proof gets 400 invalid_dpop_proof", func(t *testing.T) {
		tab := s.codeTablet(t)
		pr := s.request(t, tab, "")
		ans := postDPoP(t, s, "/api/pair/requests/"+pr.RequestID+"/poll", nil, []byte(`{}`))
		wantAnswer(t, ans, http.StatusBadRequest, "invalid_dpop_proof", "exactly one DPoP proof")
		// A proof for another URL (the request endpoint) is not one for this poll.
		p := signProof(t, tab.Key, "POST", s.URL+"/api/pair/requests", nonceOf(t, s), "", s.clock.Now())
		ans = postDPoP(t, s, "/api/pair/requests/"+pr.RequestID+"/poll", []string{p}, []byte(`{}`))
		wantAnswer(t, ans, http.StatusBadRequest, "invalid_dpop_proof", "wrong htu")
	})

	t.Run("request bodies", func(t *testing.T) {
		tab := s.codeTablet(t)
		for _, tc := range []struct {
			name, body string
			status     int
			code       string
		}{
			{"empty object", `{}`, http.StatusCreated, ""},
			{"empty body", ``, http.StatusCreated, ""},
			{"unknown field", `{"feed":"lobby"}`, http.StatusBadRequest, "invalid_request"},
			{"name too long", `{"name":"` + strings.Repeat("x", 65) + `"}`, http.StatusBadRequest, "invalid_request"},
			{"control character", `{"name":"a\u0085b"}`, http.StatusBadRequest, "invalid_request"},
			{"not an object", `[]`, http.StatusBadRequest, "invalid_request"},
		} {
			var a answer
			for range 2 { // the first may be use_dpop_nonce
				resp, err := tab.Post(bg, "/api/pair/requests", []byte(tc.body))
				if err != nil {
					t.Fatal(err)
				}
				if a = readAnswer(t, resp); a.body["error"] != "use_dpop_nonce" {
					break
				}
			}
			if a.status != tc.status || (tc.code != "" && a.body["error"] != tc.code) {
				t.Errorf("%s: %d %s, want %d %s", tc.name, a.status, a.raw, tc.status, tc.code)
			}
			if a.status == http.StatusCreated {
				_ = s.denyCode(t, a.body["user_code"].(string)) // give the address's place back
			}
		}
	})
}

func TestPairRequestOpenPerAddressLimit(t *testing.T) {
	s := startService(t, nil, nil, manyPairs)
	tab := s.codeTablet(t)
	var codes []string
	for range pairing.MaxOpenPairRequests {
		codes = append(codes, s.request(t, tab, "").UserCode)
	}
	_, err := tab.RequestPairing(bg, "")
	wantAPIError(t, err, http.StatusTooManyRequests, "rate_limited")
	if ra, _ := strconv.Atoi(err.(*pairingtest.APIError).RetryAfter); ra < 1 || ra > 60 {
		t.Fatalf("Retry-After %q, want 1 to 60 seconds", err.(*pairingtest.APIError).RetryAfter)
	}
	// Another tablet at the same address is refused too: the limit is the address's.
	_, err = s.codeTablet(t).RequestPairing(bg, "")
	wantAPIError(t, err, http.StatusTooManyRequests, "rate_limited")

	// A decided request gives its place back...
	if d := s.denyCode(t, codes[0]); d.status != http.StatusNoContent {
		t.Fatalf("deny: %d", d.status)
	}
	s.request(t, tab, "")
	_, err = tab.RequestPairing(bg, "")
	wantAPIError(t, err, http.StatusTooManyRequests, "rate_limited")
	// ...and so do expired ones.
	s.clock.Advance(pairing.PairRequestTTL)
	s.request(t, tab, "")
}

func TestPairRequestApprovedTwice(t *testing.T) {
	s := startService(t, nil, nil, manyPairs)
	tab := s.codeTablet(t)
	pr := s.request(t, tab, "")

	// Six administrators approve the same code at once, for different feeds.
	const n = 6
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			answers[i] = s.approveCode(t, pr.UserCode, map[string]any{"feed": "feed-" + strconv.Itoa(i), "replace": true})
		})
	}
	wg.Wait()
	won := -1
	for i, a := range answers {
		switch a.status {
		case http.StatusOK:
			if won >= 0 {
				t.Fatalf("approvals %d and %d both won", won, i)
			}
			won = i
		case http.StatusNotFound:
		default:
			t.Fatalf("approval %d: %d %s, want 200 or 404", i, a.status, a.raw)
		}
	}
	if won < 0 {
		t.Fatal("no approval won")
	}
	// Exactly one device, on the winner's feed, and the tablet collects that one.
	if devs := s.ad.DeviceViews(""); len(devs) != 1 || devs[0].Feed != "feed-"+strconv.Itoa(won) {
		t.Fatalf("devices %+v, want one on feed-%d", devs, won)
	}
	if err := tab.Poll(bg, pr.RequestID); err != nil || tab.DeviceID != answers[won].body["device_id"] {
		t.Fatalf("poll: %v, device %s; want the winner's %v", err, tab.DeviceID, answers[won].body["device_id"])
	}
	brokertest.Eventually(t, 5*time.Second, "one pair_approved and five pair_approve_fail records", func() bool {
		return s.auditCount(t, "pair_approved", nil) == 1 && s.auditCount(t, "pair_approve_fail", nil) == n-1
	})

	// An approval and a denial racing: one of them wins, and the tablet hears that one.
	for range 5 {
		s.clock.Advance(time.Minute) // each loser is a miss against the admin's allowance
		tab := s.codeTablet(t)
		pr := s.request(t, tab, "")
		var ap, dn answer
		var wg sync.WaitGroup
		wg.Go(func() { ap = s.approveCode(t, pr.UserCode, map[string]any{"feed": "race"}) })
		wg.Go(func() { dn = s.denyCode(t, pr.UserCode) })
		wg.Wait()
		err := tab.Poll(bg, pr.RequestID)
		switch {
		case ap.status == http.StatusOK && dn.status == http.StatusNotFound:
			if err != nil {
				t.Fatalf("approval won, but the poll says %v", err)
			}
		case ap.status == http.StatusNotFound && dn.status == http.StatusNoContent:
			wantAPIError(t, err, http.StatusForbidden, "access_denied")
		default:
			t.Fatalf("approve %d and deny %d: want exactly one to win", ap.status, dn.status)
		}
	}
}

func TestPairRequestApprovalRacesExpiry(t *testing.T) {
	s := startService(t, nil, nil, manyPairs)

	t.Run("approved a second before expiry: collected after it", func(t *testing.T) {
		tab := s.codeTablet(t)
		pr := s.request(t, tab, "")
		s.clock.Advance(pairing.PairRequestTTL - time.Second)
		if ap := s.approveCode(t, pr.UserCode, map[string]any{"feed": "lobby"}); ap.status != http.StatusOK {
			t.Fatalf("approve before expiry: %d %s", ap.status, ap.raw)
		}
		s.clock.Advance(time.Minute)
		if err := tab.Poll(bg, pr.RequestID); err != nil {
			t.Fatalf("poll after expiry of an approved request: %v, want its token", err)
		}
	})

	t.Run("approved at expiry: too late, and the tablet hears expired_token", func(t *testing.T) {
		tab := s.codeTablet(t)
		pr := s.request(t, tab, "")
		s.clock.Advance(pairing.PairRequestTTL)
		if ap := s.approveCode(t, pr.UserCode, map[string]any{"feed": "lobby"}); ap.status != http.StatusNotFound {
			t.Fatalf("approve at expiry: %d %s, want 404", ap.status, ap.raw)
		}
		wantAPIError(t, tab.Poll(bg, pr.RequestID), http.StatusBadRequest, "expired_token")
	})

	t.Run("racing at the boundary: tablet and admin hear the same outcome", func(t *testing.T) {
		outcomes := map[bool]int{}
		for i := range 8 {
			tab := s.codeTablet(t)
			pr := s.request(t, tab, "")
			// Expiry falls a few milliseconds from now, while both are under way.
			s.clock.Advance(pairing.PairRequestTTL - time.Duration(i)*time.Millisecond)
			var ap answer
			var pollErr error
			var wg sync.WaitGroup
			wg.Go(func() { ap = s.approveCode(t, pr.UserCode, map[string]any{"feed": "race"}) })
			wg.Go(func() { pollErr = tab.Poll(bg, pr.RequestID) })
			wg.Wait()
			// Well after expiry, the decision stands.
			s.clock.Advance(time.Minute)
			final := tab.Poll(bg, pr.RequestID)
			approved := ap.status == http.StatusOK
			outcomes[approved]++
			if approved {
				if final != nil {
					t.Fatalf("approval won the race, but the tablet then hears %v", final)
				}
				if e, ok := pollErr.(*pairingtest.APIError); ok && e.Code == "expired_token" {
					t.Fatal("approval won the race, but the racing poll said expired_token")
				}
			} else {
				if ap.status != http.StatusNotFound {
					t.Fatalf("approve: %d %s, want 200 or 404", ap.status, ap.raw)
				}
				wantAPIError(t, final, http.StatusBadRequest, "expired_token")
				if pollErr == nil {
					t.Fatal("expiry won the race, but the racing poll got a token")
				}
				if n := len(s.ad.DeviceViews("race")); n != outcomes[true] {
					t.Fatalf("race feed has %d devices after %d winning approvals", n, outcomes[true])
				}
			}
		}
		t.Logf("outcomes (approved: count): %v", outcomes)
	})
}

func TestPairRequestCodeGuessesAuditedAndLimited(t *testing.T) {
	var logs lockedBuffer
	s := startService(t, nil, nil, manyPairs, func(c *pairing.Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	tab := s.codeTablet(t)
	pr := s.request(t, tab, "")

	guesses := []string{"BCDF-GHJK", "ZZZZ-ZZZZ", "wdjb mjht", "AAAA-AAAA", "123", "BBBB-BBBB", "BCDFGHJKL", "XXXX-XXXX", "QQQQ-QQQQ"}
	for i, g := range guesses {
		var a answer
		if i%2 == 0 {
			a = s.approveCode(t, g, map[string]any{"feed": "lobby"})
		} else {
			a = s.denyCode(t, g)
		}
		if a.status != http.StatusNotFound || a.body["error"] != "not_found" {
			t.Fatalf("guess %q: %d %s, want 404 not_found", g, a.status, a.raw)
		}
	}
	// Every guess that reached the handler is counted in the audit log, with the
	// address and without the guess.
	brokertest.Eventually(t, 5*time.Second, "a pair_approve_fail record per guess", func() bool {
		return s.auditCount(t, "pair_approve_fail", func(r broker.AuditRecord) bool { return r.RemoteAddr == "127.0.0.1" }) == len(guesses)
	})
	recs, _ := s.b.AuditList(bg, "pair_approve_fail", 100)
	for _, r := range recs {
		for _, g := range guesses[:4] {
			noCode(t, "pair_approve_fail record", r.Detail, g)
		}
	}
	// Past the allowance (10 at once, then one per 30 s) every lookup is refused, even
	// of the right code, so that the refusal says nothing about it.
	a := s.approveCode(t, "VVVV-VVVV", map[string]any{"feed": "lobby"})
	if a.status != http.StatusNotFound {
		t.Fatalf("tenth guess: %d, want 404", a.status)
	}
	a = s.approveCode(t, pr.UserCode, map[string]any{"feed": "lobby"})
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" {
		t.Fatalf("the right code past the allowance: %d %s, want 429 with Retry-After", a.status, a.raw)
	}
	s.clock.Advance(30 * time.Second)
	if a = s.approveCode(t, pr.UserCode, map[string]any{"feed": "lobby"}); a.status != http.StatusOK {
		t.Fatalf("the right code 30 s later: %d %s, want 200", a.status, a.raw)
	}
	// Bad approvals are refused before any lookup, and count as no guess.
	for _, body := range []map[string]any{{"feed": "Not A Feed"}, {}, {"feed": "lobby", "name": strings.Repeat("n", 65)}} {
		if a := s.approveCode(t, pr.UserCode, body); a.status != http.StatusBadRequest || a.body["error"] != "invalid_request" {
			t.Fatalf("approve with %v: %d %s, want 400 invalid_request", body, a.status, a.raw)
		}
	}
	for _, g := range guesses[:4] {
		noCode(t, "the log", logs.String(), g)
	}
	// Without an admin token nothing is looked up at all.
	if a := s.admin(t, "POST", "/api/admin/pair-requests/"+pr.UserCode+"/approve", map[string]any{"feed": "x"}, ""); a.status != http.StatusUnauthorized {
		t.Fatalf("approve without a token: %d, want 401", a.status)
	}
	if a := s.admin(t, "GET", "/api/admin/pair-requests", nil, "wrong"); a.status != http.StatusUnauthorized {
		t.Fatalf("list without a token: %d, want 401", a.status)
	}
}

func TestPairRequestReplaceRevokesTheFeedsDevices(t *testing.T) {
	s := startService(t, nil, nil, manyPairs)
	old1, old2 := s.paired(t, "lobby"), s.paired(t, "lobby")
	elsewhere := s.paired(t, "kitchen")
	var mu sync.Mutex
	revoked := map[string]string{}
	// What the bridge hears to close the sockets (4403).
	s.a.Devices().OnRevoke(func(id, feed string) {
		mu.Lock()
		revoked[id] = feed
		mu.Unlock()
	})

	tab := s.codeTablet(t)
	pr := s.request(t, tab, "")
	if ap := s.approveCode(t, pr.UserCode, map[string]any{"feed": "lobby", "name": "New lobby", "replace": true}); ap.status != http.StatusOK {
		t.Fatalf("approve with replace: %d %s", ap.status, ap.raw)
	}
	for _, old := range []*pairingtest.Tablet{old1, old2} {
		wantAPIError(t, old.Refresh(bg), http.StatusUnauthorized, "invalid_token")
	}
	brokertest.Eventually(t, 5*time.Second, "the registry to announce both revocations", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return revoked[old1.DeviceID] == "lobby" && revoked[old2.DeviceID] == "lobby" && len(revoked) == 2
	})
	if err := elsewhere.Refresh(bg); err != nil {
		t.Fatalf("a device of another feed was touched: %v", err)
	}
	if err := tab.Poll(bg, pr.RequestID); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if devs := s.ad.DeviceViews("lobby"); len(devs) != 1 || devs[0].ID != tab.DeviceID || devs[0].Name != "New lobby" {
		t.Fatalf("lobby after replace: %+v, want only the approved tablet", devs)
	}
	s.auditHas(t, "device_revoked", func(r broker.AuditRecord) bool { return r.DeviceID == old1.DeviceID })
	s.auditHas(t, "pair_approved", func(r broker.AuditRecord) bool {
		return r.DeviceID == tab.DeviceID && strings.Contains(r.Detail, "replaces")
	})

	// Revoked after approval, a poll no longer hands out tokens.
	if r := s.admin(t, "DELETE", "/api/admin/devices/"+tab.DeviceID, nil); r.status != http.StatusNoContent {
		t.Fatalf("revoke: %d", r.status)
	}
	s.clock.Advance(time.Minute)
	wantAPIError(t, tab.Poll(bg, pr.RequestID), http.StatusBadRequest, "expired_token")
}

func TestPairQRCode(t *testing.T) {
	s := startService(t, nil, nil, manyPairs)
	resp, err := s.Client().Get(s.URL + "/api/pair/qr.svg?code=wdjb-mjht")
	if err != nil {
		t.Fatal(err)
	}
	a := readAnswer(t, resp)
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "image/svg+xml" || a.header.Get("Cache-Control") != "no-store" ||
		a.header.Get("X-Content-Type-Options") != "nosniff" || !strings.HasPrefix(a.header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("QR: %d, headers %v; want an uncached SVG that runs nothing", a.status, a.header)
	}
	svg := string(a.raw)
	if !strings.HasPrefix(svg, "<svg ") || !strings.HasSuffix(svg, "</svg>") {
		t.Fatalf("not an SVG: %.200s", svg)
	}
	for _, never := range []string{"<script", "style", "href", "on", "WDJBMJHT", "http"} {
		if strings.Contains(strings.TrimPrefix(svg, `<svg xmlns="http://www.w3.org/2000/svg"`), never) {
			t.Fatalf("the SVG contains %q: %.300s", never, svg)
		}
	}
	for _, bad := range []string{"", "WDJB-MJH", "WDJB-MJHTX", "AAAA-AAAA", "https://evil.example", "WDJB%0AMJHT"} {
		resp, err := s.Client().Get(s.URL + "/api/pair/qr.svg?code=" + bad)
		if err != nil {
			t.Fatal(err)
		}
		if a := readAnswer(t, resp); a.status != http.StatusBadRequest || a.body["error"] != "invalid_request" {
			t.Fatalf("QR of %q: %d %s, want 400 invalid_request", bad, a.status, a.raw)
		}
	}
}

func TestClusterPairRequestAcrossInstances(t *testing.T) {
	a, b := startCluster(t, manyPairs)
	tab := a.codeTablet(t)
	pr := a.request(t, tab, "")
	// Approved on B, which never saw the request.
	if ap := b.approveCode(t, pr.UserCode, map[string]any{"feed": "lobby"}); ap.status != http.StatusOK {
		t.Fatalf("approve on B: %d %s", ap.status, ap.raw)
	}
	// Collected from B too: the same key, B's URL.
	onB := &pairingtest.Tablet{BaseURL: b.URL, Key: tab.Key, HTTP: b.Client(), Clock: b.clock.Now}
	if err := onB.Poll(bg, pr.RequestID); err != nil {
		t.Fatalf("poll on B: %v", err)
	}
	if l := a.admin(t, "GET", "/api/admin/pair-requests", nil); len(l.list) != 0 {
		t.Fatalf("A still lists the request approved on B: %s", l.raw)
	}
	brokertest.Eventually(t, 5*time.Second, "A to know the device approved on B", func() bool {
		_, ok := a.a.Devices().Device(onB.DeviceID)
		return ok
	})
}
