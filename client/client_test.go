package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
)

func TestPairWithPINAndRefresh(t *testing.T) {
	s := shared
	d := pairedDevice(t, s, "pin-feed")
	first := d.Credentials()
	if first.DeviceID == "" || first.Feed != "pin-feed" || first.Token == "" || !first.Expires.After(time.Now()) {
		t.Fatalf("credentials after pairing = %+v", first)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := d.Refresh(ctx); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	again := d.Credentials()
	if again.DeviceID != first.DeviceID || again.Token == first.Token || again.Expires.Before(first.Expires) {
		t.Fatalf("after refresh %+v, before %+v: want the same device, a new token", again, first)
	}

	// A used PIN, and a wrong one, are the same refusal.
	other := client.NewDevice(s.URL, mustKey(t))
	err := other.PairWithPIN(ctx, "pin-feed", "BBBB-BBBB", "")
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 401 || apiErr.Code != "invalid_pin" {
		t.Fatalf("pair with a wrong PIN: %v, want 401 invalid_pin", err)
	}
	if err := other.Refresh(ctx); !errors.Is(err, client.ErrNotPaired) {
		t.Fatalf("refresh before pairing: %v, want ErrNotPaired", err)
	}
}

func mustKey(tb testing.TB) *client.Key {
	tb.Helper()
	k, err := client.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestConnectCatchUpAndLiveEventsInOrder(t *testing.T) {
	s := shared
	d := pairedDevice(t, s, "live-feed")
	seq1 := s.mustPublish(t, "live-feed", "state", `{"title":"one"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, d, client.Resume{}, client.SocketOptions{})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close()
	w := c.Welcome()
	if w.DeviceID != d.Credentials().DeviceID || w.Feed != "live-feed" || w.Epoch == "" || w.Heartbeat <= 0 || w.TokenExp.IsZero() {
		t.Fatalf("welcome = %+v", w)
	}
	next := func() client.Message {
		t.Helper()
		for {
			m, err := c.Next()
			if err != nil {
				t.Fatalf("next: %v", err)
			}
			if m.Type != client.TypeHeartbeat {
				return m
			}
		}
	}
	if m := next(); m.Type != client.TypeReset {
		t.Fatalf("first message %+v, want a reset (no since)", m)
	}
	if m := next(); m.Type != client.TypeEvent || m.Seq != seq1 || m.Kind != "state" || string(m.Data) != `{"title":"one"}` {
		t.Fatalf("state event = %+v, want seq %d", m, seq1)
	}
	if m := next(); m.Type != client.TypeSynced || m.Seq != seq1 {
		t.Fatalf("got %+v, want synced %d", m, seq1)
	}
	var want []uint64
	for i := range 5 {
		data, _ := json.Marshal(map[string]int{"n": i})
		want = append(want, s.mustPublish(t, "live-feed", "item", string(data)))
	}
	for i, seq := range want {
		m := next()
		if m.Type != client.TypeEvent || m.Seq != seq || m.Kind != "item" || m.Time.IsZero() {
			t.Fatalf("live event %d = %+v, want item seq %d", i, m, seq)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	// Resumed from the last seq in the same epoch: exactly what came after, no reset.
	more := s.mustPublish(t, "live-feed", "item", `{"n":5}`)
	c2, err := client.Connect(ctx, d, client.Resume{Since: want[2], Epoch: w.Epoch}, client.SocketOptions{})
	if err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	defer c2.Close()
	c = c2
	for _, seq := range []uint64{want[3], want[4], more} {
		if m := next(); m.Type != client.TypeEvent || m.Seq != seq {
			t.Fatalf("catch-up gave %+v, want event %d", m, seq)
		}
	}
	if m := next(); m.Type != client.TypeSynced || m.Seq != more {
		t.Fatalf("got %+v, want synced %d", m, more)
	}
}

func TestRunResumesFromStateFileAfterRestart(t *testing.T) {
	s := shared
	d := pairedDevice(t, s, "state-feed")
	path := filepath.Join(t.TempDir(), "state.json")
	first := s.mustPublish(t, "state-feed", "state", `{"v":1}`)

	c1 := &client.Client{Device: d, State: client.FileState{Path: path}}
	msgs, _, stop := runClient(t, c1)
	msgs.expect(t, client.TypeReset, first, client.TypeSynced)
	second := s.mustPublish(t, "state-feed", "item", `{"v":2}`)
	msgs.expect(t, second)
	stop()
	eventually(t, wait, func() bool {
		st, err := client.FileState{Path: path}.Load()
		return err == nil && st.Since == second
	}, "the state file to hold the last seq shown")

	// A new process: a new Device value with the same key knows nothing but the file.
	missed := s.mustPublish(t, "state-feed", "item", `{"v":3}`)
	d2 := client.NewDevice(s.URL, d.Key)
	c2 := &client.Client{Device: d2, State: client.FileState{Path: path}}
	msgs2, _, _ := runClient(t, c2)
	msgs2.expect(t, missed, client.TypeSynced) // a catch-up, not a reset
	if got := d2.Credentials().DeviceID; got != d.Credentials().DeviceID {
		t.Fatalf("restarted client is device %q, want %q", got, d.Credentials().DeviceID)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
	st, err := client.FileState{Path: path}.Load()
	if err != nil || st.DeviceID != d.Credentials().DeviceID || st.Feed != "state-feed" || st.Epoch == "" {
		t.Fatalf("state = %+v, %v", st, err)
	}
}

// eventually polls cond until it holds, within d.
func eventually(tb testing.TB, d time.Duration, cond func() bool, what string) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
