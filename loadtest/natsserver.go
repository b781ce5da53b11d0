package loadtest

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// RunNATSServer is the body of the comparison process ("kioskfeed loadtest
// nats-server"): a plain nats-server, the same library version kioskfeed embeds, with
// its client port and its built-in WebSocket listener on loopback and nothing else
// (no JetStream, no TLS, no auth), until ctx ends. It is what a NATS user would point
// tablets at instead of kioskfeed.
func RunNATSServer(ctx context.Context, port, wsPort int) error {
	opts := &server.Options{
		ServerName: "loadtest-nats-ws",
		Host:       "127.0.0.1",
		Port:       port,
		NoSigs:     true,
		NoLog:      true,
		MaxConn:    1 << 20,
		Websocket: server.WebsocketOpts{
			Host:  "127.0.0.1",
			Port:  wsPort,
			NoTLS: true,
		},
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("nats-server: not ready within 10s")
	}
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}
