package brokertest

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kioskfeed/kioskfeed/broker"
)

// New starts a broker with an embedded server in a temp dir, with in-process
// connections only, and closes it when the test ends. mod may adjust the config.
func New(tb testing.TB, mod ...func(*broker.Config)) *broker.Broker {
	tb.Helper()
	cfg := broker.Config{DataDir: tb.TempDir()}
	for _, m := range mod {
		m(&cfg)
	}
	b, err := broker.New(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("start broker: %v", err)
	}
	tb.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

// NATS is a standalone nats-server with JetStream on a loopback TCP port, for tests of
// an external connection that must be cut and restored.
type NATS struct {
	tb   testing.TB
	Dir  string
	Port int
	Srv  *server.Server
}

// StartNATS starts a server on a free loopback port with its store in a temp dir.
func StartNATS(tb testing.TB) *NATS {
	tb.Helper()
	n := &NATS{tb: tb, Dir: tb.TempDir(), Port: server.RANDOM_PORT}
	n.Start()
	tb.Cleanup(n.Stop)
	return n
}

// URL is the server's client URL.
func (n *NATS) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(n.Port) }

// Start (re)starts the server on the same port and store.
func (n *NATS) Start() {
	n.tb.Helper()
	opts := &server.Options{
		ServerName: "test-nats",
		Host:       "127.0.0.1",
		Port:       n.Port,
		JetStream:  true,
		StoreDir:   n.Dir,
		NoLog:      true,
		NoSigs:     true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		n.tb.Fatalf("nats server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		n.tb.Fatalf("nats server not ready")
	}
	n.Srv = s
	n.Port = s.Addr().(*net.TCPAddr).Port
}

// Stop shuts the server down (idempotent).
func (n *NATS) Stop() {
	if n.Srv != nil {
		n.Srv.Shutdown()
		n.Srv.WaitForShutdown()
		n.Srv = nil
	}
}

// Eventually polls cond until it holds or the deadline passes, then fails with msg.
func Eventually(tb testing.TB, d time.Duration, msg string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("not within %v: %s", d, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
