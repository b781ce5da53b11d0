package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// get asks the served instance for path with the given Host header ("" = the address
// dialled) and returns the answer with its body read.
func (s *served) get(t *testing.T, method, path, host string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %q): %v", method, path, host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// Every answer of the main listener says nosniff: the mux's own 404 and 405, JSON
// errors, JSON answers, the tablet app's files, and /metrics. With an http public URL
// there is no Strict-Transport-Security.
func TestEveryResponseIsNosniff(t *testing.T) {
	s := startServe(t, t.TempDir())
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/no-such-path", 404},           // ServeMux's own 404
		{"DELETE", "/healthz", 405},             // ServeMux's own 405
		{"GET", "/api/feeds/lobby/state", 401},  // a JSON error of a handler
		{"POST", "/api/pair", 0},                // the pairing endpoint's refusal
		{"GET", "/healthz", 200},                // JSON
		{"GET", "/", 200},                       // the tablet app
		{"GET", "/manifest.webmanifest", 0},     // built by a handler
		{"GET", "/metrics", 200},                // Prometheus text
		{"GET", "/admin/login", 0},              // the dashboard
		{"GET", "/ws", 0},                       // not an upgrade: refused
		{"GET", "/.well-known/jwks.json", 0},    // keys
		{"GET", "/api/admin/devices", 401},      // admin API without a token
		{"PUT", "/api/feeds/lobby/events", 405}, // a wrong method on a known path
	} {
		resp, body := s.get(t, tc.method, tc.path, "")
		if tc.status != 0 && resp.StatusCode != tc.status {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s (%d): X-Content-Type-Options = %q, want nosniff", tc.method, tc.path, resp.StatusCode, got)
		}
		if got := resp.Header.Get("Strict-Transport-Security"); got != "" {
			t.Errorf("%s %s: Strict-Transport-Security %q with an http public URL, want none", tc.method, tc.path, got)
		}
		if resp.StatusCode >= 400 && resp.StatusCode != 426 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			var e struct{ Error, Message string }
			if json.Unmarshal(body, &e) != nil || e.Error == "" {
				t.Errorf("%s %s = %d %q, want the JSON error format", tc.method, tc.path, resp.StatusCode, body)
			}
		}
	}
	resp, body := s.get(t, "DELETE", "/healthz", "")
	if !strings.Contains(string(body), `"error":"method_not_allowed"`) || resp.Header.Get("Allow") == "" {
		t.Errorf("DELETE /healthz = %d %q (Allow %q), want method_not_allowed with an Allow header", resp.StatusCode, body, resp.Header.Get("Allow"))
	}
}

// With an https public URL every answer carries Strict-Transport-Security, errors
// included (TLS ends at the balancer, so the server itself speaks http).
func TestHSTSWhenPublicURLIsHTTPS(t *testing.T) {
	s := startServe(t, t.TempDir(), "--public-url", "https://kiosk.example.com")
	for _, path := range []string{"/healthz", "/", "/no-such-path", "/api/feeds/lobby/state"} {
		resp, _ := s.get(t, "GET", path, "kiosk.example.com")
		if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
			t.Errorf("GET %s (%d): Strict-Transport-Security = %q, want max-age=31536000", path, resp.StatusCode, got)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options = %q, want nosniff", path, got)
		}
	}
	// Refused for its Host, and still told to use https.
	resp, _ := s.get(t, "GET", "/", "rebound.attacker.example")
	if resp.StatusCode != http.StatusMisdirectedRequest || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("GET / from another host = %d, HSTS %q; want 421 with HSTS", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
}

// A DNS-rebinding page sends its own name in Host: it is refused 421
// misdirected_request, in the JSON error format, on every path but the probes' and
// the scrapers'. The public URL's host (any case, any port, a trailing dot), the hosts
// of allowed_origins and allowed_hosts, localhost and IP addresses are answered.
func TestHostCheck(t *testing.T) {
	s := startServe(t, t.TempDir(), "--public-url", "http://kiosk.example.com",
		"--allowed-hosts", "other.example.org", "--allowed-origins", "https://alias.example.net,http://kiosk.example.com")
	for _, host := range []string{
		"kiosk.example.com", "KIOSK.Example.COM.:8443", "other.example.org", "alias.example.net:443",
		"localhost", "localhost:9999", "127.0.0.1:80", "[::1]:8080", "10.1.2.3", "192.0.2.7:8080",
	} {
		for _, path := range []string{"/", "/admin/login", "/api/feeds/lobby/state"} {
			if resp, _ := s.get(t, "GET", path, host); resp.StatusCode == http.StatusMisdirectedRequest {
				t.Errorf("GET %s with Host %q = 421, want it answered", path, host)
			}
		}
	}
	for _, host := range []string{"attacker.example", "kiosk.example.com.attacker.example", "example.com", "kiosk-example.com", "localhost.attacker.example"} {
		for _, path := range []string{"/", "/admin", "/admin/login", "/api/feeds/lobby/state", "/api/token", "/ws", "/no-such-path", "/healthz/"} {
			resp, body := s.get(t, "GET", path, host)
			var e struct{ Error, Message string }
			if resp.StatusCode != http.StatusMisdirectedRequest || json.Unmarshal(body, &e) != nil || e.Error != "misdirected_request" || e.Message == "" {
				t.Errorf("GET %s with Host %q = %d %q, want 421 misdirected_request", path, host, resp.StatusCode, body)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s with Host %q: no nosniff on the refusal", path, host)
			}
			if strings.Contains(string(body), host) {
				t.Errorf("the refusal echoes the Host header: %q", body)
			}
		}
		resp, _ := s.get(t, "POST", "/api/pair", host)
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("POST /api/pair with Host %q = %d, want 421", host, resp.StatusCode)
		}
		// Probes and scrapers reach a pod by an address or name of their own.
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			if resp, body := s.get(t, "GET", path, host); resp.StatusCode != 200 {
				t.Errorf("GET %s with Host %q = %d %q, want 200 (exempt from the Host check)", path, host, resp.StatusCode, body)
			}
		}
	}
}

// DNS rebinding in a real browser: Chromium resolves the attacker's name to this server
// (as the attacker's DNS would, once the page has loaded), so the attacker's page and
// the dashboard would be one origin. The server refuses every request with that Host,
// so the page can neither load the dashboard nor read it with fetch; the same browser
// reaches the dashboard by its real address.
func TestBrowserDNSRebindingRefused(t *testing.T) {
	addr := freeAddr(t)
	s := startServe(t, t.TempDir(), "--listen", addr, "--public-url", "http://"+addr)
	_, port, _ := net.SplitHostPort(addr)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath(t)), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("host-resolver-rules", "MAP rebind.attacker.test 127.0.0.1"),
		chromedp.Flag("no-first-run", true), chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-extensions", true))
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})

	// The real address: the login page.
	if err := chromedp.Do(ctx, chromedp.Navigate(s.base+"/admin/login"), chromedp.WaitVisible(chromedp.ID("password"))); err != nil {
		t.Fatalf("the dashboard by its own address: %v", err)
	}

	// The attacker's name, same port: refused, and fetch from that origin reads nothing.
	evil := "http://rebind.attacker.test:" + port
	if err := chromedp.Do(ctx, chromedp.Navigate(evil+"/admin/login")); err != nil {
		t.Fatalf("navigate to the rebound name: %v", err)
	}
	body, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil || !strings.Contains(body, `"error":"misdirected_request"`) {
		t.Fatalf("the rebound name shows %q (%v), want the misdirected_request refusal", body, err)
	}
	for _, path := range []string{"/admin", "/admin/live", "/api/admin/devices", "/"} {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](
			`fetch(`+strconv.Quote(path)+`, {credentials: 'include'}).then(r => r.status + ' ' + r.headers.get('Content-Type'))`,
			chromedp.EvalAwaitPromise))
		if err != nil || !strings.HasPrefix(got, "421 application/json") {
			t.Errorf("fetch %s from the rebound origin = %q (%v), want 421 JSON", path, got, err)
		}
	}
}
