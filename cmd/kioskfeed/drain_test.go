package main

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
)

// TestDrainStopsListeningFirst: once serve begins to drain, a new connection is refused
// by the kernel while the tablets are still being closed 1012. It used to be accepted and
// answered 503 until the drain was over, and in a restart of 10,000 tablets thousands of
// such attempts took the CPU the drain itself needed (issue 15).
//
// The tablet here reads its 1012 and does not answer it, which holds the drain open for
// the close grace; the refused dial must come while serve has not returned, so the
// refusal is the closed listener's and not the ended process's.
func TestDrainStopsListeningFirst(t *testing.T) {
	const public = "http://kioskfeed.test"
	s := startServe(t, t.TempDir(), "--public-url", public)
	addr := s.base[len("http://"):]

	code, res := s.call(t, "POST", "/api/admin/feeds/lobby/pins", s.token, `{"ttl":"10m"}`)
	pin, _ := res["pin"].(string)
	if code != 201 || pin == "" {
		t.Fatalf("create PIN = %d %v", code, res)
	}
	tab := s.routedTablet(t, public)
	if err := tab.Pair(context.Background(), "lobby", pin, "Lobby"); err != nil {
		t.Fatalf("pair: %v", err)
	}
	c, err := bridgetest.Dial(context.Background(), "ws://kioskfeed.test/ws", public, addr)
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	defer c.Abort()
	if _, err := c.Handshake(tab, "ws://kioskfeed.test/ws", 0, "", 5*time.Second); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if _, _, _, err := c.Collect(5 * time.Second); err != nil {
		t.Fatalf("catch-up: %v", err)
	}
	// The listener takes connections before the drain: what is checked could happen.
	probe, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial before the drain: %v", err)
	}
	_ = probe.Close()

	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	// The drain's close, read without answering it (ReadClose answers nothing).
	if code, err := bridgetest.ReadClose(c.NetConn(), 10*time.Second); err != nil || code != 1012 {
		t.Fatalf("the drain's close: %d, %v; want 1012", code, err)
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	select {
	case err := <-stopped:
		t.Fatalf("serve returned (%v) before the check: the drain did not wait for the unanswered close, so the check proves nothing", err)
	default:
	}
	if err == nil {
		_ = conn.Close()
		t.Fatal("a connection made while serve drains was accepted; want it refused (the listener closed first)")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while draining: %v, want connection refused", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("serve: %v", err)
	}
}
