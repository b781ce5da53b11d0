package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
)

// Buckets of the lease scheme (DESIGN.md "Leases cost O(instances)"):
//   - kioskfeed_instances: one key per live instance with a bucket TTL of lease_ttl,
//     renewed every lease_ttl/3. Its disappearance is how an instance's death is known.
//   - kioskfeed_leases: one key per connected device naming the instance and connection
//     that hold it. Taken by atomic create, taken over by compare-and-set only from a
//     dead holder, deleted by revision on close. It is never renewed per device.
//
// Both are in memory storage (Broker.SoftBucket): they describe live processes, and a
// handshake must not wait for an fsync.
const (
	BucketInstances = "kioskfeed_instances"
	BucketLeases    = "kioskfeed_leases"
)

var errLeaseHeld = errors.New("lease held by a live connection")

type leaseRecord struct {
	Instance string    `json:"instance"`
	Conn     string    `json:"conn"`
	Since    time.Time `json:"since"`
	Remote   string    `json:"remote_addr"`
}

type probeRequest struct {
	Device string `json:"device"`
	Conn   string `json:"conn"`
}

type leases struct {
	br       *Bridge
	nc       *nats.Conn
	kv       jetstream.KeyValue
	inst     jetstream.KeyValue
	instance string
	mirror   *broker.Mirror[leaseRecord]
	subs     []*nats.Subscription

	mu       sync.Mutex
	instRev  uint64
	renewed  time.Time
	lastSeen map[string]time.Time
	alive    map[string]aliveCache

	stop chan struct{}
	done chan struct{}
}

type aliveCache struct {
	alive bool
	at    time.Time
}

func newLeases(ctx context.Context, br *Bridge) (*leases, error) {
	b := br.b
	inst, kv, err := openLeaseBuckets(ctx, br)
	if err != nil {
		return nil, err
	}
	l := &leases{
		br: br, nc: b.Conn(), kv: kv, inst: inst, instance: "i" + newConnID(),
		lastSeen: map[string]time.Time{}, alive: map[string]aliveCache{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	l.renewed = br.cfg.Now() // before the write: the key's TTL runs from the write, later
	if l.instRev, err = inst.Create(ctx, l.instance, []byte(`{}`)); err != nil {
		return nil, err
	}
	if l.mirror, err = broker.NewMirror[leaseRecord](kv, br.log); err != nil {
		return nil, err
	}
	l.mirror.OnRemove(func(device string, _ leaseRecord) {
		l.mu.Lock()
		l.lastSeen[device] = br.cfg.Now()
		l.mu.Unlock()
	})
	for subj, h := range map[string]nats.MsgHandler{
		"kioskfeed.lease.probe." + l.instance: l.onProbe,
		"kioskfeed.lease.lost." + l.instance:  l.onLost,
	} {
		sub, err := l.nc.Subscribe(subj, h)
		if err != nil {
			return nil, err
		}
		l.subs = append(l.subs, sub)
	}
	if !br.goSafe("lease upkeep", l.upkeep) {
		close(l.done) // never started: shutdown has nothing to wait for
	}
	return l, nil
}

// openLeaseBuckets sets up (or finds) the two buckets. It is idempotent, so it also
// brings them back after a NATS restart that lost them (memory storage).
func openLeaseBuckets(ctx context.Context, br *Bridge) (inst, kv jetstream.KeyValue, err error) {
	inst, err = br.b.SoftBucket(ctx, jetstream.KeyValueConfig{Bucket: BucketInstances, Description: "live kioskfeed instances", History: 1, TTL: br.cfg.LeaseTTL})
	if err != nil {
		return nil, nil, err
	}
	kv, err = br.b.SoftBucket(ctx, jetstream.KeyValueConfig{Bucket: BucketLeases, Description: "which instance and connection serve each device", History: 1})
	return inst, kv, err
}

// upkeep renews this instance's liveness key every lease_ttl/3: the only periodic KV
// write, whatever the number of tablets. An instance that cannot renew it for a whole
// TTL, or finds it gone (others took it for dead), closes its sockets: their leases may
// be taken over, and two live connections for one device must never be.
func (l *leases) upkeep() {
	defer close(l.done)
	t := time.NewTicker(l.br.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.renew()
	}
}

// renew makes one renewal of the liveness key. A renewal counts from when it was sent:
// the key's TTL runs from the server's write of it, which comes later, so the lapse is
// never counted after the key's expiry for want of counting the call's own latency.
//
// Every call here shares one context that ends at the lapse (lease_ttl after the last
// renewal that took was sent): a renewal may take all the time left, so a saturated
// JetStream that answers late still keeps the key, but not a moment more. A NATS cut
// off without a word (a blackholed network, where calls hang instead of failing) thus
// closes the sockets at the lapse, not one call's timeout or three after it, when
// another instance may already have taken their leases over. The context's end is the
// lapse itself, whatever the clock says when a call returns.
func (l *leases) renew() {
	sent := l.br.cfg.Now()
	ctx, cancel, toLapse := l.untilLapse(sent)
	defer cancel()
	lapsed := func() bool { return toLapse && ctx.Err() != nil || l.lapsed() }
	rev, err := l.inst.Update(ctx, l.instance, []byte(`{}`), l.instRev)
	switch {
	case err == nil:
		l.mu.Lock()
		l.instRev, l.renewed = rev, sent
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), l.br.cfg.LeaseTTL/3)
		l.br.checkEpoch(ctx)
		cancel()
	case broker.IsKVConflict(err) && l.adoptLateRenewal(ctx):
		// A renewal that failed was applied after all: the key stands, ours.
	case broker.IsKVConflict(err) || errors.Is(err, jetstream.ErrKeyNotFound):
		// Others may have taken us for dead and taken over leases. Come back to
		// life first, so no new takeover starts, then keep only the sockets whose
		// lease is still ours.
		l.br.log.Warn("instance liveness lapsed; checking every lease", slog.String("instance", l.instance))
		sent := l.br.cfg.Now()
		ctx, cancel := context.WithTimeout(context.Background(), l.br.cfg.LeaseTTL/3)
		rev, err := l.inst.Create(ctx, l.instance, []byte(`{}`))
		cancel()
		if err != nil {
			l.br.closeAll(reasonLeaseLost)
			return
		}
		l.mu.Lock()
		l.instRev, l.renewed = rev, sent
		l.mu.Unlock()
		l.verifyAll()
	default:
		if !lapsed() && l.restore(ctx) {
			return
		}
		if lapsed() {
			l.br.log.Warn("cannot renew instance liveness; closing every socket", slog.String("error", err.Error()))
			l.br.closeAll(reasonBrokerDown)
			// NATS may be back without the buckets, which new sockets need; the
			// sockets closed first, as this waits on NATS.
			ctx, cancel := context.WithTimeout(context.Background(), l.br.cfg.LeaseTTL/3)
			l.restore(ctx)
			cancel()
		}
	}
}

// untilLapse is the context of one renewal's calls: it ends at the lapse (toLapse), or,
// once the key has lapsed (its sockets are closed, nothing is left to keep), after
// lease_ttl/3.
func (l *leases) untilLapse(now time.Time) (ctx context.Context, cancel context.CancelFunc, toLapse bool) {
	left := l.untilLapseFrom(now)
	if left <= 0 {
		ctx, cancel = context.WithTimeout(context.Background(), l.br.cfg.LeaseTTL/3)
		return ctx, cancel, false
	}
	ctx, cancel = context.WithTimeout(context.Background(), left)
	return ctx, cancel, true
}

// lapsed reports whether lease_ttl has passed since the last renewal that took was sent.
func (l *leases) lapsed() bool { return l.untilLapseFrom(l.br.cfg.Now()) <= 0 }

// untilLapseFrom is the time from now to the lapse: lease_ttl after the last renewal
// that took was sent.
func (l *leases) untilLapseFrom(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewed.Add(l.br.cfg.LeaseTTL).Sub(now)
}

// adoptLateRenewal handles a renewal refused for its revision: when NATS is slow (a
// JetStream cluster saturated by a killed instance's takeovers), a renewal can fail
// here and still be applied, so the next one names a revision that is no longer the
// key's. No other instance ever writes this instance's key, so a key that stands is
// ours: its revision is taken and renewal goes on, where closing every socket would
// only add a reconnect storm to the load. Its read has the renewal's context, which
// ends by the lapse. It reports false when the key is gone, not newer, or cannot be
// read in time (the caller then comes back to life and checks every lease).
func (l *leases) adoptLateRenewal(ctx context.Context) bool {
	e, err := l.inst.Get(ctx, l.instance)
	if err != nil {
		return false
	}
	l.mu.Lock()
	adopt := e.Revision() > l.instRev
	if adopt {
		l.instRev, l.renewed = e.Revision(), e.Created()
	}
	l.mu.Unlock()
	if adopt {
		l.br.log.Info("instance liveness: a renewal that failed was applied; going on from it", slog.String("instance", l.instance))
	}
	return adopt
}

// restore handles a NATS that came back without the lease buckets (memory storage is
// lost when every node restarts): it sets them up again, comes back to life, and takes
// the leases of the sockets still open here again. It reports whether liveness is
// renewed; while NATS is away it fails fast and upkeep goes on counting the lapse. Its
// calls have the renewal's context; taking the leases again has the new TTL.
func (l *leases) restore(ctx context.Context) bool {
	if _, err := l.inst.Status(ctx); !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return false // the buckets are there (or NATS is not): nothing to restore
	}
	if _, _, err := openLeaseBuckets(ctx, l.br); err != nil {
		return false
	}
	sent := l.br.cfg.Now()
	rev, err := l.inst.Create(ctx, l.instance, []byte(`{}`))
	if err != nil {
		return false
	}
	l.mu.Lock()
	l.instRev, l.renewed = rev, sent
	l.mu.Unlock()
	l.br.log.Warn("lease buckets were lost (NATS restarted) and are set up again", slog.String("instance", l.instance))
	rctx, rcancel, _ := l.untilLapse(l.br.cfg.Now())
	defer rcancel()
	l.reassert(rctx)
	return true
}

// reassert takes again, for every socket open here, the lease a NATS restart lost; a
// socket whose device was meanwhile taken elsewhere is closed.
func (l *leases) reassert(ctx context.Context) {
	for _, s := range l.br.liveSessions() {
		s.mu.Lock()
		held := s.leaseRev != 0
		s.mu.Unlock()
		if !held {
			continue
		}
		rec := leaseRecord{Instance: l.instance, Conn: s.id, Since: l.br.cfg.Now().UTC(), Remote: s.remote}
		val, _ := json.Marshal(rec)
		rev, err := l.kv.Create(ctx, s.device, val)
		if err != nil {
			s.closeWith(reasonLeaseLost)
			continue
		}
		l.mirror.Set(s.device, rec)
		s.mu.Lock()
		s.leaseRev = rev
		s.mu.Unlock()
	}
}

// verifyAll closes every socket whose device lease no longer names it.
func (l *leases) verifyAll() {
	for _, s := range l.br.liveSessions() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		e, err := l.kv.Get(ctx, s.device)
		cancel()
		var rec leaseRecord
		if err == nil {
			_ = json.Unmarshal(e.Value(), &rec)
		}
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) || (err == nil && rec.Conn != s.id) {
			s.closeWith(reasonLeaseLost)
		}
	}
}

// acquire takes the device's lease for s, or returns errLeaseHeld when a live
// connection holds it. A holder that does not answer a ping, or whose instance is
// gone, loses the lease to s.
func (l *leases) acquire(ctx context.Context, s *session) (uint64, error) {
	rec := leaseRecord{Instance: l.instance, Conn: s.id, Since: l.br.cfg.Now().UTC(), Remote: s.remote}
	val, _ := json.Marshal(rec)
	for range 4 {
		rev, err := l.kv.Create(ctx, s.device, val)
		if err == nil {
			l.mirror.Set(s.device, rec)
			return rev, nil
		}
		if !broker.IsKVConflict(err) {
			return 0, err
		}
		e, err := l.kv.Get(ctx, s.device)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // released meanwhile: create again
		}
		if err != nil {
			return 0, err
		}
		var holder leaseRecord
		_ = json.Unmarshal(e.Value(), &holder)
		if l.holderAlive(ctx, s.device, holder) {
			return 0, errLeaseHeld
		}
		rev, err = l.kv.Update(ctx, s.device, val, e.Revision())
		if err == nil {
			l.mirror.Set(s.device, rec)
			l.notifyLost(s.device, holder)
			return rev, nil
		}
		if !broker.IsKVConflict(err) {
			return 0, err
		}
	}
	return 0, errLeaseHeld
}

// holderAlive asks whoever holds a lease whether its socket still answers.
func (l *leases) holderAlive(ctx context.Context, device string, holder leaseRecord) bool {
	if holder.Instance == l.instance {
		return l.localAlive(holder.Conn)
	}
	live, alive := l.liveness(ctx, holder.Instance)
	if !alive {
		return false
	}
	req, _ := json.Marshal(probeRequest{Device: device, Conn: holder.Conn})
	pctx, cancel := context.WithTimeout(ctx, l.br.cfg.ProbeTimeout+time.Second)
	defer cancel()
	msg, perr := l.nc.RequestWithContext(pctx, "kioskfeed.lease.probe."+holder.Instance, req)
	if perr != nil {
		if errors.Is(perr, nats.ErrNoResponders) && live != nil && l.missedRenewal(live) {
			// Nobody holds the instance's probe subscription, and its liveness key
			// missed a renewal: the process is gone (killed, not drained), and its key
			// only waits for the bucket's TTL. Its tablets need not wait with it.
			return false
		}
		// An instance that is alive but does not answer keeps its lease: refusing a
		// tablet for a while is safe, two live connections are not.
		return true
	}
	return string(msg.Data) == "alive"
}

// missedRenewal reports whether a liveness key is older than one renewal (lease_ttl/3)
// and a margin for the clocks of the NATS server and this instance: its instance missed
// at least one renewal. With the probe unanswered by anyone, that instance is dead; a
// live one briefly away from NATS either renews on its return, or closes its sockets
// when its key lapses (upkeep).
func (l *leases) missedRenewal(live jetstream.KeyValueEntry) bool {
	return l.br.cfg.Now().Sub(live.Created()) > l.br.cfg.LeaseTTL/3+missedRenewalMargin
}

// missedRenewalMargin is the slack missedRenewal allows between the NATS server's clock,
// which stamps a liveness key, and this instance's.
const missedRenewalMargin = 2 * time.Second

// instanceAlive reports whether an instance's liveness key exists.
func (l *leases) instanceAlive(ctx context.Context, instance string) bool {
	_, alive := l.liveness(ctx, instance)
	return alive
}

// liveness reads an instance's liveness key: alive unless the key is gone (a failed
// read, NATS away, counts as alive), and the entry when it was read.
func (l *leases) liveness(ctx context.Context, instance string) (jetstream.KeyValueEntry, bool) {
	e, err := l.inst.Get(ctx, instance)
	if err != nil {
		return nil, !(errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted))
	}
	return e, true
}

// onProbe answers another instance's question about one of our sockets.
func (l *leases) onProbe(m *nats.Msg) {
	var req probeRequest
	if json.Unmarshal(m.Data, &req) != nil {
		return
	}
	answer := func() { // a probe waits up to ProbeTimeout: never on the subscription's goroutine
		answer := "dead"
		if l.localAlive(req.Conn) {
			answer = "alive"
		}
		_ = m.Respond([]byte(answer))
	}
	if !l.br.goSafe("lease probe answer", answer) {
		// Shutting down: every socket here is closing (1012), and a closing socket is
		// what localAlive answers dead for. Say so at once.
		_ = m.Respond([]byte("dead"))
	}
}

// localAlive reports whether this instance's socket conn (holding device's lease) is
// alive. A socket still in its handshake or catch-up is: its reader is busy and cannot
// see a pong yet, and it is no half-open leftover. Otherwise it must answer a ping.
func (l *leases) localAlive(conn string) bool {
	s := l.br.conn(conn) // connection ids are random and never reused
	if s == nil {
		return false
	}
	if !s.joined.Load() {
		return !s.isClosing()
	}
	return s.probe(l.br.cfg.ProbeTimeout)
}

// notifyLost tells the instance that held a lease taken over that its socket for the
// device must close (it may be alive after a pause and not know).
func (l *leases) notifyLost(device string, holder leaseRecord) {
	req, _ := json.Marshal(probeRequest{Device: device, Conn: holder.Conn})
	if holder.Instance == l.instance {
		l.closeLost(req)
		return
	}
	_ = l.nc.Publish("kioskfeed.lease.lost."+holder.Instance, req)
}

func (l *leases) onLost(m *nats.Msg) { l.closeLost(m.Data) }

func (l *leases) closeLost(data []byte) {
	var req probeRequest
	if json.Unmarshal(data, &req) != nil {
		return
	}
	if s := l.br.conn(req.Conn); s != nil {
		s.mu.Lock()
		s.leaseRev = 0 // not ours any more: do not delete the new holder's lease
		s.mu.Unlock()
		s.closeWith(reasonLeaseLost)
	}
}

// release deletes the device's lease if it is still the revision we took.
func (l *leases) release(device string, rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.kv.Delete(ctx, device, jetstream.LastRevision(rev)); err == nil {
		l.mirror.Remove(device)
	}
}

// presence is a device's standing for the admin device list.
func (l *leases) presence(device string) (bool, time.Time) {
	rec, ok := l.mirror.Get(device)
	now := l.br.cfg.Now()
	if ok && l.instanceAliveCached(rec.Instance, now) {
		return true, now
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return false, l.lastSeen[device]
}

func (l *leases) onlineCount() int {
	now := l.br.cfg.Now()
	n := 0
	for _, rec := range l.mirror.All(nil) {
		if l.instanceAliveCached(rec.Instance, now) {
			n++
		}
	}
	return n
}

func (l *leases) instanceAliveCached(instance string, now time.Time) bool {
	l.mu.Lock()
	c, ok := l.alive[instance]
	l.mu.Unlock()
	if ok && now.Sub(c.at) < time.Second {
		return c.alive
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	alive := l.instanceAlive(ctx, instance)
	l.mu.Lock()
	l.alive[instance] = aliveCache{alive: alive, at: now}
	l.mu.Unlock()
	return alive
}

// shutdown stops the upkeep and removes this instance's liveness key, so other
// instances may take its (already released) leases at once.
func (l *leases) shutdown(ctx context.Context) {
	select {
	case <-l.stop:
		return
	default:
	}
	close(l.stop)
	<-l.done
	for _, sub := range l.subs {
		_ = sub.Unsubscribe()
	}
	l.mirror.Stop()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = l.inst.Delete(dctx, l.instance)
}
