package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
)

// The attack list of the bridge's issue, played with raw bytes: each attack must end
// with the close code docs/protocol.md §5 gives it (or the HTTP status of the upgrade), and
// must not make the server read or keep what the attacker declares.

const (
	maxMsg   = 16 << 10 // docs/protocol.md §5: a larger client frame or message is refused (1009)
	heapMiB  = 1 << 20
	heapCap  = 8 * heapMiB // growth allowed to an attack that declares far more
	ctlLimit = ws.MaxControlFramePayloadSize
)

// encode writes one client frame exactly as h says, Length included (which may lie about
// the payload that follows); a masked header gets a fresh mask and its payload masked.
func encode(h ws.Header, payload []byte) []byte {
	var b bytes.Buffer
	if h.Masked {
		h.Mask = ws.NewMask()
		payload = bytes.Clone(payload)
		ws.Cipher(payload, h.Mask, 0)
	}
	if err := ws.WriteHeader(&b, h); err != nil {
		panic(err)
	}
	b.Write(payload)
	return b.Bytes()
}

// frame is a well-formed masked client frame carrying payload.
func frame(op ws.OpCode, fin bool, payload []byte) []byte {
	return encode(ws.Header{Fin: fin, OpCode: op, Masked: true, Length: int64(len(payload))}, payload)
}

// fragments is one text message cut into n frames of size bytes of payload each.
func fragments(n, size int) []byte {
	part := bytes.Repeat([]byte("a"), size)
	var b bytes.Buffer
	b.Grow(n * (size + 6))
	b.Write(frame(ws.OpText, false, part))
	for i := 1; i < n; i++ {
		b.Write(frame(ws.OpContinuation, i == n-1, part))
	}
	return b.Bytes()
}

// noise is a client message of type "noise" (ignored by the server) of exactly n bytes.
func noise(tb testing.TB, n int) []byte {
	tb.Helper()
	const head, tail = `{"type":"noise","pad":"`, `"}`
	p := []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	if len(p) != n || !json.Valid(p) {
		tb.Fatalf("noise of %d bytes: got %d bytes", n, len(p))
	}
	return p
}

// attacker is a socket whose frames the test writes by hand: nc takes the attack, and the
// server's frames (and its close) are read from r, which nothing else has buffered.
type attacker struct {
	nc net.Conn
	r  io.Reader
}

// rawSocket upgrades a socket by hand with the allowed origin, before any auth.
func (s *stack) rawSocket(t *testing.T) attacker {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, wait)
	defer cancel()
	nc, br, status, err := bridgetest.RawUpgrade(ctx, s.Listener.Addr().String(), "/ws", s.origin, nil)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	if status != 101 {
		t.Fatalf("upgrade: HTTP %d, want 101", status)
	}
	return attacker{nc: nc, r: br}
}

// liveSocket is a freshly paired tablet of feed, authenticated and caught up (synced),
// whose socket is then handed over to raw writes.
func (s *stack) liveSocket(t *testing.T, feed string) attacker {
	t.Helper()
	c, _ := s.connect(t, s.pair(t, feed), 0, "")
	if _, _, _, err := c.Collect(wait); err != nil {
		t.Fatalf("catch-up: %v", err)
	}
	// The Conn has read exactly up to synced (it reads frame by frame, no read-ahead),
	// so the rest of the server's frames are on the connection itself.
	return attacker{nc: c.NetConn(), r: c.NetConn()}
}

// write sends b from another goroutine, because a big attack blocks once the server stops
// reading; the channel yields the write's error (a reset once the server hung up is
// expected) within the write deadline.
func (a attacker) write(b []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_ = a.nc.SetWriteDeadline(time.Now().Add(wait))
		_, err := a.nc.Write(b)
		done <- err
	}()
	return done
}

// heapAfterGC is the live heap and the bytes ever allocated, after a collection.
func heapAfterGC() (live, total uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.TotalAlloc
}

// growth is how much b exceeds a, 0 when it does not.
func growth(a, b uint64) uint64 {
	if b > a {
		return b - a
	}
	return 0
}

// TestAttackUpgradeOrigin: the socket opens only for an allowed Origin; the others are
// refused with 403 and the JSON error format, before any upgrade.
func TestAttackUpgradeOrigin(t *testing.T) {
	s := startStack(t, stackOpts{})
	addr := s.Listener.Addr().String()
	host := strings.TrimPrefix(s.origin, "http://")
	for _, tc := range []struct {
		name   string
		origin string
		want   int
	}{
		{"missing Origin", "", 403},
		{"foreign origin", "http://evil.example", 403},
		{"allowed origin as a prefix", s.origin + ".evil.example", 403},
		{"allowed host, another port", "http://127.0.0.1:1", 403},
		{"allowed host, https", "https://" + host, 403},
		{"opaque origin null", "null", 403},
		{"allowed origin", s.origin, 101},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(bg, wait)
			defer cancel()
			nc, br, status, err := bridgetest.RawUpgrade(ctx, addr, "/ws", tc.origin, nil)
			if err != nil {
				t.Fatalf("upgrade: %v", err)
			}
			defer nc.Close()
			if status != tc.want {
				t.Fatalf("status = %d, want %d", status, tc.want)
			}
			_ = nc.SetReadDeadline(time.Now().Add(wait))
			if status == 101 {
				// A real socket: the server speaks first, with the challenge.
				h, err := ws.ReadHeader(br)
				if err != nil || h.OpCode != ws.OpText || h.Length > 1024 {
					t.Fatalf("first frame after 101: %+v, %v; want a short text frame", h, err)
				}
				p := make([]byte, h.Length)
				if _, err := io.ReadFull(br, p); err != nil || !bytes.Contains(p, []byte(`"type":"challenge"`)) {
					t.Fatalf("first message after 101: %q, %v; want the challenge", p, err)
				}
				checkServerText(t, p)
				return
			}
			var body map[string]string
			if err := json.NewDecoder(br).Decode(&body); err != nil {
				t.Fatalf("403 body is not JSON: %v", err)
			}
			if body["error"] != "forbidden" || body["message"] == "" {
				t.Fatalf("403 body = %v, want error forbidden with a message", body)
			}
		})
	}
}

// TestAttackFrames plays each hostile frame before the auth and again on a live,
// authenticated socket, and asserts the close code of docs/protocol.md §5. The attacks that
// declare far more than 16 KiB also assert that the server neither kept nor allocated
// it: the live heap after a collection, and every byte allocated while the attack ran,
// grow by less than 8 MiB.
func TestAttackFrames(t *testing.T) {
	s := startStack(t, stackOpts{})
	text := func(p string) []byte { return frame(ws.OpText, true, []byte(p)) }
	type frameCase struct {
		name   string
		attack func() []byte
		want   int
		heap   bool // the attack declares more than heapCap: bound the server's memory
	}
	cases := []frameCase{
		{"header declaring 2^62 bytes", func() []byte {
			return encode(ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Length: 1 << 62}, []byte(`{"type":"noise"`))
		}, 1009, true},
		{"continuation declaring 2^62 bytes", func() []byte {
			first := frame(ws.OpText, false, []byte(`{"type":`))
			return append(first, encode(ws.Header{Fin: true, OpCode: ws.OpContinuation, Masked: true, Length: 1 << 62}, []byte(`"noise"}`))...)
		}, 1009, true},
		{"10^5 continuations of 4 bytes", func() []byte { return fragments(100_000, 4) }, 1009, false},
		{"10^5 continuations of 128 bytes", func() []byte { return fragments(100_000, 128) }, 1009, true},
		{"single frame of 16 KiB + 1", func() []byte { return frame(ws.OpText, true, noise(t, maxMsg+1)) }, 1009, false},
		{"two fragments of 16 KiB + 1 in all", func() []byte {
			p := noise(t, maxMsg+1)
			return append(frame(ws.OpText, false, p[:maxMsg/2]), frame(ws.OpContinuation, true, p[maxMsg/2:])...)
		}, 1009, false},
		{"64-bit length with the top bit set", func() []byte {
			// FIN+text, masked with a 64-bit length, the length, the mask, one byte.
			return []byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 'x'}
		}, 1002, false},
		{"ping with a 126-byte payload", func() []byte { return frame(ws.OpPing, true, make([]byte, ctlLimit+1)) }, 1002, false},
		{"pong with a 4000-byte payload", func() []byte { return frame(ws.OpPong, true, make([]byte, 4000)) }, 1002, false},
		{"fragmented ping", func() []byte { return frame(ws.OpPing, false, []byte("p")) }, 1002, false},
		{"unmasked text frame", func() []byte {
			return encode(ws.Header{Fin: true, OpCode: ws.OpText, Length: 2}, []byte(`{}`))
		}, 1002, false},
		{"unmasked ping", func() []byte { return encode(ws.Header{Fin: true, OpCode: ws.OpPing}, nil) }, 1002, false},
		{"continuation with no message started", func() []byte { return frame(ws.OpContinuation, true, []byte(`{}`)) }, 1002, false},
		{"new text frame inside a fragmented message", func() []byte {
			return append(frame(ws.OpText, false, []byte(`{"type":`)), text(`{}`)...)
		}, 1002, false},
		{"invalid UTF-8", func() []byte { return text("{\"type\":\"\xff\xfe\"}") }, 1007, false},
		{"invalid UTF-8 across fragments", func() []byte {
			return append(frame(ws.OpText, false, []byte("{\"type\":\"\xe2\x82")), frame(ws.OpContinuation, true, []byte(`"}`))...)
		}, 1007, false},
		{"binary frame", func() []byte { return frame(ws.OpBinary, true, []byte(`{"type":"auth"}`)) }, 1003, false},
		{"malformed JSON", func() []byte { return text(`{"type":"auth",`) }, 4400, false},
		{"empty message", func() []byte { return text(``) }, 4400, false},
		{"JSON array", func() []byte { return text(`[1,2]`) }, 4400, false},
		{"type not a string", func() []byte { return text(`{"type":1}`) }, 4400, false},
		{"token not a string", func() []byte { return text(`{"type":"auth","token":123}`) }, 4400, false},
	}
	for _, op := range []ws.OpCode{0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		cases = append(cases, frameCase{fmt.Sprintf("reserved opcode %#x", byte(op)), func() []byte {
			return frame(op, true, []byte("x"))
		}, 1002, false})
	}
	for i, rsv := range []byte{0b100, 0b010, 0b001} {
		cases = append(cases, frameCase{fmt.Sprintf("RSV%d set", i+1), func() []byte {
			return encode(ws.Header{Fin: true, Rsv: rsv, OpCode: ws.OpText, Masked: true, Length: 2}, []byte(`{}`))
		}, 1002, false})
	}

	phases := []struct {
		name string
		open func(t *testing.T) attacker
	}{
		{"before auth", s.rawSocket},
		{"after auth", func(t *testing.T) attacker { return s.liveSocket(t, "lobby") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, ph := range phases {
				t.Run(ph.name, func(t *testing.T) {
					a := ph.open(t)
					attack := tc.attack()
					live0, total0 := heapAfterGC()
					done := a.write(attack)
					code, err := bridgetest.ReadClose(a.r, wait)
					werr := <-done
					if err != nil || code != tc.want {
						t.Errorf("close = %d, %v (attack write: %v); want %d", code, err, werr, tc.want)
					}
					if !tc.heap {
						return
					}
					live1, total1 := heapAfterGC()
					runtime.KeepAlive(attack)
					t.Logf("attack of %d bytes written: live heap %+d KiB, %d KiB allocated", len(attack), (int64(live1)-int64(live0))>>10, (total1-total0)>>10)
					if g := growth(live0, live1); g >= heapCap {
						t.Errorf("live heap grew by %d MiB, want < %d MiB", g/heapMiB, heapCap/heapMiB)
					}
					if g := total1 - total0; g >= heapCap {
						t.Errorf("%d MiB allocated during the attack, want < %d MiB", g/heapMiB, heapCap/heapMiB)
					}
				})
			}
		})
	}
}

// TestAttackHandshake: the attacks on the auth message itself, and the two limits that
// must not be off by one (exactly 16 KiB is a message, not an attack).
func TestAttackHandshake(t *testing.T) {
	s := startStack(t, stackOpts{})

	t.Run("auth twice", func(t *testing.T) {
		tab := s.pair(t, "lobby")
		c := s.dial(t)
		ch, err := c.Expect("challenge", wait)
		if err != nil {
			t.Fatal(err)
		}
		auth := func() error {
			proof, err := tab.WSProof(s.wsURL, ch.Str("nonce"))
			if err != nil {
				return err
			}
			return c.Send(map[string]any{"type": "auth", "token": tab.Token, "proof": proof, "since": 0})
		}
		if err := auth(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Expect("welcome", wait); err != nil {
			t.Fatalf("first auth: %v, want a welcome", err)
		}
		if err := auth(); err != nil { // no reauth was asked for
			t.Fatal(err)
		}
		if code, err := c.ExpectClose(wait); err != nil || code != 4400 {
			t.Fatalf("second auth: %d, %v; want 4400", code, err)
		}
	})

	for _, tc := range []struct {
		name string
		msg  map[string]any
	}{
		{"garbage token", map[string]any{"type": "auth", "token": "garbage", "proof": "garbage", "since": 0}},
		{"empty token", map[string]any{"type": "auth"}},
		{"forged token", map[string]any{"type": "auth", "token": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "proof": "x.y.z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := s.dial(t)
			if _, err := c.Expect("challenge", wait); err != nil {
				t.Fatal(err)
			}
			if err := c.SendUnchecked(tc.msg); err != nil { // malformed on purpose
				t.Fatal(err)
			}
			if code, err := c.ExpectClose(wait); err != nil || code != 4401 {
				t.Fatalf("close = %d, %v; want 4401", code, err)
			}
		})
	}

	t.Run("exactly 16 KiB before auth", func(t *testing.T) {
		for name, send := range map[string]func(c *bridgetest.Conn) error{
			"one frame": func(c *bridgetest.Conn) error { return c.SendFrame(ws.NewTextFrame(noise(t, maxMsg))) },
			"two fragments": func(c *bridgetest.Conn) error {
				p := noise(t, maxMsg)
				if err := c.SendFrame(ws.NewFrame(ws.OpText, false, p[:maxMsg/2])); err != nil {
					return err
				}
				return c.SendFrame(ws.NewFrame(ws.OpContinuation, true, p[maxMsg/2:]))
			},
		} {
			t.Run(name, func(t *testing.T) {
				tab := s.pair(t, "lobby")
				c := s.dial(t)
				if err := send(c); err != nil {
					t.Fatal(err)
				}
				// Ignored, and the socket still completes its handshake.
				if _, err := c.Handshake(tab, s.wsURL, 0, "", wait); err != nil {
					t.Fatalf("handshake after a 16 KiB message: %v", err)
				}
			})
		}
	})

	t.Run("exactly 16 KiB after auth", func(t *testing.T) {
		c, _ := s.connect(t, s.pair(t, "lobby"), 0, "")
		if _, _, _, err := c.Collect(wait); err != nil {
			t.Fatal(err)
		}
		if err := c.SendFrame(ws.NewTextFrame(noise(t, maxMsg))); err != nil {
			t.Fatal(err)
		}
		seq := s.publish(t, "lobby", "item", `{"text":"still open"}`)
		if ev, err := c.Expect("event", wait); err != nil || ev.Seq() != seq {
			t.Fatalf("after a 16 KiB message: %s, %v; want event %d", ev.Raw, err, seq)
		}
		// The event may have overtaken the noise; a binary frame after it is closed with
		// its own code (1003) only if the 16 KiB were read whole and ignored: a refused
		// noise would have closed first, with 1009 or 4400.
		if err := c.SendFrame(ws.NewBinaryFrame([]byte("after the noise"))); err != nil {
			t.Fatal(err)
		}
		if code, err := c.ExpectClose(wait); err != nil || code != 1003 {
			t.Fatalf("binary frame after the noise: %d, %v; want 1003 (the noise ignored)", code, err)
		}
	})
}

// TestAttackNoAuth: a socket that never authenticates is closed 4408 after AuthTimeout,
// also when it keeps the socket busy with pings (they must not extend the deadline).
func TestAttackNoAuth(t *testing.T) {
	const authTimeout = 500 * time.Millisecond
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.AuthTimeout = authTimeout }})

	t.Run("silent", func(t *testing.T) {
		a := s.rawSocket(t)
		start := time.Now()
		code, err := bridgetest.ReadClose(a.r, wait)
		if err != nil || code != 4408 {
			t.Fatalf("close = %d, %v; want 4408", code, err)
		}
		if d := time.Since(start); d < authTimeout/2 {
			t.Fatalf("closed after %v, before the auth timeout of %v", d, authTimeout)
		}
	})

	t.Run("pings only", func(t *testing.T) {
		a := s.rawSocket(t)
		br := a.r.(*bufio.Reader)
		ping := frame(ws.OpPing, true, []byte("keepalive"))
		// Ping, read the pong, again: in lockstep, so the pings never pile up, until the
		// server closes (or a bound far past the auth timeout).
		deadline := time.Now().Add(wait)
		_ = a.nc.SetDeadline(deadline)
		for pings := 1; ; pings++ {
			if _, err := a.nc.Write(ping); err != nil {
				t.Fatalf("after %d pings: write: %v, want a 4408 close frame first", pings, err)
			}
			for pong := false; !pong; {
				h, err := ws.ReadHeader(br)
				if err != nil {
					t.Fatalf("after %d pings: %v, want a 4408 close frame", pings, err)
				}
				p := make([]byte, h.Length)
				if _, err := io.ReadFull(br, p); err != nil {
					t.Fatalf("after %d pings: %v", pings, err)
				}
				switch h.OpCode {
				case ws.OpText:
					checkServerText(t, p) // the challenge
				case ws.OpPong:
					pong = true
				case ws.OpClose:
					if code, _ := ws.ParseCloseFrameData(p); code != 4408 {
						t.Fatalf("close = %d after %d pings, want 4408", code, pings)
					}
					return
				}
			}
		}
	})
}

// TestAttackPingFlood: a tablet that sends pings without end and never reads. The pongs
// pile up in its queue; when the queue is full the server closes it (1013) and stops
// answering. Meanwhile its memory stays bounded, and another tablet of the same feed
// gets events promptly, during the flood and after it.
func TestAttackPingFlood(t *testing.T) {
	// WriteTimeout is long so that the 1013 close frame, queued behind the pongs already
	// in the kernel's buffers, is still there when the test finally reads the socket.
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.WriteTimeout = time.Minute }})
	obs, _ := s.connect(t, s.pair(t, "lobby"), 0, "")
	if _, _, _, err := obs.Collect(wait); err != nil {
		t.Fatal(err)
	}
	p := startPump(obs)
	defer p.close(t)
	v := s.liveSocket(t, "lobby")
	// A small receive buffer: the pongs fill the kernel's buffers (the server's send
	// buffer grows to 4 MiB at most) long before the flood ends.
	_ = v.nc.(*net.TCPConn).SetReadBuffer(64 << 10)

	const chunkPings, chunks = 1000, 200 // 200k pings of 125 bytes: 25 MiB of pongs owed
	chunk := bytes.Repeat(frame(ws.OpPing, true, bytes.Repeat([]byte("p"), ctlLimit)), chunkPings)
	live0, _ := heapAfterGC()
	flooding := make(chan struct{})
	sent := make(chan int, 1)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for n < chunks {
			// The server stops reading once it closed the flooder: the write then blocks.
			_ = v.nc.SetWriteDeadline(time.Now().Add(wait))
			if _, err := v.nc.Write(chunk); err != nil {
				break
			}
			if n++; n == chunks/10 {
				close(flooding)
			}
		}
		if n < chunks/10 {
			close(flooding)
		}
	}()
	select {
	case <-flooding:
	case <-time.After(time.Minute):
		t.Fatal("flood did not get going")
	}
	during := s.publish(t, "lobby", "item", `{"text":"during the flood"}`)
	if ev := p.expect(t, "event"); ev.Seq() != during {
		t.Fatalf("observer during the flood: %s, want event %d", ev.Raw, during)
	}
	var n int
	select {
	case n = <-sent:
	case <-time.After(2 * time.Minute):
		t.Fatal("the flood never ended")
	}
	// The flooder's unanswered pongs are held (if anywhere) until it reads: now.
	live1, _ := heapAfterGC()
	t.Logf("%d pings written; live heap %+d KiB", n*chunkPings, (int64(live1)-int64(live0))>>10)
	if g := growth(live0, live1); g >= heapCap {
		t.Errorf("live heap grew by %d MiB after %d pings, want < %d MiB", g/heapMiB, n*chunkPings, heapCap/heapMiB)
	}
	after := s.publish(t, "lobby", "item", `{"text":"after the flood"}`)
	if ev := p.expect(t, "event"); ev.Seq() != after {
		t.Fatalf("observer after the flood: %s, want event %d", ev.Raw, after)
	}
	code, err := bridgetest.ReadClose(v.r, 30*time.Second)
	if err != nil || code != 1013 {
		t.Fatalf("flooder (%d of %d pings written): close = %d, %v; want 1013", n*chunkPings, chunks*chunkPings, code, err)
	}
}

// TestAttackSlowlorisUpgrade: a client that sends its upgrade request one byte every
// 500 ms is cut off by the server's header timeout (2 s in the harness), within 10 s.
func TestAttackSlowlorisUpgrade(t *testing.T) {
	s := startStack(t, stackOpts{})
	addr := s.Listener.Addr().String()
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: " + s.origin + "\r\n\r\n"
	const bound, pace = 10 * time.Second, 500 * time.Millisecond
	nc, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
	_ = nc.SetReadDeadline(start.Add(bound))
	closed := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, nc) // nil at the server's FIN
		closed <- err
	}()
	written := 0
	var cerr error
	ended := false
	for !ended && written < len(req) && written < int(bound/pace) { // the bounded count of bytes
		select {
		case cerr = <-closed:
			ended = true
			continue
		case <-time.After(pace):
		}
		_ = nc.SetWriteDeadline(time.Now().Add(wait))
		if _, err := nc.Write([]byte{req[written]}); err != nil {
			break // the server is gone: the reader says how
		}
		written++
	}
	if !ended {
		cerr = <-closed // bounded by the read deadline
	}
	took := time.Since(start)
	if errors.Is(cerr, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v and %d bytes of the request, want it closed by the server", took, written)
	}
	if took > bound {
		t.Fatalf("closed after %v, want within %v", took, bound)
	}
	t.Logf("closed by the server after %v and %d bytes (%v)", took.Round(time.Millisecond), written, cerr)
}

// TestAttackSlowTablet: a tablet that never reads while large events are published is
// closed 1013 once its small queue is full, and another tablet of the same feed gets
// every event, in order.
func TestAttackSlowTablet(t *testing.T) {
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) {
		c.QueueFrames = 8
		c.WriteTimeout = time.Minute // the 1013 frame waits behind the backlog until read
		c.Heartbeat = time.Minute    // no drop for silence while the test publishes
	}})
	slow := s.liveSocket(t, "lobby")
	_ = slow.nc.(*net.TCPConn).SetReadBuffer(64 << 10)
	obs, _ := s.connect(t, s.pair(t, "lobby"), 0, "")
	if _, _, _, err := obs.Collect(wait); err != nil {
		t.Fatal(err)
	}
	p := startPump(obs)
	defer p.close(t)

	// 400 events of 32 KiB: 12.5 MiB, about three times what the kernel's buffers of the
	// slow socket can hold. They go out in steps of 4 (half the queue), each step read
	// by the observer before the next, so only the slow tablet can fall behind.
	const events, step = 400, 4
	pad := strings.Repeat("x", 32<<10)
	var want, got []uint64
	for len(want) < events {
		for range step {
			want = append(want, s.publish(t, "lobby", "item", fmt.Sprintf(`{"n":%d,"pad":%q}`, len(want), pad)))
		}
		for len(got) < len(want) {
			got = append(got, p.expect(t, "event").Seq())
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("observer got %v\nwant %v", got, want)
	}
	code, err := bridgetest.ReadClose(slow.r, 30*time.Second)
	if err != nil || code != 1013 {
		t.Fatalf("slow tablet: close = %d, %v; want 1013", code, err)
	}
}

// TestCloseFrameReplies: the server answers a tablet's close with the tablet's code when
// it may be sent, 1000 when there is none, and 1002 for a one-byte body or a code that
// must never be on the wire.
func TestCloseFrameReplies(t *testing.T) {
	s := startStack(t, stackOpts{})
	for name, tc := range map[string]struct {
		payload []byte
		want    int
	}{
		"no code":       {nil, 1000},
		"normal":        {ws.NewCloseFrameBody(1000, "bye"), 1000},
		"going away":    {ws.NewCloseFrameBody(1001, ""), 1001},
		"private range": {ws.NewCloseFrameBody(4000, ""), 4000},
		"one byte":      {[]byte{0x03}, 1002},
		"1005 on wire":  {ws.NewCloseFrameBody(1005, ""), 1002},
		"1006 on wire":  {ws.NewCloseFrameBody(1006, ""), 1002},
		"below 1000":    {ws.NewCloseFrameBody(999, ""), 1002},
		"unassigned":    {ws.NewCloseFrameBody(2000, ""), 1002},
		"past 4999":     {ws.NewCloseFrameBody(5000, ""), 1002},
	} {
		t.Run(name, func(t *testing.T) {
			c := s.dial(t)
			if _, err := c.Expect("challenge", wait); err != nil {
				t.Fatal(err)
			}
			if err := c.SendFrame(ws.NewFrame(ws.OpClose, true, tc.payload)); err != nil {
				t.Fatal(err)
			}
			code, err := bridgetest.ReadClose(c.NetConn(), wait)
			if err != nil || code != tc.want {
				t.Fatalf("reply to close %v: %d, %v; want %d", tc.payload, code, err, tc.want)
			}
		})
	}
}
