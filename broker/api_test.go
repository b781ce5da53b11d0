package broker_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/internal/apitest"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

const adminToken = "test-admin-token-0123456789"

// staticAdmin stands in for pairing's admin auth: one fixed bearer token.
type staticAdmin struct{}

func (staticAdmin) AuthorizeAdmin(r *http.Request) (string, error) {
	if httpx.Bearer(r) != adminToken {
		return "", &httpx.Error{Code: httpx.CodeInvalidToken, Message: "admin token required"}
	}
	return "admin_token:static", nil
}

type apiServer struct {
	*httptest.Server
	b *broker.Broker
}

func startAPI(t *testing.T, b *broker.Broker) *apiServer {
	t.Helper()
	mux := http.NewServeMux()
	broker.NewAPI(b, staticAdmin{}).Register(mux)
	b.RegisterHealth(mux)
	srv := httptest.NewServer(apitest.Handler(t, mux))
	t.Cleanup(srv.Close)
	return &apiServer{Server: srv, b: b}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (s *apiServer) do(t *testing.T, method, path, auth, ctype string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (s *apiServer) createKey(t *testing.T, feeds ...string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"name": "test producer", "feeds": feeds})
	r := s.do(t, "POST", "/api/admin/producer-keys", adminToken, "application/json", bytes.NewReader(body))
	if r.status != http.StatusCreated {
		t.Fatalf("create producer key: %d %s", r.status, r.raw)
	}
	return r.body["key"].(string)
}

func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status || r.body["error"] != code {
		t.Fatalf("got %d %s, want %d with error %q", r.status, r.raw, status, code)
	}
	if msg, _ := r.body["message"].(string); msg == "" {
		t.Fatalf("error body %s has no message", r.raw)
	}
	if r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("error Content-Type = %q, want application/json", r.header.Get("Content-Type"))
	}
}

func TestPublishAPIRefusesBadInput(t *testing.T) {
	s := startAPI(t, brokertest.New(t))
	key := s.createKey(t, "lobby", "floor-*")
	otherKey := s.createKey(t, "kitchen")
	big := `{"kind":"state","data":{"x":"` + strings.Repeat("a", 65536) + `"}}`

	tests := []struct {
		name   string
		path   string
		auth   string
		ctype  string
		body   string
		status int
		code   string
	}{
		{"no key", "/api/feeds/lobby/events", "", "application/json", `{"kind":"item","data":{}}`, 401, "invalid_token"},
		{"unknown key", "/api/feeds/lobby/events", "kfp.aaaaaaaaaaaaa.bbbb", "application/json", `{"kind":"item","data":{}}`, 401, "invalid_token"},
		{"garbage key", "/api/feeds/lobby/events", "hello", "application/json", `{"kind":"item","data":{}}`, 401, "invalid_token"},
		{"admin token is not a producer key", "/api/feeds/lobby/events", adminToken, "application/json", `{"kind":"item","data":{}}`, 401, "invalid_token"},
		{"feed outside scope", "/api/feeds/kitchen/events", key, "application/json", `{"kind":"item","data":{}}`, 403, "forbidden"},
		{"glob does not reach past its pattern", "/api/feeds/floor/events", key, "application/json", `{"kind":"item","data":{}}`, 403, "forbidden"},
		{"invalid feed id", "/api/feeds/Lobby/events", key, "application/json", `{"kind":"item","data":{}}`, 400, "invalid_request"},
		{"feed id too long", "/api/feeds/" + strings.Repeat("a", 64) + "/events", key, "application/json", `{"kind":"item","data":{}}`, 400, "invalid_request"},
		{"malformed JSON", "/api/feeds/lobby/events", key, "application/json", `{"kind":"item",`, 400, "invalid_request"},
		{"empty body", "/api/feeds/lobby/events", key, "application/json", ``, 400, "invalid_request"},
		{"two JSON values", "/api/feeds/lobby/events", key, "application/json", `{"kind":"item","data":{}}{}`, 400, "invalid_request"},
		{"a stray closing brace", "/api/feeds/lobby/events", key, "application/json", `{"kind":"item","data":{}}}`, 400, "invalid_request"},
		{"unknown kind", "/api/feeds/lobby/events", key, "application/json", `{"kind":"banner","data":{}}`, 400, "invalid_request"},
		{"missing kind", "/api/feeds/lobby/events", key, "application/json", `{"data":{}}`, 400, "invalid_request"},
		{"data is an array", "/api/feeds/lobby/events", key, "application/json", `{"kind":"item","data":[1]}`, 400, "invalid_request"},
		{"data is a string", "/api/feeds/lobby/events", key, "application/json", `{"kind":"item","data":"hi"}`, 400, "invalid_request"},
		{"data missing", "/api/feeds/lobby/events", key, "application/json", `{"kind":"state"}`, 400, "invalid_request"},
		{"kind has the wrong type", "/api/feeds/lobby/events", key, "application/json", `{"kind":5,"data":{}}`, 400, "invalid_request"},
		{"unknown field", "/api/feeds/lobby/events", key, "application/json", `{"kind":"item","data":{},"ttl":5}`, 400, "invalid_request"},
		{"bad event id", "/api/feeds/lobby/events", key, "application/json", `{"id":"a b","kind":"item","data":{}}`, 400, "invalid_request"},
		{"data over max_event_bytes", "/api/feeds/lobby/events", key, "application/json", big, 413, "too_large"},
		{"wrong content type", "/api/feeds/lobby/events", key, "text/plain", `{"kind":"item","data":{}}`, 415, "unsupported_media_type"},
		{"no content type", "/api/feeds/lobby/events", key, "", `{"kind":"item","data":{}}`, 415, "unsupported_media_type"},
		{"state without key", "/api/feeds/lobby/state", "", "", ``, 401, "invalid_token"},
		{"state outside scope", "/api/feeds/lobby/state", otherKey, "", ``, 403, "forbidden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := "POST"
			if strings.HasSuffix(tc.path, "/state") {
				method = "GET"
			}
			wantError(t, s.do(t, method, tc.path, tc.auth, tc.ctype, strings.NewReader(tc.body)), tc.status, tc.code)
		})
	}
	// Nothing refused was stored.
	if st, err := s.b.State(ctx, "lobby"); err != nil || st.Seq != 0 {
		t.Fatalf("lobby after refused publishes: %+v, %v; want empty", st, err)
	}
}

// countingReader is an endless body that counts what the client managed to send.
type countingReader struct{ n atomic.Int64 }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	c.n.Add(int64(len(p)))
	if c.n.Load() > 512<<20 {
		return 0, io.EOF
	}
	return len(p), nil
}

func TestPublishAPIStopsReadingHugeBodies(t *testing.T) {
	s := startAPI(t, brokertest.New(t))
	key := s.createKey(t, "lobby")
	body := &countingReader{}
	req, _ := http.NewRequest("POST", s.URL+"/api/feeds/lobby/events", body)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.Client().Do(req)
	if err == nil {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !bytes.Contains(raw, []byte(`"too_large"`)) {
			t.Fatalf("huge body: %d %s, want 413 too_large", resp.StatusCode, raw)
		}
	}
	// Whether the client saw the answer or a reset, the server must have stopped reading
	// long before the 512 MiB body ended.
	if sent := body.n.Load(); sent > 64<<20 {
		t.Fatalf("client pushed %d MiB before the server stopped it, want the server to stop near its cap", sent>>20)
	}
}

func TestPublishAPIAcceptsAndDeduplicates(t *testing.T) {
	s := startAPI(t, brokertest.New(t))
	key := s.createKey(t, "lobby")
	post := func(body string) response {
		return s.do(t, "POST", "/api/feeds/lobby/events", key, "application/json; charset=utf-8", strings.NewReader(body))
	}
	r := post(`{"id":"order-4711-ready","kind":"item","data":{"text":"4711"}}`)
	if r.status != http.StatusAccepted || r.body["id"] != "order-4711-ready" || r.body["duplicate"] != false || r.body["seq"].(float64) < 1 {
		t.Fatalf("publish: %d %s, want 202 with seq, id and duplicate false", r.status, r.raw)
	}
	seq := r.body["seq"]
	r = post(`{"id":"order-4711-ready","kind":"item","data":{"text":"changed"}}`)
	if r.status != http.StatusAccepted || r.body["duplicate"] != true || r.body["seq"] != seq {
		t.Fatalf("repeat: %d %s, want 202 duplicate true with seq %v", r.status, r.raw, seq)
	}
	r = post(`{"kind":"state","data":{"title":"Welcome"}}`)
	if r.status != http.StatusAccepted || r.body["id"] == "" {
		t.Fatalf("publish without id: %d %s, want 202 with a server-made id", r.status, r.raw)
	}

	st := s.do(t, "GET", "/api/feeds/lobby/state", key, "", nil)
	if st.status != 200 || st.body["seq"] != r.body["seq"] {
		t.Fatalf("state: %d %s, want 200 with seq %v", st.status, st.raw, r.body["seq"])
	}
	events := st.body["events"].([]any)
	if len(events) != 1 || events[0].(map[string]any)["kind"] != "state" {
		t.Fatalf("state events = %v, want the state event only", events)
	}
	if admin := s.do(t, "GET", "/api/feeds/lobby/state", adminToken, "", nil); admin.status != 200 {
		t.Fatalf("state with admin token: %d, want 200", admin.status)
	}
	if empty := s.do(t, "GET", "/api/feeds/lobby-2/state", adminToken, "", nil); empty.status != 200 || string(empty.raw) != "{\"seq\":0,\"events\":[]}\n" {
		t.Fatalf("state of an empty feed: %d %s, want seq 0 and []", empty.status, empty.raw)
	}
}

func TestProducerKeyAdmin(t *testing.T) {
	s := startAPI(t, brokertest.New(t))
	wantError(t, s.do(t, "POST", "/api/admin/producer-keys", "", "application/json", strings.NewReader(`{"name":"x","feeds":["a"]}`)), 401, "invalid_token")
	wantError(t, s.do(t, "POST", "/api/admin/producer-keys", "wrong", "application/json", strings.NewReader(`{"name":"x","feeds":["a"]}`)), 401, "invalid_token")
	for name, body := range map[string]string{
		"no feeds":      `{"name":"x","feeds":[]}`,
		"bad glob":      `{"name":"x","feeds":["feeds.>"]}`,
		"no name":       `{"feeds":["a"]}`,
		"unknown key":   `{"name":"x","feeds":["a"],"admin":true}`,
		"not an object": `[]`,
	} {
		t.Run(name, func(t *testing.T) {
			wantError(t, s.do(t, "POST", "/api/admin/producer-keys", adminToken, "application/json", strings.NewReader(body)), 400, "invalid_request")
		})
	}
	r := s.do(t, "POST", "/api/admin/producer-keys", adminToken, "application/json", strings.NewReader(`{"name":"queue system","feeds":["lobby"]}`))
	if r.status != 201 || r.body["id"] == "" || r.body["name"] != "queue system" || r.body["hash"] != nil {
		t.Fatalf("create: %d %s, want 201 with id, name, key and no hash", r.status, r.raw)
	}
	id, key := r.body["id"].(string), r.body["key"].(string)
	list := s.do(t, "GET", "/api/admin/producer-keys", adminToken, "", nil)
	if list.status != 200 || bytes.Contains(list.raw, []byte(key)) || !bytes.Contains(list.raw, []byte(id)) {
		t.Fatalf("list: %d %s, want the key's record without its secret", list.status, list.raw)
	}
	if p := s.do(t, "POST", "/api/feeds/lobby/events", key, "application/json", strings.NewReader(`{"kind":"item","data":{}}`)); p.status != 202 {
		t.Fatalf("publish with new key: %d %s", p.status, p.raw)
	}
	if d := s.do(t, "DELETE", "/api/admin/producer-keys/"+id, adminToken, "", nil); d.status != 204 {
		t.Fatalf("delete: %d %s, want 204", d.status, d.raw)
	}
	wantError(t, s.do(t, "DELETE", "/api/admin/producer-keys/"+id, adminToken, "", nil), 404, "not_found")
	wantError(t, s.do(t, "POST", "/api/feeds/lobby/events", key, "application/json", strings.NewReader(`{"kind":"item","data":{}}`)), 401, "invalid_token")
}
