package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// scrape reads /metrics of a running server: its samples by "name{labels}", and the
// names that have # HELP and # TYPE lines.
func scrape(t *testing.T, base string) (samples map[string]float64, help, typ map[string]string) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}
	samples, help, typ = map[string]float64{}, map[string]string{}, map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			f := strings.SplitN(strings.TrimPrefix(line, "# HELP "), " ", 2)
			if len(f) == 2 {
				help[f[0]] = f[1]
			}
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(strings.TrimPrefix(line, "# TYPE "))
			if len(f) == 2 {
				typ[f[0]] = f[1]
			}
		case line == "" || strings.HasPrefix(line, "#"):
		default:
			// name{labels} value, or name value; label values are quoted and may hold
			// spaces, so the value is what follows the last space.
			i := strings.LastIndexByte(line, ' ')
			if i < 0 {
				t.Fatalf("/metrics line %q is not a sample", line)
			}
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err != nil {
				t.Fatalf("/metrics line %q: value: %v", line, err)
			}
			samples[line[:i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return samples, help, typ
}

// TestMetricsSeriesOnARealServer: after a tablet paired, connected (a reset), was refused
// a second connection (4409), saw a live event and came back (a replay from memory), and
// producers published (one new, one repeat, one refused), /metrics of the running server
// has every kioskfeed_* series the README documents, with its HELP and TYPE, and values
// that agree with what happened.
func TestMetricsSeriesOnARealServer(t *testing.T) {
	sys := startSystem(t, t.TempDir(), freeAddr(t))
	ctx := context.Background()
	wsURL := "ws" + strings.TrimPrefix(sys.base, "http") + "/ws"

	producer := adminAPI(t, sys, "POST", "/api/admin/producer-keys", `{"name":"metrics test","feeds":["lobby"]}`)["key"].(string)
	producerPublish(t, sys.base, producer, "lobby", "state", `{"title":"metrics"}`)
	pin := adminAPI(t, sys, "POST", "/api/admin/feeds/lobby/pins", `{"ttl":"5m"}`)["pin"].(string)
	tab, err := pairingtest.NewTablet(sys.base)
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Pair(ctx, "lobby", pin, "metrics"); err != nil {
		t.Fatal(err)
	}
	dial := func() *bridgetest.Conn {
		t.Helper()
		c, err := bridgetest.Dial(ctx, wsURL, sys.base, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Abort() })
		return c
	}

	c := dial()
	w, err := c.Handshake(tab, wsURL, 0, "", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, reset, synced, err := c.Collect(10 * time.Second)
	if err != nil || !reset {
		t.Fatalf("first catch-up: reset %v, %v", reset, err)
	}
	// From here the tablet reads in the background, answering pings as a browser does:
	// a holder that does not answer the server's probe would be replaced, not defended.
	msgs, done := make(chan bridgetest.Msg, 64), make(chan error, 1)
	go func() {
		for {
			m, err := c.Next(time.Minute)
			if err != nil {
				done <- err
				return
			}
			msgs <- m
		}
	}()
	var ce *bridgetest.CloseError
	if _, err := dial().Handshake(tab, wsURL, 0, "", 10*time.Second); !errors.As(err, &ce) || ce.Code != 4409 {
		t.Fatalf("second socket of the device: %v, want a 4409 close", err)
	}
	live := producerPublish(t, sys.base, producer, "lobby", "item", `{"text":"live"}`)
	for got := false; !got; {
		select {
		case m := <-msgs:
			got = m.Type == "event" && m.Seq() == live
		case err := <-done:
			t.Fatalf("socket ended before the live event: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no live event %d within 10s", live)
		}
	}
	// A repeat of an id, and an event the API refuses.
	for range 2 {
		req, _ := http.NewRequest("POST", sys.base+"/api/feeds/lobby/events", strings.NewReader(`{"id":"same-id","kind":"item","data":{}}`))
		req.Header.Set("Authorization", "Bearer "+producer)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("publish same-id: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	req, _ := http.NewRequest("POST", sys.base+"/api/feeds/lobby/events", strings.NewReader(`{"kind":"nonsense","data":{}}`))
	req.Header.Set("Authorization", "Bearer "+producer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("publish a bad kind: %v %v, want 400", resp, err)
	}
	resp.Body.Close()
	// Back after a clean close, from the seq it had: a replay from the hub's memory.
	if err := c.SendFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not answer the close")
	}
	var c2 *bridgetest.Conn
	deadline := time.Now().Add(10 * time.Second)
	for c2 == nil {
		c2 = dial()
		if _, err := c2.Handshake(tab, wsURL, synced.Seq(), w.Str("epoch"), 10*time.Second); err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("reconnect: %v", err)
			}
			c2 = nil
			time.Sleep(100 * time.Millisecond)
		}
	}
	if _, reset, _, err := c2.Collect(10 * time.Second); err != nil || reset {
		t.Fatalf("reconnect catch-up: reset %v, %v; want a replay", reset, err)
	}

	// What /metrics must show; polled, as the closes of the other sockets are counted
	// when the server has finished them.
	type want struct {
		sample string
		ok     func(float64) bool
		says   string
	}
	atLeast := func(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
	wants := []want{
		{`kioskfeed_ws_connections`, func(v float64) bool { return v == 1 }, "== 1 (the tablet's one socket)"},
		{`kioskfeed_ws_handshakes_total{outcome="ok"}`, atLeast(2), ">= 2"},
		{`kioskfeed_ws_handshakes_total{outcome="duplicate"}`, atLeast(1), ">= 1"},
		{`kioskfeed_ws_closes_total{code="4409"}`, atLeast(1), ">= 1"},
		{`kioskfeed_lease_conflicts_total`, atLeast(1), ">= 1"},
		{`kioskfeed_ws_queue_drops_total`, func(v float64) bool { return v == 0 }, "== 0"},
		{`kioskfeed_replays_total{source="reset"}`, atLeast(1), ">= 1"},
		{`kioskfeed_replays_total{source="memory"}`, atLeast(1), ">= 1"},
		{`kioskfeed_fanout_seconds_count`, atLeast(1), ">= 1 (one event reached a tablet)"},
		{`kioskfeed_fanout_seconds_sum`, func(v float64) bool { return v >= 0 && v < 60 }, "in [0, 60) s"},
		{`kioskfeed_events_published_total`, atLeast(3), ">= 3"},
		{`kioskfeed_events_duplicate_total`, atLeast(1), ">= 1"},
		{`kioskfeed_events_rejected_total{reason="invalid_event"}`, atLeast(1), ">= 1"},
		{`kioskfeed_http_request_duration_seconds_count{code="202",route="POST /api/feeds/{feed}/events"}`, atLeast(4), ">= 4"},
		{`kioskfeed_http_request_duration_seconds_count{code="201",route="POST /api/pair"}`, atLeast(1), ">= 1"},
	}
	var samples map[string]float64
	var help, typ map[string]string
	var bad []string
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		samples, help, typ = scrape(t, sys.base)
		bad = bad[:0]
		for _, w := range wants {
			v, ok := samples[w.sample]
			if !ok {
				bad = append(bad, w.sample+" missing")
			} else if !w.ok(v) {
				bad = append(bad, fmt.Sprintf("%s = %v, want %s", w.sample, v, w.says))
			}
		}
		if len(bad) == 0 || time.Now().After(end) {
			break
		}
	}
	if len(bad) > 0 {
		t.Errorf("/metrics:\n  %s", strings.Join(bad, "\n  "))
	}

	// Every documented family has its HELP and TYPE, and the histogram is whole.
	for name, kind := range map[string]string{
		"kioskfeed_ws_connections": "gauge", "kioskfeed_ws_handshakes_total": "counter",
		"kioskfeed_ws_closes_total": "counter", "kioskfeed_lease_conflicts_total": "counter",
		"kioskfeed_ws_queue_drops_total": "counter", "kioskfeed_replays_total": "counter",
		"kioskfeed_fanout_seconds": "histogram", "kioskfeed_events_published_total": "counter",
		"kioskfeed_events_duplicate_total": "counter", "kioskfeed_events_rejected_total": "counter",
		"kioskfeed_http_request_duration_seconds": "histogram", "kioskfeed_devices_behind": "gauge",
		"kioskfeed_shown_latency_seconds": "histogram",
	} {
		if help[name] == "" || typ[name] != kind {
			t.Errorf("%s: HELP %q, TYPE %q; want a help text and type %s", name, help[name], typ[name], kind)
		}
	}
	if inf := samples[`kioskfeed_fanout_seconds_bucket{le="+Inf"}`]; inf != samples["kioskfeed_fanout_seconds_count"] {
		t.Errorf(`kioskfeed_fanout_seconds_bucket{le="+Inf"} = %v, want the count %v`, inf, samples["kioskfeed_fanout_seconds_count"])
	}
	// Labels come from fixed sets, never from what a client sent: no raw path, no token.
	for s := range samples {
		if strings.HasPrefix(s, "kioskfeed_") && (strings.Contains(s, "same-id") || strings.Contains(s, tab.DeviceID) || strings.Contains(s, "/api/feeds/lobby")) {
			t.Errorf("series %s carries a client-chosen value", s)
		}
	}
	// And the Go runtime's and the process's own metrics (README: Operations).
	for _, s := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if v, ok := samples[s]; !ok || v <= 0 || math.IsNaN(v) {
			t.Errorf("%s = %v (present %v), want a positive value", s, v, ok)
		}
	}
}
