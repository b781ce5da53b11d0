package bridge

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/kioskfeed/kioskfeed/broker"
)

// closeGrace is how long a closing socket waits for the tablet's close reply.
const closeGrace = 2 * time.Second

// session is one tablet's socket. Nothing runs for an idle one: the bridge's poller
// starts a reader goroutine when the socket has something to read (readable), which
// reads the frames there are, handshake included, and ends. Writes go through a
// bounded queue drained by a goroutine that exists only while there is something to
// write. So an idle tablet costs no goroutine and no buffer.
type session struct {
	br     *Bridge
	conn   net.Conn
	early  []byte // bytes the HTTP server read past the upgrade request: read before conn
	id     string
	remote string
	poll   pollHandle
	polled bool // registered with br.poller (else a reader goroutine of its own)

	// Set by the reader during the handshake, before the session is visible to hubs or
	// leases; read-only afterwards.
	challenge string
	device    string
	feed      string

	// Owned by the reader: a fragmented text message being put together (rare; browsers
	// send one frame per message).
	frag   []byte
	fragOp ws.OpCode

	heardAt atomic.Int64 // unix ns, machine clock: when the tablet was last heard

	mu          sync.Mutex
	queue       [][]byte
	queueBegun  bool // queue[0] is the rest of a frame the socket has taken part of
	writing     bool // a drain goroutine is running
	closing     bool // a close frame is queued: nothing more is sent
	reading     bool // a reader goroutine is at work
	aborted     bool // drop the socket: the reader stops at its next read
	dead        bool // the tablet is gone: reset the socket, there is nothing to protect
	finished    bool // reading is over: close the conn once the queue is out
	catchingUp  bool // live events wait in pending while a replay is read
	overflowed  bool // pending filled during the catch-up: it ends in a reset
	pending     []pendingFrame
	lastSent    uint64 // seq of the newest event sent: never send one twice
	reauthNonce string
	askedAt     time.Time // when the last reauth was asked (cluster clock)
	tokenSum    [32]byte  // SHA-256 of the access token in force: a re-auth needs another
	exp         time.Time
	timer       *time.Timer // the auth deadline, then the re-auth schedule
	closeTimer  *time.Timer // closeGrace after our close frame
	probeWait   chan struct{}
	leaseRev    uint64 // 0 once the lease is no longer ours
	hub         *hub

	authed atomic.Bool // the handshake's auth and lease succeeded
	joined atomic.Bool // the catch-up is sent: the reader is back reading frames
}

// testHooks are called at the points where an interleaving matters, so that tests can
// force it deterministically (export_test.go sets them). Production never sets them:
// the pointer stays nil and each point costs one atomic load.
type testHooks struct {
	registered     func(br *Bridge) // a session was just registered for heartbeats
	catchUpRead    func(s *session) // a JetStream catch-up was read and is not yet sent
	liveAgain      func(s *session) // live events flow to s again, after its catch-up
	catchUpWait    func()           // a JetStream catch-up asks for a read slot
	catchUpReading func()           // a JetStream catch-up holds a read slot
	fanning        func(seq uint64) // onEvent took its list of subscribers for seq
	fannedOut      func(seq uint64) // onEvent handed seq to every subscriber
}

var hooks atomic.Pointer[testHooks]

type pendingFrame struct {
	seq   uint64
	frame []byte
}

func newSession(br *Bridge, conn net.Conn, early []byte, remote string) *session {
	s := &session{br: br, conn: conn, early: early, id: newConnID(), remote: remote}
	s.heardAt.Store(time.Now().UnixNano())
	return s
}

// start sends the challenge, arms the auth deadline and starts reading: through the
// poller, or with a reader goroutine of its own where the poller cannot watch the conn.
func (s *session) start() {
	s.challenge = newChallenge()
	s.send(jsonFrame(map[string]string{"type": "challenge", "nonce": s.challenge}))
	s.mu.Lock()
	if !s.closing {
		s.timer = time.AfterFunc(s.br.cfg.AuthTimeout, s.authTimedOut)
	}
	s.mu.Unlock()
	if s.br.poller != nil {
		// Registered before any read, and the early bytes (rare) read at once: the
		// reader's own guard keeps the two from reading together.
		early := len(s.early) > 0 // read before arming: from then on the reader owns it
		h, err := s.br.poller.add(s.conn, s.readable)
		if err == nil {
			s.mu.Lock() // sendLocked reads them from other goroutines (the auth timer's)
			s.poll, s.polled = h, true
			s.mu.Unlock()
			if err := s.br.poller.arm(h); err == nil {
				if early {
					go func() {
						if s.claimReading() {
							s.readFrames()
						}
					}()
				}
				return
			}
			s.mu.Lock()
			s.polled = false
			s.mu.Unlock()
		}
	}
	go s.readLoop()
}

// readable is called by the poller, on its own goroutine, when the socket has something
// to read. A ping or pong that is whole in the socket's buffer (what an idle tablet
// sends: the answer to the heartbeat's ping) is read right here, so ten thousand
// tablets answering one heartbeat cost no goroutine (and no goroutine stack) each;
// anything else is read by a goroutine started for it.
func (s *session) readable() {
	if !s.claimReading() {
		return
	}
	if len(s.early) == 0 && s.authed.Load() {
		if b, whole := takePingPong(s.poll.fd); b != nil {
			s.early = b
			if !whole {
				go s.readFrames()
				return
			}
			if over := s.readFrame(); over {
				go s.endReading() // cleanup may wait: never on the poller's goroutine
				return
			}
			s.doneReading()
			return
		}
	}
	go s.readFrames()
}

// claimReading makes the caller the socket's one reader, unless another is at work or
// reading is over.
func (s *session) claimReading() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reading || s.finished {
		return false
	}
	s.reading = true
	return true
}

// readFrames reads the frames the socket has, then lets the poller watch it again.
func (s *session) readFrames() {
	for {
		if over := s.readFrame(); over {
			s.endReading()
			return
		}
		if len(s.early) == 0 {
			break
		}
	}
	s.doneReading()
}

// doneReading lets the poller watch the socket again, or ends the socket if it was
// aborted meanwhile. It may run on the poller's goroutine, so what may wait (cleanup)
// goes to a goroutine of its own.
func (s *session) doneReading() {
	s.mu.Lock()
	s.reading = false
	if s.aborted {
		s.mu.Unlock()
		go s.endReading()
		return
	}
	// Under s.mu, so that cleanup (which runs after finished is set under s.mu) never
	// races a rearm of a socket it is about to close.
	err := s.br.poller.rearm(s.poll)
	s.mu.Unlock()
	if err != nil {
		go s.endReading()
	}
}

// readLoop is the reader where the poller cannot watch the conn: a goroutine for the
// socket's whole life, as every socket had before the poller.
func (s *session) readLoop() {
	s.mu.Lock()
	s.reading = true
	s.mu.Unlock()
	for !s.readFrame() {
	}
	s.endReading()
}

// endReading runs cleanup once, when reading is over.
func (s *session) endReading() {
	s.mu.Lock()
	s.reading = false
	first := !s.finished
	s.finished, s.closing = true, true
	s.mu.Unlock()
	if first {
		s.cleanup()
	}
}

// abort drops a dead tablet's socket without ceremony (silent, or it cannot take
// writes): a reader at work stops at its next read, else cleanup runs on a goroutine
// of its own. It never waits: the heartbeat calls it for every dead tablet in one
// sweep, and cleanup may wait for the broker (the lease's release). The socket is then
// closed at once, with a reset and no FIN-and-drain: nothing sent to it matters now.
func (s *session) abort() { s.stop(true) }

// closeTimedOut ends a socket whose tablet did not answer our close frame within
// closeGrace. Unlike abort it keeps the close frame: a slow tablet may still be
// reading the backlog in front of it (1013), so the socket gets FIN after it and a
// bounded drain, on the session's own goroutine.
func (s *session) closeTimedOut() { s.stop(false) }

func (s *session) stop(dead bool) {
	s.mu.Lock()
	s.aborted = true
	s.dead = s.dead || dead
	if s.reading {
		_ = s.conn.SetReadDeadline(time.Unix(1, 0))
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	go s.endReading()
}

func (s *session) authTimedOut() {
	if !s.authed.Load() && !s.isClosing() {
		s.br.metrics.handshakes.WithLabelValues("timeout").Inc()
		s.closeWith(CloseAuthTimeout, "no auth in time")
	}
}

// input reads the early bytes, then the conn: what frames are read from.
type input session

func (in *input) Read(p []byte) (int, error) {
	if len(in.early) > 0 {
		n := copy(p, in.early)
		in.early = in.early[n:]
		if len(in.early) == 0 {
			in.early = nil
		}
		return n, nil
	}
	return in.conn.Read(p)
}

// readWait bounds reading one frame: the auth deadline before the handshake, two
// heartbeats (and a little) after, as long as a live tablet may be silent.
func (s *session) readWait() time.Duration {
	if s.authed.Load() {
		return 2*s.br.cfg.Heartbeat + time.Second
	}
	return s.br.cfg.AuthTimeout
}

// readFrame reads one frame and acts on it. It reports whether reading is over: the
// tablet closed, the connection failed, or the frame broke the protocol (a close frame
// is queued then).
func (s *session) readFrame() (over bool) {
	in := (*input)(s)
	// The poller calls only when there is something to read: the frame's whole read is
	// bounded. A reader of its own waits for the next frame as long as it takes (the
	// heartbeat's sweep and the auth deadline end a silent socket); then its rest is.
	if s.polled {
		s.setReadDeadline(time.Now().Add(s.readWait()))
	} else {
		s.setReadDeadline(time.Time{})
	}
	hdr, err := ws.ReadHeader(in)
	if err != nil {
		s.readFailed(err)
		return true
	}
	if !s.polled {
		s.setReadDeadline(time.Now().Add(s.readWait()))
	}
	state := ws.StateServerSide
	if s.fragOp != 0 {
		state |= ws.StateFragmented // a continuation must come, and only one
	}
	if err := ws.CheckHeader(hdr, state); err != nil {
		s.readFailed(err)
		return true
	}
	if hdr.Length > maxClientFrameBytes || int64(len(s.frag))+hdr.Length > maxClientFrameBytes {
		s.closeWith(CloseTooBig, "frame larger than 16 KiB")
		return true
	}
	payload := make([]byte, hdr.Length)
	if _, err := io.ReadFull(in, payload); err != nil {
		s.readFailed(err)
		return true
	}
	ws.Cipher(payload, hdr.Mask, 0)
	s.heard()
	if hdr.OpCode.IsControl() {
		return s.controlFrame(hdr.OpCode, payload)
	}
	switch {
	case hdr.OpCode == ws.OpContinuation:
		s.frag = append(s.frag, payload...)
		payload = s.frag
	case !hdr.Fin:
		s.frag, s.fragOp = payload, hdr.OpCode
	}
	if !hdr.Fin {
		return false
	}
	op := hdr.OpCode
	if op == ws.OpContinuation {
		op = s.fragOp
	}
	s.frag, s.fragOp = nil, 0
	if op == ws.OpBinary {
		s.closeWith(CloseUnsupported, "binary frames are not accepted")
		return false
	}
	if !utf8.Valid(payload) {
		s.closeWith(ws.StatusInvalidFramePayloadData, "invalid UTF-8")
		return true
	}
	if !s.isClosing() {
		s.message(payload)
	}
	return false
}

func (s *session) setReadDeadline(t time.Time) {
	s.mu.Lock()
	if !s.aborted {
		_ = s.conn.SetReadDeadline(t)
	}
	s.mu.Unlock()
}

// controlFrame answers pings, notes pongs and echoes a close; it reports whether the
// tablet closed. The payload is at most 125 bytes (ws.CheckHeader refuses longer).
func (s *session) controlFrame(op ws.OpCode, payload []byte) (closed bool) {
	switch op {
	case ws.OpPing:
		f, _ := ws.CompileFrame(ws.NewPongFrame(payload))
		s.send(f)
	case ws.OpClose:
		s.closeWith(closeReply(payload), "")
		return true
	}
	return false
}

// closeReply is the code that answers a tablet's close frame (RFC 6455 §5.5.1, §7.4):
// its own code when it may be sent, 1000 for a close without one, and 1002 for a
// one-byte body or a code no endpoint may send (1005 and 1006 are never on the wire).
func closeReply(payload []byte) ws.StatusCode {
	switch len(payload) {
	case 0:
		return closeNormal
	case 1:
		return ws.StatusProtocolError
	}
	code, _ := ws.ParseCloseFrameData(payload)
	switch c := int(code); {
	case c >= 1000 && c <= 1003, c >= 1007 && c <= 1014, c >= 3000 && c <= 4999:
		return code
	default:
		return ws.StatusProtocolError
	}
}

// readFailed closes the socket with the code docs/protocol.md §5 gives the failure.
func (s *session) readFailed(err error) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		if !s.authed.Load() && !s.isClosing() {
			s.closeWith(CloseAuthTimeout, "no auth in time")
			s.br.metrics.handshakes.WithLabelValues("timeout").Inc()
			return
		}
		// A live tablet silent for two heartbeats (or stuck in a frame that long) is
		// dead: drop it without ceremony (no FIN-and-drain). A stopped socket (stop)
		// times out at once, and stays as stop left it.
		s.mu.Lock()
		if !s.aborted {
			s.aborted, s.dead = true, true
		}
		s.mu.Unlock()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
	default:
		// Reserved opcodes, RSV bits, unmasked client frames, oversized or fragmented
		// control frames: what ws.CheckHeader refuses.
		s.closeWith(ws.StatusProtocolError, "protocol error")
	}
}

func (s *session) message(payload []byte) {
	var m clientMsg
	if err := json.Unmarshal(payload, &m); err != nil {
		s.closeWith(CloseMalformed, "malformed message")
		return
	}
	if m.Type != "auth" {
		return // other messages are ignored (docs/protocol.md §5)
	}
	if !s.authed.Load() {
		// The auth came in time: the deadline is over (the handshake has its own,
		// and answers 1011 if the broker is too slow, not 4408).
		s.mu.Lock()
		if s.timer != nil {
			s.timer.Stop()
		}
		s.mu.Unlock()
		s.handshake(m)
		return
	}
	s.mu.Lock()
	nonce := s.reauthNonce
	s.mu.Unlock()
	if nonce == "" {
		s.closeWith(CloseMalformed, "unexpected auth")
		return
	}
	s.reauth(m, nonce)
}

func (s *session) handshake(m clientMsg) {
	br := s.br
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := br.auth.Authenticate(ctx, m.Token, m.Proof, s.challenge, br.wsURL)
	if err != nil {
		s.refuseAuth(err)
		return
	}
	s.device, s.feed = id.DeviceID, id.Feed
	s.challenge = "" // used: no need to keep it for the socket's life
	rev, err := br.leases.acquire(ctx, s)
	if err != nil {
		if errors.Is(err, errLeaseHeld) {
			br.metrics.handshakes.WithLabelValues("duplicate").Inc()
			br.metrics.leaseConflicts.Inc()
			br.audit("duplicate_refused", s, "another live connection holds this device")
			br.log.Info("duplicate connection refused", slog.String("device_id", s.device), slog.String("remote_addr", s.remote))
			s.closeWith(CloseDuplicate, "device already connected")
			return
		}
		br.log.Warn("lease unavailable", slog.String("device_id", s.device), slog.String("error", err.Error()))
		br.metrics.handshakes.WithLabelValues("error").Inc()
		s.closeWith(CloseBrokerDown, "broker unreachable")
		return
	}
	s.mu.Lock()
	s.leaseRev = rev
	s.exp = id.Expires
	s.tokenSum = sha256.Sum256([]byte(m.Token))
	s.mu.Unlock()
	s.authed.Store(true)
	// The feed's hub before the welcome: the welcome names the epoch of the log the
	// hub follows, which is the log whose seqs the tablet is about to get.
	h, err := br.hub(s.feed)
	if err != nil {
		br.log.Warn("feed unavailable", slog.String("device_id", s.device), slog.String("error", err.Error()))
		br.metrics.handshakes.WithLabelValues("error").Inc()
		s.closeWith(CloseBrokerDown, "broker unreachable")
		return
	}
	s.send(jsonFrame(map[string]any{
		"type": "welcome", "device_id": s.device, "feed": s.feed,
		"heartbeat_s": int(br.cfg.Heartbeat / time.Second),
		"token_exp":   id.Expires.UTC().Format(time.RFC3339), "epoch": h.epoch,
	}))
	s.heardAt.Store(time.Now().UnixNano()) // the silence sweep counts from the welcome
	// Registered (for heartbeats and revocation kicks) only once the welcome is queued:
	// nothing may come before it (docs/protocol.md §5 step 3).
	br.authenticated(s)
	if h := hooks.Load(); h != nil && h.registered != nil {
		h.registered(br)
	}
	if err := s.join(ctx, h, m.Since, m.Epoch); err != nil {
		if errors.Is(err, errEpochChanged) {
			s.closeWith(CloseRestarting, "the event log was made anew")
			return
		}
		br.log.Warn("catch-up failed", slog.String("device_id", s.device), slog.String("error", err.Error()))
		br.metrics.handshakes.WithLabelValues("error").Inc()
		s.closeWith(CloseBrokerDown, "broker unreachable")
		return
	}
	// Only now the re-auth timer: a token already close to expiry would otherwise ask
	// for re-auth before the welcome and the catch-up (which the queue keeps in order).
	s.mu.Lock()
	s.armLocked()
	s.mu.Unlock()
	s.joined.Store(true)
	br.metrics.handshakes.WithLabelValues("ok").Inc()
	br.log.Debug("tablet connected", slog.String("device_id", s.device), slog.String("feed", s.feed), slog.String("remote_addr", s.remote))
}

// errEpochChanged: the hub the tablet was welcomed by closed, and the feed's next hub
// follows a log made anew since; the tablet must hear the new epoch in a new welcome.
var errEpochChanged = errors.New("the event log was made anew during the handshake")

// join attaches the session to its feed's hub h, which sends the catch-up. A hub that
// closed meanwhile (it lingered out) is replaced by a fresh one of the same log.
func (s *session) join(ctx context.Context, h *hub, since uint64, epoch string) error {
	welcomed := h.epoch
	for {
		s.mu.Lock()
		s.hub = h
		s.mu.Unlock()
		err := h.attach(ctx, s, since, epoch)
		if !errors.Is(err, errHubClosed) {
			return err
		}
		if h, err = s.br.hub(s.feed); err != nil {
			return err
		}
		if h.epoch != welcomed {
			return errEpochChanged
		}
	}
}

// refuseAuth closes a socket whose auth failed, audited with the caller's address.
func (s *session) refuseAuth(err error) {
	br := s.br
	switch {
	case errors.Is(err, broker.ErrDeviceRevoked):
		br.metrics.handshakes.WithLabelValues("revoked").Inc()
		br.audit("auth_fail", s, err.Error())
		s.closeWith(CloseRevoked, "device revoked or unknown")
	case errors.Is(err, broker.ErrCredentialInvalid):
		br.metrics.handshakes.WithLabelValues("unauthorized").Inc()
		br.audit("auth_fail", s, err.Error())
		s.closeWith(CloseUnauthorized, "token or proof invalid")
	default:
		br.log.Warn("authentication unavailable", slog.String("error", err.Error()))
		br.metrics.handshakes.WithLabelValues("error").Inc()
		s.closeWith(CloseBrokerDown, "broker unreachable")
	}
}

// armLocked sets the one timer a session has: ask for re-auth a little before the
// token expires (the lead: a fifth of what is left, 5 s to 1 min), then close 4401 if
// none came by expiry + ReauthGrace. Challenges are at least one lead apart, whatever
// the tokens a tablet answers with: a socket costs at most one re-auth per lead.
func (s *session) armLocked() {
	if s.timer != nil {
		s.timer.Stop()
	}
	now := s.br.cfg.Now()
	lead := min(max(s.exp.Sub(now)/5, 5*time.Second), time.Minute)
	at := s.exp.Add(-lead)
	if next := s.askedAt.Add(lead); !s.askedAt.IsZero() && next.After(at) {
		at = next
	}
	s.timer = time.AfterFunc(at.Sub(now), s.askReauth)
}

func (s *session) askReauth() {
	nonce := newChallenge()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.reauthNonce = nonce
	s.askedAt = s.br.cfg.Now()
	deadline := s.exp.Add(s.br.cfg.ReauthGrace).Sub(s.br.cfg.Now())
	s.timer = time.AfterFunc(deadline, func() { s.closeWith(CloseUnauthorized, "token expired") })
	s.mu.Unlock()
	s.send(jsonFrame(map[string]string{"type": "reauth", "nonce": nonce}))
}

func (s *session) reauth(m clientMsg, nonce string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := s.br.auth.Authenticate(ctx, m.Token, m.Proof, nonce, s.br.wsURL)
	if err == nil && (id.DeviceID != s.device || id.Feed != s.feed) {
		err = broker.ErrCredentialInvalid
	}
	sum := sha256.Sum256([]byte(m.Token))
	s.mu.Lock()
	exp, same := s.exp, sum == s.tokenSum
	s.mu.Unlock()
	if err == nil && (same || id.Expires.Before(exp) || !id.Expires.After(s.br.cfg.Now())) {
		// The token the socket already has (or an older or expired one): accepting it
		// would ask again at once, and a tablet that keeps answering so would spin the
		// server until the grace ends. It must fetch a new token (4401 says so).
		s.br.metrics.handshakes.WithLabelValues("stale_reauth").Inc()
		s.br.audit("auth_fail", s, "re-auth with a token no newer than the current one")
		s.closeWith(CloseUnauthorized, "re-auth needs a new token")
		return
	}
	if err != nil {
		s.refuseAuth(err)
		return
	}
	s.mu.Lock()
	s.reauthNonce = ""
	s.tokenSum = sum
	s.exp = id.Expires
	s.armLocked()
	s.mu.Unlock()
}

// send queues one frame; a tablet whose queue is full is closed (1013) so it never
// slows the others.
func (s *session) send(frame []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sendLocked(frame)
}

func (s *session) sendLocked(frame []byte) bool {
	if s.closing {
		return false
	}
	if len(s.queue) >= s.br.cfg.QueueFrames {
		s.br.metrics.queueDrops.Inc()
		s.closeLocked(CloseTooSlow, "too slow", true)
		return false
	}
	return s.putLocked(frame)
}

// catchUpLocked queues one frame of a catch-up (reset, state, replayed events,
// synced). A catch-up is bounded (CatchupLimit events, or ReplayLimit items and their
// state), so it is never cut short by the queue's bound: a tablet that just connected
// is not too slow, and closing it 1013 would only make it come back for the same
// catch-up. Live frames after it meet the bound as usual.
func (s *session) catchUpLocked(frame []byte) bool {
	if s.closing {
		return false
	}
	return s.putLocked(frame)
}

func (s *session) putLocked(frame []byte) bool {
	if !s.writing && len(s.queue) == 0 && s.polled {
		// Nothing queued and no writer: try the socket right away, without blocking.
		// Almost always it takes the whole frame, and a fan-out to thousands of
		// tablets starts no goroutine and sets no deadline per tablet. What it does not
		// take goes to the queue and a writer goroutine as before. Safe: s.mu is held,
		// no writer exists, and the conn is closed only once closing is set.
		// On an error other than "full", the writer meets it again on the conn and drops
		// the tablet.
		n, _ := writeNow(s.poll.fd, frame)
		if n == len(frame) {
			return true
		}
		frame = frame[n:]
		s.queueBegun = n > 0 // its rest must go out even if the queue is dropped
	}
	s.queue = append(s.queue, frame)
	s.startDrainLocked()
	return true
}

// deliver hands one live event to the session: held back while a replay is read, and
// never sent twice.
func (s *session) deliver(seq uint64, frame []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.catchingUp {
		if s.overflowed || len(s.pending) >= s.br.cfg.QueueFrames {
			// More live events came while the catch-up waited than a queue holds: the
			// catch-up ends in a reset instead (the state covers them), never in a
			// 1013 that would bring the tablet back for the same catch-up.
			s.overflowed, s.pending = true, nil
			return
		}
		s.pending = append(s.pending, pendingFrame{seq, frame})
		return
	}
	if seq <= s.lastSent {
		return
	}
	s.lastSent = seq
	s.sendLocked(frame)
}

// startCatchUp holds live events back in pending while a replay is read from the log.
func (s *session) startCatchUp() {
	s.mu.Lock()
	s.catchingUp = true
	s.mu.Unlock()
}

// endCatchUpLocked lets live events through again and returns those held back. The
// caller holds s.mu from here until the catch-up and the held-back events are queued:
// a live event delivered in between would raise lastSent past the catch-up's events,
// which would then be skipped (issue 12 §2).
func (s *session) endCatchUpLocked() []pendingFrame {
	s.catchingUp, s.overflowed = false, false
	p := s.pending
	s.pending = nil
	return p
}

// flushPendingLocked sends the held-back events the replay did not already cover.
func (s *session) flushPendingLocked(pending []pendingFrame) {
	for _, p := range pending {
		if p.seq > s.lastSent {
			s.lastSent = p.seq
			s.sendLocked(p.frame)
		}
	}
}

func (s *session) startDrainLocked() {
	if !s.writing {
		s.writing = true
		go s.drain()
	}
}

// drain writes the queue out and exits when it is empty.
func (s *session) drain() {
	for {
		s.mu.Lock()
		batch := s.queue
		s.queue, s.queueBegun = nil, false
		if len(batch) == 0 {
			s.writing = false
			finished := s.finished
			s.mu.Unlock()
			if finished {
				s.hangUp()
			}
			return
		}
		s.mu.Unlock()
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.br.cfg.WriteTimeout))
		var err error
		if len(batch) == 1 {
			// The common case (one event, one heartbeat): a plain write, which unlike
			// writev keeps no iovec array on the connection afterwards.
			_, err = s.conn.Write(batch[0])
		} else {
			bufs := net.Buffers(batch)
			_, err = bufs.WriteTo(s.conn)
		}
		if err != nil {
			s.mu.Lock()
			s.closing = true
			s.queue, s.queueBegun = nil, false
			s.writing = false
			s.mu.Unlock()
			s.abort() // a tablet that cannot take writes is dead
			return
		}
	}
}

// closeWith sends a close frame after what is queued (or instead of it, for a tablet
// too slow to take it) and gives the tablet closeGrace to answer.
func (s *session) closeWith(code ws.StatusCode, reason string) {
	s.mu.Lock()
	s.closeLocked(code, reason, code == CloseTooSlow)
	s.mu.Unlock()
}

func (s *session) closeLocked(code ws.StatusCode, reason string, dropQueue bool) {
	if s.closing {
		return
	}
	code, reason = s.br.closeVerdict(s, code, reason) // a failed auth counts (admit.go)
	if dropQueue {
		if s.queueBegun {
			s.queue = s.queue[:1] // the rest of a frame half on the wire: the stream needs it
		} else {
			s.queue = nil
		}
	}
	s.queue = append(s.queue, closeFrame(code, reason))
	s.closing = true
	s.br.metrics.closes.WithLabelValues(strconv.Itoa(int(code))).Inc()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.closeTimer = time.AfterFunc(closeGrace, s.closeTimedOut)
	s.startDrainLocked()
}

func (s *session) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// heard notes that the tablet sent something: it is alive (the heartbeat drops a tablet
// silent for two heartbeats), and it answers a pending lease probe.
func (s *session) heard() {
	s.heardAt.Store(time.Now().UnixNano())
	s.mu.Lock()
	if s.probeWait != nil {
		close(s.probeWait)
		s.probeWait = nil
	}
	s.mu.Unlock()
}

// silentSince reports whether the tablet has not been heard from since t.
func (s *session) silentSince(t time.Time) bool { return s.heardAt.Load() < t.UnixNano() }

// probe pings the tablet and reports whether it answered within timeout. A holder that
// does not answer is closed, so its lease can be taken by the tablet that came back.
//
// Probes that overlap (several duplicates at once) share one ping and one answer: a
// second probe must not replace the first one's channel, or the first would time out
// and wrongly take a live holder for dead.
func (s *session) probe(timeout time.Duration) bool {
	s.mu.Lock()
	if s.closing || s.finished {
		s.mu.Unlock()
		return false
	}
	ch := s.probeWait
	if ch == nil {
		ch = make(chan struct{})
		s.probeWait = ch
		s.sendLocked(pingFrame)
	}
	s.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		s.closeWith(CloseBrokerDown, "no answer to ping")
		return false
	}
}

// hangUp ends the TCP connection once everything queued is written. It sends FIN first
// and discards what the tablet still sends, briefly and boundedly: closing a socket with
// unread input makes the kernel answer with a reset, which can destroy a close frame the
// tablet has not read yet. Called once, after the reader is gone.
//
// A dead tablet's socket (abort) is closed at once instead, with a reset: it has no
// close frame to protect, and waiting for a dead peer only holds a goroutine and the
// kernel's buffers.
func (s *session) hangUp() {
	s.mu.Lock()
	dead := s.dead
	s.mu.Unlock()
	if dead {
		if tc, ok := s.conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = s.conn.Close()
		return
	}
	if cw, ok := s.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_ = s.conn.SetReadDeadline(time.Now().Add(closeGrace))
		// Bounded by closeGrace; the byte cap only stops a fast peer spinning us longer.
		_, _ = io.Copy(io.Discard, io.LimitReader(s.conn, 64<<20))
	}
	_ = s.conn.Close()
}

// cleanup runs once, when reading is over (endReading).
func (s *session) cleanup() {
	defer s.br.wg.Done()
	if s.polled {
		s.br.poller.remove(s.poll) // before the conn can close
	}
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.closeTimer != nil {
		s.closeTimer.Stop()
	}
	writing := s.writing // if so, drain hangs up once the queue is out
	h, rev := s.hub, s.leaseRev
	s.mu.Unlock()
	if !writing {
		s.hangUp()
	}
	if h != nil {
		h.detach(s)
	}
	s.br.remove(s)
	if rev != 0 && !(s.br.cfg.LeasesEndWithProcess && s.br.isDraining()) {
		s.br.leases.release(s.device, rev)
	}
}

func (br *Bridge) audit(typ string, s *session, detail string) {
	br.b.Audit(broker.AuditRecord{Type: typ, DeviceID: s.device, Feed: s.feed, RemoteAddr: s.remote, Detail: detail})
}

// newChallenge is the nonce a proof must sign: 32 random bytes, base64url.
func newChallenge() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
