package bridgetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

const (
	publicURL  = "ws://kiosk.example/ws"
	testOrigin = "http://kiosk.example"
	wait       = 5 * time.Second
	// The fake server speaks the contract (the schemas check every message it sends):
	// a device id and a re-auth nonce of the protocol's forms.
	testDevice  = "dev_5KQ2M8V3W1XJ4T7R9P0A"
	reauthNonce = "UmVhdXRoTm9uY2VSZWF1dGhOb25jZVJlYXV0aE5vbmM"
	testToken   = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ0b2stMSJ9.c2ln" // a JWS in form only
	testToken2  = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ0b2stMiJ9.c2ln"
)

// mode is what the fake server does after a good auth.
type mode int

const (
	modeNormal    mode = iota // welcome, catch-up (reset, event 5 unless since=5), synced 5
	modeDuplicate             // close 4409 instead of a welcome
	modePing                  // normal, then pings (one between fragments) and wants pongs
	modeReauth                // normal, then reauth with nonce reauthNonce, then a heartbeat
	modeRestart               // normal, then close 1012
	modeDrop                  // TCP close without a close frame instead of a welcome
)

// authSeen is an auth message as the fake server saw it.
type authSeen struct {
	token    string
	since    uint64
	epoch    string
	hasEpoch bool
	err      error // what was wrong with the message or its proof
}

// result is one connection as the fake server saw it.
type result struct {
	host, origin string
	refused      bool
	auth, reauth authSeen
	pongs        []string
	got          []wsutil.Message // data messages after the script
	end          string           // "close <code>", "eof", "dropped", "refused ..." or "error: ..."
}

// fakeServer speaks the server side of docs/protocol.md §5 on gobwas/ws, just enough to
// exercise the client: it checks Origin, the auth message and its proof's claims, but
// not signatures or tokens.
type fakeServer struct {
	ln       net.Listener
	mode     mode
	coalesce bool // the 101 response and the challenge go out in one write
	results  chan result
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]bool
}

func newFakeServer(t *testing.T, m mode, coalesce bool) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &fakeServer{ln: ln, mode: m, coalesce: coalesce, results: make(chan result, 64), conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[nc] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				r := s.serve(nc)
				s.mu.Lock()
				delete(s.conns, nc)
				s.mu.Unlock()
				s.results <- r
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for nc := range s.conns {
			nc.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

// result waits for the next connection the server finished with.
func (s *fakeServer) result(t *testing.T) result {
	t.Helper()
	select {
	case r := <-s.results:
		return r
	case <-time.After(wait):
		t.Fatalf("fake server: no connection finished within %v", wait)
		return result{}
	}
}

func frame(op ws.OpCode, fin bool, p string) []byte {
	return ws.MustCompileFrame(ws.NewFrame(op, fin, []byte(p)))
}

func text(p string) []byte { return frame(ws.OpText, true, p) }

func closeFrame(code ws.StatusCode, reason string) []byte {
	return ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)))
}

func (s *fakeServer) serve(nc net.Conn) (res result) {
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(wait))
	u := ws.Upgrader{
		OnHost: func(h []byte) error { res.host = string(h); return nil },
		OnHeader: func(k, v []byte) error {
			if strings.EqualFold(string(k), "Origin") {
				res.origin = string(v)
			}
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if res.origin == "" {
				res.refused = true
				return nil, ws.RejectConnectionError(
					ws.RejectionStatus(http.StatusForbidden),
					ws.RejectionReason("origin required"),
				)
			}
			return nil, nil
		},
	}
	// The response is collected and written by hand, so that it can share one write with
	// the challenge: then the dialer reads the challenge with the handshake.
	var head bytes.Buffer
	if _, err := u.Upgrade(struct {
		io.Reader
		io.Writer
	}{nc, &head}); err != nil {
		_, _ = nc.Write(head.Bytes())
		res.end = "refused: " + err.Error()
		return res
	}
	var nb [32]byte // as the protocol has it: the schema checks its length
	_, _ = rand.Read(nb[:])
	challenge := base64.RawURLEncoding.EncodeToString(nb[:])
	ch := text(`{"type":"challenge","nonce":"` + challenge + `"}`)
	if s.coalesce {
		_, _ = nc.Write(append(head.Bytes(), ch...))
	} else {
		_, _ = nc.Write(head.Bytes())
		_, _ = nc.Write(ch)
	}

	rd := &wsutil.Reader{Source: nc, State: ws.StateServerSide, CheckUTF8: true, MaxMessageSize: 16 << 10}
	res.auth = readAuth(rd, challenge)
	if res.auth.err != nil {
		_, _ = nc.Write(closeFrame(4401, "bad auth"))
		res.end = readEnd(nc, rd, &res)
		return res
	}
	switch s.mode {
	case modeDrop:
		res.end = "dropped"
		return res
	case modeDuplicate:
		_, _ = nc.Write(closeFrame(4409, "duplicate"))
		res.end = readEnd(nc, rd, &res)
		return res
	}

	var out []byte
	out = append(out, text(`{"type":"welcome","device_id":"`+testDevice+`","feed":"lobby","heartbeat_s":20,"token_exp":"2030-03-17T17:46:40Z","epoch":"e1","overrides":[],"schedule":null}`)...)
	if res.auth.since != 5 || (res.auth.hasEpoch && res.auth.epoch != "e1") {
		out = append(out, text(`{"type":"reset"}`)...)
		out = append(out, text(`{"type":"event","seq":5,"id":"e-5","kind":"item","time":"2026-01-02T03:04:05Z","data":{"n":5}}`)...)
	}
	out = append(out, text(`{"type":"synced","seq":5}`)...)
	_, _ = nc.Write(out)

	switch s.mode {
	case modePing:
		out = frame(ws.OpPing, true, "p1")
		out = append(out, text(`{"type":"heartbeat","time":"2026-01-02T03:04:05Z"}`)...)
		// A fragmented message with a ping between its fragments.
		out = append(out, frame(ws.OpText, false, `{"type":"heart`)...)
		out = append(out, frame(ws.OpPing, true, "p2")...)
		out = append(out, frame(ws.OpContinuation, true, `beat","time":"2026-01-02T03:04:05Z"}`)...)
		_, _ = nc.Write(out)
		for range 2 {
			h, p, err := readFrame(rd)
			if err != nil {
				res.end = "error: reading pong: " + err.Error()
				return res
			}
			if h.OpCode != ws.OpPong {
				res.end = fmt.Sprintf("error: got opcode %v, want a pong", h.OpCode)
				return res
			}
			res.pongs = append(res.pongs, string(p))
		}
	case modeReauth:
		_, _ = nc.Write(text(`{"type":"reauth","nonce":"` + reauthNonce + `"}`))
		res.reauth = readAuth(rd, reauthNonce)
		_, _ = nc.Write(text(`{"type":"heartbeat","time":"2026-01-02T03:04:05Z"}`))
	case modeRestart:
		_, _ = nc.Write(closeFrame(1012, "restarting"))
	}
	res.end = readEnd(nc, rd, &res)
	return res
}

// readFrame reads one client frame (wsutil.Reader insists on the mask and unmasks).
func readFrame(rd *wsutil.Reader) (ws.Header, []byte, error) {
	h, err := rd.NextFrame()
	if err != nil {
		return h, nil, err
	}
	p, err := io.ReadAll(rd)
	return h, p, err
}

func readAuth(rd *wsutil.Reader, nonce string) authSeen {
	h, p, err := readFrame(rd)
	if err != nil {
		return authSeen{err: fmt.Errorf("reading auth: %w", err)}
	}
	if h.OpCode != ws.OpText {
		return authSeen{err: fmt.Errorf("auth in opcode %v", h.OpCode)}
	}
	var a struct {
		Type  string  `json:"type"`
		Token string  `json:"token"`
		Proof string  `json:"proof"`
		Since uint64  `json:"since"`
		Epoch *string `json:"epoch"`
	}
	if err := json.Unmarshal(p, &a); err != nil {
		return authSeen{err: fmt.Errorf("auth %s: %w", p, err)}
	}
	seen := authSeen{token: a.Token, since: a.Since, hasEpoch: a.Epoch != nil}
	if a.Epoch != nil {
		seen.epoch = *a.Epoch
	}
	if a.Type != "auth" || a.Token == "" {
		seen.err = fmt.Errorf("not an auth message with a token: %s", p)
		return seen
	}
	parts := strings.Split(a.Proof, ".")
	if len(parts) != 3 {
		seen.err = fmt.Errorf("proof %q is not a compact JWS", a.Proof)
		return seen
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c pairingtest.Claims
	if err == nil {
		err = json.Unmarshal(raw, &c)
	}
	if err != nil {
		seen.err = fmt.Errorf("proof claims: %w", err)
		return seen
	}
	want := pairingtest.Claims{JTI: c.JTI, HTM: "GET", HTU: publicURL, IAT: c.IAT, Nonce: nonce, ATH: pairingtest.ATH(a.Token)}
	if c != want {
		seen.err = fmt.Errorf("proof claims %+v, want %+v", c, want)
	}
	return seen
}

// readEnd reads the client's messages until its close frame, which it answers, or the
// end of the connection.
func readEnd(nc net.Conn, rd *wsutil.Reader, res *result) string {
	for {
		h, p, err := readFrame(rd)
		switch {
		case errors.Is(err, io.EOF):
			return "eof"
		case err != nil:
			return "error: " + err.Error()
		case h.OpCode == ws.OpClose:
			code := 1005
			var echo []byte
			if len(p) >= 2 {
				c, _ := ws.ParseCloseFrameData(p)
				code, echo = int(c), p[:2]
			}
			_, _ = nc.Write(ws.MustCompileFrame(ws.NewCloseFrame(echo)))
			return fmt.Sprintf("close %d", code)
		case h.OpCode.IsControl():
		default:
			res.got = append(res.got, wsutil.Message{OpCode: h.OpCode, Payload: p})
		}
	}
}

func newTablet(t *testing.T) *pairingtest.Tablet {
	t.Helper()
	tab, err := pairingtest.NewTablet("http://kiosk.example")
	if err != nil {
		t.Fatalf("NewTablet: %v", err)
	}
	tab.Token = testToken
	return tab
}

func dial(t *testing.T, s *fakeServer) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := Dial(ctx, publicURL, testOrigin, s.addr())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Abort() })
	return c
}

// handshake dials and plays the handshake and catch-up from since 0.
func handshake(t *testing.T, s *fakeServer, tab *pairingtest.Tablet) *Conn {
	t.Helper()
	c := dial(t, s)
	if _, err := c.Handshake(tab, publicURL, 0, "", wait); err != nil {
		t.Fatalf("Handshake: %v", err)
	}
	if _, _, _, err := c.Collect(wait); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return c
}

func TestHandshakeAndCatchUp(t *testing.T) {
	for _, tc := range []struct {
		name     string
		coalesce bool
	}{
		{
			name:     "challenge read with the handshake",
			coalesce: true,
		},
		{
			name:     "challenge after the handshake",
			coalesce: false,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeServer(t, modeNormal, tc.coalesce)
			tab := newTablet(t)

			c := dial(t, s)
			if tc.coalesce && c.src.br == nil {
				t.Fatalf("Dial kept no handshake buffer; want the one holding the challenge")
			}
			welcome, err := c.Handshake(tab, publicURL, 0, "", wait)
			if err != nil {
				t.Fatalf("Handshake: %v", err)
			}
			if c.src.br != nil {
				t.Errorf("handshake buffer still held after the welcome; want it returned to the pool")
			}
			if got, want := welcome.Str("epoch"), "e1"; got != want {
				t.Errorf("welcome epoch = %q, want %q", got, want)
			}
			if got, want := welcome.Str("device_id"), testDevice; got != want {
				t.Errorf("welcome device_id = %q, want %q", got, want)
			}
			if got, want := welcome.Int("heartbeat_s"), int64(20); got != want {
				t.Errorf("welcome heartbeat_s = %d, want %d", got, want)
			}
			events, reset, synced, err := c.Collect(wait)
			if err != nil {
				t.Fatalf("Collect: %v", err)
			}
			if !reset {
				t.Errorf("Collect reset = false, want true after since=0")
			}
			if len(events) != 1 || events[0].Seq() != 5 || events[0].Str("kind") != "item" {
				t.Errorf("Collect events = %v, want one item event with seq 5", events)
			}
			if got, want := synced.Seq(), uint64(5); got != want {
				t.Errorf("synced seq = %d, want %d", got, want)
			}
			if err := c.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			r := s.result(t)
			if r.auth.err != nil {
				t.Errorf("server: %v", r.auth.err)
			}
			if r.host != "kiosk.example" || r.origin != testOrigin {
				t.Errorf("server saw Host %q Origin %q, want %q %q", r.host, r.origin, "kiosk.example", testOrigin)
			}
			if r.auth.token != testToken || r.auth.since != 0 || r.auth.hasEpoch {
				t.Errorf("server saw auth %+v, want token testToken, since 0, no epoch", r.auth)
			}
			if got, want := r.end, "close 1000"; got != want {
				t.Errorf("server saw end %q, want %q", got, want)
			}

			// A reconnect from seq 5 in the same epoch gets no reset and no events.
			c = dial(t, s)
			if _, err := c.Handshake(tab, publicURL, 5, "e1", wait); err != nil {
				t.Fatalf("second Handshake: %v", err)
			}
			events, reset, synced, err = c.Collect(wait)
			if err != nil {
				t.Fatalf("second Collect: %v", err)
			}
			if reset || len(events) != 0 || synced.Seq() != 5 {
				t.Errorf("second Collect = %d events, reset %v, synced %d; want 0, false, 5", len(events), reset, synced.Seq())
			}
			if err := c.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			r = s.result(t)
			if r.auth.err != nil || r.auth.since != 5 || r.auth.epoch != "e1" {
				t.Errorf("server saw second auth %+v, want since 5, epoch e1", r.auth)
			}
		})
	}
}

func TestCloseAndAbortSeenByServer(t *testing.T) {
	t.Run("close", func(t *testing.T) {
		s := newFakeServer(t, modeNormal, false)
		c := handshake(t, s, newTablet(t))
		if err := c.SendUnchecked(map[string]string{"type": "hello"}); err != nil {
			t.Fatalf("Send: %v", err)
		}
		if err := c.SendFrame(ws.NewBinaryFrame([]byte{1, 2, 3})); err != nil {
			t.Fatalf("SendFrame: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("second Close = %v, want nil", err)
		}
		r := s.result(t)
		if got, want := r.end, "close 1000"; got != want {
			t.Errorf("server saw end %q, want %q", got, want)
		}
		want := []wsutil.Message{
			{OpCode: ws.OpText, Payload: []byte(`{"type":"hello"}`)},
			{OpCode: ws.OpBinary, Payload: []byte{1, 2, 3}},
		}
		if fmt.Sprint(r.got) != fmt.Sprint(want) {
			t.Errorf("server got %v, want %v", r.got, want)
		}
	})
	t.Run("abort", func(t *testing.T) {
		s := newFakeServer(t, modeNormal, false)
		c := handshake(t, s, newTablet(t))
		if err := c.Abort(); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		if got, want := s.result(t).end, "eof"; got != want {
			t.Errorf("server saw end %q, want %q", got, want)
		}
		if _, err := c.Next(wait); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Next after Abort = %v, want net.ErrClosed", err)
		}
		if err := c.SendUnchecked(map[string]string{"type": "hello"}); err == nil {
			t.Errorf("Send after Abort = nil, want an error")
		}
	})
}

func TestDuplicateClose(t *testing.T) {
	s := newFakeServer(t, modeDuplicate, true)
	tab := newTablet(t)

	c := dial(t, s)
	_, err := c.Handshake(tab, publicURL, 0, "", wait)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 4409 || ce.Reason != "duplicate" {
		t.Fatalf("Handshake = %v, want *CloseError 4409 \"duplicate\"", err)
	}
	if _, err := c.Next(wait); !errors.As(err, &ce) || ce.Code != 4409 {
		t.Errorf("Next after the close = %v, want the same *CloseError", err)
	}
	if err := c.SendUnchecked(map[string]string{"type": "hello"}); err == nil {
		t.Errorf("Send after the close = nil, want an error")
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close after the server's close: %v", err)
	}
	if got, want := s.result(t).end, "close 4409"; got != want {
		t.Errorf("server saw end %q, want %q (the client echoes the code)", got, want)
	}

	c = dial(t, s)
	m, err := c.Expect("challenge", wait)
	if err != nil {
		t.Fatalf("Expect challenge: %v", err)
	}
	if err := c.sendAuth(tab, publicURL, m.Str("nonce"), 0, ""); err != nil {
		t.Fatalf("send auth: %v", err)
	}
	code, err := c.ExpectClose(wait)
	if err != nil || code != 4409 {
		t.Fatalf("ExpectClose = %d, %v; want 4409, nil", code, err)
	}
	if r := s.result(t); r.auth.err != nil {
		t.Errorf("server: %v", r.auth.err)
	}
}

func TestClose1012(t *testing.T) {
	s := newFakeServer(t, modeRestart, false)
	c := handshake(t, s, newTablet(t))
	code, err := c.ExpectClose(wait)
	if err != nil || code != 1012 {
		t.Fatalf("ExpectClose = %d, %v; want 1012, nil", code, err)
	}
	if got, want := s.result(t).end, "close 1012"; got != want {
		t.Errorf("server saw end %q, want %q", got, want)
	}
}

func TestOriginRefused(t *testing.T) {
	s := newFakeServer(t, modeNormal, false)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := Dial(ctx, publicURL, "", s.addr())
	var ue *UpgradeError
	if !errors.As(err, &ue) || ue.Status != http.StatusForbidden {
		if c != nil {
			_ = c.Abort()
		}
		t.Fatalf("Dial without Origin = %v, want *UpgradeError 403", err)
	}
	if r := s.result(t); !r.refused {
		t.Errorf("server did not refuse (end %q)", r.end)
	}
}

func TestPingAnswered(t *testing.T) {
	s := newFakeServer(t, modePing, false)
	c := handshake(t, s, newTablet(t))
	for i := range 2 {
		if _, err := c.Expect("heartbeat", wait); err != nil {
			t.Fatalf("Expect heartbeat %d: %v", i, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r := s.result(t)
	if got, want := fmt.Sprint(r.pongs), "[p1 p2]"; got != want {
		t.Errorf("server got pongs %s, want %s", got, want)
	}
	if got, want := r.end, "close 1000"; got != want {
		t.Errorf("server saw end %q, want %q", got, want)
	}
}

func TestReauth(t *testing.T) {
	s := newFakeServer(t, modeReauth, false)
	tab := newTablet(t)
	c := handshake(t, s, tab)
	m, err := c.Expect("reauth", wait)
	if err != nil {
		t.Fatalf("Expect reauth: %v", err)
	}
	if err := c.Reauth(tab, publicURL, Msg{Type: "heartbeat"}); err == nil {
		t.Errorf("Reauth with a heartbeat = nil, want an error")
	}
	tab.Token = testToken2
	if err := c.Reauth(tab, publicURL, m); err != nil {
		t.Fatalf("Reauth: %v", err)
	}
	if _, err := c.Expect("heartbeat", wait); err != nil {
		t.Fatalf("Expect heartbeat: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r := s.result(t)
	if r.reauth.err != nil || r.reauth.token != testToken2 || r.reauth.since != 0 || r.reauth.hasEpoch {
		t.Errorf("server saw reauth %+v (err %v), want token testToken2, since 0, no epoch", r.reauth, r.reauth.err)
	}
}

func TestTimeoutKeepsConnUsable(t *testing.T) {
	s := newFakeServer(t, modeNormal, false)
	c := handshake(t, s, newTablet(t))
	if _, err := c.Next(50 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Next on a quiet socket = %v, want os.ErrDeadlineExceeded", err)
	}
	if _, err := c.Expect("event", 50*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Expect on a quiet socket = %v, want os.ErrDeadlineExceeded", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close after timeouts: %v", err)
	}
	if got, want := s.result(t).end, "close 1000"; got != want {
		t.Errorf("server saw end %q, want %q", got, want)
	}
}

func TestDropWithoutCloseFrame(t *testing.T) {
	s := newFakeServer(t, modeDrop, false)
	c := dial(t, s)
	_, err := c.Handshake(newTablet(t), publicURL, 0, "", wait)
	var ce *CloseError
	if !errors.Is(err, ErrNoCloseFrame) || errors.As(err, &ce) {
		t.Fatalf("Handshake against a dropped socket = %v, want ErrNoCloseFrame", err)
	}
	if _, err := c.ExpectClose(wait); !errors.Is(err, ErrNoCloseFrame) {
		t.Errorf("ExpectClose after the drop = %v, want ErrNoCloseFrame", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close after the drop: %v", err)
	}
}

func TestRawUpgrade(t *testing.T) {
	s := newFakeServer(t, modeNormal, true)
	for _, tc := range []struct {
		name   string
		origin string
		extra  map[string]string
		want   int
	}{
		{
			name: "no origin",
			want: http.StatusForbidden,
		},
		{
			name:   "old version",
			origin: testOrigin,
			extra:  map[string]string{"sec-websocket-version": "8"},
			want:   http.StatusUpgradeRequired,
		},
		{
			name:   "no upgrade header",
			origin: testOrigin,
			extra:  map[string]string{"Upgrade": ""},
			want:   http.StatusBadRequest,
		},
		{
			name:   "upgrade",
			origin: testOrigin,
			extra:  map[string]string{"User-Agent": "raw"},
			want:   http.StatusSwitchingProtocols,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			nc, _, status, err := RawUpgrade(ctx, s.addr(), "/ws", tc.origin, tc.extra)
			if err != nil {
				t.Fatalf("RawUpgrade: %v", err)
			}
			nc.Close()
			if status != tc.want {
				t.Errorf("status = %d, want %d", status, tc.want)
			}
			s.result(t)
		})
	}

	t.Run("read close", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		nc, br, status, err := RawUpgrade(ctx, s.addr(), "/ws", testOrigin, nil)
		if err != nil || status != http.StatusSwitchingProtocols {
			t.Fatalf("RawUpgrade = %d, %v; want 101", status, err)
		}
		defer nc.Close()
		// The challenge shared a write with the 101, so it waits in br: a timeout here
		// means ReadClose read past it and found no deadline-bounded close.
		if _, err := ReadClose(br, 100*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrNoCloseFrame) {
			t.Fatalf("ReadClose before auth = %v, want os.ErrDeadlineExceeded", err)
		}
		if err := wsutil.WriteClientText(nc, []byte(`{"type":"auth","token":"x","proof":"bad","since":0}`)); err != nil {
			t.Fatalf("write auth: %v", err)
		}
		code, err := ReadClose(br, wait)
		if err != nil || code != 4401 {
			t.Fatalf("ReadClose = %d, %v; want 4401, nil", code, err)
		}
		nc.Close()
		if r := s.result(t); r.auth.err == nil {
			t.Errorf("server accepted a bogus auth")
		}
	})
}

func TestReadClose(t *testing.T) {
	t.Run("code", func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		go func() {
			defer server.Close()
			_, _ = server.Write(append(text(`{"type":"heartbeat","time":"2026-01-02T03:04:05Z"}`), closeFrame(4403, "revoked")...))
		}()
		code, err := ReadClose(client, wait)
		if err != nil || code != 4403 {
			t.Fatalf("ReadClose = %d, %v; want 4403, nil", code, err)
		}
	})
	t.Run("empty close", func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		go func() {
			defer server.Close()
			_, _ = server.Write(ws.CompiledClose)
		}()
		code, err := ReadClose(client, wait)
		if err != nil || code != 1005 {
			t.Fatalf("ReadClose = %d, %v; want 1005, nil", code, err)
		}
	})
	t.Run("no close frame", func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		go func() {
			defer server.Close()
			_, _ = server.Write(text(`{"type":"heartbeat","time":"2026-01-02T03:04:05Z"}`))
		}()
		if _, err := ReadClose(client, wait); !errors.Is(err, ErrNoCloseFrame) || !errors.Is(err, io.EOF) {
			t.Fatalf("ReadClose = %v, want ErrNoCloseFrame wrapping io.EOF", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		defer server.Close()
		if _, err := ReadClose(client, 50*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("ReadClose = %v, want os.ErrDeadlineExceeded", err)
		}
	})
	t.Run("no deadline possible", func(t *testing.T) {
		if _, err := ReadClose(bytes.NewReader(closeFrame(1000, "")), wait); err == nil {
			t.Fatalf("ReadClose on a bytes.Reader = nil error, want one: it can not bound the wait")
		}
	})
}

func TestWriteFrameHeader(t *testing.T) {
	var b bytes.Buffer
	h := ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: [4]byte{1, 2, 3, 4}, Length: 1 << 20}
	if err := WriteFrameHeader(&b, h); err != nil {
		t.Fatalf("WriteFrameHeader: %v", err)
	}
	got, err := ws.ReadHeader(&b)
	if err != nil || got != h {
		t.Fatalf("read back %+v, %v; want %+v", got, err, h)
	}
}

func TestMsg(t *testing.T) {
	m, err := parseMsg([]byte(`{"type":"event","seq":18446744073709551615,"id":"e","kind":"item","time":"2026-01-02T03:04:05Z","data":{"x":1}}`))
	if err != nil {
		t.Fatalf("parseMsg: %v", err)
	}
	w, err := parseMsg([]byte(`{"type":"welcome","device_id":"` + testDevice + `","feed":"lobby","heartbeat_s":20,"token_exp":"2030-03-17T17:46:40Z","epoch":"e1","overrides":[],"schedule":null}`))
	if err != nil {
		t.Fatalf("parseMsg: %v", err)
	}
	if got, want := m.Seq(), uint64(18446744073709551615); got != want {
		t.Errorf("Seq = %d, want %d", got, want)
	}
	if got, want := m.Str("kind"), "item"; got != want {
		t.Errorf("Str(kind) = %q, want %q", got, want)
	}
	if got, want := w.Int("heartbeat_s"), int64(20); got != want {
		t.Errorf("Int(heartbeat_s) = %d, want %d", got, want)
	}
	if got := m.Str("seq"); got != "" {
		t.Errorf("Str(seq) = %q, want \"\" for a number", got)
	}
	if got := (Msg{}).Seq(); got != 0 {
		t.Errorf("Seq of an empty Msg = %d, want 0", got)
	}
	for _, raw := range []string{`{"type":`, `{"seq":1}`, `[1]`} {
		if _, err := parseMsg([]byte(raw)); err == nil {
			t.Errorf("parseMsg(%s) = nil error, want one", raw)
		}
	}
}

// pipeConn is a Conn over net.Pipe, for byte-exact server behaviour; the server side
// writes from a goroutine, since pipe writes wait for the reader.
func pipeConn(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	client, server := net.Pipe()
	c := newConn(client, nil)
	t.Cleanup(func() {
		_ = c.Abort()
		server.Close()
	})
	return c, server
}

func TestStreamErrors(t *testing.T) {
	t.Run("binary and malformed messages leave the stream usable", func(t *testing.T) {
		c, server := pipeConn(t)
		go func() {
			var out []byte
			out = append(out, frame(ws.OpBinary, true, "\x01\x02")...)
			out = append(out, text(`{"type":`)...)
			out = append(out, text(`{"type":"heartbeat","time":"2026-01-02T03:04:05Z"}`)...)
			_, _ = server.Write(out)
		}()
		if _, err := c.Next(wait); err == nil || !strings.Contains(err.Error(), "binary") {
			t.Errorf("Next on a binary message = %v, want a binary-message error", err)
		}
		if m, err := c.Next(wait); err == nil {
			t.Errorf("Next on malformed JSON = %s, want an error", m.Raw)
		}
		if m, err := c.Next(wait); err != nil || m.Type != "heartbeat" {
			t.Errorf("Next after them = %q, %v; want the heartbeat", m.Type, err)
		}
	})
	t.Run("deadline inside a frame breaks the stream", func(t *testing.T) {
		c, server := pipeConn(t)
		go func() { _, _ = server.Write(text(`{"type":"heartbeat","time":"2026-01-02T03:04:05Z"}`)[:3]) }()
		_, err := c.Next(100 * time.Millisecond)
		if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "inside a frame") {
			t.Fatalf("Next on half a frame = %v, want a deadline inside a frame", err)
		}
		if _, err2 := c.Next(wait); err2 != err {
			t.Errorf("Next after that = %v, want the same error %v", err2, err)
		}
	})
	t.Run("ping while Close waits gets no pong", func(t *testing.T) {
		c, server := pipeConn(t)
		got := make(chan string, 1)
		go func() {
			_ = server.SetDeadline(time.Now().Add(wait))
			rd := &wsutil.Reader{Source: server, State: ws.StateServerSide}
			h, p, err := readFrame(rd)
			if err != nil || h.OpCode != ws.OpClose {
				got <- fmt.Sprintf("first frame %v %q, %v; want a close", h.OpCode, p, err)
				return
			}
			_, _ = server.Write(append(frame(ws.OpPing, true, "late"), closeFrame(1000, "")...))
			h, _, err = readFrame(rd)
			got <- fmt.Sprintf("after close: %v %v", h.OpCode, err)
		}()
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if c.closeErr == nil || c.broken != nil {
			t.Errorf("Close stopped before the server's close (broken: %v)", c.broken)
		}
		if g, want := <-got, "after close: 0 EOF"; g != want {
			t.Errorf("server saw %q, want %q", g, want)
		}
	})
}

// TestSchemasChecked: Next refuses a server message its JSON Schema refuses (a member
// the contract lacks, one missing, a type it lacks) and the stream stays usable; Send
// refuses a client message that is not valid and sends nothing, while SendUnchecked
// and SendFrame send what they are given.
func TestSchemasChecked(t *testing.T) {
	c, server := pipeConn(t)
	go func() {
		var out []byte
		out = append(out, text(`{"type":"synced","seq":5,"extra":true}`)...)
		out = append(out, text(`{"type":"heartbeat"}`)...)
		out = append(out, text(`{"type":"hello"}`)...)
		out = append(out, text(`{"type":"synced","seq":5}`)...)
		_, _ = server.Write(out)
	}()
	for _, want := range []string{"extra", "time", "unknown type"} {
		if m, err := c.Next(wait); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Next = %s, %v; want a schema error saying %q", m.Raw, err, want)
		}
	}
	if m, err := c.Next(wait); err != nil || m.Type != "synced" {
		t.Errorf("Next after them = %q, %v; want the synced", m.Type, err)
	}

	got := make(chan string, 4)
	go func() {
		_ = server.SetDeadline(time.Now().Add(wait))
		rd := &wsutil.Reader{Source: server, State: ws.StateServerSide}
		for range 2 {
			_, p, err := readFrame(rd)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(p)
		}
	}()
	if err := c.Send(map[string]any{"type": "shown", "seq": 0}); err == nil || !strings.Contains(err.Error(), "/seq") {
		t.Errorf("Send of a shown with seq 0 = %v, want a schema error", err)
	}
	if err := c.Send(map[string]any{"type": "hello"}); err == nil {
		t.Error("Send of an unknown type passed")
	}
	if err := c.SendUnchecked(map[string]any{"type": "hello"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(map[string]any{"type": "shown", "seq": 3}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`{"type":"hello"}`, `{"seq":3,"type":"shown"}`} {
		if g := <-got; g != want {
			t.Errorf("server read %s, want %s (a refused Send sends nothing)", g, want)
		}
	}
}
