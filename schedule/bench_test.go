package schedule

import (
	"testing"
	"time"
)

// The costs an instance pays: Awake and Next once per feed per change of its state
// (broker.Schedules caches the answer until Next), never per device.
func benchSchedule(b *testing.B) *Schedule {
	b.Helper()
	night := []string{"22:00-06:00"}
	s, err := Parse(Spec{TimeZone: "Europe/Berlin", Week: map[string][]string{"mon": {"07:00-19:00"}, "tue": {"07:00-19:00"}, "wed": {"07:00-19:00"},
		"thu": {"07:00-19:00"}, "fri": {"07:00-19:00", "20:00-23:00"}, "sat": night, "sun": night}, Exceptions: map[string][]string{"2026-12-25": {}}})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkAwake(b *testing.B) {
	s := benchSchedule(b)
	t := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for i := 0; b.Loop(); i++ {
		s.Awake(t.Add(time.Duration(i%10080) * time.Minute))
	}
}

func BenchmarkNext(b *testing.B) {
	s := benchSchedule(b)
	t := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for i := 0; b.Loop(); i++ {
		if s.Next(t.Add(time.Duration(i%10080) * time.Minute)).IsZero() {
			b.Fatal("no change within the horizon")
		}
	}
}
