package bridge_test

import (
	"bytes"
	"io"
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
	n := brokertest.StartNATS(t)
	px := startNATSProxy(t, n.URL()[len("nats://"):])
	b, err := broker.New(bg, broker.Config{URL: "nats://" + px.addr(), OpTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(bg) })

	var shift atomic.Int64               // added to the broker's clock
	var frozen atomic.Pointer[time.Time] // when set, the instance's clock stands here
	now := func() time.Time {
		if f := frozen.Load(); f != nil {
			return *f
		}
		return b.Now().Add(time.Duration(shift.Load()))
	}
	s := startStack(t, stackOpts{broker: b, bridge: func(c *bridge.Config) { c.LeaseTTL, c.Now = ttl, now }})
	c, _ := s.connect(t, s.pair(t, "lobby"), 0, "")
	p := startPump(c)
	p.expect(t, "synced")

	renewal := []byte("PUB $KV." + bridge.BucketInstances + "." + s.br.InstanceID() + " ")
	var sent time.Time
	var renewals atomic.Int32
	cut := make(chan struct{})
	px.onSend(renewal, func() bool {
		switch renewals.Add(1) {
		case 1: // in flight: its answer comes half a TTL later by this clock
			sent = now()
			shift.Add(int64(ttl / 2))
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
	frozen.Store(&stop)

	if code := p.closed(t, 5*ttl); code != 1011 {
		t.Fatalf("socket closed with %d after the liveness key lapsed, want 1011", code)
	}
}

// natsProxy forwards TCP between the broker and NATS, so a test can watch what the
// broker sends and cut NATS away (no new connection gets through either).
type natsProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	conns  []net.Conn
	match  []byte
	hook   func() bool // called on match, in the sending goroutine; false drops the connection
	closed bool
}

func startNATSProxy(t *testing.T, target string) *natsProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &natsProxy{ln: ln, target: target}
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

// cutAll closes the listener and every connection through the proxy.
func (px *natsProxy) cutAll() {
	px.mu.Lock()
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
		go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
		go px.send(in, out)
	}
}

// send copies the broker's bytes to NATS, watching them for the match (also across
// two reads).
func (px *natsProxy) send(in, out net.Conn) {
	defer in.Close()
	defer out.Close()
	buf := make([]byte, 32<<10)
	var tail []byte
	for {
		k, err := in.Read(buf)
		if k > 0 {
			px.mu.Lock()
			match, hook := px.match, px.hook
			px.mu.Unlock()
			if hook != nil {
				seen := append(tail, buf[:k]...)
				if bytes.Contains(seen, match) && !hook() {
					return
				}
				tail = append(tail[:0], seen[max(0, len(seen)-len(match)+1):]...)
			}
			if _, werr := out.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
