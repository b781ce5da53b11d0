package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/apitest"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// syncBuffer is an io.Writer that tests read while run writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

type served struct {
	base, token, natsAddr string
	stdout, stderr        *syncBuffer
	stop                  func() error
}

// startServe runs `kioskfeed serve` in-process on loopback ports until the test ends.
func startServe(t *testing.T, dataDir string, extra ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--data-dir", dataDir, "--nats-sync-always=false"}, extra...)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, env(nil), s.stdout, s.stderr) }()
	var once sync.Once
	var runErr error
	s.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				t.Errorf("serve did not stop within 30s of its context ending")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = s.stop() })

	addrRe := regexp.MustCompile(`serving on (\S+)`)
	// The banner's admin token line comes after the data dir's, in a write of its own:
	// reading at "data dir:" could miss the token (a test then called with none: 401).
	tokenLine := regexp.MustCompile(`admin token:[^\n]*\n`)
	deadline := time.Now().Add(30 * time.Second)
	for !tokenLine.MatchString(s.stdout.String()) {
		select {
		case err := <-done:
			t.Fatalf("serve exited early: %v\nstderr: %s", err, s.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve printed no banner within 30s; stdout: %s\nstderr: %s", s.stdout, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := s.stdout.String()
	s.base = "http://" + addrRe.FindStringSubmatch(out)[1]
	if m := regexp.MustCompile(`admin token:\s+(kfa_\S+)`).FindStringSubmatch(out); m != nil {
		s.token = m[1]
	}
	if m := regexp.MustCompile(`nats://(\S+)`).FindStringSubmatch(out); m != nil {
		s.natsAddr = m[1]
	}
	return s
}

// routedTablet is a new tablet whose proofs name public (the public URL the server was
// given), while its HTTP client reaches s's listener whatever host public names.
func (s *served) routedTablet(t *testing.T, public string) *pairingtest.Tablet {
	t.Helper()
	tab, err := pairingtest.NewTablet(public)
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(s.base, "http://")
	tab.HTTP = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	return tab
}

func (s *served) call(t *testing.T, method, path, auth, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := apitest.Client(t).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

func TestServeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	s := startServe(t, dir, "--demo", "--demo-every", "50ms")
	if s.token == "" || s.natsAddr == "" {
		t.Fatalf("banner lacks the new admin token or the NATS address:\n%s", s.stdout)
	}
	if strings.Contains(s.stderr.String(), s.token) {
		t.Fatal("the admin token appears in the log")
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := s.call(t, "GET", path, "", ""); code != 200 {
			t.Fatalf("%s = %d, want 200", path, code)
		}
	}
	// The demo feed has a state at once and items keep coming.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, st := s.call(t, "GET", "/api/feeds/demo/state", s.token, "")
		if code == 200 && len(st["events"].([]any)) >= 3 && st["events"].([]any)[0].(map[string]any)["kind"] == "state" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo feed state = %d %v, want a state event and items", code, st)
		}
		time.Sleep(50 * time.Millisecond)
	}

	code, key := s.call(t, "POST", "/api/admin/producer-keys", s.token, `{"name":"e2e","feeds":["lobby"]}`)
	if code != 201 {
		t.Fatalf("create producer key = %d %v", code, key)
	}
	var out syncBuffer
	err := run(context.Background(), []string{"publish", "--url", s.base, "--feed", "lobby", "--kind", "state", "--data", `{"title":"Hello"}`, "--id", "hello-1"},
		env(map[string]string{"KIOSKFEED_PRODUCER_KEY": key["key"].(string)}), &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), `"id":"hello-1","duplicate":false`) {
		t.Fatalf("publish over HTTP: %v, printed %q", err, out.String())
	}
	out = syncBuffer{}
	err = run(context.Background(), []string{"publish", "--nats", "--nats-url", "nats://" + s.natsAddr, "--data-dir", dir, "--feed", "lobby", "--kind", "item", "--data", `{"text":"over NATS"}`, "--id", "n-1"},
		env(nil), &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), `"id":"n-1","duplicate":false`) {
		t.Fatalf("publish over NATS: %v, printed %q", err, out.String())
	}
	code, st := s.call(t, "GET", "/api/feeds/lobby/state", key["key"].(string), "")
	if code != 200 || len(st["events"].([]any)) != 2 {
		t.Fatalf("lobby state = %d %v, want the state and the NATS item", code, st)
	}
	if err := run(context.Background(), []string{"publish", "--url", s.base, "--feed", "lobby", "--kind", "state", "--data", `{}`}, env(nil), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "producer key") {
		t.Fatalf("publish without a key: %v, want an error naming the missing producer key", err)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("serve returned %v on shutdown, want nil", err)
	}

	// Restart on the same data dir: the events and the admin token outlive it, and the
	// token is not printed again.
	s2 := startServe(t, dir)
	if s2.token != "" || !strings.Contains(s2.stdout.String(), "made at first start") {
		t.Fatalf("second start printed a new admin token:\n%s", s2.stdout)
	}
	code, st = s2.call(t, "GET", "/api/feeds/lobby/state", s.token, "")
	if code != 200 || len(st["events"].([]any)) != 2 {
		t.Fatalf("after restart, lobby state = %d %v, want both events and the old admin token to work", code, st)
	}
}

func TestServeRefusesBadConfigClearly(t *testing.T) {
	err := run(context.Background(), []string{"serve", "--data-dir", t.TempDir()}, env(map[string]string{"KIOSKFEED_LISTEN": "abc"}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `KIOSKFEED_LISTEN "abc"`) || !strings.Contains(err.Error(), "host:port") {
		t.Fatalf("serve with KIOSKFEED_LISTEN=abc: %v, want a message naming the variable and host:port", err)
	}
	if exitCode(err) != 1 {
		t.Fatalf("exit code %d, want 1", exitCode(err))
	}
}

func TestServeReportsPortClash(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = run(context.Background(), []string{"serve", "--listen", ln.Addr().String(), "--nats-listen", "", "--data-dir", t.TempDir()}, env(nil), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "listen on "+ln.Addr().String()) {
		t.Fatalf("serve on a taken port: %v, want an error naming the address", err)
	}
}

func TestConfigCheck(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"config", "check"}, env(map[string]string{"KIOSKFEED_ADMIN_TOKEN": "a-very-secret-admin-token"}), &out, io.Discard)
	if err != nil {
		t.Fatalf("config check: %v", err)
	}
	if strings.Contains(out.String(), "a-very-secret-admin-token") || !strings.Contains(out.String(), `admin_token: "****"`) {
		t.Fatalf("config check does not mask the admin token:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "# config is valid") || !strings.Contains(out.String(), "env KIOSKFEED_ADMIN_TOKEN") {
		t.Fatalf("config check output lacks validity or sources:\n%s", out.String())
	}
	err = run(context.Background(), []string{"config", "check", "--lease-ttl", "1500ms"}, env(nil), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `--lease-ttl "1500ms"`) {
		t.Fatalf("config check with a bad flag: %v, want the flag named", err)
	}
}

func TestCommandLine(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, env(nil), &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "kioskfeed ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
	for _, args := range [][]string{{"serve", "--help"}, {"publish", "-h"}, {"help"}} {
		if err := run(context.Background(), args, env(nil), io.Discard, io.Discard); err != nil {
			t.Fatalf("run %q: %v, want help and success", args, err)
		}
	}
	for _, args := range [][]string{nil, {"frobnicate"}, {"config"}, {"publish", "--feed", "x"}, {"serve", "extra-arg"}, {"admin"}, {"admin", "pin", "--feed", "x"}, {"admin", "token"}} {
		err := run(context.Background(), args, env(nil), io.Discard, io.Discard)
		if exitCode(err) != 2 {
			t.Fatalf("run %q: %v (exit %d), want a usage error (exit 2)", args, err, exitCode(err))
		}
	}
}
