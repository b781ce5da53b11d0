package loadtest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestCentrifugoPeer runs the pinned Centrifugo the way the load tool does (built from
// the module proxy on first use, then cached) and drives it with the tool's own
// subscribers: each connects with an ES256 token, subscribes, and gets every
// publication once and in order; a second connection of one user is refused, as
// user_connection_limit 1 says; a bad token is refused too. It fails, never skips,
// when Centrifugo cannot be built or run here.
func TestCentrifugoPeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	exe, err := CentrifugoBinary(ctx, "", t.Logf)
	if err != nil {
		t.Fatalf("no centrifugo %s to measure against: %v", CentrifugoVersion, err)
	}
	p, err := startCentrifugo(ctx, exe, t.TempDir(), 100)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.stop() })

	const subs, events = 20, 15
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	newSub := func(user string, token string) *centSub {
		s := &centSub{natsSub: natsSub{src: net.IPv4(127, 0, 0, 1), url: p.wsURL(), addr: fmt.Sprintf("127.0.0.1:%d", p.port),
			subject: "lobby", ready: make(chan struct{})}, token: token, origin: p.origin}
		s.startPhase(1, events)
		go s.run(sctx)
		return s
	}
	token := func(user string) string {
		tok, err := centToken(p.key, user, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	var all []*centSub
	for i := range subs {
		all = append(all, newSub(fmt.Sprintf("tablet-%d", i), token(fmt.Sprintf("tablet-%d", i))))
	}
	for i, s := range all {
		select {
		case <-s.ready:
		case <-ctx.Done():
		}
		if err := subErr(&s.natsSub); err != nil {
			t.Fatalf("subscriber %d: %v", i, err)
		}
	}
	for n := 1; n <= events; n++ {
		if err := p.publish(ctx, "lobby", payload(64, 1, n)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for i, s := range all {
		for {
			got, received, dups := s.snapshot()
			if received == events {
				if dups != 0 {
					t.Fatalf("subscriber %d: %d duplicates", i, dups)
				}
				for n, us := range got {
					if us < 0 {
						t.Fatalf("subscriber %d: event %d missing", i, n+1)
					}
				}
				break
			}
			if err := subErr(&s.natsSub); err != nil || time.Now().After(deadline) {
				t.Fatalf("subscriber %d: %d of %d events, %v", i, received, events, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// One connection per user: a second one of tablet-0 is refused while the first lives.
	dup := newSub("tablet-0", token("tablet-0"))
	// Centrifugo closes it with 3504, its "connection limit" disconnect.
	if err := waitSubErr(dup, time.Minute); err == nil || !strings.Contains(err.Error(), "3504") {
		t.Fatalf("second connection of one user: %v, want closed 3504 (connection limit)", err)
	}
	if err := subErr(&all[0].natsSub); err != nil {
		t.Fatalf("the first connection of tablet-0 after the refused second one: %v", err)
	}
	// A token signed by another key is refused.
	other, err := startCentrifugo(ctx, exe, t.TempDir(), 100) // only for its key
	if err != nil {
		t.Fatal(err)
	}
	_ = other.stop()
	forged, err := centToken(other.key, "tablet-x", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitSubErr(newSub("tablet-x", forged), time.Minute); err == nil {
		t.Fatal("a token of another key was accepted")
	}
}

func subErr(s *natsSub) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// waitSubErr waits for s to fail (Centrifugo refuses with a disconnect or an error
// reply, or closes the socket), up to d.
func waitSubErr(s *centSub, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := subErr(&s.natsSub); err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// TestWorkerCentrifugo drives the same Centrifugo through a worker's commands, as a run
// does: cent_connect from several source addresses with tokens the worker signs, a
// phase, the publications, collect.
func TestWorkerCentrifugo(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 12*time.Minute)
	defer cancel()
	exe, err := CentrifugoBinary(ctx, "", t.Logf)
	if err != nil {
		t.Fatalf("no centrifugo %s to measure against: %v", CentrifugoVersion, err)
	}
	p, err := startCentrifugo(ctx, exe, t.TempDir(), 100)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.stop() })
	w := &worker{ctx: ctx}
	defer w.shutdown()
	const n, events = 12, 10
	rep := w.do(command{Op: "cent_connect", WSURL: p.wsURL(), Addr: fmt.Sprintf("127.0.0.1:%d", p.port), Origin: p.origin,
		Subject: centChannel, N: n, Sources: sources(3, 3), Ramp: 4, KeyPEM: p.keyPEM, NamePrefix: "w3-", Timeout: timeoutMS(time.Minute)})
	if rep.Err != "" || rep.Failed != 0 || rep.N != n {
		t.Fatalf("cent_connect: %+v", rep)
	}
	if rep := w.do(command{Op: "phase", Target: "nats", Phase: 1, Events: events}); rep.N != n {
		t.Fatalf("phase: %+v", rep)
	}
	for i := 1; i <= events; i++ {
		if err := p.publish(ctx, centChannel, payload(256, 1, i)); err != nil {
			t.Fatal(err)
		}
	}
	rep = w.do(command{Op: "collect", Target: "nats", Events: events, Timeout: timeoutMS(time.Minute)})
	if rep.Err != "" || len(rep.Latencies) != n*events || rep.Missing != 0 || rep.Duplicates != 0 {
		t.Fatalf("collect: %d latencies of %d, %d missing, %d repeated, %q", len(rep.Latencies), n*events, rep.Missing, rep.Duplicates, rep.Err)
	}
	if rep := w.do(command{Op: "cent_connect", KeyPEM: "not a key", N: 1}); rep.Err == "" {
		t.Fatal("cent_connect with a bad key: no error")
	}
}
