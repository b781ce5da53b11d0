package broker_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kioskfeed/kioskfeed/broker"
)

// Every JSON answer and every rewritten ServeMux error says nosniff, whatever wraps the
// handler: the bridge's and pairing's own muxes in tests have no front door.
func TestJSONAnswersAreNosniff(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /known", func(w http.ResponseWriter, r *http.Request) {
		broker.WriteError(w, errors.New("something internal"))
	})
	mux.HandleFunc("GET /json", func(w http.ResponseWriter, r *http.Request) {
		broker.WriteJSON(w, http.StatusOK, map[string]int{"n": 1})
	})
	srv := httptest.NewServer(broker.JSONErrors(mux))
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/nowhere", 404, `{"error":"not_found"`},
		{"POST", "/known", 405, `{"error":"method_not_allowed"`},
		{"GET", "/known", 500, `{"error":"internal"`},
		{"GET", "/json", 200, `{"n":1}`},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.HasPrefix(string(body), tc.code) {
			t.Errorf("%s %s = %d %q, want %d %s…", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.code)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s: X-Content-Type-Options = %q, want nosniff", tc.method, tc.path, got)
		}
	}
	if got := broker.Status(broker.CodeMisdirected); got != http.StatusMisdirectedRequest {
		t.Errorf("Status(misdirected_request) = %d, want 421", got)
	}
}
