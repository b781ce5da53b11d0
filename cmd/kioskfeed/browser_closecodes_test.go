package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gobwas/ws"
)

// relay is a real HTTP and WebSocket relay on a loopback listener between the browser
// and a real kioskfeed: the browser knows only the relay's address (it is the public
// URL), and the relay passes everything through. It records what it sees — each
// /api/token call, each socket opened, the type of each server message and the token
// of each auth message — and on command ends the browser's current socket with a close
// frame of a given code, as the server would, and drops its server side. The server is
// not touched: what the browser does next is its own reaction to the code.
type relay struct {
	ln     net.Listener
	target string // the server's listener, host:port
	proxy  *httputil.ReverseProxy
	srv    *http.Server

	mu      sync.Mutex
	log     []relayEvent
	current *relayedSocket
	held    chan struct{} // while non-nil, new sockets wait until it is closed
	wg      sync.WaitGroup
}

// relayEvent is one thing the relay saw, in order.
type relayEvent struct {
	at     time.Time
	kind   string // "token" (POST /api/token answered), "open" (a socket upgraded), "msg" (server message), "auth", "inject"
	socket int    // the socket's number, from 1, for "open", "msg", "auth", "inject"
	detail string // message type; auth token; injected code
}

// relayedSocket is one browser socket and its server side.
type relayedSocket struct {
	n      int
	client net.Conn
	server net.Conn
	wmu    sync.Mutex // serializes writes toward the browser: forwarded frames, the injected close
	ended  bool       // guarded by wmu: injected, nothing more goes to the browser
}

func startRelay(t *testing.T) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = r.srv.Close()
		r.mu.Lock()
		if r.held != nil {
			close(r.held)
			r.held = nil
		}
		cur := r.current
		r.mu.Unlock()
		if cur != nil {
			_ = cur.client.Close()
			_ = cur.server.Close()
		}
		r.wg.Wait()
	})
	return r
}

// addr is the relay's address: the public URL's host.
func (r *relay) addr() string { return r.ln.Addr().String() }

// to points the relay at the server's listener.
func (r *relay) to(target string) {
	r.target = target
	u := &url.URL{Scheme: "http", Host: target}
	r.proxy = httputil.NewSingleHostReverseProxy(u)
	// The request keeps the Host the browser sent, the public URL's host, as behind a
	// load balancer.
	base := r.proxy.Director
	r.proxy.Director = func(req *http.Request) {
		host := req.Host
		base(req)
		req.Host = host
	}
}

func (r *relay) record(kind string, socket int, detail string) {
	r.mu.Lock()
	r.log = append(r.log, relayEvent{at: time.Now(), kind: kind, socket: socket, detail: detail})
	r.mu.Unlock()
}

// events returns a copy of what the relay saw so far.
func (r *relay) events() []relayEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]relayEvent(nil), r.log...)
}

func (r *relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/ws" {
		r.socket(w, req)
		return
	}
	if req.Method == http.MethodPost && req.URL.Path == "/api/token" {
		sw := &statusRecorder{ResponseWriter: w}
		r.proxy.ServeHTTP(sw, req)
		r.record("token", 0, fmt.Sprint(sw.status))
		return
	}
	r.proxy.ServeHTTP(w, req)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// socket relays one WebSocket: the upgrade request and answer as bytes, then frame by
// frame, so that an injected close frame falls between two frames.
func (r *relay) socket(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	held := r.held
	r.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-req.Context().Done():
			return
		}
	}
	server, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil {
		http.Error(w, "relay: server unreachable", http.StatusBadGateway)
		return
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = server.Close()
		return
	}
	if err := req.Write(server); err != nil {
		_ = client.Close()
		_ = server.Close()
		return
	}
	sbr := bufio.NewReader(server)
	resp, err := http.ReadResponse(sbr, req)
	if err != nil {
		_ = client.Close()
		_ = server.Close()
		return
	}
	if err := resp.Write(client); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		_ = client.Close()
		_ = server.Close()
		return
	}
	r.mu.Lock()
	n := 1
	for _, e := range r.log {
		if e.kind == "open" {
			n++
		}
	}
	s := &relayedSocket{n: n, client: client, server: server}
	r.current = s
	r.log = append(r.log, relayEvent{at: time.Now(), kind: "open", socket: n})
	r.wg.Add(2)
	r.mu.Unlock()
	go func() { // server → browser
		defer r.wg.Done()
		defer client.Close()
		r.pipe(s, sbr, client, false)
	}()
	go func() { // browser → server
		defer r.wg.Done()
		defer server.Close()
		r.pipe(s, brw.Reader, server, true)
	}()
}

// pipe forwards frames from src to dst. Server messages are recorded by type; the
// browser's (masked) auth messages by token.
func (r *relay) pipe(s *relayedSocket, src io.Reader, dst net.Conn, fromBrowser bool) {
	for {
		h, err := ws.ReadHeader(src)
		if err != nil || h.Length > 1<<20 {
			return
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(src, payload); err != nil {
			return
		}
		if h.OpCode == ws.OpText && h.Fin {
			plain := payload
			if h.Masked {
				plain = bytes.Clone(payload)
				ws.Cipher(plain, h.Mask, 0)
			}
			var m struct{ Type, Token string }
			if json.Unmarshal(plain, &m) == nil {
				if fromBrowser && m.Type == "auth" {
					r.record("auth", s.n, m.Token)
				} else if !fromBrowser {
					r.record("msg", s.n, m.Type)
				}
			}
		}
		if !fromBrowser && h.OpCode == ws.OpClose && len(payload) >= 2 {
			code, _ := ws.ParseCloseFrameData(payload)
			r.record("msg", s.n, fmt.Sprintf("close %d", code))
		}
		var buf bytes.Buffer
		_ = ws.WriteHeader(&buf, h)
		buf.Write(payload)
		if !fromBrowser {
			s.wmu.Lock()
		}
		if fromBrowser || !s.ended {
			_ = dst.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, err = dst.Write(buf.Bytes())
		}
		if !fromBrowser {
			s.wmu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// inject ends the browser's current socket with a close frame of code, as a server
// that refuses or drops it would, and drops the server side (the server sees a tablet
// that went away). It returns when the frame is written.
func (r *relay) inject(t *testing.T, code int) {
	t.Helper()
	r.mu.Lock()
	s := r.current
	r.current = nil
	r.mu.Unlock()
	if s == nil {
		t.Fatal("relay: no socket to close")
	}
	s.wmu.Lock()
	s.ended = true
	_ = s.client.SetWriteDeadline(time.Now().Add(5 * time.Second))
	frame := ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(code), "relay"))
	err := ws.WriteFrame(s.client, frame)
	s.wmu.Unlock()
	if err != nil {
		t.Fatalf("relay: write close %d: %v", code, err)
	}
	r.record("inject", s.n, fmt.Sprint(code))
	_ = s.server.Close()
	// The browser answers the close frame; then the TCP connection ends (RFC 6455 §7.1.1:
	// the server closes first). Give the answer a moment, then close.
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		time.Sleep(300 * time.Millisecond)
		_ = s.client.Close()
	}()
}

// hold makes new sockets wait until release.
func (r *relay) hold() {
	r.mu.Lock()
	r.held = make(chan struct{})
	r.mu.Unlock()
}

func (r *relay) release() {
	r.mu.Lock()
	if r.held != nil {
		close(r.held)
		r.held = nil
	}
	r.mu.Unlock()
}

// after returns the events recorded after index i of the log.
func after(evs []relayEvent, i int) []relayEvent {
	if i >= len(evs) {
		return nil
	}
	return evs[i:]
}

// waitFor polls the relay's log from index from until cond finds what it wants in it.
func (r *relay) waitFor(t *testing.T, from int, what string, d time.Duration, cond func([]relayEvent) bool) []relayEvent {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		evs := after(r.events(), from)
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay: not within %v: %s; saw %s", d, what, describe(evs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func describe(evs []relayEvent) string {
	var b strings.Builder
	for _, e := range evs {
		d := e.detail
		if e.kind == "auth" && len(d) > 12 {
			d = d[len(d)-12:]
		}
		fmt.Fprintf(&b, "\n  %s %s #%d %s", e.at.Format("15:04:05.000"), e.kind, e.socket, d)
	}
	return b.String()
}

// welcomed is true when evs hold a welcome on a socket opened in evs.
func welcomed(evs []relayEvent) (socket int, ok bool) {
	opened := map[int]bool{}
	for _, e := range evs {
		if e.kind == "open" {
			opened[e.socket] = true
		}
		if e.kind == "msg" && e.detail == "synced" && opened[e.socket] {
			return e.socket, true
		}
	}
	return 0, false
}

// reaction is what the PWA did after one injected close code.
type reaction struct {
	code   int
	gap    time.Duration // from the close to the next socket's upgrade
	tokens int           // /api/token calls between the close and the next socket's synced
	socket int           // the next socket
	msgs   []string      // the server's messages on it, up to synced
	token  string        // the token its auth carried
}

// closeAndWatch injects code into the current socket and waits until the PWA has a new
// socket that the server synced; it returns what happened in between.
func (r *relay) closeAndWatch(t *testing.T, code int, during func()) reaction {
	t.Helper()
	from := len(r.events())
	r.inject(t, code)
	if during != nil {
		during()
	}
	evs := r.waitFor(t, from, fmt.Sprintf("a new socket synced after close %d", code), 90*time.Second, func(evs []relayEvent) bool {
		_, ok := welcomed(evs)
		return ok
	})
	re := reaction{code: code}
	re.socket, _ = welcomed(evs)
	var injected time.Time
	for _, e := range evs {
		switch {
		case e.kind == "inject":
			injected = e.at
		case e.kind == "open" && re.gap == 0 && !injected.IsZero():
			re.gap = e.at.Sub(injected)
		case e.kind == "token":
			re.tokens++
		case e.kind == "msg" && e.socket == re.socket && e.detail != "heartbeat" && !slices.Contains(re.msgs, "synced"):
			re.msgs = append(re.msgs, e.detail) // its catch-up: up to synced, heartbeats aside
		case e.kind == "auth" && e.socket == re.socket:
			re.token = e.detail
		}
	}
	t.Logf("close %d: next socket #%d after %v, %d token calls, messages %v", code, re.socket, re.gap.Round(time.Millisecond), re.tokens, re.msgs)
	return re
}

// TestBrowserCloseCodeReactions drives the real tablet app in Chromium through a relay
// to a real server and ends its socket with each close code of docs/protocol.md §5 whose
// reaction no other test checks, then watches what the app does: 4401 gets a new token
// and reconnects; 4408 and 4409 retry with backoff and keep showing the feed; 4429
// retries after a longer backoff than those; 1013 reconnects and catches up by replay,
// showing an event published while it was away; 1011 retries with backoff. After each,
// the device is still paired (same device in IndexedDB) and the feed is live again.
func TestBrowserCloseCodeReactions(t *testing.T) {
	r := startRelay(t)
	public := "http://" + r.addr()
	listen := freeAddr(t)
	srv := startServe(t, t.TempDir(), "--listen", listen, "--public-url", public, "--heartbeat", "2s")
	r.to(listen)
	admin := func(method, path, body string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, public+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+srv.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %d %v %v", method, path, resp.StatusCode, m, err)
		}
		return m
	}
	producer := admin("POST", "/api/admin/producer-keys", `{"name":"close codes","feeds":["lobby"]}`)["key"].(string)
	producerPublish(t, public, producer, "lobby", "state", `{"title":"Close codes"}`)
	pin := admin("POST", "/api/admin/feeds/lobby/pins", `{"ttl":"5m"}`)["pin"].(string)

	tablet := newBrowser(t, "", 1280, 800)
	pairTablet(t, tablet, public, "lobby", pin)
	live := `document.body.dataset.view === 'feed' && document.querySelector('#title').textContent === 'Close codes' && document.querySelector('#status').dataset.state === 'live'`
	waitJS(t, tablet, live, 30*time.Second)
	deviceOf := func() string {
		t.Helper()
		id, err := chromedp.Run(tablet, chromedp.Evaluate[string](`(async () => {
		  const db = await new Promise((ok, no) => { const r = indexedDB.open('kioskfeed'); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
		  const rec = await new Promise((ok, no) => { const q = db.transaction('kv').objectStore('kv').get('device'); q.onsuccess = () => ok(q.result); q.onerror = () => no(q.error); });
		  return rec ? rec.deviceId : '';
		})()`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	device := deviceOf()
	if !strings.HasPrefix(device, "dev_") {
		t.Fatalf("device in IndexedDB: %q", device)
	}
	// The relay saw the first socket synced before anything is injected.
	r.waitFor(t, 0, "the first socket synced", 10*time.Second, func(evs []relayEvent) bool { _, ok := welcomed(evs); return ok })
	lastToken := ""
	for _, e := range r.events() {
		if e.kind == "auth" {
			lastToken = e.detail
		}
	}

	got := map[int]reaction{}
	for _, code := range []int{4401, 4408, 4429, 4409, 1013, 1011} {
		var missed uint64
		var during func()
		if code == 1013 {
			// The event is published while the tablet has no socket: new sockets wait at
			// the relay until it is stored, so only a replay can bring it.
			r.hold()
			during = func() {
				missed = producerPublish(t, public, producer, "lobby", "item", `{"text":"Missed while away"}`)
				r.release()
			}
		}
		re := r.closeAndWatch(t, code, during)
		got[code] = re
		// Whatever the code, the tablet still shows the feed and is live again, paired
		// as the same device.
		waitJS(t, tablet, live, 30*time.Second)
		if id := deviceOf(); id != device {
			t.Fatalf("after close %d the device in IndexedDB is %q, want %q (still paired)", code, id, device)
		}
		switch code {
		case 4401:
			if re.tokens == 0 || re.token == "" || re.token == lastToken {
				t.Errorf("after 4401: %d /api/token calls, new socket's token changed %v; want a new token before reconnecting", re.tokens, re.token != lastToken)
			}
		default:
			if re.tokens != 0 || re.token != lastToken {
				t.Errorf("after %d: %d /api/token calls, token changed %v; want the same (still valid) token reused", code, re.tokens, re.token != lastToken)
			}
		}
		if code == 1013 {
			want := fmt.Sprintf("%v", []string{"challenge", "welcome", "event", "synced"})
			if fmt.Sprint(re.msgs) != want {
				t.Errorf("after 1013 the new socket got %v; want %s: a replay of the missed event %d, no reset", re.msgs, want, missed)
			}
			waitJS(t, tablet, `document.querySelector('#items').textContent.includes('Missed while away')`, 10*time.Second)
		}
		lastToken = re.token
	}
	// 4429 asks for a longer wait than a plain retry: the close before it was the third
	// failure in a row, whose plain backoff (full jitter from 1 s, doubling: docs/protocol.md
	// §5) is below 4 s; and longer than the retries after 4401 and 4408 before it.
	if g := got[4429].gap; g < 4*time.Second || g <= got[4401].gap || g <= got[4408].gap {
		t.Errorf("next attempt after 4429 came %v after the close (after 4401: %v, after 4408: %v); want a longer backoff than a plain retry's 4 s ceiling there", g, got[4401].gap, got[4408].gap)
	}
	if v := cspViolations(t, tablet); len(v) > 0 {
		t.Fatalf("tablet CSP violations: %v", v)
	}
	if errors.Is(context.Cause(tablet), context.Canceled) {
		t.Fatal("the browser went away")
	}
}
