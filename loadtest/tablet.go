package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/kioskfeed/kioskfeed/client"
)

// The load tablet is client's display with its own socket loop: the device key, the
// pairing and token calls, the auth message and its proof are the client's
// (client.Key, client.Device), and so are the reconnect policy and its close-code
// reactions (client.Policy). The socket is a lean frame loop of its own rather than
// client.Conn, which costs each tablet more than the load tool can spend at 10,000 of
// them on the cores the server under test shares (measured at 2,000 tablets: 200–300 B
// more heap per connected tablet, and each event decoded twice, 3.5 µs more worker CPU
// per delivery, 12 % more during a fan-out); the loop also stops reading at once when
// a scenario kills the tablet's Wi-Fi.

const (
	maxServerFrame = 1 << 20
	// codeNoClose is what a tablet records when the connection ended without a close
	// frame (RFC 6455's 1006).
	codeNoClose = 1006
	// userAgent is what the load tablets send, so the server's device list tells them
	// apart.
	userAgent = "kioskfeed-loadtest/1"
)

// tablet is one simulated wall tablet: a paired client.Device, one socket at a time,
// and what it received. Its goroutine (loop) is the only writer of the connection.
type tablet struct {
	dev   *client.Device
	src   net.IP
	cfg   *connectConfig
	since uint64 // newest seq received, for the next catch-up (loop goroutine only)
	epoch string

	deliveries // what it got of each fan-out
	heartbeats // the gaps between its heartbeats, while watched
	seqCheck   // whether each socket's sequence kept the catch-up contract, while checked

	// affected marks the tablets a scenario acts on (they go dead in an outage, leave
	// and come back in a storm); the others are the healthy ones it measures. Set by
	// the worker between commands, read by the worker only.
	affected bool
	cancel   context.CancelFunc // ends this tablet's loop
	done     chan struct{}      // closed when the loop has returned

	// backend is the index in cfg.addrs of the instance it dials (loop goroutine only).
	backend int

	deadMu sync.Mutex
	dead   bool         // Wi-Fi gone: nothing more is read or written, the socket stays open
	conn   net.Conn     // the current socket, for kill
	ends   atomic.Int64 // sockets that ended while the loop ran (drops, closes)
	// endsMark is ends when the heartbeat watch began (worker only).
	endsMark int64

	lastMsg     atomic.Value // type of the last server message, for a report on a tablet that missed events
	lastMsgAt   atomic.Int64 // unix ns
	syncedAt    atomic.Int64 // unix ns of the last "synced"
	welcomes    atomic.Int64
	closes      sync.Map // close code -> *atomic.Int64
	lastErr     atomic.Value
	forgotten   atomic.Bool // closed 4403: the PWA would show the pairing screen
	firstSynced chan struct{}
	firstOnce   sync.Once
	// After a 1012 that ended a welcomed socket (a restart): when the tablet first
	// tried again, and when the attempt that got it welcomed began (unix ns).
	retryAt, backAt atomic.Int64
}

// connectConfig is how a worker's tablets reach the server. The socket's public URL
// (the htu of its proofs) is the device's, client.Device.WSURL.
type connectConfig struct {
	addr   string // the TCP address to dial
	origin string
	ack    bool          // acknowledge events with shown, at most once a second (the newest then)
	gate   chan struct{} // bounds the first connects in flight

	// addrs are a cluster run's instances, the worker's own first; when set they are
	// dialled instead of addr, falling over to the next (clustertablet.go).
	addrs []string
}

// serverMsg holds the fields of every server message the tablet needs.
type serverMsg struct {
	Type       string `json:"type"`
	Nonce      string `json:"nonce"`
	Seq        uint64 `json:"seq"`
	Epoch      string `json:"epoch"`
	HeartbeatS int    `json:"heartbeat_s"`
	Data       struct {
		P int   `json:"p"`
		N int   `json:"n"`
		T int64 `json:"t"`
	} `json:"data"`
}

func (t *tablet) countClose(code int) {
	v, _ := t.closes.LoadOrStore(code, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// loop keeps the tablet connected until ctx ends, reconnecting as the PWA does.
func (t *tablet) loop(ctx context.Context) {
	var policy client.Policy // the protocol's defaults
	first := true
	restarting, retried := false, false // a welcomed socket ended 1012; tried again since
	for ctx.Err() == nil {
		if t.isDead() {
			<-ctx.Done()
			return
		}
		if first {
			select { // the load tool's ramp for the first connects, not the PWA's
			case t.cfg.gate <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		began := time.Now()
		if restarting && !retried {
			retried = true
			t.retryAt.Store(began.UnixNano())
		}
		welcomed, code, err := t.session(ctx, func() {
			if restarting { // synced again: this attempt brought it back
				restarting = false
				t.backAt.Store(began.UnixNano())
			}
			if first {
				first = false
				<-t.cfg.gate
			}
		})
		if first {
			first = false
			<-t.cfg.gate
		}
		if ctx.Err() != nil {
			return
		}
		if code == 1012 && !welcomed.IsZero() {
			restarting, retried = true, false
		}
		t.ends.Add(1)
		t.countClose(code)
		if err != nil {
			t.lastErr.Store(err.Error())
		}
		if code == 4403 {
			t.forgotten.Store(true)
			return
		}
		// What the policy reacts to: the server's close frame, if there was one (a
		// refused upgrade's HTTP status, below 1000, is a failed attempt).
		var end error
		if code >= 1000 && code != codeNoClose {
			end = &client.CloseError{Code: code}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(policy.Next(end, welcomed)):
		}
	}
}

// session is one socket: dial, handshake, catch-up, then live events until it ends.
// synced is called once the catch-up is in. It returns when the tablet was welcomed
// (zero if never) and the close code (1006 without a close frame).
func (t *tablet) session(ctx context.Context, synced func()) (welcomed time.Time, code int, err error) {
	if c := t.dev.Credentials(); c.Token == "" || time.Until(c.Expires) < time.Minute {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := t.dev.Refresh(rctx)
		cancel()
		if err != nil {
			return welcomed, codeNoClose, fmt.Errorf("refresh token: %w", err)
		}
	}
	d := ws.Dialer{
		Timeout: 10 * time.Second,
		Header:  ws.HandshakeHeaderString("Origin: " + t.cfg.origin + "\r\n"),
		NetDial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: t.src}}
			if len(t.cfg.addrs) > 0 {
				return t.dialBackends(ctx, &nd, network)
			}
			return nd.DialContext(ctx, network, t.cfg.addr)
		},
	}
	wsURL := t.dev.WSURL()
	nc, br, _, err := d.Dial(ctx, wsURL)
	if err != nil {
		var se ws.StatusError
		if errors.As(err, &se) {
			return welcomed, int(se), err
		}
		return welcomed, codeNoClose, err
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	defer stop()
	defer nc.Close()
	defer t.setConn(nil)
	c := newFrameConn(nc, br, ws.StateClientSide)

	heartbeat := 20 * time.Second
	authTimeout := 15 * time.Second
	var sentSince uint64
	var lastAck time.Time
	for {
		wait := authTimeout
		if !welcomed.IsZero() {
			wait = 5 * heartbeat / 2 // the PWA's watchdog
		}
		// Under deadMu, so that a kill between this check and the read still stops the
		// read: kill's deadline in the past is never replaced by this one.
		t.deadMu.Lock()
		dead := t.dead
		if !dead {
			t.conn = nc
			_ = nc.SetReadDeadline(time.Now().Add(wait))
		}
		t.deadMu.Unlock()
		if dead {
			<-ctx.Done() // the socket stays open, unread, until the scenario ends
			return welcomed, codeNoClose, ctx.Err()
		}
		raw, err := c.next()
		if err != nil {
			if t.isDead() {
				<-ctx.Done()
				return welcomed, codeNoClose, ctx.Err()
			}
			var ce closeError
			if errors.As(err, &ce) {
				return welcomed, ce.code, nil
			}
			return welcomed, codeNoClose, err
		}
		now := time.Now()
		var m serverMsg
		if err := json.Unmarshal(raw, &m); err != nil {
			return welcomed, codeNoClose, fmt.Errorf("malformed server message: %w", err)
		}
		t.lastMsg.Store(m.Type)
		t.lastMsgAt.Store(now.UnixNano())
		switch m.Type {
		case "challenge", "reauth":
			if m.Type == "reauth" {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := t.dev.Refresh(rctx)
				cancel()
				if err != nil {
					return welcomed, codeNoClose, fmt.Errorf("refresh token: %w", err)
				}
			}
			msg, err := t.dev.AuthMessage(wsURL, m.Nonce, client.Resume{Since: t.since, Epoch: t.epoch})
			if err != nil {
				return welcomed, codeNoClose, err
			}
			if m.Type == "challenge" {
				sentSince = t.since
			}
			if err := c.write(ws.OpText, msg); err != nil {
				return welcomed, codeNoClose, err
			}
		case "welcome":
			if welcomed.IsZero() { // not a re-auth's
				t.checkWelcome(sentSince)
			}
			welcomed = now
			t.welcomes.Add(1)
			if m.Epoch != t.epoch {
				t.epoch, t.since = m.Epoch, 0
			}
			if m.HeartbeatS > 0 {
				heartbeat = time.Duration(m.HeartbeatS) * time.Second
			}
		case "reset":
			t.since = 0
			t.checkReset()
		case "synced":
			t.checkSynced(m.Seq)
			t.syncedAt.Store(now.UnixNano())
			t.firstOnce.Do(func() { close(t.firstSynced) })
			synced()
		case "event":
			t.checkEvent(m.Seq)
			if m.Seq > t.since {
				t.since = m.Seq
			}
			if m.Data.N > 0 {
				t.record(m.Data.P, m.Data.N, m.Data.T, now)
			}
			if t.cfg.ack && m.Seq > 0 && now.Sub(lastAck) >= time.Second { // as the PWA: at most once a second
				lastAck = now
				ack := strconv.AppendUint([]byte(`{"type":"shown","seq":`), m.Seq, 10)
				if err := c.write(ws.OpText, append(ack, '}')); err != nil {
					return welcomed, codeNoClose, err
				}
			}
		case "heartbeat":
			t.beat(now)
		}
	}
}

func (t *tablet) isDead() bool {
	t.deadMu.Lock()
	defer t.deadMu.Unlock()
	return t.dead
}

func (t *tablet) setConn(c net.Conn) {
	t.deadMu.Lock()
	t.conn = c
	t.deadMu.Unlock()
}

// kill is the tablet's Wi-Fi going away: from now on it reads nothing (so it answers
// no ping and takes no frame) and writes nothing, and its socket stays open, as a
// socket does whose peer vanished. Its receive buffer is shrunk to the kernel's
// minimum so that what the server sends backs up into the server's own buffers and
// queue soon, as it would with nothing acknowledged.
func (t *tablet) kill() {
	t.deadMu.Lock()
	defer t.deadMu.Unlock()
	t.dead = true
	if t.conn == nil {
		return
	}
	if tc, ok := t.conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(1) // the kernel rounds it up to its minimum
	}
	_ = t.conn.SetReadDeadline(time.Unix(1, 0)) // stops a read in progress
}

// describe says what the tablet last heard and how its sockets ended: what a report on
// a tablet that missed events needs.
func (t *tablet) describe() string {
	last, _ := t.lastMsg.Load().(string)
	ago := time.Since(time.Unix(0, t.lastMsgAt.Load())).Round(time.Millisecond)
	closes := map[int]int64{}
	t.closes.Range(func(k, v any) bool {
		closes[k.(int)] = v.(*atomic.Int64).Load()
		return true
	})
	err, _ := t.lastErr.Load().(string)
	return fmt.Sprintf("device %s from %s: last message %q %s ago, %d welcomes, closes %v, last error %q", t.dev.Credentials().DeviceID, t.src, last, ago, t.welcomes.Load(), closes, err)
}

// closeError is the server's close frame.
type closeError struct{ code int }

func (e closeError) Error() string { return fmt.Sprintf("closed with %d", e.code) }

// frameConn reads and writes one WebSocket's frames from one goroutine: control frames
// are answered on the way (pong for ping, the close echoed), text and binary messages
// are returned whole.
type frameConn struct {
	nc    net.Conn
	state ws.State
	rd    wsutil.Reader
}

// frameBuffer is a connection's read buffer: a frame's header and a small message then
// come in one read system call instead of one read for the header's first two bytes,
// one for the rest of it and one for the payload. Every peer's subscribers read through
// it, so the load generator's cost per delivery stays the same for all three.
const frameBuffer = 2 << 10

func newFrameConn(nc net.Conn, br *bufio.Reader, state ws.State) *frameConn {
	var src io.Reader = nc
	if br != nil && br.Buffered() > 0 {
		early, _ := br.Peek(br.Buffered())
		src = io.MultiReader(strings.NewReader(string(early)), nc)
	}
	if br != nil {
		ws.PutReader(br)
	}
	c := &frameConn{nc: nc, state: state}
	c.rd = wsutil.Reader{Source: bufio.NewReaderSize(src, frameBuffer), State: state, MaxFrameSize: maxServerFrame, MaxMessageSize: maxServerFrame}
	return c
}

// next returns the next data message's payload.
func (c *frameConn) next() ([]byte, error) {
	for {
		hdr, err := c.rd.NextFrame()
		if err != nil {
			return nil, err
		}
		if hdr.OpCode.IsControl() {
			payload := make([]byte, hdr.Length)
			if _, err := io.ReadFull(&c.rd, payload); err != nil {
				return nil, err
			}
			switch hdr.OpCode {
			case ws.OpPing:
				if err := c.write(ws.OpPong, payload); err != nil {
					return nil, err
				}
			case ws.OpClose:
				code, _ := ws.ParseCloseFrameData(payload)
				_ = c.write(ws.OpClose, payload)
				if len(payload) < 2 {
					code = 1005
				}
				return nil, closeError{int(code)}
			}
			continue
		}
		return io.ReadAll(&c.rd)
	}
}

func (c *frameConn) write(op ws.OpCode, payload []byte) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if c.state.ClientSide() {
		return wsutil.WriteClientMessage(c.nc, op, payload)
	}
	return wsutil.WriteServerMessage(c.nc, op, payload)
}
