package admin_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kioskfeed/kioskfeed/admin"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing"
)

const (
	dashPassword = "correct horse battery staple"
	wantCSP      = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)

// startDashboard runs the service (the dashboard included) with dashPassword set.
func startDashboard(t *testing.T, mod ...any) *service {
	t.Helper()
	s := startService(t, nil, []*ecdsa.PrivateKey{newSigningKey(t)}, mod...)
	setPassword(t, s.b, dashPassword)
	return s
}

func newSigningKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// setPassword stores a password's hash as `kioskfeed admin passwd` would, at bcrypt's
// lowest cost so that the many logins of these tests stay fast under -race.
func setPassword(t *testing.T, b *broker.Broker, pw string) {
	t.Helper()
	kv, err := b.Bucket(bg, admin.BucketConfig())
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(bg, "password", hash); err != nil {
		t.Fatal(err)
	}
}

// page is one dashboard answer.
type page struct {
	status int
	header http.Header
	body   string
}

func (p page) location() string { return p.header.Get("Location") }

// req describes one browser request to the dashboard.
type req struct {
	method  string
	path    string
	form    url.Values
	cookie  *http.Cookie
	headers map[string]string
}

// do sends r without following redirects.
func (s *service) do(t *testing.T, r req) page {
	t.Helper()
	var body io.Reader
	if r.form != nil {
		body = strings.NewReader(r.form.Encode())
	}
	hr, err := http.NewRequest(r.method, s.URL+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if r.form != nil {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if r.cookie != nil {
		hr.AddCookie(r.cookie)
	}
	for k, v := range r.headers {
		hr.Header.Set(k, v)
	}
	client := *s.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, header: resp.Header, body: string(raw)}
}

func (s *service) get(t *testing.T, path string, c *http.Cookie) page {
	t.Helper()
	return s.do(t, req{method: "GET", path: path, cookie: c})
}

// post sends a form the way a browser on our own page does.
func (s *service) post(t *testing.T, path string, c *http.Cookie, form url.Values) page {
	t.Helper()
	return s.do(t, req{method: "POST", path: path, cookie: c, form: form,
		headers: map[string]string{"Origin": s.URL, "Sec-Fetch-Site": "same-origin"}})
}

// loginAnswer posts the login form.
func (s *service) loginAnswer(t *testing.T, password, next string) page {
	t.Helper()
	return s.post(t, "/admin/login", nil, url.Values{"password": {password}, "next": {next}})
}

// login logs in and returns the session cookie and the CSRF token of its forms.
func (s *service) login(t *testing.T) (*http.Cookie, string) {
	t.Helper()
	p := s.loginAnswer(t, dashPassword, "")
	if p.status != http.StatusSeeOther {
		t.Fatalf("login: status = %d, want 303; body %s", p.status, p.body)
	}
	c := sessionCookie(t, p.header)
	home := s.get(t, "/admin", c)
	if home.status != http.StatusOK {
		t.Fatalf("GET /admin after login: status = %d, want 200", home.status)
	}
	return c, csrfOf(t, home.body)
}

func sessionCookie(t *testing.T, h http.Header) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if strings.HasSuffix(c.Name, "kf_admin") {
			return c
		}
	}
	t.Fatalf("no session cookie in %q", h.Values("Set-Cookie"))
	return nil
}

var csrfRe = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf_token field in the page:\n%s", body)
	}
	return m[1]
}

// byID returns the text inside the element with this id (no nested elements of the
// same tag expected).
func byID(t *testing.T, body, id string) string {
	t.Helper()
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)<`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no element #%s in the page:\n%s", id, body)
	}
	return m[1]
}

func withToken(token string, kv ...string) url.Values {
	v := url.Values{"csrf_token": {token}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

func TestEnsureAdminPassword(t *testing.T) {
	b := brokertest.New(t)
	keys := []*ecdsa.PrivateKey{newSigningKey(t)}
	s := startService(t, b, keys)
	pw, err := s.ad.EnsurePassword(bg)
	if err != nil {
		t.Fatalf("EnsureAdminPassword: %v", err)
	}
	if !regexp.MustCompile(`^[a-z2-9]{5}(-[a-z2-9]{5}){3}$`).MatchString(pw) {
		t.Fatalf("new password = %q, want 4 groups of 5 characters", pw)
	}
	again, err := s.ad.EnsurePassword(bg)
	if err != nil || again != "" {
		t.Fatalf("second EnsureAdminPassword = %q, %v; want \"\", nil", again, err)
	}
	// Another instance on the same NATS shares the password.
	other := startService(t, b, keys)
	if got, err := other.ad.EnsurePassword(bg); err != nil || got != "" {
		t.Fatalf("EnsureAdminPassword on a second instance = %q, %v; want \"\", nil", got, err)
	}
	// What was printed is what logs in.
	mux := http.NewServeMux()
	other.ad.Register(mux)
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/admin/login", strings.NewReader(url.Values{"password": {pw}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	mux.ServeHTTP(rec, r)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/admin" {
		t.Fatalf("login with the new password: %d to %q, want 303 to /admin", rec.Code, rec.Header().Get("Location"))
	}
}

func TestDashboardLogin(t *testing.T) {
	s := startDashboard(t)

	form := s.get(t, "/admin/login", nil)
	if form.status != http.StatusOK || !strings.Contains(form.body, `id="login-form"`) || !strings.Contains(form.body, `type="password"`) {
		t.Fatalf("GET /admin/login: %d, want 200 with the login form:\n%s", form.status, form.body)
	}

	wrong := s.loginAnswer(t, "not the password", "")
	if wrong.status != http.StatusUnauthorized {
		t.Fatalf("wrong password: status = %d, want 401", wrong.status)
	}
	if got := byID(t, wrong.body, "page-error"); !strings.Contains(got, "not right") {
		t.Fatalf("wrong password: error = %q, want it to say the password is not right", got)
	}
	if strings.Contains(wrong.header.Get("Set-Cookie"), "kf_admin") {
		t.Fatalf("wrong password set a session cookie: %q", wrong.header.Get("Set-Cookie"))
	}
	rec := s.auditHas(t, "admin_login_fail", nil)
	if rec.RemoteAddr != "127.0.0.1" {
		t.Fatalf("admin_login_fail remote_addr = %q, want 127.0.0.1", rec.RemoteAddr)
	}

	ok := s.loginAnswer(t, dashPassword, "")
	if ok.status != http.StatusSeeOther || ok.location() != "/admin" {
		t.Fatalf("right password: %d to %q, want 303 to /admin", ok.status, ok.location())
	}
	c := sessionCookie(t, ok.header)
	if c.Name != "kf_admin" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure {
		t.Fatalf("cookie = %+v, want kf_admin, HttpOnly, SameSite=Strict, Path=/, not Secure over http", c)
	}
	if c.MaxAge != int(admin.SessionTTL/time.Second) {
		t.Fatalf("cookie Max-Age = %d, want %d", c.MaxAge, int(admin.SessionTTL/time.Second))
	}
	if raw, err := url.QueryUnescape(c.Value); err != nil || len(raw) != 43 {
		t.Fatalf("session id %q: want 32 random bytes in base64url", c.Value)
	}
	if p := s.get(t, "/admin", c); p.status != http.StatusOK {
		t.Fatalf("GET /admin with the session: %d, want 200", p.status)
	}
	s.auditHas(t, "admin_login", nil)

	// Logged in already, the login page sends you on.
	if p := s.get(t, "/admin/login?next=/admin/audit", c); p.status != http.StatusSeeOther || p.location() != "/admin/audit" {
		t.Fatalf("GET /admin/login while logged in: %d to %q, want 303 to /admin/audit", p.status, p.location())
	}
}

func TestDashboardCookieUnderTLS(t *testing.T) {
	b := brokertest.New(t)
	cfg := pairing.Config{PublicURL: "https://admin.example", SigningKeys: []*ecdsa.PrivateKey{newSigningKey(t)}}
	a, err := pairing.New(bg, cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	setPassword(t, b, dashPassword)
	mux := http.NewServeMux()
	startAdmin(t, b, a, cfg, nil).Register(mux)

	rec := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "https://admin.example/admin/login", strings.NewReader(url.Values{"password": {dashPassword}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "https://admin.example")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	mux.ServeHTTP(rec, r)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("login: status = %d, want 303; body %s", rec.Code, rec.Body)
	}
	c := sessionCookie(t, rec.Header())
	if c.Name != "__Host-kf_admin" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
		t.Fatalf("cookie = %+v, want __Host-kf_admin, Secure, HttpOnly, SameSite=Strict, Path=/, no Domain", c)
	}

	rec = httptest.NewRecorder()
	r = httptest.NewRequest("GET", "https://admin.example/admin", nil)
	r.AddCookie(c)
	mux.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /admin with the __Host- cookie: %d, want 200", rec.Code)
	}
	// The plain name is not the session cookie under TLS.
	rec = httptest.NewRecorder()
	r = httptest.NewRequest("GET", "https://admin.example/admin", nil)
	r.AddCookie(&http.Cookie{Name: "kf_admin", Value: c.Value})
	mux.ServeHTTP(rec, r)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("GET /admin with a kf_admin cookie under TLS: %d, want 303 to the login page", rec.Code)
	}
}

func TestDashboardPagesNeedSession(t *testing.T) {
	s := startDashboard(t)
	for _, path := range []string{"/admin", "/admin/producers", "/admin/audit?type=pair_ok", "/admin/events"} {
		p := s.get(t, path, nil)
		want := "/admin/login?next=" + url.QueryEscape(path)
		if p.status != http.StatusSeeOther || p.location() != want {
			t.Errorf("GET %s without a session: %d to %q, want 303 to %q", path, p.status, p.location(), want)
		}
	}
	// A made-up session id is no session.
	fake := &http.Cookie{Name: "kf_admin", Value: strings.Repeat("A", 43)}
	if p := s.get(t, "/admin", fake); p.status != http.StatusSeeOther {
		t.Errorf("GET /admin with an unknown session id: %d, want 303", p.status)
	}
	if p := s.get(t, "/admin/live", nil); p.status != http.StatusUnauthorized {
		t.Errorf("GET /admin/live without a session: %d, want 401", p.status)
	}
	for _, path := range []string{"/admin/pins", "/admin/devices/dev_X/revoke", "/admin/producers", "/admin/producers/x/delete", "/admin/events"} {
		p := s.post(t, path, nil, url.Values{"csrf_token": {"x"}})
		if p.status != http.StatusSeeOther || p.location() != "/admin/login" {
			t.Errorf("POST %s without a session: %d to %q, want 303 to /admin/login", path, p.status, p.location())
		}
	}
	if p := s.get(t, "/admin/", nil); p.status != http.StatusSeeOther || p.location() != "/admin" {
		t.Errorf("GET /admin/: %d to %q, want 303 to /admin", p.status, p.location())
	}
	// After login, the next parameter brings you back.
	p := s.loginAnswer(t, dashPassword, "/admin/audit?type=pair_ok")
	if p.status != http.StatusSeeOther || p.location() != "/admin/audit?type=pair_ok" {
		t.Errorf("login with next: %d to %q, want 303 to /admin/audit?type=pair_ok", p.status, p.location())
	}
}

func TestDashboardLoginRefusesOpenRedirect(t *testing.T) {
	s := startDashboard(t)
	for _, next := range []string{
		"//evil.example", `/\evil.example`, "https:evil.example", "https://evil.example",
		"/\t/evil.example", "evil.example", "javascript:alert(1)", "",
	} {
		t.Run(strconv.Quote(next), func(t *testing.T) {
			p := s.loginAnswer(t, dashPassword, next)
			if p.status != http.StatusSeeOther || p.location() != "/admin" {
				t.Fatalf("login with next=%q: %d to %q, want 303 to /admin", next, p.status, p.location())
			}
		})
	}
	// The login page does not carry it into its form either.
	p := s.get(t, "/admin/login?next="+url.QueryEscape("//evil.example"), nil)
	if strings.Contains(p.body, "evil.example") {
		t.Fatalf("login page kept next=//evil.example:\n%s", p.body)
	}
}

func TestDashboardCSRF(t *testing.T) {
	s := startDashboard(t)
	c, token := s.login(t)
	tab := s.paired(t, "lobby")
	keyPage := s.post(t, "/admin/producers", c, withToken(token, "name", "csrf victim", "feeds", "lobby"))
	if keyPage.status != http.StatusOK {
		t.Fatalf("create producer key: %d", keyPage.status)
	}
	keyID := s.b.ProducerKeys()[0].ID

	forms := []struct {
		path string
		form url.Values
	}{
		{"/admin/pins", url.Values{"feed": {"lobby"}, "ttl": {"5"}}},
		{"/admin/devices/" + tab.DeviceID + "/revoke", url.Values{}},
		{"/admin/producers", url.Values{"name": {"x"}, "feeds": {"lobby"}}},
		{"/admin/producers/" + keyID + "/delete", url.Values{}},
		{"/admin/events", url.Values{"feed": {"lobby"}, "kind": {"state"}, "data": {"{}"}}},
		{"/admin/logout", url.Values{}},
	}
	for _, f := range forms {
		t.Run(f.path, func(t *testing.T) {
			cases := []struct {
				name    string
				token   string
				headers map[string]string
			}{
				{"no token", "", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": s.URL}},
				{"wrong token", "AAAA" + token[4:], map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": s.URL}},
				{"another session's token", "not-a-token", map[string]string{"Sec-Fetch-Site": "same-origin"}},
				{"cross-site with a valid token", token, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
				{"old browser, foreign Origin, valid token", token, map[string]string{"Origin": "https://evil.example"}},
			}
			for _, tc := range cases {
				form := url.Values{}
				for k, v := range f.form {
					form[k] = v
				}
				if tc.token != "" {
					form.Set("csrf_token", tc.token)
				}
				p := s.do(t, req{method: "POST", path: f.path, cookie: c, form: form, headers: tc.headers})
				if p.status != http.StatusForbidden {
					t.Errorf("%s: status = %d, want 403", tc.name, p.status)
				}
				if !strings.Contains(p.body, `id="error-message"`) {
					t.Errorf("%s: want the error page, got:\n%s", tc.name, p.body)
				}
			}
		})
	}
	// Nothing was done.
	if len(s.ad.DeviceViews("lobby")) != 1 || len(s.b.ProducerKeys()) != 1 {
		t.Fatalf("refused forms changed something: devices %d, keys %d; want 1 and 1", len(s.ad.DeviceViews("lobby")), len(s.b.ProducerKeys()))
	}
	if p := s.get(t, "/admin", c); p.status != http.StatusOK {
		t.Fatalf("the session ended after a refused logout: GET /admin = %d", p.status)
	}
	// A session's token is no good with another session.
	c2, token2 := s.login(t)
	if token2 == token {
		t.Fatal("two sessions have the same CSRF token")
	}
	if p := s.post(t, "/admin/pins", c2, withToken(token, "feed", "lobby", "ttl", "5")); p.status != http.StatusForbidden {
		t.Fatalf("POST with another session's token: %d, want 403", p.status)
	}
}

func TestDashboardPINPairRevoke(t *testing.T) {
	s := startDashboard(t)
	c, token := s.login(t)

	bad := s.post(t, "/admin/pins", c, withToken(token, "feed", "Not A Feed", "ttl", "5"))
	if bad.status != http.StatusBadRequest || !strings.Contains(byID(t, bad.body, "page-error"), "feed id") {
		t.Fatalf("PIN for a bad feed id: %d, want 400 with an error about the feed id", bad.status)
	}

	p := s.post(t, "/admin/pins", c, withToken(token, "feed", "lobby", "ttl", "5"))
	if p.status != http.StatusOK {
		t.Fatalf("issue PIN: status = %d, want 200; body %s", p.status, p.body)
	}
	pin := byID(t, p.body, "pin-value")
	if !regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`).MatchString(pin) {
		t.Fatalf("#pin-value = %q, want XXXX-XXXX", pin)
	}
	if got := byID(t, p.body, "pin-feed"); got != "lobby" {
		t.Fatalf("#pin-feed = %q, want lobby", got)
	}
	m := regexp.MustCompile(`id="pin-countdown"[^>]*data-expires-at="([^"]+)"`).FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no #pin-countdown with data-expires-at:\n%s", p.body)
	}
	exp, err := time.Parse(time.RFC3339, m[1])
	if err != nil || exp.Sub(s.clock.Now()) < 4*time.Minute || exp.Sub(s.clock.Now()) > 6*time.Minute {
		t.Fatalf("data-expires-at = %q, want about 5 minutes from now", m[1])
	}
	if got := byID(t, p.body, "pin-countdown"); !strings.Contains(got, exp.UTC().Format("15:04:05")) {
		t.Fatalf("#pin-countdown text = %q, want the expiry time printed for browsers without script", got)
	}
	s.auditHas(t, "pin_issued", func(r broker.AuditRecord) bool { return r.Feed == "lobby" })

	tab := s.tablet(t)
	if err := tab.Pair(bg, "lobby", pin, "Lobby left"); err != nil {
		t.Fatalf("pair with the dashboard's PIN: %v", err)
	}
	s.presence.set(func(id string) (bool, time.Time) { return id == tab.DeviceID, s.clock.Now() })
	home := s.get(t, "/admin", c)
	row := regexp.MustCompile(`(?s)<tr data-device-id="` + tab.DeviceID + `">.*?</tr>`).FindString(home.body)
	if row == "" {
		t.Fatalf("no row for %s on /admin:\n%s", tab.DeviceID, home.body)
	}
	for _, want := range []string{`class="dot online"`, "Lobby left", "127.0.0.1", "just now", `action="/admin/devices/` + tab.DeviceID + `/revoke"`} {
		if !strings.Contains(row, want) {
			t.Errorf("device row lacks %q:\n%s", want, row)
		}
	}
	if !strings.Contains(home.body, `data-feed="lobby"`) || !strings.Contains(home.body, "repair-button") {
		t.Errorf("no lobby feed group with a Re-pair button:\n%s", home.body)
	}

	rv := s.post(t, "/admin/devices/"+tab.DeviceID+"/revoke", c, withToken(token))
	if rv.status != http.StatusSeeOther || rv.location() != "/admin?notice=revoked" {
		t.Fatalf("revoke: %d to %q, want 303 to /admin?notice=revoked", rv.status, rv.location())
	}
	if got := s.ad.DeviceViews("lobby"); len(got) != 0 {
		t.Fatalf("after revoke the lobby has %d devices, want 0", len(got))
	}
	wantAPIError(t, tab.Refresh(bg), http.StatusUnauthorized, "invalid_token")
	home = s.get(t, "/admin?notice=revoked", c)
	if strings.Contains(home.body, tab.DeviceID) || !strings.Contains(home.body, `id="page-notice"`) {
		t.Fatalf("after revoke /admin still lists the device or lacks the notice:\n%s", home.body)
	}
	s.auditHas(t, "device_revoked", func(r broker.AuditRecord) bool { return r.DeviceID == tab.DeviceID })
	for _, id := range []string{tab.DeviceID, "dev_NOSUCHDEVICE", "a*b", "a.b", url.PathEscape("a b")} {
		if p := s.post(t, "/admin/devices/"+id+"/revoke", c, withToken(token)); p.status != http.StatusNotFound {
			t.Fatalf("revoking %q: %d, want 404", id, p.status)
		}
	}

	// Re-pair: a replace PIN revokes the feed's tablets when it is used.
	old := s.paired(t, "lobby")
	rp := s.post(t, "/admin/pins", c, withToken(token, "feed", "lobby", "ttl", "5", "replace", "1"))
	if rp.status != http.StatusOK || !strings.Contains(rp.body, `id="pin-replaces"`) {
		t.Fatalf("re-pair PIN: %d, want 200 with the replace warning", rp.status)
	}
	newTab := s.tablet(t)
	if err := newTab.Pair(bg, "lobby", byID(t, rp.body, "pin-value"), ""); err != nil {
		t.Fatalf("pair with the re-pair PIN: %v", err)
	}
	wantAPIError(t, old.Refresh(bg), http.StatusUnauthorized, "invalid_token")
	if got := s.ad.DeviceViews("lobby"); len(got) != 1 || got[0].ID != newTab.DeviceID {
		t.Fatalf("after re-pairing the lobby has %v, want only %s", got, newTab.DeviceID)
	}
}

func TestDashboardProducerKeys(t *testing.T) {
	s := startDashboard(t)
	c, token := s.login(t)

	bad := s.post(t, "/admin/producers", c, withToken(token, "name", "x", "feeds", "Bad Feed!"))
	if bad.status != http.StatusBadRequest || !strings.Contains(bad.body, `id="page-error"`) {
		t.Fatalf("key with a bad feed: %d, want 400 with an error", bad.status)
	}

	p := s.post(t, "/admin/producers", c, withToken(token, "name", "room booking", "feeds", " lobby , floor-* "))
	if p.status != http.StatusOK {
		t.Fatalf("create key: status = %d, want 200; body %s", p.status, p.body)
	}
	key := byID(t, p.body, "producer-key")
	if !strings.HasPrefix(key, "kfp.") {
		t.Fatalf("#producer-key = %q, want a kfp. key", key)
	}
	if !strings.Contains(p.body, "shown this once") {
		t.Fatalf("no warning that the key is shown once:\n%s", p.body)
	}
	keys := s.b.ProducerKeys()
	if len(keys) != 1 || strings.Join(keys[0].Feeds, ",") != "lobby,floor-*" {
		t.Fatalf("keys = %+v, want one for lobby,floor-*", keys)
	}
	list := s.get(t, "/admin/producers", c)
	if strings.Contains(list.body, key) || !strings.Contains(list.body, `data-key-id="`+keys[0].ID+`"`) {
		t.Fatalf("/admin/producers shows the key again or does not list it:\n%s", list.body)
	}
	s.auditHas(t, "producer_key_created", nil)

	publish := func() int {
		r, _ := http.NewRequest("POST", s.URL+"/api/feeds/floor-2/events", strings.NewReader(`{"kind":"state","data":{"x":1}}`))
		r.Header.Set("Authorization", "Bearer "+key)
		r.Header.Set("Content-Type", "application/json")
		resp, err := s.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := publish(); got != http.StatusAccepted {
		t.Fatalf("publish with the new key: %d, want 202", got)
	}

	del := s.post(t, "/admin/producers/"+keys[0].ID+"/delete", c, withToken(token))
	if del.status != http.StatusSeeOther || del.location() != "/admin/producers?notice=key_deleted" {
		t.Fatalf("delete key: %d to %q, want 303 to /admin/producers?notice=key_deleted", del.status, del.location())
	}
	if got := publish(); got != http.StatusUnauthorized {
		t.Fatalf("publish with the deleted key: %d, want 401", got)
	}
	for _, id := range []string{keys[0].ID, "a*b", "a.b"} {
		if p := s.post(t, "/admin/producers/"+id+"/delete", c, withToken(token)); p.status != http.StatusNotFound {
			t.Fatalf("deleting %q: %d, want 404", id, p.status)
		}
	}
}

func TestDashboardTestEvent(t *testing.T) {
	s := startDashboard(t)
	c, token := s.login(t)

	form := s.get(t, "/admin/events", c)
	if form.status != http.StatusOK || !strings.Contains(form.body, `id="event-form"`) {
		t.Fatalf("GET /admin/events: %d, want 200 with the form", form.status)
	}
	p := s.post(t, "/admin/events", c, withToken(token, "feed", "lobby", "kind", "state", "data", `{"title": "Hello"}`, "id", "dash-1"))
	if p.status != http.StatusOK {
		t.Fatalf("send event: status = %d, want 200; body %s", p.status, p.body)
	}
	seq, err := strconv.ParseUint(byID(t, p.body, "event-seq"), 10, 64)
	if err != nil || seq == 0 {
		t.Fatalf("#event-seq = %q, want a positive seq", byID(t, p.body, "event-seq"))
	}
	st, err := s.b.State(bg, "lobby")
	if err != nil || st.Seq != seq || len(st.Events) != 1 || string(st.Events[0].Data) != `{"title":"Hello"}` {
		t.Fatalf("lobby state = %+v, %v; want the event at seq %d", st, err, seq)
	}
	again := s.post(t, "/admin/events", c, withToken(token, "feed", "lobby", "kind", "state", "data", `{"title": "Hello"}`, "id", "dash-1"))
	if byID(t, again.body, "event-seq") != strconv.FormatUint(seq, 10) || !strings.Contains(again.body, `id="event-duplicate"`) {
		t.Fatalf("repeating the id: want seq %d marked as a duplicate:\n%s", seq, again.body)
	}

	for _, tc := range []struct{ name, feed, kind, data string }{
		{"data not an object", "lobby", "state", `[1]`},
		{"data not JSON", "lobby", "state", `{nope`},
		{"bad kind", "lobby", "shout", `{}`},
		{"bad feed", "Lobby!", "state", `{}`},
	} {
		p := s.post(t, "/admin/events", c, withToken(token, "feed", tc.feed, "kind", tc.kind, "data", tc.data))
		if p.status != http.StatusBadRequest || byID(t, p.body, "event-error") == "" {
			t.Errorf("%s: %d, want 400 with #event-error", tc.name, p.status)
		}
	}
}

func TestDashboardSessionOnAdminAPI(t *testing.T) {
	s := startDashboard(t)
	c, _ := s.login(t)
	s.paired(t, "lobby")

	for _, tc := range []struct {
		name    string
		method  string
		path    string
		headers map[string]string
		want    int
	}{
		{"same-origin fetch", "GET", "/api/admin/devices", map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusOK},
		{"typed into the address bar", "GET", "/api/admin/devices", map[string]string{"Sec-Fetch-Site": "none"}, http.StatusOK},
		{"old browser GET without Origin", "GET", "/api/admin/devices", nil, http.StatusOK},
		{"cross-site", "GET", "/api/admin/devices", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, http.StatusUnauthorized},
		{"same-site subdomain", "GET", "/api/admin/devices", map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusUnauthorized},
		{"old browser GET with a foreign Origin", "GET", "/api/admin/devices", map[string]string{"Origin": "https://evil.example"}, http.StatusUnauthorized},
		{"old browser DELETE", "DELETE", "/api/admin/producer-keys/nope", nil, http.StatusUnauthorized},
		{"same-origin DELETE", "DELETE", "/api/admin/producer-keys/nope", map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusNotFound},
	} {
		p := s.do(t, req{method: tc.method, path: tc.path, cookie: c, headers: tc.headers})
		if p.status != tc.want {
			t.Errorf("%s: %s %s with the session cookie = %d, want %d", tc.name, tc.method, tc.path, p.status, tc.want)
		}
	}
	// The answer is the admin API's.
	p := s.do(t, req{method: "GET", path: "/api/admin/devices", cookie: c, headers: map[string]string{"Sec-Fetch-Site": "same-origin"}})
	var devs []admin.DeviceView
	if err := json.Unmarshal([]byte(p.body), &devs); err != nil || len(devs) != 1 {
		t.Fatalf("devices via the session = %s, want one device", p.body)
	}
	// Bearer tokens work as before, and a bad one is not rescued by a good cookie.
	if a := s.admin(t, "GET", "/api/admin/devices", nil); a.status != http.StatusOK {
		t.Fatalf("bearer: %d, want 200", a.status)
	}
	bad := s.do(t, req{method: "GET", path: "/api/admin/devices", cookie: c, headers: map[string]string{"Sec-Fetch-Site": "same-origin", "Authorization": "Bearer wrong"}})
	if bad.status != http.StatusUnauthorized {
		t.Fatalf("wrong bearer with a good cookie: %d, want 401", bad.status)
	}
}

func TestDashboardLogout(t *testing.T) {
	s := startDashboard(t)
	c, token := s.login(t)
	other, _ := s.login(t)

	p := s.post(t, "/admin/logout", c, withToken(token))
	if p.status != http.StatusSeeOther || p.location() != "/admin/login?notice=logged_out" {
		t.Fatalf("logout: %d to %q, want 303 to /admin/login?notice=logged_out", p.status, p.location())
	}
	if cleared := sessionCookie(t, p.header); cleared.MaxAge >= 0 || cleared.Value != "" {
		t.Fatalf("logout cookie = %+v, want it cleared", cleared)
	}
	// The server forgot the session: the old cookie, replayed, is worth nothing.
	if p := s.get(t, "/admin", c); p.status != http.StatusSeeOther {
		t.Fatalf("GET /admin with the logged-out cookie: %d, want 303 to login", p.status)
	}
	api := s.do(t, req{method: "GET", path: "/api/admin/devices", cookie: c, headers: map[string]string{"Sec-Fetch-Site": "same-origin"}})
	if api.status != http.StatusUnauthorized {
		t.Fatalf("admin API with the logged-out cookie: %d, want 401", api.status)
	}
	if p := s.get(t, "/admin", other); p.status != http.StatusOK {
		t.Fatalf("another session ended with this one: GET /admin = %d", p.status)
	}
	s.auditHas(t, "admin_logout", nil)
	login := s.get(t, "/admin/login?notice=logged_out", nil)
	if !strings.Contains(login.body, "logged out") {
		t.Fatalf("login page after logout lacks the notice:\n%s", login.body)
	}
}

func TestDashboardLoginRateLimit(t *testing.T) {
	s := startDashboard(t)
	var p page
	for i := range 100 {
		p = s.loginAnswer(t, "guess "+strconv.Itoa(i), "")
		if p.status == http.StatusTooManyRequests {
			break
		}
		if p.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401 or 429", i, p.status)
		}
	}
	if p.status != http.StatusTooManyRequests {
		t.Fatalf("100 wrong passwords: last status %d, want 429", p.status)
	}
	if ra, err := strconv.Atoi(p.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After = %q, want seconds", p.header.Get("Retry-After"))
	}
	if !strings.Contains(byID(t, p.body, "page-error"), "Too many attempts") {
		t.Fatalf("429 page lacks the message:\n%s", p.body)
	}
	// The right password does not get through the limit either.
	if p := s.loginAnswer(t, dashPassword, ""); p.status != http.StatusTooManyRequests {
		t.Fatalf("right password past the limit: %d, want 429", p.status)
	}
}

func TestDashboardPasswordAPI(t *testing.T) {
	s := startDashboard(t)
	c, _ := s.login(t)

	if a := s.admin(t, "POST", "/api/admin/password", map[string]string{"password": "long enough password"}, ""); a.status != http.StatusUnauthorized {
		t.Fatalf("without a token: %d, want 401", a.status)
	}
	if a := s.admin(t, "POST", "/api/admin/password", map[string]string{"password": "short"}); a.status != http.StatusBadRequest || a.body["error"] != "invalid_request" {
		t.Fatalf("short password: %d %v, want 400 invalid_request", a.status, a.body)
	}
	if a := s.admin(t, "POST", "/api/admin/password", map[string]string{"password": strings.Repeat("x", 73)}); a.status != http.StatusBadRequest {
		t.Fatalf("73-byte password: %d, want 400", a.status)
	}
	const newPassword = "a new dashboard password"
	if a := s.admin(t, "POST", "/api/admin/password", map[string]string{"password": newPassword}); a.status != http.StatusNoContent {
		t.Fatalf("set password: %d %s, want 204", a.status, a.raw)
	}
	s.auditHas(t, "admin_password_set", nil)
	if p := s.get(t, "/admin", c); p.status != http.StatusSeeOther {
		t.Fatalf("a session from before the change: GET /admin = %d, want 303 (signed out)", p.status)
	}
	if p := s.loginAnswer(t, dashPassword, ""); p.status != http.StatusUnauthorized {
		t.Fatalf("old password: %d, want 401", p.status)
	}
	if p := s.loginAnswer(t, newPassword, ""); p.status != http.StatusSeeOther {
		t.Fatalf("new password: %d, want 303", p.status)
	}
}

func TestDashboardLiveCount(t *testing.T) {
	s := startDashboard(t, onlineCount(7))
	c, _ := s.login(t)
	p := s.do(t, req{method: "GET", path: "/admin/live", cookie: c, headers: map[string]string{"Sec-Fetch-Site": "same-origin"}})
	if p.status != http.StatusOK || strings.TrimSpace(p.body) != `{"online":7}` {
		t.Fatalf("GET /admin/live = %d %s, want 200 {\"online\":7}", p.status, p.body)
	}
	if got := byID(t, s.get(t, "/admin", c).body, "live-count"); got != "7" {
		t.Fatalf("#live-count = %q, want 7", got)
	}
}

// TestDashboardHeadersAndMarkup checks every page for the security headers and for
// markup the CSP would block: inline scripts, style elements and attributes, and event
// handler attributes.
func TestDashboardHeadersAndMarkup(t *testing.T) {
	s := startDashboard(t)
	c, token := s.login(t)
	s.paired(t, "lobby")

	pages := map[string]page{
		"login":     s.get(t, "/admin/login", nil),
		"login 401": s.loginAnswer(t, "wrong", ""),
		"devices":   s.get(t, "/admin", c),
		"pin":       s.post(t, "/admin/pins", c, withToken(token, "feed", "lobby", "ttl", "5", "replace", "1")),
		"producers": s.get(t, "/admin/producers", c),
		"new key":   s.post(t, "/admin/producers", c, withToken(token, "name", "n", "feeds", "lobby")),
		"audit":     s.get(t, "/admin/audit", c),
		"audit one": s.get(t, "/admin/audit?type=pair_ok", c),
		"events":    s.get(t, "/admin/events", c),
		"sent":      s.post(t, "/admin/events", c, withToken(token, "feed", "lobby", "kind", "item", "data", `{"a":1}`)),
		"403":       s.post(t, "/admin/pins", c, withToken("")),
		"404":       s.post(t, "/admin/devices/dev_nope/revoke", c, withToken(token)),
		"redirect":  s.get(t, "/admin", nil),
	}
	scriptTag := regexp.MustCompile(`(?i)<script[^>]*>`)
	forbidden := map[string]*regexp.Regexp{
		"style attribute":   regexp.MustCompile(`(?i)<[^>]*\sstyle\s*=`),
		"style element":     regexp.MustCompile(`(?i)<style`),
		"event handler":     regexp.MustCompile(`(?i)<[^>]*\son[a-z]+\s*=`),
		"javascript: URL":   regexp.MustCompile(`(?i)javascript:`),
		"third-party asset": regexp.MustCompile(`(?i)(src|href)="(https?:)?//`),
	}
	for name, p := range pages {
		if got := p.header.Get("Content-Security-Policy"); got != wantCSP {
			t.Errorf("%s: CSP = %q, want %q", name, got, wantCSP)
		}
		if strings.Contains(p.header.Get("Content-Security-Policy"), "unsafe-inline") {
			t.Errorf("%s: CSP allows unsafe-inline", name)
		}
		for h, want := range map[string]string{"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
			if got := p.header.Get(h); got != want {
				t.Errorf("%s: %s = %q, want %q", name, h, got, want)
			}
		}
		for _, tag := range scriptTag.FindAllString(p.body, -1) {
			if !strings.Contains(tag, ` src="/admin/assets/`) {
				t.Errorf("%s: inline or foreign script %q", name, tag)
			}
		}
		for what, re := range forbidden {
			if m := re.FindString(p.body); m != "" {
				t.Errorf("%s: %s in the page: %q", name, what, m)
			}
		}
	}
	if pages["403"].status != http.StatusForbidden || pages["404"].status != http.StatusNotFound {
		t.Errorf("error pages: %d and %d, want 403 and 404", pages["403"].status, pages["404"].status)
	}

	// The assets: content-hashed names, immutable caching, the right types.
	body := pages["devices"].body
	for _, re := range []string{`href="(/admin/assets/dashboard\.[0-9a-f]{12}\.css)"`, `src="(/admin/assets/dashboard\.[0-9a-f]{12}\.js)"`} {
		m := regexp.MustCompile(re).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no asset matching %s in the page", re)
		}
		a := s.get(t, m[1], nil)
		if a.status != http.StatusOK || a.header.Get("Cache-Control") != "public, max-age=31536000, immutable" || len(a.body) == 0 {
			t.Errorf("GET %s: %d, Cache-Control %q, %d bytes; want 200, immutable, a body", m[1], a.status, a.header.Get("Cache-Control"), len(a.body))
		}
		wantType := "text/css; charset=utf-8"
		if strings.HasSuffix(m[1], ".js") {
			wantType = "text/javascript; charset=utf-8"
		}
		if got := a.header.Get("Content-Type"); got != wantType {
			t.Errorf("GET %s: Content-Type = %q, want %q", m[1], got, wantType)
		}
		if got := a.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options = %q, want nosniff", m[1], got)
		}
	}
	if a := s.get(t, "/admin/assets/dashboard.000000000000.css", nil); a.status != http.StatusNotFound {
		t.Errorf("an unknown asset hash: %d, want 404", a.status)
	}
}

func TestDashboardAuditPage(t *testing.T) {
	s := startDashboard(t)
	c, _ := s.login(t)
	s.loginAnswer(t, "wrong", "")
	s.auditHas(t, "admin_login_fail", nil)

	all := s.get(t, "/admin/audit", c)
	rows := regexp.MustCompile(`<tr class="audit-row" data-type="([a-z_]+)"`).FindAllStringSubmatch(all.body, -1)
	if len(rows) < 2 {
		t.Fatalf("audit page has %d rows, want the login and the failed login:\n%s", len(rows), all.body)
	}
	if rows[0][1] != "admin_login_fail" {
		t.Fatalf("newest row is %s, want admin_login_fail (newest first)", rows[0][1])
	}
	one := s.get(t, "/admin/audit?type=admin_login", c)
	for _, r := range regexp.MustCompile(`<tr class="audit-row" data-type="([a-z_]+)"`).FindAllStringSubmatch(one.body, -1) {
		if r[1] != "admin_login" {
			t.Fatalf("filtered by admin_login, got a %s row", r[1])
		}
	}
	if !strings.Contains(one.body, `<option value="admin_login" selected>`) {
		t.Fatalf("the filter does not show admin_login selected:\n%s", one.body)
	}
	bad := s.get(t, "/admin/audit?type=Bad-Type", c)
	if bad.status != http.StatusOK || !strings.Contains(bad.body, `id="page-error"`) {
		t.Fatalf("a bad type: %d, want 200 with an error and every type", bad.status)
	}
}
