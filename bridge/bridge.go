package bridge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// Bridge serves the tablets' WebSocket (docs/protocol.md §5): the handshake, one live
// connection per device across instances, per-feed fan-out, replay, heartbeats,
// re-auth, revocation kicks and draining.
//
// Lock order: Bridge.mu, then hub.mu, then session.mu. Nothing takes them the other way.
type Bridge struct {
	cfg     Config
	log     *slog.Logger
	b       *broker.Broker
	src     FeedSource
	auth    Authenticator
	leases  *leases
	poller  *poller     // nil where epoll is not available: a reader goroutine per socket
	readers *readerPool // the goroutines the poller hands frames to (readers.go)
	metrics *metrics
	origins map[string]bool
	wsURL   string
	addr    *httpx.ClientAddr
	// admission limits handshakes and failed auths per client address (admit.go).
	admission *admission
	// shown keeps what tablets have shown, snaps the feeds' recent seqs for lag, and
	// overrideShown takes their overrides' acknowledgements (shown.go).
	shown         *shownStore
	snaps         feedSnaps
	overrideShown func(deviceID, overrideID string)
	// overrides delivers the emergency overrides (override.go).
	overrides *overrides
	// timeline writes the devices' state changes (timeline.go).
	timeline *timeline
	// moves says each device's feed (nil: moves are not followed); reloadSub takes
	// the reload signals (fleet.go).
	moves     Moves
	reloadSub *nats.Subscription
	// schedules delivers the screen schedules and tells asleep feeds (schedule.go).
	schedules *schedules

	mu       sync.Mutex
	sessions map[string]*session // every open socket, by connection id
	byDevice map[string]*session // authenticated sessions
	hubs     map[string]*hub
	writers  []chan delivery // the fan-out's writers, shared by every hub (fanout.go)
	// Handshakes that ended welcomed, and what memrelease.go did with them.
	handshakesOK, memReleases, releaseTicks atomic.Uint64
	draining                                bool

	wg       sync.WaitGroup // a slot per open session, from add to its cleanup
	routines sync.WaitGroup // the goroutines goSafe started (owner.go)
	stop     chan struct{}
	// ctx is what a tablet's waits on the broker or the authenticator (handshake,
	// re-auth, a hub's start) derive from (owner.go): Shutdown cancels it once every
	// socket has its close frame.
	ctx      context.Context
	cancel   context.CancelFunc
	catchUps chan struct{} // a slot per JetStream catch-up read at once (CatchupReads)
}

// New sets up the lease buckets and starts the heartbeat and lease upkeep.
func New(ctx context.Context, cfg Config, b *broker.Broker, src FeedSource, auth Authenticator, rev Revocations) (*Bridge, error) {
	cfg.setDefaults()
	if cfg.PublicURL == "" {
		return nil, errors.New("bridge: PublicURL is required")
	}
	br := &Bridge{
		cfg: cfg, log: cfg.Logger, b: b, src: src, auth: auth,
		origins:  map[string]bool{},
		wsURL:    "ws" + strings.TrimPrefix(cfg.PublicURL, "http") + "/ws",
		sessions: map[string]*session{},
		byDevice: map[string]*session{},
		hubs:     map[string]*hub{},
		stop:     make(chan struct{}),
		catchUps: make(chan struct{}, cfg.CatchupReads),
	}
	br.metrics = newMetrics(cfg.Registerer, br.countBehind)
	br.overrideShown = cfg.Shown.OnOverride
	// Not ctx: that one bounds the setup below, and the bridge outlives it.
	br.ctx, br.cancel = context.WithCancel(context.WithoutCancel(ctx))
	origins := cfg.AllowedOrigins
	if len(origins) == 0 {
		origins = []string{originOf(cfg.PublicURL)}
	}
	for _, o := range origins {
		br.origins[strings.ToLower(strings.TrimRight(o, "/"))] = true
	}
	br.admission = newAdmission(cfg)
	br.readers = newReaderPool(br.stop)
	var err error
	if br.addr, err = httpx.NewClientAddr(cfg.TrustedProxies); err != nil {
		return nil, err
	}
	if br.overrides, err = newOverrides(ctx, br); err != nil {
		br.cancel()
		return nil, err
	}
	if br.leases, err = newLeases(ctx, br); err != nil {
		br.overrides.stop()
		br.cancel()
		return nil, err
	}
	if br.shown, err = newShownStore(ctx, br); err != nil {
		br.overrides.stop()
		br.cancel()
		return nil, err
	}
	if br.timeline, err = newTimeline(ctx, br); err != nil {
		br.overrides.stop()
		br.cancel()
		return nil, err
	}
	if pollingDisabled {
		br.log.Info("socket poller disabled: one reader goroutine per tablet")
	} else if br.poller, err = newPoller(); err != nil {
		br.log.Info("no socket poller here: one reader goroutine per tablet", slog.String("reason", err.Error()))
	}
	rev.OnRevoke(br.revoked)
	if m, ok := rev.(Moves); ok {
		br.moves = m
		m.OnMove(br.moved)
	}
	if br.reloadSub, err = br.subscribeReload(); err != nil {
		br.overrides.stop()
		br.cancel()
		return nil, err
	}
	if br.schedules, err = newSchedules(ctx, br); err != nil {
		br.overrides.stop()
		br.cancel()
		return nil, err
	}
	br.startWriters()                    // the fan-out's (fanout.go)
	br.goSafe("heartbeat", br.heartbeat) // Shutdown cannot have begun: br is not returned yet
	br.goSafe("shown flush", br.shown.flushLoop)
	br.goSafe("timeline", br.timeline.run)
	br.goSafe("memory release", br.releaseAfterStorms)
	return br, nil
}

// originOf is scheme://host[:port] of a URL.
func originOf(u string) string {
	scheme, rest, _ := strings.Cut(u, "://")
	host, _, _ := strings.Cut(rest, "/")
	return strings.ToLower(scheme + "://" + host)
}

// pollingDisabled makes New use no poller (tests set it, see export_test.go).
var pollingDisabled bool

// Register adds GET /ws to mux.
func (br *Bridge) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /ws", br.serveWS)
}

// Presence tells the admin device list whether a device is online anywhere in the
// cluster and when it was last seen.
func (br *Bridge) Presence(deviceID string) (online bool, lastSeen time.Time) {
	return br.leases.presence(deviceID)
}

// OnlineCount is how many tablets are connected across the cluster (leases held by live
// instances), for the dashboard's live count.
func (br *Bridge) OnlineCount() int { return br.leases.onlineCount() }

// serveWS is GET /ws through net/http: every refusal of docs/protocol.md §5, answered
// and counted, and the upgrades that did not come in through the lane (TakeUpgrade).
func (br *Bridge) serveWS(w http.ResponseWriter, r *http.Request) {
	if label, err := br.refusal(r); err != nil {
		if label != "" {
			br.metrics.handshakes.WithLabelValues(label).Inc()
		}
		if isUpgradeRequired(err) {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		httpx.WriteError(w, err)
		return
	}
	remote := br.addr.Of(r)
	if err := br.admit(remote); err != nil {
		br.metrics.handshakes.WithLabelValues("rate_limited").Inc()
		httpx.WriteError(w, err)
		return
	}
	conn, early, err := hijack(w)
	if err != nil {
		// The request was checked above: only a failed hijack gets here.
		br.metrics.handshakes.WithLabelValues("bad_upgrade").Inc()
		return
	}
	br.upgrade(conn, early, remote, r.Header.Get("Sec-Websocket-Key"))
}

// TakeUpgrade is serveWS for a request the main listener's lane read off the socket
// itself (httpx.Lane). When the request passes every check serveWS makes, the socket is
// upgraded and it reports true. Otherwise it reports false, having written and counted
// nothing, and the lane hands the connection on to net/http, whose serveWS answers the
// refusal exactly as it answers any other. (An address's admission is asked twice
// then: a refused one stays refused, and nothing is taken from an allowance by a
// refusal.)
func (br *Bridge) TakeUpgrade(conn net.Conn, r *http.Request, early []byte) bool {
	if _, err := br.refusal(r); err != nil {
		return false
	}
	remote := br.addr.Of(r)
	if br.admit(remote) != nil {
		return false
	}
	br.upgrade(conn, early, remote, r.Header.Get("Sec-Websocket-Key"))
	return true
}

// refusal is the answer to an upgrade request refused before its address's admission,
// in the order of docs/protocol.md §5, with its label for the handshakes metric ("" when
// it is not counted), or nil.
func (br *Bridge) refusal(r *http.Request) (label string, err error) {
	origin := r.Header.Get("Origin")
	if origin == "" || !br.origins[strings.ToLower(origin)] {
		return "bad_origin", httpx.Errorf(httpx.CodeForbidden, "this origin may not open the feed socket")
	}
	if err := checkUpgrade(r); err != nil {
		return "bad_upgrade", err
	}
	if br.isDraining() {
		return "", &httpx.Error{Code: httpx.CodeUnavailable, Message: "this server is restarting; reconnect shortly", RetryAfter: 1}
	}
	return "", nil
}

// upgrade makes the socket taken over from net/http, or from the lane, a session: its
// 101 and challenge wait in the cork for start (upgrade.go), or a draining or full
// instance refuses it.
func (br *Bridge) upgrade(conn net.Conn, early []byte, remote, key string) {
	if h := upgradedHook.Load(); h != nil {
		(*h)()
	}
	s := newSession(br, conn, early, remote)
	s.challenge = newChallenge()
	s.corked, s.cork = true, upgradeResponse(key, jsonFrame(nonceMsg{Type: "challenge", Nonce: s.challenge}))
	if refused, ok := br.add(s); !ok {
		label := "too_many"
		if refused.code == CloseRestarting {
			label = "draining"
		}
		br.metrics.handshakes.WithLabelValues(label).Inc()
		br.refuse(conn, key, refused)
		return
	}
	s.start()
}

// add registers a new session and counts it in br.wg (its cleanup is done), unless the
// instance is draining (1012) or full (4429). Under br.mu, which Shutdown holds while
// it sets draining: no session is added once Shutdown has begun, so none is added to
// br.wg while Shutdown waits for it.
func (br *Bridge) add(s *session) (refused closeReason, ok bool) {
	br.mu.Lock()
	defer br.mu.Unlock()
	switch {
	case br.draining:
		return reasonRestarting, false
	case br.cfg.MaxConns > 0 && len(br.sessions) >= br.cfg.MaxConns:
		return reasonTooManyConns, false
	}
	br.sessions[s.id] = s
	br.wg.Add(1) // done by the session's cleanup
	br.metrics.conns.Inc()
	return closeReason{}, true
}

// isDraining reports whether Shutdown has begun.
func (br *Bridge) isDraining() bool {
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.draining
}

// remove forgets a session that has ended.
func (br *Bridge) remove(s *session) {
	br.mu.Lock()
	if br.sessions[s.id] == s {
		delete(br.sessions, s.id)
		br.metrics.conns.Dec()
	}
	if s.device != "" && br.byDevice[s.device] == s {
		delete(br.byDevice, s.device)
	}
	br.mu.Unlock()
}

// authenticated records which session serves a device on this instance.
func (br *Bridge) authenticated(s *session) {
	br.mu.Lock()
	br.byDevice[s.device] = s
	br.mu.Unlock()
}

func (br *Bridge) session(deviceID string) *session {
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.byDevice[deviceID]
}

// conn finds a socket by connection id, authenticated or not.
func (br *Bridge) conn(id string) *session {
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.sessions[id]
}

// revoked closes a revoked device's socket on this instance (4403).
func (br *Bridge) revoked(deviceID, _ string) {
	br.shown.forget(deviceID)
	if s := br.session(deviceID); s != nil {
		s.closeWith(reasonRevoked)
	}
}

// heartbeat sends every live tablet the same pre-encoded heartbeat and ping, once per
// interval, from one goroutine: no timer per connection.
func (br *Bridge) heartbeat() {
	t := time.NewTicker(br.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-br.stop:
			return
		case now := <-t.C:
			br.beat(now)
		}
	}
}

// beat is one heartbeat. Nothing in it waits for one socket: sends never block (a
// frame the socket does not take is queued for the session's own writer), and a dead
// tablet's abort only marks it: its socket is closed on a goroutine of its own. A
// dead link that held this loop up would make every healthy tablet of the instance
// miss heartbeats and reconnect (issue 12 §1).
func (br *Bridge) beat(now time.Time) {
	msg := `{"type":"heartbeat","time":"` + now.UTC().Format(time.RFC3339) + `"}`
	frame := append(textFrame([]byte(msg)), pingFrame...)
	// A live tablet answers each ping: one silent for two heartbeats (and a little) is
	// dead, and is dropped without ceremony.
	silent := time.Now().Add(-2*br.cfg.Heartbeat - time.Second)
	for _, s := range br.liveSessions() {
		if s.silentSince(silent) {
			s.abort()
			continue
		}
		s.send(frame)
	}
}

func (br *Bridge) liveSessions() []*session {
	br.mu.Lock()
	defer br.mu.Unlock()
	out := make([]*session, 0, len(br.byDevice))
	for _, s := range br.byDevice {
		out = append(out, s)
	}
	return out
}

// closeAll closes every socket with r (lease upkeep lost, or drain).
func (br *Bridge) closeAll(r closeReason) {
	br.mu.Lock()
	all := make([]*session, 0, len(br.sessions))
	for _, s := range br.sessions {
		all = append(all, s)
	}
	br.mu.Unlock()
	for _, s := range all {
		s.closeWith(r)
	}
}

// Shutdown drains the bridge: it refuses new sockets and goroutines, closes every socket
// with 1012 so tablets reconnect (to another instance) soon, cancels what still waits on
// the broker or the authenticator (a handshake, a re-auth, a hub's start), releases
// every lease, and waits for its sessions and goroutines or ctx. It is idempotent.
func (br *Bridge) Shutdown(ctx context.Context) error {
	br.mu.Lock()
	if br.draining {
		br.mu.Unlock()
		return nil
	}
	br.draining = true
	sockets := len(br.sessions)
	br.mu.Unlock()
	began := time.Now()
	br.closeAll(reasonRestarting)
	closed := time.Since(began)
	_ = br.reloadSub.Unsubscribe()
	close(br.stop)
	br.cancel() // after closeAll: a handshake cut short finds its socket closing 1012
	done := make(chan struct{})
	go func() {
		br.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
		if br.poller != nil {
			br.poller.close()
		}
	case <-ctx.Done():
		err = ctx.Err()
	}
	ended := time.Since(began)
	br.mu.Lock()
	hubs := br.hubs
	br.hubs = map[string]*hub{}
	br.mu.Unlock()
	for _, h := range hubs {
		h.shutdown()
	}
	br.leases.shutdown(ctx)
	br.overrides.stop()
	br.schedules.stop()
	if werr := br.waitRoutines(ctx); err == nil {
		err = werr
	}
	br.shown.mirror.Stop() // after the flush loop's last flush
	// The drain's parts, for an operator timing a restart (issue 15): the 1012s queued
	// or written, every socket ended (answered, or its close grace over), the rest.
	br.log.Info("bridge drained", slog.Int("sockets", sockets), slog.Duration("close_frames", closed),
		slog.Duration("sockets_ended", ended), slog.Duration("rest", time.Since(began)-ended))
	return err
}

func newConnID() string { return broker.NewSecret(12) }
