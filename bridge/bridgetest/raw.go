package bridgetest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"weak"

	"github.com/gobwas/ws"

	"github.com/kioskfeed/kioskfeed/internal/schematest"
)

// rawReaders maps the *bufio.Reader RawUpgrade returns to its connection, so that
// ReadClose can put a deadline on reads through it. Entries hold the reader weakly and
// go when it is collected.
var rawReaders sync.Map // weak.Pointer[bufio.Reader] → net.Conn

// RawUpgrade writes the upgrade request for path by hand, for tests of the upgrade
// itself that Dial is too well-behaved for: it sends Host (addr), Upgrade, Connection,
// Sec-WebSocket-Version 13, a fresh Sec-WebSocket-Key, Origin unless origin is "", then
// extraHeaders, where a header of the same name replaces the default one and an empty
// value removes it. It returns the HTTP status, so a test asserts 403 or 101 directly,
// and the connection with a reader positioned after the response headers: the response
// body of a refusal, or the server's first frames after a 101, which may already be
// buffered in the reader, so read through it (ReadClose accepts it). A 101 whose
// Sec-WebSocket-Accept does not match the key sent is an error. The handshake is
// bounded by ctx's deadline, or 10 s; afterwards the connection has no deadline. The
// caller closes the connection.
func RawUpgrade(ctx context.Context, addr, path, origin string, extraHeaders map[string]string) (net.Conn, *bufio.Reader, int, error) {
	var nd net.Dialer
	nc, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("bridgetest: dial %s: %w", addr, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(dialTimeout)
	}
	_ = nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	br, status, err := rawHandshake(nc, addr, path, origin, extraHeaders)
	if !stop() || err != nil {
		nc.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, nil, status, err
	}
	_ = nc.SetDeadline(time.Time{})
	wp := weak.Make(br)
	rawReaders.Store(wp, nc)
	runtime.AddCleanup(br, func(wp weak.Pointer[bufio.Reader]) { rawReaders.Delete(wp) }, wp)
	return nc, br, status, nil
}

func rawHandshake(nc net.Conn, addr, path, origin string, extra map[string]string) (*bufio.Reader, int, error) {
	var k [16]byte
	_, _ = rand.Read(k[:])
	type header struct{ name, value string }
	hs := []header{
		{"Host", addr},
		{"Upgrade", "websocket"},
		{"Connection", "Upgrade"},
		{"Sec-Websocket-Version", "13"},
		{"Sec-Websocket-Key", base64.StdEncoding.EncodeToString(k[:])},
	}
	if origin != "" {
		hs = append(hs, header{"Origin", origin})
	}
	for _, name := range slices.Sorted(maps.Keys(extra)) {
		name, value := textproto.CanonicalMIMEHeaderKey(name), extra[name]
		i := slices.IndexFunc(hs, func(h header) bool { return h.name == name })
		switch {
		case i >= 0 && value == "":
			hs = slices.Delete(hs, i, i+1)
		case i >= 0:
			hs[i].value = value
		case value != "":
			hs = append(hs, header{name, value})
		}
	}
	var req strings.Builder
	req.WriteString("GET " + path + " HTTP/1.1\r\n")
	key := ""
	for _, h := range hs {
		req.WriteString(h.name + ": " + h.value + "\r\n")
		if h.name == "Sec-Websocket-Key" {
			key = h.value
		}
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(nc, req.String()); err != nil {
		return nil, 0, fmt.Errorf("bridgetest: write upgrade request: %w", err)
	}

	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("bridgetest: read upgrade response: %w", err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) // RFC 6455 §4.2.2
		if want, got := base64.StdEncoding.EncodeToString(sum[:]), resp.Header.Get("Sec-WebSocket-Accept"); got != want {
			return nil, resp.StatusCode, fmt.Errorf("bridgetest: 101 with Sec-WebSocket-Accept %q, want %q", got, want)
		}
	}
	return br, resp.StatusCode, nil
}

// WriteFrameHeader writes a frame header as given, for attack tests that declare one
// length and send another, or send a header and then stall.
func WriteFrameHeader(w io.Writer, h ws.Header) error {
	return ws.WriteHeader(w, h)
}

// ReadClose reads server frames from r until a close frame and returns its code (1005
// when it has none): the verdict a raw attack test asserts. Other frames are skipped
// unread (a whole text message is checked against its JSON Schema, and one that fails
// is an error), pings unanswered and nothing is written, so the test sees the server exactly
// as its raw writes left it. r must be a net.Conn (or have SetReadDeadline) or the
// reader RawUpgrade returned: the wait is bounded by d through the connection's read
// deadline, which stays set. A timeout wraps os.ErrDeadlineExceeded; an end of the
// connection without a close frame wraps ErrNoCloseFrame.
func ReadClose(r io.Reader, d time.Duration) (code int, err error) {
	type deadliner interface{ SetReadDeadline(time.Time) error }
	dl, ok := r.(deadliner)
	if br, isBuf := r.(*bufio.Reader); !ok && isBuf {
		var v any
		v, ok = rawReaders.Load(weak.Make(br))
		if ok {
			dl = v.(net.Conn)
		}
	}
	if !ok {
		return 0, errors.New("bridgetest: ReadClose needs a net.Conn or RawUpgrade's reader, to bound the wait")
	}
	if err := dl.SetReadDeadline(time.Now().Add(d)); err != nil {
		return 0, fmt.Errorf("bridgetest: %w", err)
	}
	for {
		h, err := ws.ReadHeader(r)
		if err != nil {
			return 0, rawErr(err, d)
		}
		if h.OpCode == ws.OpText && h.Fin && h.Length <= maxMessage {
			// A whole server message: checked against its JSON Schema, as Next does.
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(r, p); err != nil {
				return 0, rawErr(err, d)
			}
			if h.Masked {
				ws.Cipher(p, h.Mask, 0)
			}
			if err := schematest.Frame(schematest.FromServer, p); err != nil {
				schematest.Record(err)
				return 0, fmt.Errorf("bridgetest: %w", err)
			}
			continue
		}
		if h.OpCode != ws.OpClose {
			if _, err := io.CopyN(io.Discard, r, h.Length); err != nil {
				return 0, rawErr(err, d)
			}
			continue
		}
		if h.Length > ws.MaxControlFramePayloadSize {
			return 0, fmt.Errorf("bridgetest: close frame with a %d-byte payload", h.Length)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(r, p); err != nil {
			return 0, rawErr(err, d)
		}
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		if len(p) < 2 {
			return noStatus, nil
		}
		c, _ := ws.ParseCloseFrameData(p)
		return int(c), nil
	}
}

func rawErr(err error, d time.Duration) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("bridgetest: no close frame within %v: %w", d, err)
	case isDrop(err):
		return fmt.Errorf("%w: %w", ErrNoCloseFrame, err)
	}
	return fmt.Errorf("bridgetest: read: %w", err)
}
