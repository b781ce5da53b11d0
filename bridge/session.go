package bridge

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/kioskfeed/kioskfeed/broker"
)

// session is one tablet's socket. Nothing runs for an idle one: the bridge's poller
// starts a reader goroutine when the socket has something to read (readable), which
// reads the frames there are, handshake included, and ends. Writes go through a
// bounded queue drained by a goroutine that exists only while there is something to
// write. So an idle tablet costs no goroutine and no buffer.
//
// # State
//
// How far the socket is on its way to the end is one value, state (a connState, under
// mu): state.go draws its moves. Beside it, flags under mu (two atomics for the
// handshake) that are not steps of that life: each says who owns a side of the socket
// right now, or how it ends. What each means and who sets it:
//
// Reading (conn.go):
//   - reading: one reader is at work on the socket (a goroutine, or the poller's own
//     goroutine in readable). Set by claimReading (poller path) or readLoop (a reader
//     of its own); cleared by doneReading (the socket goes back to the poller) and
//     endReading. Never set once finished: claimReading refuses. It comes and goes
//     many times in any state, so it is ownership, not a step of the life.
//
// Writing (write.go, close.go):
//   - writing: a drain goroutine is running. Set by startDrainLocked; cleared by drain
//     when the queue is empty (which then hangs up if finished) or when a write fails
//     (which aborts, or hangs up itself when reading is already finished). cleanup
//     hangs up only if writing is false, else leaves it to the drain, which hangs up
//     either way: once the queue is out, or at once (a reset) when a write fails.
//     Ownership too, as reading is.
//   - queueBegun: queue[0] is the rest of a frame the socket took part of (putLocked);
//     a dropped queue keeps it. Cleared whenever drain takes the queue.
//   - dead: the tablet is gone: hangUp resets the socket (no FIN-and-drain, nothing to
//     protect). Set by abort (the heartbeat's silence sweep, a failed write) and by
//     readFailed on a live tablet's timeout, always as reading is aborted; never
//     cleared. closeTimedOut aborts without it, so the close frame still gets FIN and a
//     drain. It is how the socket is hung up, not a state: a write that fails after
//     cleanup (finished) still sets it, for the drain's hang-up.
//   - closeRead: the tablet's close frame was read (controlFrame), ours is queued or
//     out, so the close handshake is over once the queue is written: hangUp closes the
//     TCP connection at once, as RFC 6455 §7.1.1 has the server do, with no FIN-and-drain.
//     Never cleared.
//
// Catch-up (write.go, hub.go):
//   - catchingUp: live events wait in pending while a replay is read. Set by
//     startCatchUp, cleared by endCatchUpLocked (under hub.mu and s.mu, with the
//     catch-up queued in the same critical section).
//   - overflowed: pending filled during the catch-up (deliver): it ends in a reset.
//     Cleared by endCatchUpLocked.
//
// Protocol (session.go):
//   - authed: the handshake's auth and lease succeeded (handshake, before the hub and
//     the welcome); never cleared. From then on reads wait two heartbeats, not the
//     auth deadline, the poller reads pings and pongs itself, a timeout is a dead
//     tablet rather than 4408, and a close no longer counts as a failed auth
//     (closeVerdict).
//   - joined: the catch-up is sent and the reader is back reading frames (end of
//     handshake); never cleared. Before it a lease probe takes the socket for alive
//     unless it is closing (localAlive): its reader cannot see a pong yet.
//
// authed and joined go false → true once each, in the handshake, and are read without
// the lock on hot paths (every read, every poller wake-up): a socket may close at any
// step of its handshake, so they are not steps of the state either.
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
	corked      bool // the handshake's frames gather in cork, for one write (write.go)
	cork        []byte
	state       connState // how far the socket is on its way to the end (state.go)
	writing     bool      // a drain goroutine is running
	reading     bool      // a reader goroutine is at work
	dead        bool      // the tablet is gone: reset the socket, there is nothing to protect
	closeRead   bool      // the tablet's close frame was read: the close handshake ends with our queue
	catchingUp  bool      // live events wait in pending while a replay is read
	overflowed  bool      // pending filled during the catch-up: it ends in a reset
	pending     []pendingFrame
	lastSent    uint64 // seq of the newest event sent: never send one twice
	reauthNonce string
	askedAt     time.Time // when the last reauth was asked (cluster clock)
	tokenSum    [32]byte  // SHA-256 of the access token in force: a re-auth needs another
	exp         time.Time
	timer       *time.Timer // the auth deadline, then the re-auth schedule
	closeTimer  *time.Timer // Config.CloseGrace after our close frame
	probeWait   chan struct{}
	leaseRev    uint64 // 0 once the lease is no longer ours
	hub         *hub
	shown       shownState // proof of display (shown.go)

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
	resetAwaits    func()           // a reset waits for the log's answer: its newest seq
}

var hooks atomic.Pointer[testHooks]

func newSession(br *Bridge, conn net.Conn, early []byte, remote string) *session {
	s := &session{br: br, conn: conn, early: early, id: newConnID(), remote: remote}
	s.heardAt.Store(time.Now().UnixNano())
	return s
}

func (s *session) authTimedOut() {
	if !s.authed.Load() && !s.isClosing() {
		s.br.metrics.handshakes.WithLabelValues("timeout").Inc()
		s.closeWith(reasonNoAuthInTime)
	}
}

func (s *session) message(payload []byte) {
	if seq, ok := plainShown(payload); ok && s.authed.Load() {
		s.shownSeq(seq) // the common shown, without a JSON decode (shown.go)
		return
	}
	var m clientMsg
	if err := decodeClientMsg(payload, &m); err != nil { // encoding/json's verdict (clientmsg.go)
		s.closeWith(reasonMalformed)
		return
	}
	if m.Type == "shown" && s.authed.Load() {
		s.onShown(m) // before the welcome, ignored as any message but auth
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
		s.closeWith(reasonUnexpectedAuth)
		return
	}
	s.reauth(m, nonce)
}

func (s *session) handshake(m clientMsg) {
	br := s.br
	ctx, cancel := br.opContext(handshakeTimeout)
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
			br.audit(reasonDuplicate.audit, s, "another live connection holds this device")
			br.log.Info("duplicate connection refused", slog.String("device_id", s.device), slog.String("remote_addr", s.remote))
			s.closeWith(reasonDuplicate)
			return
		}
		if s.cutByShutdown() {
			return
		}
		br.log.Warn("lease unavailable", slog.String("device_id", s.device), slog.String("error", err.Error()))
		br.metrics.handshakes.WithLabelValues("error").Inc()
		s.closeWith(reasonBrokerDown)
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
		if s.cutByShutdown() {
			return
		}
		br.log.Warn("feed unavailable", slog.String("device_id", s.device), slog.String("error", err.Error()))
		br.metrics.handshakes.WithLabelValues("error").Inc()
		s.closeWith(reasonBrokerDown)
		return
	}
	inForce := br.overrides.idsFor(s.feed) // the overrides in force (override.go)
	// The feed's schedule (schedule.go).
	sched, schedGen := br.schedules.forWelcome(s.feed)
	s.startCork() // the welcome, the catch-up and synced go out in one write
	defer s.uncork()
	s.send(jsonFrame(welcomeMsg{
		Type: "welcome", DeviceID: s.device, Feed: s.feed,
		HeartbeatS: int(br.cfg.Heartbeat / time.Second),
		TokenExp:   id.Expires.UTC().Format(time.RFC3339), Epoch: h.epoch,
		Overrides: inForce, Schedule: sched,
	}))
	s.heardAt.Store(time.Now().UnixNano()) // the silence sweep counts from the welcome
	// Registered (for heartbeats and revocation kicks) only once the welcome is queued:
	// nothing may come before it (docs/protocol.md §5 step 3).
	br.authenticated(s)
	if br.checkMoved(s) {
		return
	}
	if h := hooks.Load(); h != nil && h.registered != nil {
		h.registered(br)
	}
	since := m.Since
	if m.Feed != "" && m.Feed != s.feed || m.Feed == "" && since <= id.MovedSeq {
		since = 0 // its seq is another feed's (a moved device): a reset
	}
	if err := s.join(ctx, h, since, m.Epoch); err != nil {
		if errors.Is(err, errEpochChanged) {
			s.closeWith(reasonLogRenewed)
			return
		}
		if s.cutByShutdown() {
			return
		}
		br.log.Warn("catch-up failed", slog.String("device_id", s.device), slog.String("error", err.Error()))
		br.metrics.handshakes.WithLabelValues("error").Inc()
		s.closeWith(reasonBrokerDown)
		return
	}
	// Only now the re-auth timer: a token already close to expiry would otherwise ask
	// for re-auth before the welcome and the catch-up (which the queue keeps in order).
	s.mu.Lock()
	s.armLocked()
	s.mu.Unlock()
	br.overrides.sendActive(s, inForce) // after synced: the overrides in force
	br.schedules.resend(s, schedGen)    // and a schedule changed since the welcome
	s.joined.Store(true)
	br.timeline.connected(s) // online in the device's timeline (timeline.go)
	br.metrics.handshakes.WithLabelValues("ok").Inc()
	br.handshakesOK.Add(1)
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

// cutByShutdown reports whether a step of the handshake or re-auth that failed was cut
// short by Shutdown (br.ctx cancelled): the socket has its 1012 already, so the failure
// is counted as draining, and not logged as the broker's or the authenticator's.
func (s *session) cutByShutdown() bool {
	if s.br.ctx.Err() == nil {
		return false
	}
	s.br.metrics.handshakes.WithLabelValues("draining").Inc()
	s.closeWith(reasonRestarting)
	return true
}

// refuseAuth closes a socket whose auth failed, audited with the caller's address.
func (s *session) refuseAuth(err error) {
	br := s.br
	switch {
	case errors.Is(err, broker.ErrDeviceRevoked):
		br.metrics.handshakes.WithLabelValues("revoked").Inc()
		br.audit(reasonRevokedOrUnknown.audit, s, err.Error())
		s.closeWith(reasonRevokedOrUnknown)
	case errors.Is(err, broker.ErrCredentialInvalid):
		br.metrics.handshakes.WithLabelValues("unauthorized").Inc()
		br.audit(reasonBadCredential.audit, s, err.Error())
		s.closeWith(reasonBadCredential)
	case s.cutByShutdown():
	default:
		br.log.Warn("authentication unavailable", slog.String("error", err.Error()))
		br.metrics.handshakes.WithLabelValues("error").Inc()
		s.closeWith(reasonBrokerDown)
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
	if s.state.closing() {
		s.mu.Unlock()
		return
	}
	s.reauthNonce = nonce
	s.askedAt = s.br.cfg.Now()
	deadline := s.exp.Add(s.br.cfg.ReauthGrace).Sub(s.br.cfg.Now())
	s.timer = time.AfterFunc(deadline, func() { s.closeWith(reasonTokenExpired) })
	s.mu.Unlock()
	s.send(jsonFrame(nonceMsg{Type: "reauth", Nonce: nonce}))
}

func (s *session) reauth(m clientMsg, nonce string) {
	ctx, cancel := s.br.opContext(reauthTimeout)
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
		s.br.audit(reasonStaleReauth.audit, s, "re-auth with a token no newer than the current one")
		s.closeWith(reasonStaleReauth)
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
	if s.state.closing() { // finished is closing too
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
		return !s.isClosing() // a close frame is heard too, and is no answer
	case <-t.C:
		s.closeWith(reasonNoPingAnswer)
		return false
	}
}

func (br *Bridge) audit(typ broker.AuditType, s *session, detail string) {
	br.b.Audit(broker.AuditRecord{Type: string(typ), DeviceID: s.device, Feed: s.feed, RemoteAddr: s.remote, Detail: detail})
}

// newChallenge is the nonce a proof must sign: 32 random bytes, base64url.
func newChallenge() string { return broker.NewSecret(32) }
