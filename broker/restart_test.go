package broker_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

func TestRestartOnSameDataDirKeepsEventsAndKeys(t *testing.T) {
	dir := t.TempDir()
	cfg := broker.Config{DataDir: dir, SyncAlways: true, Listen: "127.0.0.1:0"}
	b1, err := broker.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := b1.CreateProducerKey(ctx, "restart", []string{"lobby"})
	if err != nil {
		t.Fatal(err)
	}
	res := publish(t, b1, "lobby", "state", "before-restart", `{"title":"kept"}`)
	epoch := b1.Epoch()
	_, pw1 := b1.ProducerCredentials()
	if err := b1.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := b1.Close(ctx); err != nil {
		t.Fatalf("second close: %v, want idempotent", err)
	}

	b2, err := broker.New(ctx, cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer b2.Close(ctx)
	st, err := b2.State(ctx, "lobby")
	if err != nil || len(st.Events) != 1 || st.Events[0].Seq != res.Seq || st.Events[0].ID != "before-restart" {
		t.Fatalf("state after restart = %+v, %v; want the event published before", st, err)
	}
	if b2.Epoch() != epoch {
		t.Fatalf("epoch changed across a restart: %q → %q", epoch, b2.Epoch())
	}
	if _, ok := b2.AuthenticateProducer(ctx, key); !ok {
		t.Fatal("producer key made before the restart is not accepted after it")
	}
	if _, pw2 := b2.ProducerCredentials(); pw2 != pw1 {
		t.Fatal("generated producer password changed across a restart")
	}
	// The dedup window outlives the restart too.
	again := publish(t, b2, "lobby", "state", "before-restart", `{"title":"kept"}`)
	if !again.Duplicate || again.Seq != res.Seq {
		t.Fatalf("republish after restart = %+v, want duplicate of %d", again, res.Seq)
	}
}

func TestNATSOutageAnswers503AndRecovers(t *testing.T) {
	n := brokertest.StartNATS(t)
	b, err := broker.New(ctx, broker.Config{URL: n.URL(), OpTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	s := startAPI(t, b)
	key := s.createKey(t, "lobby")
	post := func() response {
		return s.do(t, "POST", "/api/feeds/lobby/events", key, "application/json", strings.NewReader(`{"id":"x1","kind":"item","data":{}}`))
	}
	if r := s.do(t, "GET", "/readyz", "", "", nil); r.status != 200 {
		t.Fatalf("readyz with NATS up: %d, want 200", r.status)
	}

	n.Stop()
	brokertest.Eventually(t, 10*time.Second, "readyz answers 503 while NATS is down", func() bool {
		return s.do(t, "GET", "/readyz", "", "", nil).status == http.StatusServiceUnavailable
	})
	r := s.do(t, "GET", "/readyz", "", "", nil)
	wantError(t, r, 503, "unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("readyz 503 without Retry-After")
	}
	if h := s.do(t, "GET", "/healthz", "", "", nil); h.status != 200 {
		t.Fatalf("healthz while NATS is down: %d, want 200 (the process is up)", h.status)
	}
	p := post()
	wantError(t, p, 503, "unavailable")
	if p.header.Get("Retry-After") == "" {
		t.Fatal("publish 503 without Retry-After")
	}
	if strings.Contains(string(p.raw), "nats") {
		t.Fatalf("503 body leaks internals: %s", p.raw)
	}

	n.Start()
	brokertest.Eventually(t, 15*time.Second, "readyz answers 200 once NATS is back", func() bool {
		return s.do(t, "GET", "/readyz", "", "", nil).status == http.StatusOK
	})
	if p := post(); p.status != 202 {
		t.Fatalf("publish after recovery: %d %s, want 202", p.status, p.raw)
	}
	// The refused publish stored nothing: exactly one event with id x1.
	h, err := b.History(context.Background(), "lobby", 0)
	if err != nil || len(h) != 1 {
		t.Fatalf("history after outage = %d events, %v; want exactly 1", len(h), err)
	}
}
