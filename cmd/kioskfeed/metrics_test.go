package main

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// By default /metrics is on the main listener, open, with the kioskfeed_* series (the
// load tool scrapes it there).
func TestMetricsOnMainListenerByDefault(t *testing.T) {
	s := startServe(t, t.TempDir())
	s.get(t, "GET", "/healthz", "") // one request measured
	resp, body := s.get(t, "GET", "/metrics", "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics = %d, want 200", resp.StatusCode)
	}
	for _, series := range []string{"kioskfeed_ws_connections", "kioskfeed_http_request_duration_seconds", "go_goroutines"} {
		if !strings.Contains(string(body), "\n"+series) {
			t.Errorf("GET /metrics lacks %s", series)
		}
	}
}

// With metrics_listen the series move to a listener of their own: the main listener
// answers 404 for /metrics, in the JSON error format.
func TestMetricsListen(t *testing.T) {
	s := startServe(t, t.TempDir(), "--metrics-listen", "127.0.0.1:0")
	resp, body := s.get(t, "GET", "/metrics", "")
	if resp.StatusCode != 404 || !strings.Contains(string(body), `"error":"not_found"`) {
		t.Fatalf("GET /metrics on the main listener = %d %q, want 404 not_found", resp.StatusCode, body)
	}
	addr := metricsAddr(t, s)
	if !strings.Contains(s.stdout.String(), "http://"+addr+"/metrics") {
		t.Errorf("the banner does not show the metrics listener %s:\n%s", addr, s.stdout)
	}
	resp, body = httpGet(t, "http://"+addr+"/metrics", "")
	if resp.StatusCode != 200 || !strings.Contains(string(body), "\nkioskfeed_ws_connections") {
		t.Fatalf("GET /metrics on metrics_listen = %d, want 200 with the kioskfeed_* series:\n%.300s", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("metrics listener: no nosniff")
	}
	// Only /metrics there: no API, no dashboard.
	if resp, _ := httpGet(t, "http://"+addr+"/api/feeds/lobby/state", ""); resp.StatusCode != 404 {
		t.Errorf("metrics listener serves the API: %d, want 404", resp.StatusCode)
	}
}

// With metrics_token, /metrics answers only its bearer: none or another is 401
// invalid_token in the JSON error format; the token shows in no output.
func TestMetricsToken(t *testing.T) {
	const token = "metrics-secret-0123456789"
	for _, where := range []string{"main", "metrics_listen"} {
		t.Run(where, func(t *testing.T) {
			args := []string{"--metrics-token", token}
			if where == "metrics_listen" {
				args = append(args, "--metrics-listen", "127.0.0.1:0")
			}
			s := startServe(t, t.TempDir(), args...)
			url := s.base + "/metrics"
			if where == "metrics_listen" {
				url = "http://" + metricsAddr(t, s) + "/metrics"
			}
			for _, auth := range []string{"", "Bearer ", "Bearer wrong-token-0123456789", "Basic " + token, "Bearer " + token + "x", "Bearer" + token} {
				resp, body := httpGet(t, url, auth)
				var e struct{ Error, Message string }
				if resp.StatusCode != 401 || json.Unmarshal(body, &e) != nil || e.Error != "invalid_token" {
					t.Errorf("GET /metrics with Authorization %q = %d %q, want 401 invalid_token", auth, resp.StatusCode, body)
				}
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 without WWW-Authenticate: Bearer")
				}
			}
			for _, auth := range []string{"Bearer " + token, "bearer " + token, "BEARER  " + token} { // RFC 7235 §2.1
				resp, body := httpGet(t, url, auth)
				if resp.StatusCode != 200 || !strings.Contains(string(body), "\nkioskfeed_ws_connections") {
					t.Fatalf("GET /metrics with Authorization %q = %d, want 200 with the series", strings.Replace(auth, token, "<token>", 1), resp.StatusCode)
				}
			}
			if strings.Contains(s.stdout.String()+s.stderr.String(), token) {
				t.Fatalf("the metrics token appears in the banner or the log")
			}
		})
	}
}

// metricsAddr is the address the metrics listener took, from its log line.
func metricsAddr(t *testing.T, s *served) string {
	t.Helper()
	re := regexp.MustCompile(`serving metrics.*metrics_listen=(\S+)`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := re.FindStringSubmatch(s.stderr.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics listener in the log:\n%s", s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url, auth string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, resp.Body)
	return resp, []byte(b.String())
}
