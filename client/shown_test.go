package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
)

type shownView struct {
	ID       string     `json:"device_id"`
	ShownSeq uint64     `json:"shown_seq"`
	ShownAt  *time.Time `json:"shown_at"`
	Lag      int        `json:"lag"`
	State    string     `json:"state"`
}

// waitShownSeq polls the admin devices list until the device's shown_seq is want.
func waitShownSeq(tb testing.TB, s *testServer, feed, device string, want uint64) shownView {
	tb.Helper()
	deadline := time.Now().Add(wait)
	var last shownView
	for time.Now().Before(deadline) {
		var list []shownView
		if err := s.admin("GET", "/api/admin/devices?feed="+feed, "", 200, &list); err != nil {
			tb.Fatal(err)
		}
		for _, v := range list {
			if v.ID == device {
				last = v
			}
		}
		if last.ShownSeq == want {
			return last
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("device %s: shown_seq %d after %v, want %d", device, last.ShownSeq, wait, want)
	return last
}

// TestRunAcknowledgesShown: Run acknowledges what its handler returned from, coalesced
// to the newest: after a burst of events the device's shown_seq (the admin API's, read
// from the bridge) is the burst's last seq, its lag 0 and its state live.
func TestRunAcknowledgesShown(t *testing.T) {
	s := shared
	d := pairedDevice(t, s, "shown-feed")
	c := &client.Client{Device: d, ShownEvery: 50 * time.Millisecond}
	msgs, _, _ := runClient(t, c)
	msgs.expect(t, client.TypeReset, client.TypeSynced)
	var last uint64
	for range 5 {
		last = s.mustPublish(t, "shown-feed", "item", `{"n":1}`)
	}
	for {
		m := msgs.next(t)
		if m.Type == client.TypeEvent && m.Seq == last {
			break
		}
	}
	v := waitShownSeq(t, s, "shown-feed", d.Credentials().DeviceID, last)
	if v.ShownAt == nil || v.Lag != 0 || v.State != "live" {
		t.Errorf("after the acks: %+v, want shown_at set, lag 0, live", v)
	}
}

// TestConnShownBeyondSent: Conn.Shown of a seq never sent on the socket gets 4400.
func TestConnShownBeyondSent(t *testing.T) {
	s := shared
	d := pairedDevice(t, s, "shown-bad-feed")
	seq := s.mustPublish(t, "shown-bad-feed", "state", `{"n":1}`)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := client.Connect(ctx, d, client.Resume{}, client.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for {
		m, err := conn.Next()
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == client.TypeSynced {
			break
		}
	}
	if err := conn.Shown(seq); err != nil {
		t.Fatal(err)
	}
	waitShownSeq(t, s, "shown-bad-feed", d.Credentials().DeviceID, seq)
	if err := conn.Shown(seq + 1); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := conn.Next()
		var ce *client.CloseError
		if errors.As(err, &ce) {
			if ce.Code != 4400 {
				t.Fatalf("closed %d, want 4400", ce.Code)
			}
			return
		}
		if err != nil {
			t.Fatalf("socket ended with %v, want a 4400 close", err)
		}
	}
}
