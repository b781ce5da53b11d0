package httpx_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// Every JSON answer and every rewritten ServeMux error says nosniff, whatever wraps the
// handler: the bridge's and pairing's own muxes in tests have no front door.
func TestJSONAnswersAreNosniff(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /known", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, errors.New("something internal"))
	})
	mux.HandleFunc("GET /json", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]int{"n": 1})
	})
	srv := httptest.NewServer(httpx.JSONErrors(mux))
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
	if got := httpx.Status(httpx.CodeMisdirected); got != http.StatusMisdirectedRequest {
		t.Errorf("Status(misdirected_request) = %d, want 421", got)
	}
}

// A HandlerFunc's error is answered in the contract's format, with the code's status
// and Retry-After; a nil error leaves the handler's own answer alone; an error that is
// not an *Error is a 500 that hides its text.
func TestHandlerFuncAnswersItsError(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET /limited", httpx.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return &httpx.Error{Code: httpx.CodeRateLimited, Message: "slow down", RetryAfter: 7}
	}))
	mux.Handle("GET /secret", httpx.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return errors.New("dial tcp 10.0.0.1: the password is hunter2")
	}))
	mux.Handle("GET /ok", httpx.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		httpx.WriteJSON(w, http.StatusCreated, map[string]string{"ok": "yes"})
		return nil
	}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, tc := range []struct {
		path, want, retry string
		status            int
	}{
		{"/limited", `{"error":"rate_limited","message":"slow down"}`, "7", http.StatusTooManyRequests},
		{"/secret", `{"error":"internal","message":"internal error"}`, "", http.StatusInternalServerError},
		{"/ok", `{"ok":"yes"}`, "", http.StatusCreated},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || strings.TrimSpace(string(body)) != tc.want || resp.Header.Get("Retry-After") != tc.retry {
			t.Errorf("%s: %d %q Retry-After %q; want %d %q %q", tc.path, resp.StatusCode, body, resp.Header.Get("Retry-After"), tc.status, tc.want, tc.retry)
		}
	}
}
