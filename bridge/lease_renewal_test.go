package bridge_test

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestRenewalCountsFromItsSending: an instance that cannot renew its liveness key must
// close its sockets by the time the key expires, or another instance may take a lease
// over while its socket here still serves the device. The key's TTL runs from the
// server's write of the renewal, so the instance must count from when it sent the
// renewal, not from when the answer came back. The test moves the instance's clock on
// by ttl/2 while one renewal is in flight (as a slow answer would), then cuts NATS away
// and stops the clock at ttl past the renewal's sending. On the old code the instance
// counted ttl/2 less and never closed the socket (it would have, half a TTL too late,
// had the clock gone on).
func TestRenewalCountsFromItsSending(t *testing.T) {
	const ttl = 3 * time.Second
	r := startRenewalRig(t, ttl)
	px, p, clock, renewal := r.px, r.p, r.clock, r.renewal
	now := clock.now
	var sent time.Time
	var renewals atomic.Int32
	cut := make(chan struct{})
	px.onSend(renewal, func() bool {
		switch renewals.Add(1) {
		case 1: // in flight: its answer comes half a TTL later by this clock
			sent = now()
			clock.shift.Add(int64(ttl / 2))
			return true
		case 2: // the next one is lost, and so is NATS
			close(cut)
		}
		return false
	})
	select {
	case <-cut:
	case <-time.After(4 * ttl):
		t.Fatalf("saw %d liveness renewals in %v, want 2 (one each lease_ttl/3)", renewals.Load(), 4*ttl)
	}
	px.cutAll()
	stop := sent.Add(ttl + ttl/10) // lapsed counting from the sending, not from the answer
	clock.frozen.Store(&stop)

	if code := p.closed(t, 5*ttl); code != 1011 {
		t.Fatalf("socket closed with %d after the liveness key lapsed, want 1011", code)
	}
}

// TestUpkeepEndsByTheLapse: a NATS cut off without a word (the network drops every
// packet, so calls hang until their deadline and none fails) must not keep the sockets
// open past the lapse either. The instance's clock is moved on so that the next renewal
// is sent with a tenth of lease_ttl left before the lapse; there the proxy stalls and
// the clock stops, short of the lapse. The renewal's call must end at the lapse, and
// its end close the socket 1011. On the old code every call of the upkeep had a
// timeout of lease_ttl/3 of its own, whatever was left, and it closed only once its
// clock, read after three of them (the renewal, the buckets' status, a read of the
// key), said the lapse had passed: with the clock stopped, never; with a clock going
// on, two thirds of a TTL after the key could have expired.
func TestUpkeepEndsByTheLapse(t *testing.T) {
	const ttl = 3 * time.Second
	r := startRenewalRig(t, ttl)
	px, p, renewal := r.px, r.p, r.renewal
	var renewals atomic.Int32
	stalled := make(chan struct{})
	px.onSend(renewal, func() bool {
		switch renewals.Add(1) {
		case 1: // this one takes; the next, lease_ttl/3 later, has a tenth of the TTL left
			r.clock.shift.Add(int64(ttl - ttl/3 - ttl/10))
		case 2: // and hangs, as everything after it
			stop := r.clock.now()
			r.clock.frozen.Store(&stop)
			px.stall()
			close(stalled)
		}
		return true
	})
	t.Cleanup(px.cutAll) // before the stack's shutdown: a silent NATS would hold it up
	select {
	case <-stalled:
	case <-time.After(4 * ttl):
		t.Fatalf("saw %d liveness renewals in %v, want 2 (one each lease_ttl/3)", renewals.Load(), 4*ttl)
	}
	if code := p.closed(t, 2*ttl); code != 1011 {
		t.Fatalf("socket closed with %d at the lapse of a NATS that went silent, want 1011", code)
	}
}

// renewalRig is one instance whose broker reaches NATS through a natsProxy, with
// lease_ttl ttl and a clock the test moves, and one tablet connected and synced.
type renewalRig struct {
	px      *natsProxy
	p       *pump
	clock   *testClock
	renewal []byte // what the broker sends to renew the instance's liveness key
}

func startRenewalRig(t *testing.T, ttl time.Duration) renewalRig {
	t.Helper()
	n := brokertest.StartNATS(t)
	px := startNATSProxy(t, n.URL()[len("nats://"):])
	b, err := broker.New(bg, broker.Config{URL: "nats://" + px.addr(), OpTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(bg) })
	clock := &testClock{base: b.Now}
	s := startStack(t, stackOpts{broker: b, bridge: func(c *bridge.Config) { c.LeaseTTL, c.Now = ttl, clock.now }})
	c, _ := s.connect(t, s.pair(t, "lobby"), 0, "")
	p := startPump(c)
	p.expect(t, "synced")
	return renewalRig{px: px, p: p, clock: clock, renewal: []byte("PUB $KV." + bridge.BucketInstances + "." + s.br.InstanceID() + " ")}
}

// testClock is the broker's clock moved on by shift, or standing at frozen once set.
type testClock struct {
	base   func() time.Time
	shift  atomic.Int64
	frozen atomic.Pointer[time.Time]
}

func (c *testClock) now() time.Time {
	if f := c.frozen.Load(); f != nil {
		return *f
	}
	return c.base().Add(time.Duration(c.shift.Load()))
}

// natsProxy forwards TCP between the broker and NATS, so a test can watch what the
// broker sends and cut NATS away (no new connection gets through either).
type natsProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   []net.Conn
	match   []byte
	hook    func() bool // called on match, in the sending goroutine; false drops the connection
	closed  bool
	stalled chan struct{} // closed by stall: nothing more is forwarded, either way
	cut     chan struct{} // closed by cutAll
}

func startNATSProxy(t *testing.T, target string) *natsProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &natsProxy{ln: ln, target: target, stalled: make(chan struct{}), cut: make(chan struct{})}
	t.Cleanup(px.cutAll)
	go px.accept()
	return px
}

func (px *natsProxy) addr() string { return px.ln.Addr().String() }

// onSend calls hook whenever the broker's bytes to NATS contain match.
func (px *natsProxy) onSend(match []byte, hook func() bool) {
	px.mu.Lock()
	px.match, px.hook = match, hook
	px.mu.Unlock()
}

// stall stops forwarding, either way, and leaves every connection open: a network
// that drops everything without a word, where calls hang rather than fail. New
// connections are accepted and stall too.
func (px *natsProxy) stall() {
	px.mu.Lock()
	defer px.mu.Unlock()
	select {
	case <-px.stalled:
	default:
		close(px.stalled)
	}
}

// wait blocks a stalled copy until the proxy is cut; it reports whether to go on.
func (px *natsProxy) wait() bool {
	select {
	case <-px.stalled:
		<-px.cut
		return false
	default:
		return true
	}
}

// cutAll closes the listener and every connection through the proxy.
func (px *natsProxy) cutAll() {
	px.mu.Lock()
	if !px.closed {
		close(px.cut)
	}
	px.closed = true
	conns := px.conns
	px.conns = nil
	px.mu.Unlock()
	_ = px.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (px *natsProxy) accept() {
	for {
		in, err := px.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", px.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		px.mu.Lock()
		if px.closed {
			px.mu.Unlock()
			_ = in.Close()
			_ = out.Close()
			return
		}
		px.conns = append(px.conns, in, out)
		px.mu.Unlock()
		go px.receive(in, out)
		go px.send(in, out)
	}
}

// send copies the broker's bytes to NATS, watching them for the match (also across
// two reads).
func (px *natsProxy) send(in, out net.Conn) {
	var tail []byte
	px.copy(out, in, func(read []byte) bool {
		px.mu.Lock()
		match, hook := px.match, px.hook
		px.mu.Unlock()
		if hook == nil {
			return true
		}
		seen := append(tail, read...)
		if bytes.Contains(seen, match) && !hook() {
			return false
		}
		tail = append(tail[:0], seen[max(0, len(seen)-len(match)+1):]...)
		return true
	})
}

// receive copies NATS's bytes to the broker.
func (px *natsProxy) receive(in, out net.Conn) { px.copy(in, out, nil) }

// copy forwards src to dst until either closes, the proxy is cut while stalled, or
// watch (when set) reports false for what was read; then it closes both.
func (px *natsProxy) copy(dst, src net.Conn, watch func(read []byte) bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if watch != nil && !watch(buf[:k]) || !px.wait() {
				return
			}
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
