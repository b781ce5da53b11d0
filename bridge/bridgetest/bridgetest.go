package bridgetest

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
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/kioskfeed/kioskfeed/client"
	"github.com/kioskfeed/kioskfeed/internal/schematest"
)

const (
	// dialTimeout bounds a Dial whose context has no deadline.
	dialTimeout = 10 * time.Second
	// writeTimeout bounds every frame written.
	writeTimeout = 5 * time.Second
	// closeWait is how long Close waits for the server's answer to its close frame.
	closeWait = 5 * time.Second
	// maxMessage bounds one server message. Events carry at most 64 KiB of data
	// (docs/protocol.md §8); anything near this limit is a server bug, not a big event.
	maxMessage = 1 << 20
	// noStatus is the close code RFC 6455 §7.1.5 assigns to a close frame without one.
	noStatus = 1005
)

// ErrNoCloseFrame means the server ended the TCP connection without a close frame: the
// client's client.ErrNoCloseFrame. The protocol has a close code for every way the
// server ends a socket, so this is what a crashed instance or a bridge bug looks like;
// tests tell it apart from a *CloseError with errors.Is. The underlying read error
// (io.EOF, ECONNRESET) is wrapped as well.
var ErrNoCloseFrame = client.ErrNoCloseFrame

// errCloseSent refuses a write after the close frame went out.
var errCloseSent = errors.New("bridgetest: write after a close frame")

// UpgradeError is an HTTP refusal of the WebSocket upgrade, e.g. 403 for a missing or
// foreign Origin: tests assert the status, which the protocol fixes, not an error string.
type UpgradeError struct {
	Status int
}

// Error says which status refused the upgrade.
func (e *UpgradeError) Error() string {
	return "bridgetest: upgrade refused with HTTP " + strconv.Itoa(e.Status)
}

// CloseError is the server's close frame, as the client reports it: the code is the
// protocol's verdict (4409 duplicate, 4401 bad credentials, 1012 draining, ...) that
// tests assert on.
type CloseError = client.CloseError

// Conn is one tablet's WebSocket to /ws, as seen from the tablet.
type Conn struct {
	nc  net.Conn
	src source
	rd  wsutil.Reader

	closeErr *CloseError // the server's close frame, once read (and answered)
	broken   error       // set when the byte stream can no longer be parsed as frames

	wmu       sync.Mutex // serializes writes: Send, SendFrame, pongs, close frames
	closeSent bool       // guarded by wmu; no frame may follow a close frame

	done atomic.Bool // the TCP connection is closed
}

// source reads the bytes the dialer buffered with the handshake response before the
// connection itself, then returns that buffer to gobwas' pool, so a Conn keeps no
// buffer of its own. It counts bytes so that a timeout in the middle of a frame is told
// apart from a timeout between frames.
type source struct {
	br *bufio.Reader
	nc net.Conn
	n  uint64
}

func (s *source) Read(p []byte) (int, error) {
	if s.br != nil {
		if b := s.br.Buffered(); b > 0 {
			if len(p) > b {
				p = p[:b]
			}
			n, err := s.br.Read(p) // served from the buffer only: len(p) <= Buffered()
			s.n += uint64(n)
			return n, err
		}
		ws.PutReader(s.br)
		s.br = nil
	}
	n, err := s.nc.Read(p)
	s.n += uint64(n)
	return n, err
}

// Dial opens a tablet's WebSocket to wsURL (ws://host/ws or wss://), sending Origin
// unless origin is "" (the bridge refuses that, and tests check it does). When addr is
// not "", it is the TCP address dialled instead of wsURL's host: tests sign proofs and
// send Host for a public URL that is not the listener's address. A refusal of the
// upgrade is an *UpgradeError. The dial and handshake take at most 10 s, or less if
// ctx says so.
func Dial(ctx context.Context, wsURL, origin, addr string) (*Conn, error) {
	d := ws.Dialer{Timeout: dialTimeout}
	if origin != "" {
		d.Header = ws.HandshakeHeaderString("Origin: " + origin + "\r\n")
	}
	if addr != "" {
		d.NetDial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, network, addr)
		}
	}
	nc, br, _, err := d.Dial(ctx, wsURL)
	if err != nil {
		var se ws.StatusError
		if errors.As(err, &se) {
			return nil, &UpgradeError{Status: int(se)}
		}
		return nil, fmt.Errorf("bridgetest: dial %s: %w", wsURL, err)
	}
	return newConn(nc, br), nil
}

func newConn(nc net.Conn, br *bufio.Reader) *Conn {
	c := &Conn{nc: nc}
	c.src = source{br: br, nc: nc}
	c.rd = wsutil.Reader{
		Source:         &c.src,
		State:          ws.StateClientSide,
		CheckUTF8:      true,
		MaxFrameSize:   maxMessage,
		MaxMessageSize: maxMessage,
		OnIntermediate: c.control,
	}
	return c
}

// Msg is one server message. Fields keeps the whole object, so tests can check fields
// this package does not know about; numbers in it are json.Number, so seqs stay exact.
// Raw is the text as received, for failure messages.
type Msg struct {
	Type   string
	Fields map[string]any
	Raw    []byte
}

// Seq is the "seq" of an "event" or "synced" message, 0 when absent or not a
// non-negative integer (the protocol's seqs are positive).
func (m Msg) Seq() uint64 {
	n, ok := m.Fields["seq"].(json.Number)
	if !ok {
		return 0
	}
	u, err := strconv.ParseUint(string(n), 10, 64)
	if err != nil {
		return 0
	}
	return u
}

// Str is a string field ("nonce", "device_id", "epoch", "kind", ...), "" when absent or
// not a string.
func (m Msg) Str(key string) string {
	s, _ := m.Fields[key].(string)
	return s
}

// Int is an integer field ("heartbeat_s", "token_exp"), 0 when absent or not an integer.
func (m Msg) Int(key string) int64 {
	n, ok := m.Fields[key].(json.Number)
	if !ok {
		return 0
	}
	i, err := n.Int64()
	if err != nil {
		return 0
	}
	return i
}

// Next reads the next server text message within d. Pings met on the way are answered
// with pongs, as a browser does (the server drops a tablet that does not answer). A close
// frame is answered and returned as *CloseError, and again on every later call.
//
// A timeout wraps os.ErrDeadlineExceeded; if it struck between messages the Conn stays
// usable, if it struck inside a frame every later read fails. An end of the TCP
// connection without a close frame wraps ErrNoCloseFrame. A binary message or malformed
// JSON (the protocol has neither) is an error too; the stream stays usable after those.
func (c *Conn) Next(d time.Duration) (Msg, error) {
	if c.closeErr != nil {
		return Msg{}, c.closeErr
	}
	if c.broken != nil {
		return Msg{}, c.broken
	}
	if err := c.nc.SetReadDeadline(time.Now().Add(d)); err != nil {
		return Msg{}, c.readErr(err, false, d)
	}
	for {
		start := c.src.n
		hdr, err := c.rd.NextFrame()
		if err != nil {
			return Msg{}, c.readErr(err, c.src.n != start, d)
		}
		if hdr.OpCode.IsControl() {
			err := c.control(hdr, &c.rd)
			if err == nil {
				err = c.rd.Discard() // resets the reader's frame state for the next frame
			}
			if err != nil {
				return Msg{}, c.readErr(err, true, d)
			}
			continue
		}
		if hdr.OpCode == ws.OpBinary {
			if err := c.rd.Discard(); err != nil {
				return Msg{}, c.readErr(err, true, d)
			}
			return Msg{}, errors.New("bridgetest: server sent a binary message (docs/protocol.md §5 has only text)")
		}
		raw, err := c.readPayload(hdr)
		if err != nil {
			return Msg{}, c.readErr(err, true, d)
		}
		return parseMsg(raw)
	}
}

// readPayload reads the rest of the message whose first frame is hdr. A final frame's
// length is known (and bounded by MaxFrameSize), so it is read into an exact buffer.
func (c *Conn) readPayload(hdr ws.Header) ([]byte, error) {
	size := int64(512)
	if hdr.Fin {
		size = hdr.Length
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func parseMsg(raw []byte) (Msg, error) {
	m := Msg{Raw: raw}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m.Fields); err != nil {
		return m, fmt.Errorf("bridgetest: server sent malformed JSON %q: %w", raw, err)
	}
	m.Type = m.Str("type")
	if m.Type == "" {
		return m, fmt.Errorf("bridgetest: server message without a type: %s", raw)
	}
	// Every server message must be valid against its JSON Schema (docs/schemas/): a
	// new member, a member of another type or a type the contract lacks fails here,
	// and is recorded for TestMain in case the caller tolerates the error.
	if err := schematest.Frame(schematest.FromServer, raw); err != nil {
		schematest.Record(err)
		return m, fmt.Errorf("bridgetest: %w", err)
	}
	return m, nil
}

// control handles a control frame whose payload (at most 125 bytes: the reader checked
// the header) is r. It is also the reader's OnIntermediate hook, for control frames
// between the fragments of a message.
func (c *Conn) control(hdr ws.Header, r io.Reader) error {
	var buf [ws.MaxControlFramePayloadSize]byte
	p := buf[:hdr.Length]
	if _, err := io.ReadFull(r, p); err != nil {
		return err
	}
	switch hdr.OpCode {
	case ws.OpPing:
		err := c.write(ws.Header{Fin: true, OpCode: ws.OpPong}, p)
		if errors.Is(err, errCloseSent) {
			return nil // RFC 6455 §5.5.1: nothing follows our close frame, not even a pong
		}
		return err
	case ws.OpClose:
		// Parsed by hand: wsutil's close handler rejects 1012 and 1013, which the
		// protocol uses, as "not defined in spec".
		ce := &CloseError{Code: noStatus}
		var echo []byte
		switch {
		case len(p) >= 2:
			code, reason := ws.ParseCloseFrameData(p)
			ce.Code, ce.Reason = int(code), reason
			echo = p[:2] // RFC 6455 §5.5.1: the answer typically echoes the code
		case len(p) == 1:
			return errors.New("bridgetest: server sent a close frame with a 1-byte payload")
		}
		c.closeErr = ce
		// The answer may fail if the server already dropped the connection; the close
		// frame is what the caller wants either way.
		_ = c.write(ws.Header{Fin: true, OpCode: ws.OpClose}, echo)
		return ce
	}
	return nil // pong: nothing to do
}

// readErr classifies a read error. partial says bytes of an unfinished frame were
// consumed, after which the stream can not be parsed any more.
func (c *Conn) readErr(err error, partial bool, d time.Duration) error {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		if !partial {
			return fmt.Errorf("bridgetest: no message within %v: %w", d, err)
		}
		err = fmt.Errorf("bridgetest: deadline (%v) struck inside a frame, connection unusable: %w", d, err)
	case isDrop(err):
		err = fmt.Errorf("%w: %w", ErrNoCloseFrame, err)
	default:
		err = fmt.Errorf("bridgetest: read: %w", err)
	}
	c.broken = err
	return err
}

func isDrop(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// write sends one masked frame (clients must mask) in a single write, so the server
// never sees a header without its payload because of this client.
func (c *Conn) write(h ws.Header, payload []byte) error {
	if !h.Masked {
		h.Masked, h.Mask = true, ws.NewMask()
		payload = bytes.Clone(payload)
		ws.Cipher(payload, h.Mask, 0)
	}
	h.Length = int64(len(payload))
	var b bytes.Buffer
	b.Grow(ws.HeaderSize(h) + len(payload))
	if err := ws.WriteHeader(&b, h); err != nil {
		return err
	}
	b.Write(payload)

	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return errCloseSent
	}
	if h.OpCode == ws.OpClose {
		c.closeSent = true
	}
	if err := c.nc.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return fmt.Errorf("bridgetest: %w", err)
	}
	if _, err := c.nc.Write(b.Bytes()); err != nil {
		return fmt.Errorf("bridgetest: write: %w", err)
	}
	return nil
}

// Send writes one client text message, JSON-encoding v, masked as clients must. The
// message must be valid against its JSON Schema (docs/schemas/: a type a tablet sends,
// its members as documented); one that is not is refused with the reason and not sent.
// A test that means to send a malformed or unknown message uses SendUnchecked, or
// SendFrame for anything that is not a JSON text message at all.
func (c *Conn) Send(v any) error {
	p, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("bridgetest: encode: %w", err)
	}
	return c.sendChecked(p)
}

// sendChecked writes a client text message once it passed its schema.
func (c *Conn) sendChecked(p []byte) error {
	if err := schematest.Frame(schematest.FromClient, p); err != nil {
		schematest.Record(err)
		return fmt.Errorf("bridgetest: %w", err)
	}
	return c.write(ws.Header{Fin: true, OpCode: ws.OpText}, p)
}

// SendUnchecked writes one client text message, JSON-encoding v, without checking it
// against the schemas: for a test that sends a malformed message, or one of a type the
// protocol lacks, on purpose.
func (c *Conn) SendUnchecked(v any) error {
	p, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("bridgetest: encode: %w", err)
	}
	return c.write(ws.Header{Fin: true, OpCode: ws.OpText}, p)
}

// SendFrame writes one frame as given (opcode, fin, rsv, payload) for attack tests:
// binary or oversized frames, fragments, bad control frames. It is masked with a fresh
// key unless f.Header.Masked is already set, in which case header and payload go out as
// they are. The header's Length is always len(f.Payload); to lie about the length, write
// raw bytes to NetConn.
func (c *Conn) SendFrame(f ws.Frame) error {
	return c.write(f.Header, f.Payload)
}

// Close ends the socket the way a tablet navigating away does: a close frame with 1000
// (unless a close frame was already sent), a wait of at most 5 s for the server's
// answer, then the TCP close. After the server's own close, or once the connection is
// unusable, it only closes the TCP connection. Close reads, so it belongs to the
// goroutine that reads; only the first Close or Abort acts.
func (c *Conn) Close() error {
	if c.done.Load() {
		return nil
	}
	var werr error
	if c.closeErr == nil && c.broken == nil {
		c.wmu.Lock()
		sent := c.closeSent
		c.wmu.Unlock()
		if !sent {
			werr = c.write(ws.Header{Fin: true, OpCode: ws.OpClose}, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
		}
		deadline := time.Now().Add(closeWait)
		for werr == nil && c.closeErr == nil && c.broken == nil && time.Now().Before(deadline) {
			_, _ = c.Next(time.Until(deadline))
		}
	}
	if c.done.Swap(true) {
		return werr
	}
	if err := c.nc.Close(); err != nil && werr == nil {
		werr = err
	}
	return werr
}

// Abort closes the TCP connection without a close frame, as a tablet that loses power or
// network does: the server must notice by itself and free the device's lease.
func (c *Conn) Abort() error {
	if c.done.Swap(true) {
		return nil
	}
	return c.nc.Close()
}

// NetConn is the underlying connection, for raw writes in attack tests (lying frame
// lengths, half frames, slow writes). Reading from it bypasses Next's framing.
func (c *Conn) NetConn() net.Conn { return c.nc }
