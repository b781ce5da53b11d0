package admin_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// The dashboard's side of §3b: /admin/approve?code=… is where a tablet's QR code leads.

func TestDashboardApproveFromTheQRLink(t *testing.T) {
	s := startDashboard(t, manyPairs)
	tab := s.codeTablet(t)
	pr := s.request(t, tab, "Lobby left")
	plain := strings.ReplaceAll(pr.UserCode, "-", "")

	// Not logged in, the QR's URL leads to the login page, and back after login.
	target := strings.TrimPrefix(pr.VerificationURIComplete, s.URL)
	p := s.get(t, target, nil)
	if want := "/admin/login?next=" + url.QueryEscape(target); p.status != http.StatusSeeOther || p.location() != want {
		t.Fatalf("GET %s logged out: %d to %q, want 303 to %q", target, p.status, p.location(), want)
	}
	login := s.get(t, p.location(), nil)
	if !strings.Contains(login.body, `name="next" value="`+strings.ReplaceAll(target, "&", "&amp;")+`"`) {
		t.Fatalf("the login form does not carry next=%s:\n%s", target, login.body)
	}
	in := s.loginAnswer(t, dashPassword, target)
	if in.status != http.StatusSeeOther || in.location() != target {
		t.Fatalf("login with next=%s: %d to %q", target, in.status, in.location())
	}
	c := sessionCookie(t, in.header)

	// The devices page lists the open request with a link to review it.
	home := s.get(t, "/admin", c)
	row := regexp.MustCompile(`(?s)<tr data-request-code="` + plain + `">.*?</tr>`).FindString(home.body)
	if row == "" {
		t.Fatalf("no open request row on /admin:\n%s", home.body)
	}
	for _, want := range []string{pr.UserCode, "Lobby left", "127.0.0.1", tab.Key.JKT()[:8], "just now", `href="/admin/approve?code=` + plain + `"`} {
		if !strings.Contains(row, want) {
			t.Errorf("request row lacks %q:\n%s", want, row)
		}
	}

	// The approve page shows what the admin should check, and the form.
	page := s.get(t, "/admin/approve?code="+url.QueryEscape(strings.ToLower(pr.UserCode)), c)
	if page.status != http.StatusOK {
		t.Fatalf("approve page: %d\n%s", page.status, page.body)
	}
	for id, want := range map[string]string{
		"approve-code": pr.UserCode, "approve-address": "127.0.0.1", "approve-agent": "kioskfeed-test-tablet/1",
		"approve-key": tab.Key.JKT()[:8], "approve-suggested": "Lobby left",
	} {
		if got := byID(t, page.body, id); got != want {
			t.Errorf("#%s = %q, want %q", id, got, want)
		}
	}
	if !strings.Contains(page.body, `id="approve-age"`) || !strings.Contains(page.body, "just now") {
		t.Errorf("approve page shows no age:\n%s", page.body)
	}
	for _, want := range []string{`id="approve-form"`, `name="feed"`, `name="name"`, `name="replace"`, `value="approve"`, `value="deny"`, `name="code" value="` + plain + `"`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("approve page lacks %s", want)
		}
	}
	token := csrfOf(t, page.body)

	// A bad feed id: the page again, with the problem, and nothing decided.
	bad := s.post(t, "/admin/approve", c, withToken(token, "code", plain, "action", "approve", "feed", "Not A Feed"))
	if bad.status != http.StatusBadRequest || !strings.Contains(byID(t, bad.body, "page-error"), "feed id") || !strings.Contains(bad.body, `id="approve-form"`) {
		t.Fatalf("approve with a bad feed: %d, want 400 with the form and an error about the feed id\n%s", bad.status, bad.body)
	}
	wantAPIError(t, tab.Poll(bg, pr.RequestID), http.StatusBadRequest, "authorization_pending")

	ok := s.post(t, "/admin/approve", c, withToken(token, "code", plain, "action", "approve", "feed", "lobby", "name", "Lobby right"))
	if ok.status != http.StatusSeeOther || ok.location() != "/admin?notice=approved" {
		t.Fatalf("approve: %d to %q, want 303 to /admin?notice=approved\n%s", ok.status, ok.location(), ok.body)
	}
	s.clock.Advance(5 * time.Second)
	if err := tab.Poll(bg, pr.RequestID); err != nil {
		t.Fatalf("poll after the dashboard's approval: %v", err)
	}
	home = s.get(t, "/admin?notice=approved", c)
	if !strings.Contains(home.body, `data-device-id="`+tab.DeviceID+`"`) || !strings.Contains(home.body, "Lobby right") ||
		strings.Contains(home.body, `id="pair-requests"`) || !strings.Contains(home.body, `id="page-notice"`) {
		t.Fatalf("after approval /admin must list the device, no open request, and the notice:\n%s", home.body)
	}
	s.auditHas(t, "pair_approved", func(r broker.AuditRecord) bool {
		return r.DeviceID == tab.DeviceID && r.Feed == "lobby" && strings.Contains(r.Detail, "dashboard")
	})

	// The same link again: the code is used.
	again := s.get(t, target, c)
	if again.status != http.StatusNotFound || !strings.Contains(again.body, `id="page-error"`) || !strings.Contains(again.body, `id="code-form"`) {
		t.Fatalf("the used code's page: %d, want 404 with the error and the code form\n%s", again.status, again.body)
	}

	// Deny from the dashboard: the tablet hears access_denied.
	tab2 := s.codeTablet(t)
	pr2 := s.request(t, tab2, "")
	dn := s.post(t, "/admin/approve", c, withToken(token, "code", pr2.UserCode, "action", "deny"))
	if dn.status != http.StatusSeeOther || dn.location() != "/admin?notice=denied" {
		t.Fatalf("deny: %d to %q, want 303 to /admin?notice=denied", dn.status, dn.location())
	}
	wantAPIError(t, tab2.Poll(bg, pr2.RequestID), http.StatusForbidden, "access_denied")
	s.auditHas(t, "pair_denied", func(r broker.AuditRecord) bool { return strings.Contains(r.Detail, "dashboard") })

	// A code typed into the form without one.
	if empty := s.get(t, "/admin/approve", c); empty.status != http.StatusOK || !strings.Contains(empty.body, `id="code-form"`) {
		t.Fatalf("approve page without a code: %d, want 200 with the code form", empty.status)
	}
	if p := s.post(t, "/admin/approve", c, withToken(token, "code", plain, "action", "explode")); p.status != http.StatusBadRequest {
		t.Fatalf("an unknown action: %d, want 400", p.status)
	}
}

func TestDashboardApproveGuessesAuditedAndLimited(t *testing.T) {
	s := startDashboard(t, manyPairs)
	c, token := s.login(t)
	tab := s.codeTablet(t)
	pr := s.request(t, tab, "")

	// Wrong codes on the page and in the form: 404, each audited without the code.
	for i := range 10 {
		code := "BCDF-" + []string{"GHJK", "GHJL", "GHJM", "GHJN", "GHJP", "GHJQ", "GHJR", "GHJS", "GHJT", "GHJV"}[i]
		var p page
		if i%2 == 0 {
			p = s.get(t, "/admin/approve?code="+code, c)
		} else {
			p = s.post(t, "/admin/approve", c, withToken(token, "code", code, "action", "approve", "feed", "lobby"))
		}
		if p.status != http.StatusNotFound || strings.Contains(p.body, `id="approve-form"`) {
			t.Fatalf("guess %d: %d, want 404 without an approve form", i, p.status)
		}
	}
	brokertest.Eventually(t, 5*time.Second, "ten pair_approve_fail records", func() bool {
		return s.auditCount(t, "pair_approve_fail", func(r broker.AuditRecord) bool {
			return r.RemoteAddr == "127.0.0.1" && strings.Contains(r.Detail, "dashboard") && !strings.Contains(r.Detail, "BCDF")
		}) == 10
	})
	// Past the allowance even the right code is refused, with Retry-After.
	p := s.get(t, "/admin/approve?code="+pr.UserCode, c)
	if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" {
		t.Fatalf("the right code past the allowance: %d (Retry-After %q), want 429 with Retry-After", p.status, p.header.Get("Retry-After"))
	}
	// The audit page can filter on the type.
	audit := s.get(t, "/admin/audit?type=pair_approve_fail", c)
	if audit.status != http.StatusOK || !strings.Contains(audit.body, `<option value="pair_approve_fail" selected>`) {
		t.Fatalf("audit page for pair_approve_fail: %d\n%s", audit.status, audit.body)
	}
}

func TestDashboardApproveNeedsSessionAndCSRF(t *testing.T) {
	s := startDashboard(t, manyPairs)
	c, token := s.login(t)
	tab := s.codeTablet(t)
	pr := s.request(t, tab, "")
	form := url.Values{"code": {pr.UserCode}, "action": {"approve"}, "feed": {"lobby"}}

	if p := s.post(t, "/admin/approve", nil, withToken(token, "code", pr.UserCode, "action", "approve", "feed", "lobby")); p.status != http.StatusSeeOther || p.location() != "/admin/login" {
		t.Fatalf("POST without a session: %d to %q, want 303 to /admin/login", p.status, p.location())
	}
	for _, tc := range []struct {
		name    string
		token   string
		headers map[string]string
	}{
		{"no token", "", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": s.URL}},
		{"wrong token", "AAAA" + token[4:], map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": s.URL}},
		{"cross-site with a valid token", token, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
		{"old browser, foreign Origin, valid token", token, map[string]string{"Origin": "https://evil.example"}},
	} {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		if tc.token != "" {
			f.Set("csrf_token", tc.token)
		}
		if p := s.do(t, req{method: "POST", path: "/admin/approve", cookie: c, form: f, headers: tc.headers}); p.status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tc.name, p.status)
		}
	}
	// Nothing was approved.
	wantAPIError(t, tab.Poll(bg, pr.RequestID), http.StatusBadRequest, "authorization_pending")
	if n := len(s.ad.DeviceViews("")); n != 0 {
		t.Fatalf("refused forms paired %d devices", n)
	}
}

// TestDashboardApproveLoginRefusesOpenRedirect: the approve link's round trip through
// the login page follows only dashboard paths on this site.
func TestDashboardApproveLoginRefusesOpenRedirect(t *testing.T) {
	s := startDashboard(t)
	for _, next := range []string{
		"//evil.example", `/\evil.example`, "https:evil.example", "https://evil.example/admin/approve?code=WDJBMJHT",
		"/%2F%2Fevil.example", "/%2f%2fevil.example", "/%5Cevil.example", "/%5C%5Cevil.example",
		"/admin/%2F%2Fevil.example", "/admin//evil.example", "///evil.example", "/\t/evil.example", "/\r\n/evil.example",
		"/admin/../%2F%2Fevil.example", "/admin@evil.example", "http:/evil.example", "\\\\evil.example",
		" //evil.example", "/.//evil.example", "/admin/approve/..//evil.example",
	} {
		t.Run(strconv.Quote(next), func(t *testing.T) {
			s.clock.Advance(time.Minute) // every login takes from the address's allowance
			p := s.loginAnswer(t, dashPassword, next)
			if p.status != http.StatusSeeOther || p.location() != "/admin" {
				t.Fatalf("login with next=%q: %d to %q, want 303 to /admin", next, p.status, p.location())
			}
			// Already logged in, the login page sends you on at once: the same rule.
			c := sessionCookie(t, p.header)
			if g := s.get(t, "/admin/login?next="+url.QueryEscape(next), c); g.status != http.StatusSeeOther || g.location() != "/admin" {
				t.Fatalf("logged-in login page with next=%q: %d to %q, want 303 to /admin", next, g.status, g.location())
			}
			// Logged out, the form does not carry it.
			if g := s.get(t, "/admin/login?next="+url.QueryEscape(next), nil); strings.Contains(g.body, "evil.example") {
				t.Fatalf("login page kept next=%q:\n%s", next, g.body)
			}
		})
	}
	// What withSession sends to the login page is always accepted back.
	for _, path := range []string{"/admin/approve?code=WDJBMJHT", "/admin/approve?code=wdjb-mjht&x=%2F%2Fevil", "/admin/audit?type=pair_request"} {
		s.clock.Advance(time.Minute)
		p := s.get(t, path, nil)
		next, err := url.Parse(p.location())
		if err != nil || p.status != http.StatusSeeOther {
			t.Fatalf("GET %s logged out: %d to %q", path, p.status, p.location())
		}
		if in := s.loginAnswer(t, dashPassword, next.Query().Get("next")); in.location() != path {
			t.Fatalf("login back to %s: went to %q", path, in.location())
		}
	}
}
