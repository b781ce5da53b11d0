package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// The server messages a Conn yields (docs/protocol.md §5). challenge, welcome and
// reauth are handled inside the Conn.
const (
	TypeEvent     = "event"
	TypeReset     = "reset"
	TypeSynced    = "synced"
	TypeHeartbeat = "heartbeat"
	// TypeOverride is an emergency override in force for the feed (Message.Override):
	// show it above everything until its TypeOverrideClear or its ExpiresAt
	// (docs/protocol.md §5, "Emergency overrides"). The same one may come twice.
	TypeOverride = "override"
	// TypeOverrideClear says the override Message.ID names has ended.
	TypeOverrideClear = "override_clear"
	// TypeReload asks the display to reload its app (an administrator's bulk action,
	// docs/protocol.md #ws-reload); a Go display may ignore it.
	TypeReload = "reload"
	// TypeSchedule is the feed's screen schedule, changed (Message.Schedule) or deleted
	// (Message.Schedule nil); the welcome's is Welcome.Schedule (docs/protocol.md
	// #ws-schedule). Outside its awake hours a display sleeps.
	TypeSchedule = "schedule"
)

const (
	defaultHandshakeTimeout = 15 * time.Second
	defaultWriteTimeout     = 5 * time.Second
	// defaultMaxFrame bounds one server message: an event's data is at most 64 KiB
	// (docs/protocol.md §8), so a message near this size is a broken or hostile server.
	defaultMaxFrame = 1 << 20
	// closeWriteTimeout bounds the write of our close frame.
	closeWriteTimeout = time.Second
	// noStatus is RFC 6455's code for a close frame without one.
	noStatus = 1005
)

var (
	// ErrNoCloseFrame means the connection ended without a close frame: a dead network
	// or a crashed server. The read error is wrapped too.
	ErrNoCloseFrame = errors.New("client: connection ended without a close frame")
	// ErrSilent means the server sent nothing for 2.5 heartbeats (docs/protocol.md §5
	// step 6): the link is presumed dead, as a Wi-Fi that vanished never says so.
	ErrSilent = errors.New("client: server silent for 2.5 heartbeats")
)

// CloseError is the server's close frame. Code is the protocol's verdict
// (docs/protocol.md §5): 4401 bad token, 4403 revoked (errors.Is ErrRevoked), 1012
// restarting, 4429 too many, ...
type CloseError struct {
	Code   int
	Reason string
}

// Error gives the code and reason.
func (e *CloseError) Error() string {
	return fmt.Sprintf("client: server closed the socket with %d %q", e.Code, e.Reason)
}

// Is makes a 4403 close ErrRevoked.
func (e *CloseError) Is(target error) bool { return target == ErrRevoked && e.Code == 4403 }

// Message is one server message given to the caller: an event (Seq, ID, Kind, Time,
// Data), a reset (clear what is shown: the feed's state follows), synced (Seq: the
// catch-up is in, live events follow) or a heartbeat (Time).
type Message struct {
	Type string
	Seq  uint64
	ID   string
	Kind string // state, item or clear
	Time time.Time
	Data json.RawMessage
	// Override is the override of a TypeOverride message, nil on every other.
	Override *Override
	// Schedule is the schedule JSON of a TypeSchedule message (docs/protocol.md
	// #schedule-format); nil when the feed's schedule was deleted, and on other types.
	Schedule json.RawMessage
}

// Override is an emergency override (docs/protocol.md §5 "Emergency overrides"): a
// message every screen of its feeds shows full screen, unmistakably, until it is
// cleared or ExpiresAt passes.
type Override struct {
	ID, Title, Body string
	Level           string // info, warning or danger
	Feeds           []string
	CreatedAt       time.Time
	ExpiresAt       time.Time
}

// Welcome is the server's welcome (docs/protocol.md §5 step 3).
type Welcome struct {
	DeviceID  string
	Feed      string
	Heartbeat time.Duration
	TokenExp  time.Time
	// Epoch names the event log the seqs come from; send it back with Resume.
	Epoch string
	// Schedule is the feed's screen schedule JSON (docs/protocol.md #schedule-format),
	// nil when it has none.
	Schedule json.RawMessage
}

// Resume is where a socket's catch-up starts: the newest seq shown and the epoch it
// belongs to (both zero for a first connection, which gets a reset and the state).
type Resume struct {
	Since uint64
	Epoch string
	// Feed is the feed Since and Epoch came from (the welcome's), if known: a device
	// moved to another feed since gets a reset instead of a catch-up.
	Feed string
}

// SocketOptions tune a socket; the zero value is what a display wants.
type SocketOptions struct {
	// Origin is sent as the Origin header; default the BaseURL's origin, which the
	// server allows unless configured otherwise.
	Origin string
	// NetDial dials the TCP connection instead of net.Dialer (a load generator binds
	// source addresses; a test reaches a server whose public URL is elsewhere).
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// HandshakeTimeout bounds the dial, the upgrade, and challenge to welcome; default 15 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds each frame written; default 5 s.
	WriteTimeout time.Duration
	// MaxMessage bounds one server message; default 1 MiB.
	MaxMessage int64
}

// Conn is one socket to /ws, authenticated: it answers pings and reauth requests by
// itself and yields the other messages through Next. It keeps no goroutine and no
// buffer of its own between messages, so a process can hold many thousands. Next is
// called by one goroutine; Close may be called from any.
type Conn struct {
	dev     *Device
	ctx     context.Context // the socket's life; a reauth's token refresh uses it
	stop    func() bool     // undoes the AfterFunc that closes nc when ctx ends
	nc      net.Conn
	src     source
	rd      wsutil.Reader
	welcome Welcome
	silence time.Duration // the watchdog: a read deadline of 2.5 heartbeats
	wtime   time.Duration
	err     error // sticky: once the stream failed, every Next returns it

	wmu       sync.Mutex // serializes writes: auth answers, pongs, close frames
	closeSent bool
}

// Connect opens a socket and authenticates it (docs/protocol.md §5 steps 1–3): it
// fetches a token first if the device's has less than a minute left, reads the
// challenge, sends auth with a proof over it and resume, and returns once welcomed. The
// catch-up (a reset or events, then synced) follows through Next. The socket lives
// until ctx ends or Close. A refusal of the upgrade is an *APIError; a close before
// the welcome is a *CloseError.
func Connect(ctx context.Context, dev *Device, resume Resume, opts SocketOptions) (*Conn, error) {
	hsTimeout := opts.HandshakeTimeout
	if hsTimeout <= 0 {
		hsTimeout = defaultHandshakeTimeout
	}
	if err := dev.ensureToken(ctx); err != nil {
		return nil, fmt.Errorf("client: token for the socket: %w", err)
	}
	nc, br, err := dial(ctx, dev, opts, hsTimeout)
	if err != nil {
		return nil, err
	}
	c := newConn(ctx, dev, nc, br, opts)
	if err := c.handshake(resume, time.Now().Add(hsTimeout)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// newConn wraps an upgraded connection; br holds what the dialer read past the
// handshake, if anything.
func newConn(ctx context.Context, dev *Device, nc net.Conn, br *bufio.Reader, opts SocketOptions) *Conn {
	c := &Conn{dev: dev, ctx: ctx, nc: nc, wtime: opts.WriteTimeout}
	if c.wtime <= 0 {
		c.wtime = defaultWriteTimeout
	}
	maxMsg := opts.MaxMessage
	if maxMsg <= 0 {
		maxMsg = defaultMaxFrame
	}
	c.src = source{br: br, nc: nc}
	c.rd = wsutil.Reader{Source: &c.src, State: ws.StateClientSide, CheckUTF8: true,
		MaxFrameSize: maxMsg, MaxMessageSize: maxMsg, OnIntermediate: c.control}
	c.stop = context.AfterFunc(ctx, func() { _ = nc.Close() })
	return c
}

// dial opens the TCP connection and upgrades it, turning an HTTP refusal into the
// *APIError its JSON body describes.
func dial(ctx context.Context, dev *Device, opts SocketOptions, timeout time.Duration) (net.Conn, *bufio.Reader, error) {
	origin := opts.Origin
	if origin == "" {
		origin = originOf(dev.BaseURL)
	}
	ua := dev.UserAgent
	if ua == "" {
		ua = userAgent
	}
	var refusal *APIError
	d := ws.Dialer{
		Timeout: timeout,
		Header:  ws.HandshakeHeaderString("Origin: " + oneLine(origin) + "\r\nUser-Agent: " + oneLine(ua) + "\r\n"),
		NetDial: opts.NetDial,
		OnStatusError: func(status int, _ []byte, resp io.Reader) {
			refusal = upgradeRefusal(status, resp)
		},
	}
	nc, br, _, err := d.Dial(ctx, dev.WSURL())
	if err != nil {
		if refusal != nil {
			return nil, nil, refusal
		}
		return nil, nil, fmt.Errorf("client: dial %s: %w", dev.WSURL(), err)
	}
	return nc, br, nil
}

// upgradeRefusal reads the refused upgrade's response (bounded) for its error code and
// Retry-After.
func upgradeRefusal(status int, resp io.Reader) *APIError {
	e := &APIError{Status: status, Message: http.StatusText(status)}
	r, err := http.ReadResponse(bufio.NewReader(io.LimitReader(resp, 64<<10)), nil)
	if err != nil {
		return e
	}
	defer r.Body.Close()
	e.RetryAfter = retryAfter(r.Header.Get("Retry-After"))
	if r.ContentLength > 0 && r.ContentLength <= 16<<10 {
		data, _ := io.ReadAll(io.LimitReader(r.Body, r.ContentLength))
		_ = json.Unmarshal(data, e)
	}
	return e
}

// oneLine keeps a header value on its line, whatever the caller configured.
func oneLine(v string) string { return strings.NewReplacer("\r", "", "\n", "").Replace(v) }

func originOf(baseURL string) string {
	rest, ok := strings.CutPrefix(baseURL, "https://")
	scheme := "https://"
	if !ok {
		rest, _ = strings.CutPrefix(baseURL, "http://")
		scheme = "http://"
	}
	host, _, _ := strings.Cut(rest, "/")
	return scheme + host
}

// wireMsg holds the members of every server message.
type wireMsg struct {
	Type       string          `json:"type"`
	Nonce      string          `json:"nonce"`
	Seq        uint64          `json:"seq"`
	ID         string          `json:"id"`
	Kind       string          `json:"kind"`
	Time       string          `json:"time"`
	Data       json.RawMessage `json:"data"`
	DeviceID   string          `json:"device_id"`
	Feed       string          `json:"feed"`
	HeartbeatS int             `json:"heartbeat_s"`
	TokenExp   string          `json:"token_exp"`
	Epoch      string          `json:"epoch"`
	Title      string          `json:"title"`
	Body       string          `json:"body"`
	Level      string          `json:"level"`
	Feeds      []string        `json:"feeds"`
	CreatedAt  string          `json:"created_at"`
	ExpiresAt  string          `json:"expires_at"`
	Schedule   json.RawMessage `json:"schedule"`
}

// authMsg is the client's auth message (docs/protocol.md §5 step 2).
type authMsg struct {
	Type  string `json:"type"`
	Token string `json:"token"`
	Proof string `json:"proof"`
	Since uint64 `json:"since"`
	Epoch string `json:"epoch,omitempty"`
	Feed  string `json:"feed,omitempty"`
}

// handshake is challenge → auth → welcome, strictly in that order, by deadline.
func (c *Conn) handshake(resume Resume, deadline time.Time) error {
	m, err := c.read(deadline)
	if err != nil {
		return err
	}
	if m.Type != "challenge" || m.Nonce == "" {
		return fmt.Errorf("client: the server's first message is %q, not a challenge", m.Type)
	}
	if err := c.auth(m.Nonce, resume); err != nil {
		return err
	}
	if m, err = c.read(deadline); err != nil {
		return err
	}
	if m.Type != "welcome" {
		return fmt.Errorf("client: got %q before the welcome", m.Type)
	}
	c.setWelcome(m)
	return nil
}

// scheduleJSON is a message's schedule, nil for null or none.
func scheduleJSON(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

func (c *Conn) setWelcome(m *wireMsg) {
	c.welcome = Welcome{DeviceID: m.DeviceID, Feed: m.Feed, Epoch: m.Epoch,
		Heartbeat: time.Duration(m.HeartbeatS) * time.Second, Schedule: scheduleJSON(m.Schedule)}
	c.welcome.TokenExp, _ = time.Parse(time.RFC3339, m.TokenExp)
	if c.welcome.Heartbeat <= 0 {
		c.welcome.Heartbeat = 20 * time.Second // the protocol's default
	}
	c.silence = c.welcome.Heartbeat * 5 / 2
}

// auth sends an auth message over nonce with the device's current token.
func (c *Conn) auth(nonce string, resume Resume) error {
	p, err := c.dev.AuthMessage("", nonce, resume)
	if err != nil {
		return err
	}
	return c.write(ws.OpText, p)
}

// Welcome is the server's welcome of this socket.
func (c *Conn) Welcome() Welcome { return c.welcome }

// NetConn is the TCP connection, for a load generator that simulates a dead link.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Next returns the next event, reset, synced, heartbeat, override, override_clear, reload or schedule. It answers a reauth by
// itself (a fresh token, a proof over the reauth nonce); if no token can be had the
// server closes the socket 4401 at the old token's expiry, which Next then returns. It
// fails with ErrSilent when the server says nothing for 2.5 heartbeats, a *CloseError
// for the server's close frame, ErrNoCloseFrame for a dropped connection.
func (c *Conn) Next() (Message, error) {
	for {
		m, err := c.read(time.Now().Add(c.silence))
		if err != nil {
			return Message{}, err
		}
		switch m.Type {
		case TypeReload:
			return Message{Type: m.Type}, nil
		case TypeSchedule:
			return Message{Type: m.Type, Schedule: scheduleJSON(m.Schedule)}, nil
		case TypeEvent, TypeReset, TypeSynced, TypeHeartbeat:
			out := Message{Type: m.Type, Seq: m.Seq, ID: m.ID, Kind: m.Kind, Data: m.Data}
			out.Time, _ = time.Parse(time.RFC3339Nano, m.Time)
			return out, nil
		case TypeOverride, TypeOverrideClear:
			if m.ID == "" {
				continue // names nothing to show or to end
			}
			out := Message{Type: m.Type, ID: m.ID}
			if m.Type == TypeOverride {
				o := &Override{ID: m.ID, Title: m.Title, Body: m.Body, Level: m.Level, Feeds: m.Feeds}
				o.CreatedAt, _ = time.Parse(time.RFC3339Nano, m.CreatedAt)
				o.ExpiresAt, _ = time.Parse(time.RFC3339Nano, m.ExpiresAt)
				out.Override = o
			}
			return out, nil
		case "reauth":
			if m.Nonce == "" {
				continue
			}
			// Nothing is read meanwhile, so the refresh may take a heartbeat at most:
			// the server drops a tablet silent for two (docs/protocol.md §5 step 6).
			ctx, cancel := context.WithTimeout(c.ctx, min(defaultCallTimeout, c.welcome.Heartbeat))
			err := c.dev.Refresh(ctx)
			cancel()
			if err != nil {
				continue // the server closes us 4401 at the old token's expiry
			}
			if err := c.auth(m.Nonce, Resume{}); err != nil {
				return Message{}, c.fail(err)
			}
		}
		// Other types (a second welcome, a newer server's) are not for the caller.
	}
}

// Close ends the socket with a 1000 close frame (unless one was sent; its write waits
// a second at most) and closes the connection, without waiting for the server's
// answer: a display that goes away has nothing more to read.
func (c *Conn) Close() error {
	_ = c.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	c.stop()
	err := c.nc.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
