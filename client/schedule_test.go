package client_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
)

// A feed's schedule reaches Run's handler as a schedule message when it is stored, and
// as one with no schedule when it is deleted; a display that connects while the feed
// has one finds it in the welcome (docs/protocol.md #ws-schedule).
func TestRunGetsTheFeedsSchedule(t *testing.T) {
	s := shared
	const feed = "schedule-feed"
	d := pairedDevice(t, s, feed)
	if err := s.admin("PUT", "/api/admin/feeds/"+feed+"/schedule", `{"time_zone":"Europe/Berlin","week":{"mon":["07:00-19:00"]}}`, 200, nil); err != nil {
		t.Fatalf("PUT: %v", err)
	}
	t.Cleanup(func() { _ = s.admin("DELETE", "/api/admin/feeds/"+feed+"/schedule", "", 204, nil) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var mu sync.Mutex
	var welcome client.Welcome
	rec := runRecording(t, ctx, &client.Client{Device: d, OnWelcome: func(w client.Welcome) {
		mu.Lock()
		welcome = w
		mu.Unlock()
	}})
	mu.Lock()
	var spec struct {
		TimeZone string `json:"time_zone"`
	}
	err := json.Unmarshal(welcome.Schedule, &spec)
	mu.Unlock()
	if err != nil || spec.TimeZone != "Europe/Berlin" {
		t.Fatalf("welcome schedule %s (%v); want the feed's", welcome.Schedule, err)
	}

	schedules := func() []client.Message {
		var out []client.Message
		for _, m := range rec.all() {
			if m.Type == client.TypeSchedule {
				out = append(out, m)
			}
		}
		return out
	}
	if err := s.admin("PUT", "/api/admin/feeds/"+feed+"/schedule", `{"time_zone":"UTC","week":{}}`, 200, nil); err != nil {
		t.Fatalf("PUT: %v", err)
	}
	deadline := time.Now().Add(wait)
	for len(schedules()) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no schedule message after the PUT")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m := schedules()[0]; json.Unmarshal(m.Schedule, &spec) != nil || spec.TimeZone != "UTC" {
		t.Fatalf("schedule message %s; want the new one", m.Schedule)
	}
	if err := s.admin("DELETE", "/api/admin/feeds/"+feed+"/schedule", "", 204, nil); err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	for len(schedules()) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no schedule message after the DELETE")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m := schedules()[1]; m.Schedule != nil {
		t.Fatalf("after the delete: schedule %s; want nil", m.Schedule)
	}
}
