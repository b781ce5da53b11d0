package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/admin"
	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/apitest"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// The client's tests run against a whole kioskfeed made of its real parts (embedded
// NATS with JetStream in a temp dir, pairing, the bridge, the producer and admin APIs
// behind a loopback HTTP server), wired as cmd/kioskfeed/serve.go wires them. The
// client itself knows none of these packages: only its tests do.

const adminToken = "client-test-admin-token-0123456789"

// serverOpts are the settings tests shorten.
type serverOpts struct {
	tokenTTL  time.Duration // default 10m
	heartbeat time.Duration // default 2s
	// reauthGrace is how long past its token's expiry a socket that was not
	// re-authenticated lives; default the bridge's 30 s.
	reauthGrace time.Duration
	maxConns    int // sockets past it are closed 4429; default none
}

type testServer struct {
	URL  string // the public URL: the listener's own
	b    *broker.Broker
	auth *pairing.Authority
	srv  *httptest.Server
	opts serverOpts

	mu  sync.Mutex
	br  *bridge.Bridge
	adm *admin.Admin
	h   atomic.Pointer[http.ServeMux]

	// apiFailures are the exchanges docs/openapi.json does not allow (internal/apitest).
	apiFailures []error
}

// takeAPIFailures returns the contract failures seen so far and forgets them.
func (s *testServer) takeAPIFailures() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.apiFailures
	s.apiFailures = nil
	return f
}

// newServer starts a server; stop ends it. It takes no testing.TB so that TestMain can
// start the one the examples use.
func newServer(opts serverOpts) (s *testServer, stop func(), err error) {
	dir, err := os.MkdirTemp("", "client-test-")
	if err != nil {
		return nil, nil, err
	}
	var cleanups []func()
	stop = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
		_ = os.RemoveAll(dir)
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	b, err := broker.New(context.Background(), broker.Config{DataDir: dir})
	if err != nil {
		return nil, nil, err
	}
	cleanups = append(cleanups, func() { _ = b.Close(context.Background()) })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s = &testServer{b: b, opts: opts}
	v, err := apitest.Default()
	if err != nil {
		return nil, nil, err
	}
	s.srv = httptest.NewUnstartedServer(v.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.h.Load().ServeHTTP(w, r)
	}), func(err error) {
		s.mu.Lock()
		s.apiFailures = append(s.apiFailures, err)
		s.mu.Unlock()
	}))
	s.URL = "http://" + s.srv.Listener.Addr().String()
	realServers.Store(s.srv.Listener.Addr().String(), true) // its frames are schema-checked
	s.auth, err = pairing.New(context.Background(), pairing.Config{
		PublicURL: s.URL, SigningKeys: []*ecdsa.PrivateKey{key},
		TokenTTL: opts.tokenTTL, PairBurst: 10000, Now: b.Now, // each new key pairs with two calls (nonce)
	}, b)
	if err != nil {
		return nil, nil, err
	}
	cleanups = append(cleanups, s.auth.Close)
	if err := s.startBridge(); err != nil {
		return nil, nil, err
	}
	s.srv.Config.ReadHeaderTimeout = 5 * time.Second
	s.srv.Start()
	cleanups = append(cleanups, func() {
		s.stopBridge()
		s.srv.Close()
	})
	return s, stop, nil
}

// startServer is newServer for one test.
func startServer(tb testing.TB, opts serverOpts) *testServer {
	tb.Helper()
	s, stop, err := newServer(opts)
	if err != nil {
		tb.Fatalf("start server: %v", err)
	}
	tb.Cleanup(func() { // after stop
		for _, err := range s.takeAPIFailures() {
			tb.Errorf("apitest: %v", err)
		}
	})
	tb.Cleanup(stop)
	return s
}

// startBridge makes a bridge and the routes, and serves them from now on.
func (s *testServer) startBridge() error {
	hb := s.opts.heartbeat
	if hb == 0 {
		hb = 2 * time.Second
	}
	br, err := bridge.New(context.Background(), bridge.Config{PublicURL: s.URL, Heartbeat: hb,
		LeaseTTL: 3 * time.Second, ReauthGrace: s.opts.reauthGrace, Now: s.b.Now,
		WSConnectBurst: 1 << 20, // the memory benchmark connects thousands from 127.0.0.1
		MaxConns:       s.opts.maxConns,
	}, s.b, s.b, s.auth, s.auth.Devices())
	if err != nil {
		return err
	}
	adm, err := admin.New(context.Background(), admin.Config{PublicURL: s.URL, CSRFKey: make([]byte, 32),
		TokenHashes: [][32]byte{admin.HashToken(adminToken)}, Now: s.b.Now}, s.b, s.auth, br)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	broker.NewAPI(s.b, adm).Register(mux)
	s.auth.Register(mux)
	adm.Register(mux)
	br.Register(mux)
	s.mu.Lock()
	s.br, s.adm = br, adm
	s.mu.Unlock()
	s.h.Store(mux)
	return nil
}

func (s *testServer) stopBridge() {
	s.mu.Lock()
	br, adm := s.br, s.adm
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = br.Shutdown(ctx)
	adm.Close()
}

// restartBridge drains the bridge as a restarting instance does (every socket closed
// 1012) and serves a new one on the same address, NATS and keys.
func (s *testServer) restartBridge(tb testing.TB) {
	tb.Helper()
	s.stopBridge()
	if err := s.startBridge(); err != nil {
		tb.Fatalf("restart bridge: %v", err)
	}
}

// admin calls the admin API (docs/protocol.md §6) and decodes the answer into out.
func (s *testServer) admin(method, path, body string, want int, out any) error {
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d %s, want %d", method, path, resp.StatusCode, data, want)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// pin mints a PIN for feed.
func (s *testServer) pin(feed string) (string, error) {
	var p struct{ PIN string }
	err := s.admin("POST", "/api/admin/feeds/"+feed+"/pins", `{"ttl":"5m"}`, http.StatusCreated, &p)
	return p.PIN, err
}

func (s *testServer) mustPIN(tb testing.TB, feed string) string {
	tb.Helper()
	p, err := s.pin(feed)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// approve approves the pairing code for feed, as an administrator.
func (s *testServer) approve(code, feed string) error {
	return s.admin("POST", "/api/admin/pair-requests/"+code+"/approve", `{"feed":"`+feed+`"}`, http.StatusOK, nil)
}

// revoke deletes a device.
func (s *testServer) revoke(deviceID string) error {
	return s.admin("DELETE", "/api/admin/devices/"+deviceID, "", http.StatusNoContent, nil)
}

// publish stores one event and returns its seq.
func (s *testServer) publish(feed, kind, data string) (uint64, error) {
	res, err := s.b.Publish(context.Background(), feed, broker.EventInput{Kind: kind, Data: json.RawMessage(data)})
	return res.Seq, err
}

func (s *testServer) mustPublish(tb testing.TB, feed, kind, data string) uint64 {
	tb.Helper()
	seq, err := s.publish(feed, kind, data)
	if err != nil {
		tb.Fatalf("publish: %v", err)
	}
	return seq
}
