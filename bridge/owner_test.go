package bridge_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// Once Shutdown has begun the bridge starts no goroutine of its own: goSafe refuses,
// and what it was given never runs. Before, the same call runs it.
func TestShutdownRefusesNewGoroutines(t *testing.T) {
	s := startStack(t, stackOpts{})
	ran := make(chan struct{})
	if !s.br.GoSafe("test", func() { close(ran) }) {
		t.Fatal("goroutine refused before Shutdown")
	}
	select {
	case <-ran:
	case <-time.After(wait):
		t.Fatal("goroutine started before Shutdown did not run")
	}
	if err := s.br.Shutdown(bg); err != nil {
		t.Fatal(err)
	}
	var late sync.WaitGroup
	late.Add(1)
	if s.br.GoSafe("test", func() { late.Done() }) {
		t.Fatal("goroutine started after Shutdown")
	}
	late.Done() // f did not run: had it, this would panic on a negative counter
}

// blockingAuth is an authenticator whose check waits for its context: a broker or key
// store that stopped answering.
type blockingAuth struct {
	entered chan struct{}
	ended   chan error
}

func (a *blockingAuth) Authenticate(ctx context.Context, _, _, _, _ string) (broker.Identity, error) {
	close(a.entered)
	<-ctx.Done()
	a.ended <- ctx.Err()
	return broker.Identity{}, ctx.Err()
}

type noRevocations struct{}

func (noRevocations) OnRevoke(func(deviceID, feed string)) {}

// A handshake waiting on a slow step (here the authenticator) is cancelled by
// Shutdown, not left to run out its own timeout: its context ends canceled, not past
// its deadline, the socket is closed 1012 as every other, and the handshake counts as
// draining, not as a broker error.
func TestShutdownCancelsASlowHandshake(t *testing.T) {
	b := brokertest.New(t)
	srv := httptest.NewUnstartedServer(nil)
	public := "http://" + srv.Listener.Addr().String()
	auth := &blockingAuth{entered: make(chan struct{}), ended: make(chan error, 1)}
	reg := prometheus.NewRegistry()
	br, err := bridge.New(bg, bridge.Config{PublicURL: public, Heartbeat: 2 * time.Second, LeaseTTL: 3 * time.Second, Now: b.Now, Registerer: reg},
		b, b, auth, noRevocations{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	br.Register(mux)
	srv.Config.Handler = mux
	srv.Start()
	defer srv.Close()

	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {public}})}
	conn, early, _, err := d.Dial(ctx, "ws"+public[len("http"):]+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	var r io.Reader = conn
	if early != nil {
		r = early
	}
	rw := struct {
		io.Reader
		io.Writer
	}{r, conn}
	challenge, err := wsutil.ReadServerText(rw)
	if err != nil {
		t.Fatal(err)
	}
	checkServerText(t, challenge)
	if err := wsutil.WriteClientText(conn, []byte(`{"type":"auth","token":"t","proof":"p"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-auth.entered:
	case <-ctx.Done():
		t.Fatal("the handshake never reached the authenticator")
	}

	shut := make(chan error, 1)
	go func() { shut <- br.Shutdown(ctx) }()
	select {
	case err := <-auth.ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the handshake's context ended with %v, want canceled by Shutdown", err)
		}
	case <-ctx.Done():
		t.Fatal("the handshake's context never ended")
	}
	// The close frame (1012: the server restarts), read by hand: wsutil refuses codes
	// past 1011. Answered, as a tablet does, so the drain ends at once.
	var code ws.StatusCode
	for code == 0 {
		hdr, err := ws.ReadHeader(rw)
		if err != nil {
			t.Fatalf("reading to the close: %v", err)
		}
		payload := make([]byte, hdr.Length)
		if _, err := io.ReadFull(rw, payload); err != nil {
			t.Fatal(err)
		}
		if hdr.OpCode == ws.OpText {
			checkServerText(t, payload)
		}
		if hdr.OpCode == ws.OpClose {
			code, _ = ws.ParseCloseFrameData(payload)
			_ = ws.WriteFrame(conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, ""))))
			_ = conn.Close() // and hang up, as a tablet does after its reply
		}
	}
	if code != bridge.CloseRestarting {
		t.Fatalf("closed %d, want 1012", code)
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	const handshakes = "kioskfeed_ws_handshakes_total"
	if d, e := counter(t, reg, handshakes, "outcome", "draining"), counter(t, reg, handshakes, "outcome", "error"); d != 1 || e != 0 {
		t.Fatalf("handshakes draining %v, error %v; want 1 and 0", d, e)
	}
}
