//go:build linux

package bridge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// Where the outside comes into the bridge: the bytes of a tablet's socket. Each target
// checks a property the code must keep for every input, not only the seeds. Run one
// with: go test -run '^$' -fuzz '^FuzzReadFrame$' -fuzztime 30s ./bridge/
// (go tool -modfile=tools/go.mod task fuzz runs them all).

// FuzzCloseReply: whatever a tablet's close frame holds, the code we answer with may be
// sent on the wire (RFC 6455 §7.4.1: never 1004, 1005, 1006 or 1015, nothing below
// 1000, nothing unassigned below 3000, nothing from 5000), and it is the tablet's own
// code whenever that one may be sent.
func FuzzCloseReply(f *testing.F) {
	for _, seed := range [][]byte{
		nil, {0x03}, {0x03, 0xe8}, {0x03, 0xed}, {0x03, 0xee}, {0x03, 0xf7}, {0x03, 0xec},
		{0x0b, 0xb8}, {0x13, 0x87}, {0x13, 0x88}, {0x00, 0x00}, {0xff, 0xff}, {0x03, 0xe8, 'b', 'y', 'e'},
		{0x0f, 0xa1, 0xff, 0xfe}, // 4001 with a reason that is not UTF-8
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		got := closeReply(payload)
		c := int(got)
		if !wireCode(got) || c == 1004 || c == 1005 || c == 1006 || c == 1015 {
			t.Fatalf("closeReply(%x) = %d: a code no endpoint may send", payload, c)
		}
		switch len(payload) {
		case 0:
			if got != ws.StatusNormalClosure {
				t.Fatalf("an empty close is answered %d, want 1000", c)
			}
			return
		case 1:
			if got != ws.StatusProtocolError {
				t.Fatalf("a one-byte close body is answered %d, want 1002", c)
			}
			return
		}
		theirs := ws.StatusCode(binary.BigEndian.Uint16(payload))
		if wireCode(theirs) && got != theirs {
			t.Fatalf("the tablet's sendable code %d is answered %d, want it echoed", theirs, c)
		}
		if !wireCode(theirs) && got != ws.StatusProtocolError {
			t.Fatalf("the tablet's unsendable code %d is answered %d, want 1002", theirs, c)
		}
	})
}

// wireCode reports whether an endpoint may put code in a close frame: RFC 6455 §7.4.1
// and §7.4.2 with the IANA registry (1012–1014 came later; gobwas/ws does not know
// them), so never 1004, 1005, 1006, 1015, 0–999, 1016–2999 or 5000 and above.
func wireCode(code ws.StatusCode) bool {
	c := int(code)
	return c >= 1000 && c <= 1003 || c >= 1007 && c <= 1014 || c >= 3000 && c <= 4999
}

// FuzzTakePingPong: the poller's shortcut reads a whole masked ping or pong straight
// from the socket and nothing else. Whatever the tablet sent, it either takes exactly
// one frame that the reader then accepts, or takes nothing, so that the reader sees the
// stream unchanged. A real socket pair: MSG_PEEK and the kernel's buffer are what is
// tested.
func FuzzTakePingPong(f *testing.F) {
	for _, seed := range [][]byte{
		maskedFrame(ws.OpPing, true, nil), maskedFrame(ws.OpPong, true, []byte("hb")),
		maskedFrame(ws.OpPing, true, bytes.Repeat([]byte{'p'}, 125)),
		append(maskedFrame(ws.OpPong, true, []byte("a")), maskedFrame(ws.OpText, true, []byte(`{}`))...),
		maskedFrame(ws.OpPing, true, []byte("abc"))[:5],          // not all there yet
		maskedFrame(ws.OpText, true, []byte(`{"type":"auth"}`)),  // for the reader
		maskedFrame(ws.OpClose, true, []byte{0x03, 0xe8}),        // for the reader
		ws.MustCompileFrame(ws.NewPingFrame([]byte("unmasked"))), // refused by the reader
		append(ws.MustCompileFrame(ws.NewPongFrame([]byte("unmasked"))), maskedFrame(ws.OpText, true, []byte(`{"type":"x"}`))...),
		{0x89, 0xfe, 0x00, 0x05, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e'}, // extended length
		{0x09, 0x80, 1, 2, 3, 4}, // not final
		{0xc9, 0x80, 1, 2, 3, 4}, // RSV1 set
		{0x8a}, nil,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 4096 {
			in = in[:4096] // what fits in the pair's buffer at once
		}
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fds[0])
		defer unix.Close(fds[1])
		for rest := in; len(rest) > 0; {
			n, err := unix.Write(fds[0], rest)
			if err != nil {
				t.Fatalf("write to the socket pair: %v", err)
			}
			rest = rest[n:]
		}

		b, whole := takePingPong(fds[1])

		left := make([]byte, 0, len(in))
		buf := make([]byte, 8192)
		for len(b)+len(left) < len(in) {
			n, err := unix.Read(fds[1], buf) // blocking: the writer's end stays open
			if err != nil {
				t.Fatalf("read the rest: %v", err)
			}
			left = append(left, buf[:n]...)
		}
		if n, _, _ := unix.Recvfrom(fds[1], buf, unix.MSG_DONTWAIT); n > 0 {
			t.Fatalf("%d bytes more than the tablet sent", n)
		}
		if !bytes.Equal(append(slices.Clip(b), left...), in) {
			t.Fatalf("took %s and left %s of %s: the stream is not the tablet's", short(b), short(left), short(in))
		}

		want := wholePingPong(in)
		switch {
		case b == nil && want > 0:
			t.Fatalf("took nothing of %s, which starts with a whole ping or pong of %d bytes", short(in), want)
		case b == nil:
			return
		case !whole:
			t.Fatalf("took %s of %s but says it is not whole (the kernel showed all of it)", short(b), short(in))
		case len(b) != want:
			t.Fatalf("took %d bytes of %s, want %d (one whole ping or pong, or nothing)", len(b), short(in), want)
		}
		hdr, err := ws.ReadHeader(bytes.NewReader(b))
		if err != nil || ws.CheckHeader(hdr, ws.StateServerSide) != nil || int64(len(b)) != 6+hdr.Length {
			t.Fatalf("took %s, which the reader would refuse: %v", short(b), err)
		}
	})
}

// wholePingPong is the size of the final, masked ping or pong without RSV bits or an
// extended length that in starts with, when all of it is there; 0 otherwise. It reads
// the header with gobwas/ws, not with takePingPong's own bit tests.
func wholePingPong(in []byte) int {
	hdr, err := ws.ReadHeader(bytes.NewReader(in))
	if err != nil || len(in) < 2 || in[1]&0x7f > 125 {
		return 0
	}
	if !hdr.Fin || hdr.Rsv != 0 || !hdr.Masked || (hdr.OpCode != ws.OpPing && hdr.OpCode != ws.OpPong) {
		return 0
	}
	if n := 6 + int(hdr.Length); len(in) >= n {
		return n
	}
	return 0
}

// FuzzReadFrame: arbitrary bytes as a tablet's side of a real socket, through the real
// handler, after the challenge. The server never panics, never allocates in proportion
// to a length the tablet only claims, answers only with pongs of the tablet's pings and
// at most one close frame, hangs up once the tablet has, and closes with a code of
// docs/protocol.md §5 (or the tablet's own, echoed). Where the input is a sequence of
// unfragmented frames, the code is exactly the one the first decisive frame calls for.
func FuzzReadFrame(f *testing.F) {
	for _, seed := range [][]byte{
		maskedFrame(ws.OpText, true, []byte(`{"type":"auth","token":"x","proof":"y"}`)),
		maskedFrame(ws.OpText, true, []byte(`{"type":"hello"}`)),
		maskedFrame(ws.OpText, true, []byte(`{"type":`)),
		maskedFrame(ws.OpText, true, []byte{0xff, 0xfe}),
		maskedFrame(ws.OpBinary, true, []byte{1, 2, 3}),
		maskedFrame(ws.OpClose, true, []byte{0x0f, 0xa0}),
		maskedFrame(ws.OpClose, true, []byte{0x03, 0xed}),
		maskedFrame(ws.OpClose, true, []byte{0x03}),
		append(maskedFrame(ws.OpPing, true, []byte("hi")), maskedFrame(ws.OpClose, true, nil)...),
		append(maskedFrame(ws.OpText, false, []byte(`{"type":`)), maskedFrame(ws.OpContinuation, true, []byte(`"x"}`))...),
		append(maskedFrame(ws.OpText, false, []byte(`{`)), maskedFrame(ws.OpText, true, []byte(`}`))...),
		maskedFrame(ws.OpContinuation, true, []byte(`x`)),
		maskedFrame(ws.OpText, true, bytes.Repeat([]byte{' '}, maxClientFrameBytes+1)),
		ws.MustCompileFrame(ws.NewTextFrame([]byte(`{}`))),                       // unmasked
		{0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, // claims 2^63-1 bytes
		{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},                      // length's top bit set
		{0x81, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4},                      // claims 1 GiB
		{0x8b, 0x80, 1, 2, 3, 4}, // reserved opcode
		{0x81, 0x85, 1, 2},       // cut in the header
		nil,
	} {
		f.Add(seed)
	}
	st := startFuzzStack(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 64<<10 {
			in = in[:64<<10]
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got := st.exchange(t, in)
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
			t.Fatalf("one socket of %d bytes made the process allocate %d MiB", len(in), grew>>20)
		}
		if got.refused {
			return // 429 before the upgrade: the contract's answer to too many attempts
		}

		want, pings, known := expectFrames(in)
		if got.closed && !allowedClose(got.code, in) {
			t.Fatalf("closed %d on %s: not a code of docs/protocol.md §5 nor one the tablet sent", got.code, short(in))
		}
		if !known {
			return
		}
		if !slices.EqualFunc(got.pongs, pings, bytes.Equal) {
			t.Fatalf("answered pongs %q to pings %q of %s", got.pongs, pings, short(in))
		}
		switch {
		case want == 0 && got.closed:
			t.Fatalf("closed %d on %s, which breaks no rule: want a plain hang-up after the tablet's", got.code, short(in))
		case want != 0 && !got.closed:
			t.Fatalf("hung up without a close frame on %s, want close %d", short(in), want)
		case want == codeAnyAuthRefusal:
			if got.code != CloseUnauthorized && got.code != CloseRevoked && got.code != CloseTooMany {
				t.Fatalf("a forged auth is closed %d, want 4401 (or 4403, or 4429 once limited)", got.code)
			}
		case want != 0 && got.code != want:
			t.Fatalf("closed %d on %s, want %d", got.code, short(in), want)
		}
	})
}

// FuzzClientMessage: any text a tablet sends before its auth, in one frame, through
// the real socket and the session's decoder. Not UTF-8 → 1007; not a JSON message →
// 4400; an auth (which the fuzzer cannot sign) → 4401; anything else is ignored, which
// the tablet's close right after proves: it is echoed 1000.
func FuzzClientMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"auth","token":"kfp.x.y","proof":"a.b.c","since":3,"epoch":"e"}`, `{"type":"AUTH"}`, `{"TYPE":"auth"}`,
		`{"type":"ping"}`, `{}`, `[]`, `null`, `"auth"`, `{"type":"auth","since":-1}`, `{"since":1e400}`,
		`{"type":"x"} {"type":"auth"}`, `{"type":"x"}trailing`, "\xff", `{"type":"\u0000"}`, ``, ` `,
	} {
		f.Add([]byte(s))
	}
	st := startFuzzStack(f)
	f.Fuzz(func(t *testing.T, text []byte) {
		if len(text) > maxClientFrameBytes+16 {
			text = text[:maxClientFrameBytes+16]
		}
		in := append(maskedFrame(ws.OpText, true, text), maskedFrame(ws.OpClose, true, []byte{0x03, 0xe8})...)
		got := st.exchange(t, in)
		if got.refused {
			return
		}
		var m clientMsg
		var want ws.StatusCode
		switch {
		case len(text) > maxClientFrameBytes:
			want = CloseTooBig
		case !utf8.Valid(text):
			want = ws.StatusInvalidFramePayloadData
		case json.Unmarshal(text, &m) != nil:
			want = CloseMalformed
		case m.Type == "auth":
			if got.code != CloseUnauthorized && got.code != CloseRevoked && got.code != CloseTooMany {
				t.Fatalf("auth %s closed %d (closed: %v), want 4401 (or 4403, or 4429 once limited)", short(text), got.code, got.closed)
			}
			return
		default:
			want = ws.StatusNormalClosure // ignored: the close after it is echoed
		}
		if !got.closed || got.code != want {
			t.Fatalf("text %s: closed %v with %d, want %d", short(text), got.closed, got.code, want)
		}
	})
}

// codeAnyAuthRefusal stands for "one of the codes a refused auth gets" in expectFrames.
const codeAnyAuthRefusal ws.StatusCode = 1

// expectFrames reads in as the session must: the close code that the first frame
// deciding the socket's fate calls for (0: none, the socket just ends with the input),
// and the pings answered before it. known is false where it cannot say (fragments).
func expectFrames(in []byte) (code ws.StatusCode, pings [][]byte, known bool) {
	r := bytes.NewReader(in)
	for {
		hdr, err := ws.ReadHeader(r)
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return 0, pings, true
		case err != nil:
			return ws.StatusProtocolError, pings, true
		}
		if ws.CheckHeader(hdr, ws.StateServerSide) != nil {
			return ws.StatusProtocolError, pings, true
		}
		if hdr.Length > maxClientFrameBytes {
			return CloseTooBig, pings, true
		}
		if int64(r.Len()) < hdr.Length {
			return 0, pings, true // the tablet hung up inside a frame
		}
		payload := make([]byte, hdr.Length)
		_, _ = io.ReadFull(r, payload)
		ws.Cipher(payload, hdr.Mask, 0)
		switch {
		case hdr.OpCode == ws.OpClose:
			return closeReply(payload), pings, true
		case hdr.OpCode == ws.OpPing:
			pings = append(pings, payload)
			continue
		case hdr.OpCode == ws.OpPong:
			continue
		case !hdr.Fin:
			return 0, nil, false
		case hdr.OpCode == ws.OpBinary:
			return CloseUnsupported, pings, true
		case !utf8.Valid(payload):
			return ws.StatusInvalidFramePayloadData, pings, true
		}
		var m clientMsg
		if json.Unmarshal(payload, &m) != nil {
			return CloseMalformed, pings, true
		}
		if m.Type == "auth" {
			return codeAnyAuthRefusal, pings, true
		}
	}
}

// allowedClose reports whether code is one the server may close with before an auth:
// docs/protocol.md §5's, or one the tablet sent in a close frame of in (echoed).
func allowedClose(code ws.StatusCode, in []byte) bool {
	switch code {
	case ws.StatusNormalClosure, ws.StatusProtocolError, CloseUnsupported, ws.StatusInvalidFramePayloadData,
		CloseTooBig, CloseBrokerDown, CloseRestarting, CloseMalformed, CloseUnauthorized, CloseRevoked,
		CloseAuthTimeout, CloseTooMany:
		return true
	}
	if !wireCode(code) {
		return false
	}
	// Any place in the stream may start a close frame the session saw (fragments make
	// frame boundaries hard to model here): the code at a masked close header there.
	for i := 0; i+8 <= len(in); i++ {
		if in[i]&0x0f == byte(ws.OpClose) && in[i+1]&0x80 != 0 && in[i+1]&0x7f >= 2 && in[i+1]&0x7f <= 125 {
			var mask [4]byte
			copy(mask[:], in[i+2:i+6])
			c := []byte{in[i+6] ^ mask[0], in[i+7] ^ mask[1]}
			if ws.StatusCode(binary.BigEndian.Uint16(c)) == code {
				return true
			}
		}
	}
	return false
}

// maskedFrame is a frame as a tablet sends it (masked, with a fixed mask so that seeds
// stay the same).
func maskedFrame(op ws.OpCode, fin bool, payload []byte) []byte {
	return ws.MustCompileFrame(ws.MaskFrameWith(ws.NewFrame(op, fin, payload), [4]byte{0x1f, 0x2e, 0x3d, 0x4c}))
}

// fuzzStack is one real instance for the socket targets: an embedded NATS with
// JetStream, pairing and the bridge behind a loopback HTTP server, started once per
// fuzzing process.
type fuzzStack struct {
	wsURL, origin string
	next          atomic.Uint32 // picks each socket's loopback source address
}

func startFuzzStack(tb testing.TB) *fuzzStack {
	tb.Helper()
	b := brokertest.New(tb)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	public := "http://" + srv.Listener.Addr().String()
	auth, err := pairing.New(context.Background(), pairing.Config{PublicURL: public, SigningKeys: []*ecdsa.PrivateKey{key}, Now: b.Now}, b)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(auth.Close)
	br, err := New(context.Background(), Config{PublicURL: public, Now: b.Now}, b, b, auth, auth.Devices())
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	br.Register(mux)
	srv.Config.Handler = mux
	srv.Config.ReadHeaderTimeout = 5 * time.Second
	srv.Start()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = br.Shutdown(ctx)
		srv.Close()
	})
	return &fuzzStack{wsURL: "ws" + public[len("http"):] + "/ws", origin: public}
}

// exchangeWait bounds one socket's exchange; it takes milliseconds.
const exchangeWait = 8 * time.Second

// socketOutcome is what the server did with one socket's input.
type socketOutcome struct {
	refused bool // HTTP 429 before the upgrade
	closed  bool // a close frame came
	code    ws.StatusCode
	pongs   [][]byte
}

// exchange opens a socket (from a loopback address of its own, so that per-address
// limits see a new tablet each time), reads the challenge, sends in, hangs up its
// sending side and reads what the server answers until it hangs up too.
func (st *fuzzStack) exchange(t *testing.T, in []byte) socketOutcome {
	t.Helper()
	n := st.next.Add(1)
	src := &net.TCPAddr{IP: net.IPv4(127, 1+byte(n>>16), byte(n>>8), byte(n))}
	d := ws.Dialer{
		Timeout: exchangeWait,
		Header:  ws.HandshakeHeaderHTTP(http.Header{"Origin": {st.origin}}),
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return (&net.Dialer{LocalAddr: src}).DialContext(ctx, network, addr)
		},
	}
	conn, rd, _, err := d.Dial(context.Background(), st.wsURL)
	var se ws.StatusError
	if errors.As(err, &se) && int(se) == http.StatusTooManyRequests {
		return socketOutcome{refused: true}
	}
	if err != nil {
		t.Fatalf("open the socket: %v", err)
	}
	defer conn.Close()
	if rd == nil {
		rd = bufio.NewReader(conn)
	}
	// A server that never hangs up fails here, within the fuzzing engine's 10 s per input
	// (past which it reports only "hung").
	_ = conn.SetDeadline(time.Now().Add(exchangeWait))
	hdr, payload, err := readServerFrame(rd)
	if err != nil || hdr.OpCode != ws.OpText || !bytes.Contains(payload, []byte(`"challenge"`)) {
		t.Fatalf("first frame %v %q (%v), want the challenge", hdr.OpCode, payload, err)
	}

	writeErr := make(chan error, 1)
	go func() { // the server may stop reading (and hang up) before all of in is sent
		_, err := conn.Write(in)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		writeErr <- err
	}()
	var out socketOutcome
	for {
		hdr, payload, err := readServerFrame(rd)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server neither closed nor hung up within %v of the input %s (pongs %q, closed %v)", exchangeWait, short(in), out.pongs, out.closed)
			}
			break // EOF or a reset: the server hung up
		}
		if out.closed {
			t.Fatalf("a %v frame after the close frame", hdr.OpCode)
		}
		switch hdr.OpCode {
		case ws.OpPong:
			out.pongs = append(out.pongs, payload)
		case ws.OpClose:
			out.closed = true
			if len(payload) < 2 {
				t.Fatalf("a close frame without a code: %x", payload)
			}
			out.code = ws.StatusCode(binary.BigEndian.Uint16(payload))
		default:
			t.Fatalf("the server sent a %v frame %q to a tablet that never authenticated", hdr.OpCode, payload)
		}
	}
	<-writeErr // a write cut short by the hang-up is the server's right
	return out
}

// readServerFrame reads one unmasked server frame, at most 64 KiB.
func readServerFrame(r io.Reader) (ws.Header, []byte, error) {
	hdr, err := ws.ReadHeader(r)
	if err != nil {
		return hdr, nil, err
	}
	if hdr.Masked || hdr.Length > 64<<10 {
		return hdr, nil, fmt.Errorf("server frame masked %v, %d bytes", hdr.Masked, hdr.Length)
	}
	payload := make([]byte, hdr.Length)
	_, err = io.ReadFull(r, payload)
	return hdr, payload, err
}

// short shows at most 64 bytes of b in hex, for failure messages.
func short(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%x", b)
	}
	return fmt.Sprintf("%x… (%d bytes)", b[:64], len(b))
}
