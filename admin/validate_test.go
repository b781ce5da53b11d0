package admin_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/dpop"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// postProof posts body to path with a fresh DPoP proof of tab's key and the given
// User-Agent, fetching a server nonce first when it has none.
func postProof(t *testing.T, s *service, tab *pairingtest.Tablet, path, body, userAgent string) answer {
	t.Helper()
	nonce := ""
	for attempt := 0; ; attempt++ {
		proof := tab.Key.MustProof(t, pairingtest.ProofParams{Method: http.MethodPost, URL: s.URL + path, Nonce: nonce, IssuedAt: s.clock.Now()})
		req, _ := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("DPoP", proof)
		req.Header.Set("User-Agent", userAgent)
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		a := readAnswer(t, resp)
		if a.body["error"] == "use_dpop_nonce" && attempt == 0 {
			nonce = a.header.Get("DPoP-Nonce")
			continue
		}
		return a
	}
}

// Every id that would become a KV key or a subject token is checked before it reaches
// NATS: a malformed one is the refusal of the endpoint's contract, never 503 (which
// docs/protocol.md §1 keeps for NATS being unreachable) or 500.
func TestMalformedIDsAreRefusedNotUnavailable(t *testing.T) {
	s := startService(t, nil, nil)
	tab := s.tablet(t)
	bad := []string{"dev_*", "dev_>", "dev x", "dev_.", "dev_AAAAAAAAAAAAAAAAAAA*", "dev_AAAA.AAAAAAAAAAAAAAAA", "dev_\u00e9"}
	for _, id := range bad {
		body, _ := json.Marshal(map[string]string{"device_id": id})
		a := postProof(t, s, tab, "/api/token", string(body), "test")
		if a.status != http.StatusUnauthorized || a.body["error"] != "invalid_token" {
			t.Errorf("POST /api/token device_id %q: %d %s, want 401 invalid_token", id, a.status, a.raw)
		}
	}
	s.auditHas(t, "token_refused", func(r broker.AuditRecord) bool { return strings.Contains(r.Detail, "malformed device id") })

	esc := url.PathEscape
	cases := []struct {
		method, path string
		body         any
		auth         string
		status       int
		code         string
	}{
		{"DELETE", "/api/admin/devices/" + esc("dev_*"), nil, adminToken, 404, "not_found"},
		{"DELETE", "/api/admin/devices/" + esc("dev_>"), nil, adminToken, 404, "not_found"},
		{"DELETE", "/api/admin/tokens/" + esc("a*"), nil, adminToken, 404, "not_found"},
		{"DELETE", "/api/admin/tokens/" + esc("aaaaaaaaaaaa>"), nil, adminToken, 404, "not_found"},
		{"DELETE", "/api/admin/tokens/" + esc("a.b"), nil, adminToken, 404, "not_found"},
		{"DELETE", "/api/admin/producer-keys/" + esc("aaaaaaaaaaaa*"), nil, adminToken, 404, "not_found"},
		{"DELETE", "/api/admin/producer-keys/" + esc("a b"), nil, adminToken, 404, "not_found"},
		{"POST", "/api/admin/feeds/" + esc("lob*") + "/pins", nil, adminToken, 400, "invalid_request"},
		{"POST", "/api/admin/feeds/" + esc("a.b") + "/pins", nil, adminToken, 400, "invalid_request"},
		{"POST", "/api/admin/pair-requests/" + esc("WDJB*MJH") + "/approve", map[string]any{"feed": "lobby"}, adminToken, 404, "not_found"},
		{"POST", "/api/admin/pair-requests/" + esc("WDJB>MJH") + "/deny", nil, adminToken, 404, "not_found"},
		{"GET", "/api/admin/devices?feed=" + url.QueryEscape("a*"), nil, adminToken, 400, "invalid_request"},
		{"GET", "/api/admin/audit?type=" + url.QueryEscape("auth.>"), nil, adminToken, 400, "invalid_request"},
		{"GET", "/api/feeds/" + esc("a>") + "/state", nil, adminToken, 400, "invalid_request"},
		{"GET", "/api/admin/devices", nil, "kfa.*.secret", 401, "invalid_token"},
		{"GET", "/api/admin/devices", nil, "kfa.>.secret", 401, "invalid_token"},
		{"GET", "/api/feeds/lobby/state", nil, "kfp.*.secret", 401, "invalid_token"},
		{"POST", "/api/feeds/lobby/events", map[string]any{"kind": "state", "data": map[string]any{}}, "kfp.>.x", 401, "invalid_token"},
	}
	for _, tc := range cases {
		a := s.admin(t, tc.method, tc.path, tc.body, tc.auth)
		if a.status != tc.status || a.body["error"] != tc.code {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, a.status, a.raw, tc.status, tc.code)
		}
	}
	for _, id := range []string{"pr_*", "pr_>", "pr_AAAAAAAAAAAAAAAAAAA*"} {
		a := postProof(t, s, tab, "/api/pair/requests/"+esc(id)+"/poll", "{}", "test")
		if a.status != http.StatusBadRequest || a.body["error"] != "invalid_request" {
			t.Errorf("poll %q: %d %s, want 400 invalid_request", id, a.status, a.raw)
		}
	}
}

// One sample of each refused class.
var refusedNames = map[string]string{
	"ESC (C0)":            "lobby\x1b[2J",
	"newline (C0)":        "lobby\nforged row",
	"CSI (C1)":            "lobby\u009b2J",
	"NEL (C1)":            "lobby\u0085x",
	"RLO (Cf)":            "lobby\u202etxet",
	"zero width (Cf)":     "lo\u200bbby",
	"BOM (Cf)":            "\ufefflobby",
	"line separator":      "lobby\u2028x",
	"paragraph separator": "lobby\u2029x",
	"isolate (Cf)":        "lobby\u2066x",
	"soft hyphen (Cf)":    "lob\u00adby",
	"right-to-left (Cf)":  "lobby\u200f",
	"bidi embedding (Cf)": "\u202alobby",
	"word joiner (Cf)":    "lobby\u2060",
}

// Names that strangers choose (a tablet's suggestion) or that admins give devices,
// tokens and keys refuse controls, invisible formatting characters and the line and
// paragraph separators, saying which class was refused.
func TestNamesRefuseControlAndInvisibleCharacters(t *testing.T) {
	s := startService(t, nil, nil, func(c *pairing.Config) { c.PairBurst = 1000 })
	tab := s.tablet(t)
	for class, name := range refusedNames {
		body, _ := json.Marshal(map[string]string{"name": name})
		a := postProof(t, s, tab, "/api/pair/requests", string(body), "test")
		wantRefused(t, "pair request name, "+class, a)

		pin := s.pin(t, "lobby", false)
		body, _ = json.Marshal(map[string]string{"feed": "lobby", "pin": pin, "name": name})
		a = postProof(t, s, tab, "/api/pair", string(body), "test")
		wantRefused(t, "PIN pairing name, "+class, a)

		a = s.admin(t, "POST", "/api/admin/tokens", map[string]any{"name": name})
		wantRefused(t, "admin token name, "+class, a)
		a = s.admin(t, "POST", "/api/admin/producer-keys", map[string]any{"name": name, "feeds": []string{"lobby"}})
		wantRefused(t, "producer key name, "+class, a)
	}
	// An approval's name too, checked before the code is looked up.
	pr, err := tab.RequestPairing(bg, "")
	if err != nil {
		t.Fatal(err)
	}
	a := s.admin(t, "POST", "/api/admin/pair-requests/"+pr.UserCode+"/approve", map[string]any{"feed": "lobby", "name": "lobby\u202eevil"})
	wantRefused(t, "approval name", a)

	// What people write is still welcome.
	for _, name := range []string{"Empfang Süd", "受付 1", "Café – Ground floor", "Lobby 😀", "مكتب الاستقبال"} {
		if a := s.admin(t, "POST", "/api/admin/tokens", map[string]any{"name": name}); a.status != http.StatusCreated || a.body["name"] != name {
			t.Errorf("admin token name %q: %d %s, want 201 with the name", name, a.status, a.raw)
		}
	}
}

func wantRefused(t *testing.T, what string, a answer) {
	t.Helper()
	msg, _ := a.body["message"].(string)
	if a.status != http.StatusBadRequest || a.body["error"] != "invalid_request" || !strings.Contains(msg, `"name"`) {
		t.Errorf("%s: %d %s, want 400 invalid_request about \"name\"", what, a.status, a.raw)
		return
	}
	if !strings.Contains(msg, "U+") && !strings.Contains(msg, "UTF-8") {
		t.Errorf("%s: message %q does not say which character was refused", what, msg)
	}
}

// A User-Agent is not ours to refuse: it is stored with its controls and invisible
// characters replaced, and cut to 256 bytes.
func TestUserAgentStoredClean(t *testing.T) {
	s := startService(t, nil, nil)
	evil := "Mozilla/5.0 \u009b2J\u202eevil\u2028forged\u0085row\u200b" + strings.Repeat("x", 400)
	a := postProof(t, s, s.tablet(t), "/api/pair/requests", "{}", evil)
	if a.status != http.StatusCreated {
		t.Fatalf("pair request: %d %s", a.status, a.raw)
	}
	tab := s.tablet(t)
	pin := s.pin(t, "lobby", false)
	body, _ := json.Marshal(map[string]string{"feed": "lobby", "pin": pin})
	if a := postProof(t, s, tab, "/api/pair", string(body), evil); a.status != http.StatusCreated {
		t.Fatalf("pair: %d %s", a.status, a.raw)
	}
	reqs := s.admin(t, "GET", "/api/admin/pair-requests", nil)
	devs := s.admin(t, "GET", "/api/admin/devices", nil)
	if len(reqs.list) != 1 || len(devs.list) != 1 {
		t.Fatalf("requests %s, devices %s; want one each", reqs.raw, devs.raw)
	}
	for what, ua := range map[string]any{"pair request": reqs.list[0]["user_agent"], "device": devs.list[0]["user_agent"]} {
		s, _ := ua.(string)
		if !strings.HasPrefix(s, "Mozilla/5.0 \ufffd2J\ufffdevil\ufffdforged\ufffdrow\ufffdxxx") || len(s) > 256 {
			t.Errorf("%s user_agent = %q (%d bytes), want the refused characters as U+FFFD and at most 256 bytes", what, s, len(s))
		}
		if strings.ContainsAny(s, "\u009b\u202e\u2028\u0085\u200b") {
			t.Errorf("%s user_agent %q keeps a refused character", what, s)
		}
	}
}

// The buckets strangers fill are bounded: the DPoP jti and pair-request buckets by
// bytes, the PIN bucket (whose wrong-guess counts anyone can make for any feed id) by
// a TTL.
func TestBucketsStrangersFillAreBounded(t *testing.T) {
	s := startService(t, nil, nil)
	js := s.b.JetStream()
	for bucket, want := range map[string]int64{dpop.ReplayBucket: dpop.ReplayMaxBytes, pairing.BucketPairRequests: pairing.PairRequestMaxBytes} {
		st, err := js.Stream(bg, "KV_"+bucket)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().Config.MaxBytes; got != want || want <= 0 {
			t.Errorf("bucket %s MaxBytes = %d, want %d", bucket, got, want)
		}
	}
	st, err := js.Stream(bg, "KV_"+pairing.BucketPINs)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != pairing.FailCountTTL || got < pairing.MaxPINTTL {
		t.Errorf("bucket %s MaxAge = %s, want %s (at least the longest PIN's life)", pairing.BucketPINs, got, pairing.FailCountTTL)
	}
}

// A pair request whose device was revoked after the approval can never give a token:
// its poll says the request is over (expired_token), not authorization_pending.
func TestPairRequestOfRevokedDeviceIsOver(t *testing.T) {
	s := startService(t, nil, nil)
	tab := s.tablet(t)
	pr, err := tab.RequestPairing(bg, "")
	if err != nil {
		t.Fatal(err)
	}
	ap := s.admin(t, "POST", "/api/admin/pair-requests/"+pr.UserCode+"/approve", map[string]any{"feed": "lobby"})
	id, _ := ap.body["device_id"].(string)
	if ap.status != http.StatusOK || id == "" {
		t.Fatalf("approve: %d %s", ap.status, ap.raw)
	}
	if rv := s.admin(t, "DELETE", "/api/admin/devices/"+id, nil); rv.status != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", rv.status, rv.raw)
	}
	wantAPIError(t, tab.Poll(bg, pr.RequestID), http.StatusBadRequest, "expired_token")

	// The request of an approval still registering its device is pending: approved in
	// the record, its device not written yet (as between approveRequest's two writes).
	// A fresh request approved and polled at once shows the contrast end to end: its
	// token is collected.
	tab2 := s.tablet(t)
	pr2, err := tab2.RequestPairing(bg, "")
	if err != nil {
		t.Fatal(err)
	}
	if ap := s.admin(t, "POST", "/api/admin/pair-requests/"+pr2.UserCode+"/approve", map[string]any{"feed": "lobby"}); ap.status != http.StatusOK {
		t.Fatalf("approve: %d %s", ap.status, ap.raw)
	}
	if err := tab2.Poll(bg, pr2.RequestID); err != nil {
		t.Fatalf("poll of an approved request: %v, want its token", err)
	}
}

// The audit log names the credential behind each admin and producer-key action.
func TestAuditNamesTheActor(t *testing.T) {
	s := startDashboard(t)
	// The configured token.
	s.pin(t, "cfg-feed", false)
	if r := s.auditHas(t, "pin_issued", func(r broker.AuditRecord) bool { return r.Feed == "cfg-feed" }); r.Actor != broker.ActorConfigAdmin {
		t.Errorf("PIN by the configured token: actor %q, want %q", r.Actor, broker.ActorConfigAdmin)
	}
	// A named token.
	tok := s.admin(t, "POST", "/api/admin/tokens", map[string]any{"name": "ops"})
	named, _ := tok.body["token"].(string)
	id, _ := tok.body["id"].(string)
	if tok.status != http.StatusCreated || named == "" {
		t.Fatalf("create token: %d %s", tok.status, tok.raw)
	}
	if r := s.auditHas(t, "admin_token_created", nil); r.Actor != broker.ActorConfigAdmin || !strings.Contains(r.Detail, id) {
		t.Errorf("admin_token_created %+v, want actor %q", r, broker.ActorConfigAdmin)
	}
	if a := s.admin(t, "POST", "/api/admin/feeds/named-feed/pins", map[string]any{}, named); a.status != http.StatusCreated {
		t.Fatalf("PIN by the named token: %d %s", a.status, a.raw)
	}
	want := "admin_token:" + id
	if r := s.auditHas(t, "pin_issued", func(r broker.AuditRecord) bool { return r.Feed == "named-feed" }); r.Actor != want {
		t.Errorf("PIN by the named token: actor %q, want %q", r.Actor, want)
	}
	// Producer keys made and deleted with the bearer token (broker's API).
	pk := s.admin(t, "POST", "/api/admin/producer-keys", map[string]any{"name": "signage", "feeds": []string{"lobby"}}, named)
	pkID, _ := pk.body["id"].(string)
	if pk.status != http.StatusCreated || pkID == "" {
		t.Fatalf("create producer key: %d %s", pk.status, pk.raw)
	}
	if a := s.admin(t, "DELETE", "/api/admin/producer-keys/"+pkID, nil, named); a.status != http.StatusNoContent {
		t.Fatalf("delete producer key: %d %s", a.status, a.raw)
	}
	for _, typ := range []string{"producer_key_created", "producer_key_deleted"} {
		r := s.auditHas(t, typ, func(r broker.AuditRecord) bool { return strings.Contains(r.Detail, pkID) })
		if r.Actor != want || r.RemoteAddr == "" {
			t.Errorf("%s %+v, want actor %q and the client's address", typ, r, want)
		}
	}
	// A producer key refused a feed names itself.
	pk2 := s.admin(t, "POST", "/api/admin/producer-keys", map[string]any{"name": "lobby only", "feeds": []string{"lobby"}}, named)
	pk2ID, _ := pk2.body["id"].(string)
	pk2Key, _ := pk2.body["key"].(string)
	if a := s.admin(t, "POST", "/api/feeds/kitchen/events", map[string]any{"kind": "state", "data": map[string]any{}}, pk2Key); a.status != http.StatusForbidden {
		t.Fatalf("publish to a feed the key may not: %d %s, want 403", a.status, a.raw)
	}
	if r := s.auditHas(t, "producer_refused", nil); r.Actor != broker.ProducerKeyActor(pk2ID) || r.Feed != "kitchen" {
		t.Errorf("producer_refused %+v, want actor producer_key:%s on kitchen", r, pk2ID)
	}
	// A code guessed with the named token.
	if a := s.admin(t, "POST", "/api/admin/pair-requests/BCDF-GHJK/approve", map[string]any{"feed": "lobby"}, named); a.status != http.StatusNotFound {
		t.Fatalf("approve a code nobody shows: %d %s", a.status, a.raw)
	}
	if r := s.auditHas(t, "pair_approve_fail", nil); r.Actor != want {
		t.Errorf("pair_approve_fail actor %q, want %q", r.Actor, want)
	}
	// The dashboard.
	c, csrf := s.login(t)
	if p := s.post(t, "/admin/events", c, withToken(csrf, "feed", "lobby", "kind", "state", "data", `{"a":1}`)); p.status != http.StatusOK {
		t.Fatalf("dashboard test event: %d", p.status)
	}
	if r := s.auditHas(t, "test_event_sent", nil); r.Actor != broker.ActorDashboard {
		t.Errorf("test_event_sent actor %q, want %q", r.Actor, broker.ActorDashboard)
	}
	// A tablet's own records name no admin.
	tab := s.paired(t, "lobby")
	if r := s.auditHas(t, "pair_ok", func(r broker.AuditRecord) bool { return r.DeviceID == tab.DeviceID }); r.Actor != "" {
		t.Errorf("pair_ok actor %q, want none", r.Actor)
	}
}

// Revoking a named admin token stops that token only: the tokens and producer keys
// made with it go on working until they are revoked themselves (README, "Admin
// tokens"), and the audit log says which token made them.
func TestRevokedAdminTokenLeavesWhatItMade(t *testing.T) {
	s := startService(t, nil, nil)
	mk := s.admin(t, "POST", "/api/admin/tokens", map[string]any{"name": "maker"})
	maker, _ := mk.body["token"].(string)
	makerID, _ := mk.body["id"].(string)
	child := s.admin(t, "POST", "/api/admin/tokens", map[string]any{"name": "child"}, maker)
	childTok, _ := child.body["token"].(string)
	pk := s.admin(t, "POST", "/api/admin/producer-keys", map[string]any{"name": "feeder", "feeds": []string{"lobby"}}, maker)
	key, _ := pk.body["key"].(string)
	if child.status != http.StatusCreated || pk.status != http.StatusCreated {
		t.Fatalf("made with the maker token: %d %s, %d %s", child.status, child.raw, pk.status, pk.raw)
	}
	if rv := s.admin(t, "DELETE", "/api/admin/tokens/"+makerID, nil); rv.status != http.StatusNoContent {
		t.Fatalf("revoke maker: %d %s", rv.status, rv.raw)
	}
	if a := s.admin(t, "GET", "/api/admin/devices", nil, maker); a.status != http.StatusUnauthorized {
		t.Fatalf("revoked maker token: %d, want 401", a.status)
	}
	if a := s.admin(t, "GET", "/api/admin/devices", nil, childTok); a.status != http.StatusOK {
		t.Fatalf("token made by the revoked one: %d %s, want 200 (it lives on)", a.status, a.raw)
	}
	if a := s.admin(t, "GET", "/api/feeds/lobby/state", nil, key); a.status != http.StatusOK {
		t.Fatalf("producer key made by the revoked token: %d %s, want 200 (it lives on)", a.status, a.raw)
	}
	if r := s.auditHas(t, "admin_token_created", func(r broker.AuditRecord) bool { return strings.Contains(r.Detail, "(child)") }); r.Actor != "admin_token:"+makerID {
		t.Errorf("the child's creation names actor %q, want admin_token:%s", r.Actor, makerID)
	}
}

// The dashboard's audit page shows who acted and how many refusals a record sums up.
func TestDashboardAuditShowsActorAndCount(t *testing.T) {
	s := startDashboard(t)
	s.b.Audit(broker.AuditRecord{Type: "pin_issued", Feed: "lobby", RemoteAddr: "192.0.2.1", Actor: "admin_token:abcdefghijklm", Detail: "expires soon"})
	for range 30 {
		s.b.Audit(broker.AuditRecord{Type: "token_refused", RemoteAddr: "192.0.2.9", Detail: "unknown or revoked device"})
	}
	brokertest.Eventually(t, 10*time.Second, "the summing token_refused record", func() bool {
		recs, err := s.b.AuditList(bg, "token_refused", 10)
		return err == nil && len(recs) == 2 && recs[0].Count == 29
	})
	c, _ := s.login(t)
	p := s.get(t, "/admin/audit", c)
	if p.status != http.StatusOK || !strings.Contains(p.body, `<code>admin_token:abcdefghijklm</code>`) || !strings.Contains(p.body, `×29</strong>`) {
		t.Fatalf("audit page %d, want the actor and the count ×29:\n%s", p.status, p.body)
	}
}

// Malformed device ids at /api/token are limited like any refusal: past the address's
// allowance they are answered 429 with Retry-After, never 503.
func TestMalformedDeviceIDsAreRateLimited(t *testing.T) {
	s := startService(t, nil, nil)
	tab := s.tablet(t)
	for i := range 300 {
		a := postProof(t, s, tab, "/api/token", `{"device_id":"dev_*"}`, "test")
		switch {
		case a.status == http.StatusTooManyRequests && a.header.Get("Retry-After") != "" && a.body["error"] == "rate_limited":
			if i < 10 {
				t.Fatalf("limited after %d attempts, want a burst first", i)
			}
			return
		case a.status != http.StatusUnauthorized:
			t.Fatalf("attempt %d: %d %s, want 401 then 429", i, a.status, a.raw)
		}
	}
	t.Fatal("300 malformed device ids from one address were never limited")
}
