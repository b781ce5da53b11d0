package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// Proof of display through the whole served system (docs/protocol.md §5 #ws-shown, §6
// #device-state and #http-get-api-feeds-feed-delivery).

// deviceRow is the devices list's row of id, polled until ok accepts it.
func deviceRow(t *testing.T, sys *system, feed, id string, ok func(map[string]any) bool, d time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(d)
	var row map[string]any
	for {
		for _, r := range adminAPIList(t, sys, "/api/admin/devices?feed="+feed) {
			if r["device_id"] == id {
				row = r
			}
		}
		if row != nil && ok(row) {
			return row
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %s after %v: %v", id, d, row)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func shownSeqIs(seq uint64) func(map[string]any) bool {
	return func(r map[string]any) bool { n, _ := r["shown_seq"].(float64); return uint64(n) == seq }
}

// delivery calls GET /api/feeds/{feed}/delivery with auth; raw query q.
func delivery(t *testing.T, sys *system, feed, q, auth string) (int, map[string]any) {
	t.Helper()
	return sys.call(t, "GET", "/api/feeds/"+feed+"/delivery?"+q, auth, "")
}

func idsOf(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, e := range list {
		m, _ := e.(map[string]any)
		out = append(out, fmt.Sprint(m["device_id"]))
	}
	return out
}

// TestDeliveryAPI: a Go tablet acknowledges an event; the devices list and the delivery
// endpoint say so (to an admin and to the feed's producer), a later seq lists it as not
// shown, and bad calls get their documented errors.
func TestDeliveryAPI(t *testing.T) {
	sys := startSystem(t, t.TempDir(), freeAddr(t))
	ctx := context.Background()
	wsURL := "ws" + strings.TrimPrefix(sys.base, "http") + "/ws"
	producer := adminAPI(t, sys, "POST", "/api/admin/producer-keys", `{"name":"delivery test","feeds":["lobby"]}`)["key"].(string)
	other := adminAPI(t, sys, "POST", "/api/admin/producer-keys", `{"name":"other feed","feeds":["hall"]}`)["key"].(string)
	tabs := make([]*pairingtest.Tablet, 2)
	for i := range tabs {
		pin := adminAPI(t, sys, "POST", "/api/admin/feeds/lobby/pins", `{"ttl":"5m"}`)["pin"].(string)
		tab, err := pairingtest.NewTablet(sys.base)
		if err != nil {
			t.Fatal(err)
		}
		if err := tab.Pair(ctx, "lobby", pin, fmt.Sprintf("screen %d", i)); err != nil {
			t.Fatal(err)
		}
		tabs[i] = tab
	}
	seq := producerPublish(t, sys.base, producer, "lobby", "state", `{"title":"delivery"}`)
	// Tablet 0 connects and acknowledges; tablet 1 never connects.
	c, err := bridgetest.Dial(ctx, wsURL, sys.base, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Abort() })
	if _, err := c.Handshake(tabs[0], wsURL, 0, "", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, _, synced, err := c.Collect(10 * time.Second); err != nil || synced.Seq() != seq {
		t.Fatalf("catch-up: synced %d, %v; want %d", synced.Seq(), err, seq)
	}
	go func() { // answer pings, as a browser does
		for {
			if _, err := c.Next(time.Minute); err != nil {
				return
			}
		}
	}()
	if err := c.Send(json.RawMessage(fmt.Sprintf(`{"type":"shown","seq":%d}`, seq))); err != nil {
		t.Fatal(err)
	}
	row := deviceRow(t, sys, "lobby", tabs[0].DeviceID, shownSeqIs(seq), 10*time.Second)
	if row["state"] != "live" || row["lag"] != float64(0) || row["shown_at"] == nil {
		t.Errorf("acknowledging device: %v; want live, lag 0, shown_at set", row)
	}
	row = deviceRow(t, sys, "lobby", tabs[1].DeviceID, func(map[string]any) bool { return true }, time.Second)
	if row["state"] != "offline" || row["shown_seq"] != float64(0) || row["shown_at"] != nil || row["lag"] != float64(1) {
		t.Errorf("device never connected: %v; want offline, shown_seq 0, shown_at null, lag 1", row)
	}

	for _, auth := range []string{sys.token, producer} {
		code, body := delivery(t, sys, "lobby", fmt.Sprintf("seq=%d", seq), auth)
		if code != 200 || body["feed"] != "lobby" || body["seq"] != float64(seq) {
			t.Fatalf("delivery: %d %v", code, body)
		}
		if got := idsOf(body["shown"]); len(got) != 1 || got[0] != tabs[0].DeviceID {
			t.Errorf("shown %v, want [%s]", got, tabs[0].DeviceID)
		}
		if got := idsOf(body["not_shown"]); len(got) != 1 || got[0] != tabs[1].DeviceID {
			t.Errorf("not_shown %v, want [%s]", got, tabs[1].DeviceID)
		}
	}
	// A later seq: nobody has shown it yet.
	code, body := delivery(t, sys, "lobby", fmt.Sprintf("seq=%d", seq+1), producer)
	if code != 200 || len(idsOf(body["shown"])) != 0 || len(idsOf(body["not_shown"])) != 2 {
		t.Errorf("delivery of a later seq: %d %v; want nobody shown", code, body)
	}
	// A feed without devices: two empty lists.
	if code, body := delivery(t, sys, "nobody-here", "seq=1", sys.token); code != 200 || len(idsOf(body["shown"])) != 0 || len(idsOf(body["not_shown"])) != 0 || body["shown"] == nil {
		t.Errorf("delivery of a feed without devices: %d %v", code, body)
	}
	for _, tc := range []struct {
		feed, q, auth string
		code          int
		err           string
	}{
		{"lobby", "seq=0", sys.token, 400, "invalid_request"},
		{"lobby", "seq=-1", sys.token, 400, "invalid_request"},
		{"lobby", "seq=abc", sys.token, 400, "invalid_request"},
		{"lobby", "", sys.token, 400, "invalid_request"},
		{"lobby", "seq=%2B5", sys.token, 400, "invalid_request"},
		{"Bad_Feed", "seq=1", sys.token, 400, "invalid_request"},
		{"lobby", "seq=1", "", 401, "invalid_token"},
		{"lobby", "seq=1", "kfp.nope.nope", 401, "invalid_token"},
		{"lobby", "seq=1", other, 403, "forbidden"},
	} {
		if code, body := delivery(t, sys, tc.feed, tc.q, tc.auth); code != tc.code || body["error"] != tc.err {
			t.Errorf("delivery %s?%s: %d %v, want %d %s", tc.feed, tc.q, code, body, tc.code, tc.err)
		}
	}
}
