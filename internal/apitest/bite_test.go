package apitest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kioskfeed/kioskfeed/docs"
	"github.com/kioskfeed/kioskfeed/internal/apitest"
)

// exchange sends one request through v's handler around h and returns what v said.
func exchange(t *testing.T, v *apitest.Validator, h http.HandlerFunc, method, path, body string, header map[string]string) error {
	t.Helper()
	var got error
	srv := httptest.NewServer(v.Wrap(h, func(err error) { got = err }))
	defer srv.Close()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	for k, val := range header {
		req.Header.Set(k, val)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	srv.Close() // the handler has returned: got is set
	return got
}

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func mustDefault(t *testing.T) *apitest.Validator {
	t.Helper()
	v, err := apitest.Default()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestValidationBites: answers the document does not allow fail, and the answers it
// allows pass (so the failures are not the validator failing everything).
func TestValidationBites(t *testing.T) {
	v := mustDefault(t)
	producer := map[string]string{"Authorization": "Bearer kfp.x.y", "Content-Type": "application/json"}
	event := `{"kind":"item","data":{"text":"hi"}}`
	tests := []struct {
		name         string
		h            http.HandlerFunc
		method, path string
		body         string
		header       map[string]string
		want         string // in the failure; "" for none
	}{
		{name: "documented answer", h: answer(200, `{"status":"ok"}`), method: "GET", path: "/healthz"},
		{name: "extra field", h: answer(200, `{"status":"ok","uptime":5}`), method: "GET", path: "/healthz", want: "GET /healthz → 200: the answer does not follow"},
		{name: "undocumented status", h: answer(418, `{"error":"internal","message":"teapot"}`), method: "GET", path: "/healthz", want: "status is not supported"},
		{name: "wrong field type", h: answer(202, `{"seq":"1","id":"a","duplicate":false}`), method: "POST", path: "/api/feeds/lobby/events", body: event, header: producer, want: "POST /api/feeds/lobby/events → 202"},
		{name: "missing field", h: answer(202, `{"seq":1,"id":"a"}`), method: "POST", path: "/api/feeds/lobby/events", body: event, header: producer, want: "duplicate"},
		{name: "publish documented", h: answer(202, `{"seq":1,"id":"a","duplicate":false}`), method: "POST", path: "/api/feeds/lobby/events", body: event, header: producer},
		{name: "error code outside the enum", h: answer(400, `{"error":"bad","message":"x"}`), method: "POST", path: "/api/feeds/lobby/events", body: event, header: producer, want: "→ 400"},
		{name: "error without message", h: answer(400, `{"error":"invalid_request"}`), method: "POST", path: "/api/feeds/lobby/events", body: event, header: producer, want: "message"},
		{name: "undocumented endpoint", h: answer(200, `{}`), method: "GET", path: "/api/secret", want: "GET /api/secret → 200: undocumented endpoint"},
		{name: "unknown endpoint refused in the error format", h: answer(404, `{"error":"not_found","message":"no such endpoint"}`), method: "GET", path: "/api/secret"},
		{name: "unknown endpoint refused otherwise", h: answer(404, `not here`), method: "GET", path: "/api/secret", want: "not the error format"},
		{name: "accepting a request the document refuses", h: answer(202, `{"seq":1,"id":"a","duplicate":false}`), method: "POST", path: "/api/feeds/lobby/events", body: `{"kind":"other","data":{}}`, header: producer, want: "the server accepted a request docs/openapi.json refuses"},
		{name: "refusing a bad request is documented", h: answer(400, `{"error":"invalid_request","message":"kind"}`), method: "POST", path: "/api/feeds/lobby/events", body: `{"kind":"other","data":{}}`, header: producer},
		{name: "missing credential refused", h: answer(401, `{"error":"invalid_token","message":"send a key"}`), method: "POST", path: "/api/feeds/lobby/events", body: event, header: map[string]string{"Content-Type": "application/json"}},
		{name: "missing credential accepted", h: answer(202, `{"seq":1,"id":"a","duplicate":false}`), method: "POST", path: "/api/feeds/lobby/events", body: event, header: map[string]string{"Content-Type": "application/json"}, want: "accepted a request"},
		{name: "not the API: unchecked", h: answer(418, `<html>`), method: "GET", path: "/admin/devices"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := exchange(t, v, tt.h, tt.method, tt.path, tt.body, tt.header)
			t.Logf("the validator: %v", err)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("the validator refused a documented exchange: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("the validator let it through, want a failure naming %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("failure %q does not name %q", err, tt.want)
			}
		})
	}
}

// TestARemovedStatusFails: the same answer passes against docs/openapi.json and fails
// against a copy without that status.
func TestARemovedStatusFails(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(docs.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	op := doc["paths"].(map[string]any)["/readyz"].(map[string]any)["get"].(map[string]any)
	delete(op["responses"].(map[string]any), "503")
	trimmed, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(trimmed, docs.OpenAPI) {
		t.Fatal("the copy is the document")
	}
	without, err := apitest.New(trimmed)
	if err != nil {
		t.Fatal(err)
	}
	unready := answer(503, `{"error":"unavailable","message":"NATS or JetStream is not reachable"}`)
	if err := exchange(t, mustDefault(t), unready, "GET", "/readyz", "", nil); err != nil {
		t.Fatalf("docs/openapi.json: %v", err)
	}
	err = exchange(t, without, unready, "GET", "/readyz", "", nil)
	if err == nil || !strings.Contains(err.Error(), "GET /readyz → 503") || !strings.Contains(err.Error(), "status is not supported") {
		t.Fatalf("without its 503, the validator said %v; want a failure naming GET /readyz → 503 and the status", err)
	}
}

// spy is a testing.TB that keeps what would fail the test.
type spy struct {
	testing.TB
	failures []string
}

func (s *spy) Errorf(format string, args ...any) {
	s.failures = append(s.failures, fmt.Sprintf(format, args...))
}

// TestTheTransportBites: the client side reports what the server side does, for a
// server a test cannot wrap.
func TestTheTransportBites(t *testing.T) {
	srv := httptest.NewServer(answer(200, `{"status":"ready","since":"5m"}`))
	defer srv.Close()
	tb := &spy{TB: t}
	resp, err := apitest.Client(tb).Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != `{"status":"ready","since":"5m"}` {
		t.Fatalf("the caller read %q: the transport must hand on the body it checked", got)
	}
	if len(tb.failures) != 1 || !strings.Contains(tb.failures[0], "GET /readyz → 200") || !strings.Contains(tb.failures[0], "since") {
		t.Fatalf("failures %q, want one naming GET /readyz → 200 and the extra field", tb.failures)
	}
}
