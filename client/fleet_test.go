package client_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
)

// bulkAnswer is POST /api/admin/devices/bulk's answer (docs/protocol.md #bulk-actions).
type bulkAnswer struct {
	Matched, Done, Failed int
	Results               []struct {
		DeviceID string `json:"device_id"`
		Outcome  string `json:"outcome"`
	}
}

func (s *testServer) bulk(tb testing.TB, body string) bulkAnswer {
	tb.Helper()
	var a bulkAnswer
	if err := s.admin("POST", "/api/admin/devices/bulk", body, http.StatusOK, &a); err != nil {
		tb.Fatal(err)
	}
	return a
}

// welcomes keeps the feeds the client's welcomes named.
type welcomes struct {
	mu    sync.Mutex
	feeds []string
}

func (w *welcomes) add(m client.Welcome) {
	w.mu.Lock()
	w.feeds = append(w.feeds, m.Feed)
	w.mu.Unlock()
}

func (w *welcomes) last() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.feeds) == 0 {
		return ""
	}
	return w.feeds[len(w.feeds)-1]
}

// A display on feed A moved to feed B by a bulk action: its socket is closed 4401, it
// fetches a token for B and reconnects, its welcome names B, its seq of A is not taken
// for one of B (a reset brings B's state, which is older than that seq), and from then
// on it gets B's events and none of A's.
func TestRunMovedToAnotherFeed(t *testing.T) {
	s := startServer(t, serverOpts{})
	d := pairedDevice(t, s, "move-a")
	id := d.Credentials().DeviceID
	stateB := s.mustPublish(t, "move-b", "state", `{"feed":"b"}`)
	stateA := s.mustPublish(t, "move-a", "state", `{"feed":"a"}`) // newer than B's state
	var gone retries
	var seen welcomes
	c := &client.Client{Device: d, OnDisconnect: gone.add, OnWelcome: seen.add, Policy: client.Policy{BackoffBase: 100 * time.Millisecond}}
	msgs, _, _ := runClient(t, c)
	msgs.expect(t, client.TypeReset, stateA, client.TypeSynced)

	a := s.bulk(t, `{"action":"move","filter":{"devices":["`+id+`"]},"feed":"move-b"}`)
	if a.Matched != 1 || a.Done != 1 || a.Failed != 0 || len(a.Results) != 1 || a.Results[0].Outcome != "done" {
		t.Fatalf("bulk move = %+v, want one device done", a)
	}
	// Catching up on B from A's seq would send nothing (B's state is older): the reset
	// is what shows B's state.
	msgs.expect(t, client.TypeReset, stateB, client.TypeSynced)
	if r := gone.get(); len(r) == 0 || closeCode(r[0].err) != 4401 {
		t.Fatalf("disconnects %v, want a 4401 first", r)
	}
	if got := seen.last(); got != "move-b" {
		t.Fatalf("welcome after the move names %q, want move-b", got)
	}
	if got := d.Credentials().Feed; got != "move-b" {
		t.Fatalf("credentials' feed %q, want move-b", got)
	}
	// A's next event is published first: if the display still got A's, it would come
	// before B's.
	s.mustPublish(t, "move-a", "item", `{"feed":"a"}`)
	itemB := s.mustPublish(t, "move-b", "item", `{"feed":"b"}`)
	msgs.expect(t, itemB)

	// Moving it to the feed it is on changes nothing.
	if a := s.bulk(t, `{"action":"move","filter":{"devices":["`+id+`"]},"feed":"move-b"}`); a.Done != 0 || len(a.Results) != 1 || a.Results[0].Outcome != "unchanged" {
		t.Fatalf("move to its own feed = %+v, want unchanged", a)
	}
}

// A bulk reload reaches a connected display as a reload message; a device that is not
// connected is reported, not remembered.
func TestRunHearsReload(t *testing.T) {
	s := startServer(t, serverOpts{})
	d := pairedDevice(t, s, "reload-feed")
	away := pairedDevice(t, s, "reload-feed") // never connects
	first := s.mustPublish(t, "reload-feed", "state", `{}`)
	msgs, _, _ := runClient(t, &client.Client{Device: d})
	msgs.expect(t, client.TypeReset, first, client.TypeSynced)
	a := s.bulk(t, `{"action":"reload","filter":{"feed":"reload-feed"}}`)
	outcome := map[string]string{}
	for _, r := range a.Results {
		outcome[r.DeviceID] = r.Outcome
	}
	if a.Matched != 2 || a.Done != 1 || outcome[d.Credentials().DeviceID] != "done" || outcome[away.Credentials().DeviceID] != "not_connected" {
		t.Fatalf("bulk reload = %+v, want the connected one done and the other not_connected", a)
	}
	msgs.expect(t, client.TypeReload)
	// Still connected and live afterwards: a Go display may ignore it.
	next := s.mustPublish(t, "reload-feed", "item", `{}`)
	msgs.expect(t, next)
}
