package bridge

import (
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
)

// TestTimelineSweepDoesNotUndoAClose: a sweep looks at the sockets it listed before
// it notes their states; a socket that closed in between must keep its offline (a
// stale online from the sweep would fold the drop into a flap, and the device would
// stay online in its timeline while it is gone).
func TestTimelineSweepDoesNotUndoAClose(t *testing.T) {
	tl := &timeline{devs: map[string]*timelineDev{}, todo: map[string]bool{}, kick: make(chan struct{}, 1)}
	const dev = "dev_0000000000000000000A"
	t0 := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	tl.note(dev, broker.TimelineOnline, t0, 1)
	d := tl.devs[dev]
	d.written, d.writtenAt, d.pending = broker.TimelineOnline, t0, "" // the online is written
	tl.note(dev, broker.TimelineOffline, t0.Add(time.Second), -1)     // the socket closes
	tl.note(dev, broker.TimelineOnline, t0.Add(time.Second), 0)       // the sweep's stale look
	if d.pending != broker.TimelineOffline || d.flaps != 0 {
		t.Fatalf("after a close and a stale sweep: pending %q, flaps %d; want the offline waiting, no flap", d.pending, d.flaps)
	}
	// A device never here: a sweep's note makes nothing.
	tl.note("dev_0000000000000000000B", broker.TimelineOnline, t0, 0)
	if _, ok := tl.devs["dev_0000000000000000000B"]; ok {
		t.Fatal("a sweep's note made a device that has no socket here")
	}
	// A socket here: the sweep's change counts.
	tl.note(dev, broker.TimelineOnline, t0.Add(2*time.Second), 1)
	tl.note(dev, broker.TimelineBehind, t0.Add(3*time.Second), 0)
	if d.pending != broker.TimelineBehind {
		t.Fatalf("a sweep's behind for a connected device: pending %q", d.pending)
	}
}
