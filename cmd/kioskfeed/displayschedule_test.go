package main

import (
	"encoding/json"
	"testing"
	"time"
)

// TestScheduleLine: kioskfeed display says whether its feed is asleep and until when,
// in the schedule's zone.
func TestScheduleLine(t *testing.T) {
	night := json.RawMessage(`{"time_zone":"Europe/Berlin","week":{"mon":["07:00-19:00"]},"asleep_view":"black"}`)
	for _, c := range []struct {
		name string
		raw  json.RawMessage
		at   time.Time
		want string
	}{
		{"asleep", night, time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC), "-- schedule (Europe/Berlin): asleep until Mon 2026-12-07 07:00 CET --"},
		{"awake", night, time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC), "-- schedule (Europe/Berlin): awake until Mon 2026-12-07 19:00 CET --"},
		{"never", json.RawMessage(`{"time_zone":"UTC","week":{}}`), time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC), "-- schedule (UTC): asleep, no change within a week --"},
		{"none", nil, time.Now(), "-- schedule: none, always awake --"},
		{"unreadable", json.RawMessage(`[1]`), time.Now(), "-- schedule: unreadable --"},
	} {
		if got := scheduleLine(c.raw, c.at); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
