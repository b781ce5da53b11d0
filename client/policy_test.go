package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
)

// retry is one OnDisconnect report.
type retry struct {
	err  error
	wait time.Duration
}

type retries struct {
	mu   sync.Mutex
	list []retry
}

func (r *retries) add(err error, wait time.Duration) {
	r.mu.Lock()
	r.list = append(r.list, retry{err, wait})
	r.mu.Unlock()
}

func (r *retries) get() []retry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]retry(nil), r.list...)
}

func closeCode(err error) int {
	var ce *client.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// After a 1012 the server is coming back: failed attempts retry within the restart
// jitter, not the doubling backoff, for the restart window (docs/protocol.md §5).
func TestRunRetriesWithinTheJitterAfterARestart(t *testing.T) {
	s := startServer(t, serverOpts{})
	d := pairedDevice(t, s, "jitter-feed")
	var rs retries
	const jitter = 50 * time.Millisecond
	// A backoff from 2 s would exceed the jitter almost always; the window outlasts the test.
	c := &client.Client{Device: d, OnDisconnect: rs.add, Policy: client.Policy{RestartJitter: jitter, BackoffBase: 2 * time.Second}}
	first := s.mustPublish(t, "jitter-feed", "state", `{}`)
	msgs, _, _ := runClient(t, c)
	msgs.expect(t, client.TypeReset, first, client.TypeSynced)
	s.stopBridge() // 1012, then every upgrade is refused 503 while it stays down
	eventually(t, wait, func() bool { return len(rs.get()) >= 5 }, "five failed attempts")
	got := rs.get()
	if closeCode(got[0].err) != 1012 {
		t.Fatalf("first disconnect %v, want 1012", got[0].err)
	}
	for i, r := range got {
		var apiErr *client.APIError
		if i > 0 && (!errors.As(r.err, &apiErr) || apiErr.Status != 503) {
			t.Fatalf("attempt %d failed with %v, want the draining instance's 503", i, r.err)
		}
		if r.wait >= jitter {
			t.Fatalf("attempt %d waits %v, want less than the restart jitter %v: %v", i, r.wait, jitter, got)
		}
	}
	missed := s.mustPublish(t, "jitter-feed", "item", `{"while":"down"}`)
	if err := s.startBridge(); err != nil {
		t.Fatal(err)
	}
	msgs.expect(t, missed, client.TypeSynced) // the catch-up brings it, no reset
}

// Past max_connections the socket is closed 4429, and the next attempt waits at least
// TooManyFloor more than the backoff.
func TestRunWaitsLongerAfter4429(t *testing.T) {
	s := startServer(t, serverOpts{maxConns: 1})
	first := &client.Client{Device: pairedDevice(t, s, "full-feed")}
	msgs, _, _ := runClient(t, first)
	msgs.expect(t, client.TypeReset, client.TypeSynced)

	var rs retries
	const floor, base = 300 * time.Millisecond, 100 * time.Millisecond
	second := &client.Client{Device: pairedDevice(t, s, "full-feed"), OnDisconnect: rs.add, Policy: client.Policy{TooManyFloor: floor, BackoffBase: base}}
	runClient(t, second)
	eventually(t, wait, func() bool { return len(rs.get()) >= 2 }, "two refused attempts")
	for i, r := range rs.get() {
		if closeCode(r.err) != 4429 {
			t.Fatalf("attempt %d: %v, want 4429", i, r.err)
		}
		if r.wait < floor || r.wait >= floor+base<<i {
			t.Fatalf("attempt %d waits %v, want in [%v, %v)", i, r.wait, floor, floor+base<<i)
		}
	}
}

// A link that goes silent (a Wi-Fi gone without a word) is given up after 2.5
// heartbeats, and the client comes back by itself once the link is.
func TestRunReconnectsWhenTheLinkGoesSilent(t *testing.T) {
	s := startServer(t, serverOpts{heartbeat: time.Second})
	p := startBlackhole(t, s.URL[len("http://"):])
	d := pairedDevice(t, s, "silent-feed")
	var rs retries
	opts := client.SocketOptions{NetDial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, p.addr)
	}}
	c := &client.Client{Device: d, Socket: opts, OnDisconnect: rs.add, Policy: client.Policy{BackoffBase: 100 * time.Millisecond}}
	first := s.mustPublish(t, "silent-feed", "state", `{}`)
	msgs, _, _ := runClient(t, c)
	msgs.expect(t, client.TypeReset, first, client.TypeSynced)
	p.silent.Store(true)
	began := time.Now()
	eventually(t, 3*wait, func() bool { return len(rs.get()) >= 1 }, "the watchdog to give the socket up")
	if err := rs.get()[0].err; !errors.Is(err, client.ErrSilent) {
		t.Fatalf("disconnect %v, want ErrSilent", err)
	}
	if waited := time.Since(began); waited < 2*time.Second {
		t.Fatalf("gave up after %v of silence, before 2.5 heartbeats", waited)
	}
	missed := s.mustPublish(t, "silent-feed", "item", `{"during":"silence"}`)
	p.silent.Store(false)
	msgs.expect(t, missed, client.TypeSynced) // the next socket's catch-up
	seq := s.mustPublish(t, "silent-feed", "item", `{"after":"silence"}`)
	msgs.expect(t, seq)
}

// blackhole forwards TCP to a server until silent is set; from then on it forwards
// nothing either way and holds the connections open, as a vanished link does.
type blackhole struct {
	addr   string
	silent atomic.Bool
}

func startBlackhole(tb testing.TB, target string) *blackhole {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &blackhole{addr: ln.Addr().String()}
	var conns sync.WaitGroup
	tb.Cleanup(func() {
		_ = ln.Close()
		conns.Wait()
	})
	done := make(chan struct{})
	tb.Cleanup(func() { close(done) })
	conns.Add(1)
	go func() {
		defer conns.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			stop := func() { _ = in.Close(); _ = out.Close() }
			conns.Add(3)
			go func() { defer conns.Done(); p.pipe(out, in); stop() }()
			go func() { defer conns.Done(); p.pipe(in, out); stop() }()
			go func() { defer conns.Done(); <-done; stop() }()
		}
	}()
	return p
}

// pipe copies src to dst while the link is up; bytes read while it is silent are
// dropped, and the link never recovers for this connection.
func (p *blackhole) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 16<<10)
	dead := false
	for {
		n, err := src.Read(buf)
		if p.silent.Load() {
			dead = true
		}
		if n > 0 && !dead {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// The policy's decisions, bound by bound (docs/protocol.md §5, pwa/static/reconnect.js).
func TestPolicyNext(t *testing.T) {
	lost := errors.New("connection reset")
	within := func(t *testing.T, got, lo, hi time.Duration) {
		t.Helper()
		if got < lo || got >= hi {
			t.Fatalf("wait %v, want in [%v, %v)", got, lo, hi)
		}
	}
	t.Run("doubling to the cap, reset after a long socket", func(t *testing.T) {
		var p client.Policy
		for _, ceiling := range []time.Duration{1, 2, 4, 8, 16, 30, 30} {
			within(t, p.Next(lost, time.Time{}), 0, ceiling*time.Second)
		}
		// A socket welcomed 61 s ago lived long enough: the doubling starts over.
		within(t, p.Next(lost, time.Now().Add(-61*time.Second)), 0, time.Second)
	})
	t.Run("1012 and the restart window", func(t *testing.T) {
		p := client.Policy{BackoffBase: time.Hour, BackoffCap: time.Hour}
		within(t, p.Next(&client.CloseError{Code: 1012}, time.Now()), 0, 2*time.Second)
		for range 5 { // failed attempts within the window: the jitter, not the hour
			within(t, p.Next(lost, time.Time{}), 0, 2*time.Second)
		}
		// Welcomed again, then lost: a failure again, back to the backoff.
		p.Next(lost, time.Now())
		if got := p.Next(lost, time.Time{}); got < 2*time.Second && p.Next(lost, time.Time{}) < 2*time.Second {
			t.Fatalf("two waits under 2 s after the window closed (an hour's full jitter): %v", got)
		}
	})
	t.Run("4429 waits the floor more", func(t *testing.T) {
		var p client.Policy
		within(t, p.Next(&client.CloseError{Code: 4429}, time.Time{}), 10*time.Second, 11*time.Second)
		within(t, p.Next(&client.CloseError{Code: 4429}, time.Time{}), 10*time.Second, 12*time.Second)
	})
}
