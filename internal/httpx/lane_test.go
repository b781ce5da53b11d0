package httpx_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// laneServer is an http.Server behind a Lane for path /ws on a real loopback listener.
// Its take, unless a test sets decline, takes every request offered: it records it and
// answers "taken" on the raw connection, so a test can tell the lane's answers from
// net/http's.
type laneServer struct {
	addr string
	srv  *http.Server
	lane *httpx.Lane

	mu      sync.Mutex
	taken   []*http.Request
	early   [][]byte
	decline bool
}

// echoHandler is what net/http answers: the request line it saw, and its body.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	fmt.Fprintf(w, "net/http %s %s host=%s body=%q", r.Method, r.RequestURI, r.Host, body)
}

func startLane(t testing.TB, headTimeout time.Duration, h http.Handler) *laneServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &laneServer{addr: ln.Addr().String()}
	s.lane = httpx.NewLane(ln, "/ws", headTimeout, func(c net.Conn, r *http.Request, early []byte) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.decline {
			return false
		}
		s.taken, s.early = append(s.taken, r), append(s.early, early)
		_, _ = io.WriteString(c, "taken")
		_ = c.Close()
		return true
	})
	s.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(s.lane) }()
	t.Cleanup(func() {
		_ = s.srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return s
}

// startPlain is the same handler with no lane, for what net/http answers by itself.
func startPlain(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// exchange sends raw on a new connection, half-closes it, and returns all it is answered
// (up to the server's close, or a 5 s deadline).
func exchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer to %.40q: %v", raw, err)
	}
	return string(out)
}

// withoutDate drops the Date headers, the one thing two servers answer differently.
func withoutDate(s string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\r\n") {
		if !strings.HasPrefix(line, "Date: ") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\r\n")
}

const upgradeHead = "GET /ws HTTP/1.1\r\nHost: kiosk.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://kiosk.test\r\n\r\n"

// TestLaneTakesAWellFormedGETOfItsPath: the request reaches take parsed as net/http would
// give it to a handler (Host out of the header map into r.Host, RemoteAddr set), with the
// bytes sent after the head, and nothing of it reaches net/http.
func TestLaneTakesAWellFormedGETOfItsPath(t *testing.T) {
	s := startLane(t, 10*time.Second, http.HandlerFunc(echoHandler))
	for _, raw := range []string{upgradeHead, strings.Replace(upgradeHead, "/ws ", "/ws?v=1 ", 1)} {
		if got := exchange(t, s.addr, raw+"early"); got != "taken" {
			t.Fatalf("answer to %.30q: %q, want the lane's take", raw, got)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.taken) != 2 {
		t.Fatalf("take was offered %d requests, want 2", len(s.taken))
	}
	r := s.taken[0]
	if r.Host != "kiosk.test" || r.Header.Get("Host") != "" || r.Header.Get("Upgrade") != "websocket" ||
		r.Header.Get("Sec-Websocket-Key") != "dGhlIHNhbXBsZSBub25jZQ==" || !strings.HasPrefix(r.RemoteAddr, "127.0.0.1:") {
		t.Fatalf("take got Host %q, header Host %q, Upgrade %q, key %q, RemoteAddr %q", r.Host, r.Header.Get("Host"),
			r.Header.Get("Upgrade"), r.Header.Get("Sec-Websocket-Key"), r.RemoteAddr)
	}
	if string(s.early[0]) != "early" || s.taken[1].URL.RawQuery != "v=1" {
		t.Fatalf("early bytes %q, second query %q; want \"early\", \"v=1\"", s.early[0], s.taken[1].URL.RawQuery)
	}
}

// TestLaneHandsOnWhatIsNotItsOwn: every other request, and every malformed or unusual
// one for the lane's path, is answered exactly as the same server without the lane
// answers it, byte for byte but the Date; take never sees them.
func TestLaneHandsOnWhatIsNotItsOwn(t *testing.T) {
	h := http.HandlerFunc(echoHandler)
	s := startLane(t, 10*time.Second, h)
	plain := startPlain(t, h)
	long := "X-Long: " + strings.Repeat("a", 5000) + "\r\n" // past the lane's 4 KiB head
	cases := map[string]string{
		"another path":        "GET /api/x HTTP/1.1\r\nHost: kiosk.test\r\n\r\n",
		"a longer path":       "GET /wsx HTTP/1.1\r\nHost: kiosk.test\r\n\r\n",
		"a path below it":     "GET /ws/a HTTP/1.1\r\nHost: kiosk.test\r\n\r\n",
		"another method":      "POST /ws HTTP/1.1\r\nHost: kiosk.test\r\nContent-Length: 2\r\n\r\nhi",
		"HEAD":                "HEAD /ws HTTP/1.1\r\nHost: kiosk.test\r\n\r\n",
		"lower-case method":   "get /ws HTTP/1.1\r\nHost: kiosk.test\r\n\r\n",
		"HTTP/1.0":            "GET /ws HTTP/1.0\r\nHost: kiosk.test\r\n\r\n",
		"absolute form":       "GET http://kiosk.test/ws HTTP/1.1\r\nHost: kiosk.test\r\n\r\n",
		"no Host":             "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
		"two Hosts":           "GET /ws HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
		"a malformed Host":    "GET /ws HTTP/1.1\r\nHost: a b\r\n\r\n",
		"a bad header name":   "GET /ws HTTP/1.1\r\nHost: kiosk.test\r\nBad Name: x\r\n\r\n",
		"a bad header value":  "GET /ws HTTP/1.1\r\nHost: kiosk.test\r\nX: a\x01b\r\n\r\n",
		"a body":              "GET /ws HTTP/1.1\r\nHost: kiosk.test\r\nContent-Length: 4\r\n\r\nbody",
		"chunked":             "GET /ws HTTP/1.1\r\nHost: kiosk.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"a long head":         "GET /ws HTTP/1.1\r\nHost: kiosk.test\r\n" + long + "\r\n",
		"garbage":             "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
		"a bare request line": "GET /ws\r\n\r\n",
		"a cut head":          "GET /ws HTTP/1.1\r\nHost: kiosk.test\r\n",
		"pipelined":           "GET /a HTTP/1.1\r\nHost: kiosk.test\r\n\r\n" + upgradeHead,
	}
	for name, raw := range cases {
		want := withoutDate(exchange(t, plain, raw))
		if got := withoutDate(exchange(t, s.addr, raw)); got != want {
			t.Errorf("%s: through the lane\n%q\nwithout it\n%q", name, got, want)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.taken) != 0 {
		t.Errorf("take was offered %d of these, first %s %s; want none", len(s.taken), s.taken[0].Method, s.taken[0].RequestURI)
	}
}

// TestLaneDeclinedRequestGoesOnWhole: a request take declines reaches net/http with
// every byte sent so far, the bytes after its head too (here a second, pipelined
// request); the connection then stays net/http's, keep-alive and all.
func TestLaneDeclinedRequestGoesOnWhole(t *testing.T) {
	s := startLane(t, 10*time.Second, http.HandlerFunc(echoHandler))
	s.mu.Lock()
	s.decline = true
	s.mu.Unlock()
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	read := func() string {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if _, err := io.WriteString(c, upgradeHead+"GET /next HTTP/1.1\r\nHost: kiosk.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	first, second := read(), read()
	if _, err := io.WriteString(c, "POST /third HTTP/1.1\r\nHost: kiosk.test\r\nContent-Length: 3\r\n\r\nabc"); err != nil {
		t.Fatal(err)
	}
	third := read()
	want := []string{`net/http GET /ws host=kiosk.test body=""`, `net/http GET /next host=kiosk.test body=""`, `net/http POST /third host=kiosk.test body="abc"`}
	if got := []string{first, second, third}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("net/http answered\n%q\nwant\n%q", got, want)
	}
}

// TestLaneReadsAHeadThatComesInPieces: a head sent a few bytes at a time, as a slow
// network splits it, is still the lane's.
func TestLaneReadsAHeadThatComesInPieces(t *testing.T) {
	s := startLane(t, 10*time.Second, http.HandlerFunc(echoHandler))
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	c.(*net.TCPConn).SetNoDelay(true)
	for i := 0; i < len(upgradeHead); i += 7 {
		if _, err := io.WriteString(c, upgradeHead[i:min(i+7, len(upgradeHead))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // let each piece go out alone
	}
	if out, err := io.ReadAll(c); err != nil || string(out) != "taken" {
		t.Fatalf("answer %q, %v; want the lane's take", out, err)
	}
}

// TestLaneClosesASilentConnection: a connection that sends nothing is closed once the
// head timeout has passed, as net/http's ReadHeaderTimeout closes it; one that sent
// part of a head in that time is closed too.
func TestLaneClosesASilentConnection(t *testing.T) {
	s := startLane(t, 200*time.Millisecond, http.HandlerFunc(echoHandler))
	for _, sent := range []string{"", "GET /ws HTTP/1.1\r\n"} {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, sent); err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(c) // until the server closes: EOF, not our deadline
		_ = c.Close()
		if err != nil || len(out) != 0 {
			t.Fatalf("after sending %q: read %q, %v; want the server to close it with nothing said", sent, out, err)
		}
	}
}

// TestLaneHijackGetsTheSocket: a handler that hijacks a connection the lane handed on
// gets, through Socket, the TCP connection itself once the bytes the lane read have
// been read again (the WebSocket upgrade polls the socket and sets its linger).
func TestLaneHijackGetsTheSocket(t *testing.T) {
	got := make(chan net.Conn, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		got <- httpx.Socket(c)
		_ = c.Close()
	})
	s := startLane(t, 10*time.Second, h)
	s.mu.Lock()
	s.decline = true
	s.mu.Unlock()
	_ = exchange(t, s.addr, upgradeHead)
	select {
	case c := <-got:
		if _, ok := c.(*net.TCPConn); !ok {
			t.Fatalf("the hijacked connection is a %T, want *net.TCPConn", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler never ran")
	}
}

// TestLaneShutdownStopsListening: after the server's Shutdown the port refuses new
// connections, and a connection whose head was still coming is closed unanswered.
func TestLaneShutdownStopsListening(t *testing.T) {
	s := startLane(t, 10*time.Second, http.HandlerFunc(echoHandler))
	if got := exchange(t, s.addr, upgradeHead); got != "taken" {
		t.Fatalf("before the shutdown: %q, want the lane's take", got)
	}
	half, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	if _, err := io.WriteString(half, upgradeHead[:20]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
		_ = c.Close()
		t.Fatal("a connection was accepted after the shutdown")
	}
	_ = half.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(half, upgradeHead[20:]) // may fail: closed already
	out, err := io.ReadAll(half)
	if err != nil && !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("the head finished after the shutdown: %v, want it closed", err)
	}
	if len(out) != 0 {
		t.Fatalf("the head finished after the shutdown was answered %q, want nothing", out)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.taken) != 1 {
		t.Fatalf("take was offered %d requests, want only the one before the shutdown", len(s.taken))
	}
}
