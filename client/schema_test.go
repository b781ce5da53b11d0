package client_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"

	"github.com/kioskfeed/kioskfeed/client"
	"github.com/kioskfeed/kioskfeed/internal/schematest"
)

// The client's tests check every text message a Conn reads from or writes to a real
// server (newServer's) against the protocol's JSON Schemas (docs/schemas/), through the
// client's test-only hook: a frame that fails fails its socket, as a malformed one
// would, and TestMain fails the run. Fake servers (the fuzz test's, the policy tests')
// send malformed frames on purpose and are not checked.

// realServers holds the listener addresses of the servers newServer started.
var realServers sync.Map

var checked struct {
	sync.Mutex
	types map[string]int // "server → tablet welcome": count
}

func checkFrame(remote string, toServer bool, payload []byte) error {
	if _, ok := realServers.Load(remote); !ok {
		return nil
	}
	d := schematest.FromServer
	if toServer {
		d = schematest.FromClient
	}
	if err := schematest.Frame(d, payload); err != nil {
		schematest.Record(err)
		return err
	}
	var m struct{ Type string }
	_ = json.Unmarshal(payload, &m)
	checked.Lock()
	defer checked.Unlock()
	if checked.types == nil {
		checked.types = map[string]int{}
	}
	checked.types[d.String()+" "+m.Type]++
	return nil
}

func checkedCount(key string) int {
	checked.Lock()
	defer checked.Unlock()
	return checked.types[key]
}

// TestFramesAreSchemaChecked: the hook sees both directions of a real socket (the
// challenge, the auth, the welcome, the catch-up, an event, a shown).
func TestFramesAreSchemaChecked(t *testing.T) {
	if schematest.Measuring() {
		t.Skip("frames are not checked while benchmarks run")
	}
	keys := []string{"server → tablet challenge", "tablet → server auth", "server → tablet welcome",
		"server → tablet synced", "server → tablet event", "tablet → server shown"}
	before := make([]int, len(keys))
	for i, k := range keys {
		before[i] = checkedCount(k)
	}
	s := shared
	dev := pairedDevice(t, s, "schema-feed")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := client.Connect(ctx, dev, client.Resume{}, client.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.mustPublish(t, "schema-feed", "item", `{"n":1}`)
	var seq uint64
	for seq == 0 {
		m, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == client.TypeEvent {
			seq = m.Seq
		}
	}
	if err := c.Shown(seq); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if got := checkedCount(k); got <= before[i] {
			t.Errorf("no %s frame was checked (count %d)", k, got)
		}
	}
	if !slices.Contains(schematest.Types(schematest.FromClient), "shown") {
		t.Error("the schemas lack shown")
	}
}
