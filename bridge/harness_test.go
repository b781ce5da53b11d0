package bridge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"github.com/gobwas/ws"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/admin"
	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/internal/apitest"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

const adminToken = "test-admin-token-0123456789"

var bg = context.Background()

// wait is the generous deadline of a single expected message.
const wait = 5 * time.Second

// stack is one kioskfeed instance made of the real parts: an embedded NATS (or a shared
// broker), pairing, and the bridge, behind a real loopback HTTP server.
type stack struct {
	*httptest.Server
	b      *broker.Broker
	auth   *pairing.Authority
	br     *bridge.Bridge
	wsURL  string
	origin string
	public string
}

type stackOpts struct {
	// public is the public URL shared by the instances of one cluster; default the
	// instance's own listener address.
	public string
	broker *broker.Broker
	keys   []*ecdsa.PrivateKey
	bridge func(*bridge.Config)
	pair   func(*pairing.Config)
	// source wraps the broker as the bridge's feed source (default: the broker itself).
	source func(*broker.Broker) bridge.FeedSource
}

func startStack(t testing.TB, o stackOpts) *stack {
	t.Helper()
	if o.broker == nil {
		o.broker = brokertest.New(t)
	}
	if o.keys == nil {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		o.keys = []*ecdsa.PrivateKey{k}
	}
	srv := httptest.NewUnstartedServer(nil)
	public := "http://" + srv.Listener.Addr().String()
	if o.public != "" {
		public = o.public
	}
	pcfg := pairing.Config{PublicURL: public, SigningKeys: o.keys, PairBurst: 1000, Now: o.broker.Now}
	if o.pair != nil {
		o.pair(&pcfg)
	}
	auth, err := pairing.New(bg, pcfg, o.broker)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(auth.Close)
	// Tests of hostile frames fail many handshakes from 127.0.0.1: the failure limit is
	// out of their way; the tests of the limits (admit_test.go) set it as deployed.
	bcfg := bridge.Config{PublicURL: public, Heartbeat: 2 * time.Second, LeaseTTL: 3 * time.Second, WSFailBurst: 1 << 20, Now: o.broker.Now}
	if o.bridge != nil {
		o.bridge(&bcfg)
	}
	var src bridge.FeedSource = o.broker
	if o.source != nil {
		src = o.source(o.broker)
	}
	br, err := bridge.New(bg, bcfg, o.broker, src, auth, auth.Devices())
	if err != nil {
		t.Fatal(err)
	}
	adm, err := admin.New(bg, admin.Config{PublicURL: public, CSRFKey: make([]byte, 32),
		TokenHashes: [][32]byte{admin.HashToken(adminToken)}, Now: o.broker.Now}, o.broker, auth, br)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(adm.Close)
	mux := http.NewServeMux()
	broker.NewAPI(o.broker, adm).Register(mux)
	auth.Register(mux)
	adm.Register(mux)
	br.Register(mux)
	srv.Config.Handler = apitest.Handler(t, mux)
	srv.Config.ReadHeaderTimeout = 2 * time.Second
	// As the main listener of `kioskfeed serve`: the upgrades the bridge takes come in
	// through the lane, the refusals and everything else through net/http.
	srv.Listener = httpx.NewLane(srv.Listener, "/ws", srv.Config.ReadHeaderTimeout, br.TakeUpgrade)
	srv.Start()
	s := &stack{Server: srv, b: o.broker, auth: auth, br: br, wsURL: "ws" + strings.TrimPrefix(public, "http") + "/ws", origin: public, public: public}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(bg, 10*time.Second)
		defer cancel()
		_ = br.Shutdown(ctx)
		srv.Close()
	})
	return s
}

// issuePIN asks this instance's admin API for a PIN for feed, valid for ttl.
func (s *stack) issuePIN(t testing.TB, feed, ttl string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", s.URL+"/api/admin/feeds/"+feed+"/pins", strings.NewReader(`{"ttl":"`+ttl+`"}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pin struct{ PIN string }
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&pin) != nil {
		t.Fatalf("issue PIN: HTTP %d", resp.StatusCode)
	}
	return pin.PIN
}

// pair makes a tablet paired with feed.
func (s *stack) pair(t testing.TB, feed string) *pairingtest.Tablet {
	t.Helper()
	pin := s.issuePIN(t, feed, "5m")
	tab := s.tablet(t)
	if err := tab.Pair(bg, feed, pin, "test"); err != nil {
		t.Fatalf("pair: %v", err)
	}
	return tab
}

// tablet makes a Go tablet that signs for the public URL and talks to this instance
// (as a tablet behind a load balancer that sent it here).
func (s *stack) tablet(t testing.TB) *pairingtest.Tablet {
	t.Helper()
	tab, err := pairingtest.NewTablet(s.public)
	if err != nil {
		t.Fatal(err)
	}
	s.route(tab)
	return tab
}

// route sends tab's HTTP calls to this instance, whatever its public URL.
func (s *stack) route(tab *pairingtest.Tablet) {
	addr := s.Listener.Addr().String()
	tab.HTTP = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
}

// publish stores one event and returns its seq.
func (s *stack) publish(t testing.TB, feed, kind, data string) uint64 {
	t.Helper()
	res, err := s.b.Publish(bg, feed, broker.EventInput{Kind: kind, Data: json.RawMessage(data)})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return res.Seq
}

// dial opens a socket to this instance with the allowed origin.
func (s *stack) dial(t testing.TB) *bridgetest.Conn {
	t.Helper()
	c, err := bridgetest.Dial(bg, s.wsURL, s.origin, s.Listener.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Abort() })
	return c
}

// connect dials and authenticates, returning the conn and its welcome.
func (s *stack) connect(t testing.TB, tab *pairingtest.Tablet, since uint64, epoch string) (*bridgetest.Conn, bridgetest.Msg) {
	t.Helper()
	c := s.dial(t)
	w, err := c.Handshake(tab, s.wsURL, since, epoch, wait)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return c, w
}

func seqsOf(msgs []bridgetest.Msg) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq()
	}
	return out
}

// closeCode is the code of a *bridgetest.CloseError, or -1.
func closeCode(err error) int {
	if ce, ok := err.(*bridgetest.CloseError); ok {
		return ce.Code
	}
	return -1
}

// pump reads a socket in the background, as a browser does, so that pings are answered
// while the test looks elsewhere. Messages arrive on msgs; the error that ended the
// socket (a *bridgetest.CloseError for a close) on done.
type pump struct {
	c    *bridgetest.Conn
	msgs chan bridgetest.Msg
	done chan error
}

func startPump(c *bridgetest.Conn) *pump {
	p := &pump{c: c, msgs: make(chan bridgetest.Msg, 1024), done: make(chan error, 1)}
	go func() {
		for {
			m, err := c.Next(time.Minute)
			if err != nil {
				p.done <- err
				return
			}
			p.msgs <- m
		}
	}()
	return p
}

// expect waits for a message of type typ, skipping heartbeats and others.
func (p *pump) expect(t testing.TB, typ string) bridgetest.Msg {
	t.Helper()
	return p.expectWithin(t, typ, wait)
}

// expectWithin is expect with its own deadline.
func (p *pump) expectWithin(t testing.TB, typ string, d time.Duration) bridgetest.Msg {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-p.msgs:
			if m.Type == typ {
				return m
			}
		case err := <-p.done:
			t.Fatalf("socket ended waiting for %s: %v", typ, err)
		case <-deadline:
			t.Fatalf("no %s within %v", typ, d)
		}
	}
}

// closed waits for the server's close and returns its code.
func (p *pump) closed(t testing.TB, d time.Duration) int {
	t.Helper()
	return closeCode(p.closedErr(t, d))
}

// close ends a pumped socket cleanly: the close frame is written here (writes are safe
// from any goroutine) and the pump, the only reader, sees the server's answer.
func (p *pump) close(t testing.TB) {
	t.Helper()
	if err := p.c.SendFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))); err != nil {
		t.Fatalf("send close: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(wait):
		t.Fatal("the server did not answer the close")
	}
}
