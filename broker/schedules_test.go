package broker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/schedule"
)

// TestSchedulesStoreAndFollow: a schedule stored by one Schedules reaches another
// (as another instance would see it), a delete too, and the subscribers hear each change
// once and in order, with no stale echo bringing a deleted schedule back.
func TestSchedulesStoreAndFollow(t *testing.T) {
	b := brokertest.New(t)
	ctx := context.Background()
	one, err := broker.NewSchedules(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(one.Stop)
	two, err := broker.NewSchedules(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(two.Stop)
	var mu sync.Mutex
	var heard []string
	one.Subscribe(func(feed string, fs *broker.FeedSchedule) {
		mu.Lock()
		defer mu.Unlock()
		if fs == nil {
			heard = append(heard, "-"+feed)
		} else {
			heard = append(heard, "+"+feed+" "+fs.Schedule.TimeZone)
		}
	})
	night := schedule.Spec{TimeZone: "Europe/Berlin", Week: map[string][]string{"sun": {"22:00-06:00"}}}
	fs, err := one.Put(ctx, "lobby", night, "test")
	if err != nil || fs.Rev == 0 || fs.Schedule.AsleepView != schedule.ViewBlack {
		t.Fatalf("Put = %+v, %v", fs, err)
	}
	if _, err := one.Put(ctx, "lobby", schedule.Spec{TimeZone: "UTC"}, "test"); err != nil {
		t.Fatal(err)
	}
	if ok, err := one.Delete(ctx, "lobby"); !ok || err != nil {
		t.Fatalf("Delete = %v, %v", ok, err)
	}
	brokertest.Eventually(t, 5*time.Second, "the other instance sees the delete", func() bool {
		_, ok := two.Get("lobby")
		return !ok
	})
	if _, err := two.Put(ctx, "hall", night, "test"); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, 5*time.Second, "the first instance hears the hall's schedule", func() bool {
		_, ok := one.Get("hall")
		return ok
	})
	mu.Lock()
	got := slices.Clone(heard)
	mu.Unlock()
	want := []string{"+lobby Europe/Berlin", "+lobby UTC", "-lobby", "+hall Europe/Berlin"}
	if !slices.Equal(got, want) {
		t.Fatalf("subscriber heard %q, want %q", got, want)
	}
	if _, ok := one.Get("lobby"); ok {
		t.Fatal("a stale echo brought the lobby's deleted schedule back")
	}
	if ok, err := one.Delete(ctx, "lobby"); ok || err != nil {
		t.Fatalf("second Delete = %v, %v; want false", ok, err)
	}

	// A restart loads what is stored.
	three, err := broker.NewSchedules(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer three.Stop()
	if fs, ok := three.Get("hall"); !ok || fs.Schedule.TimeZone != "Europe/Berlin" || fs.Parsed() == nil {
		t.Fatalf("after a restart: %+v, %v", fs, ok)
	}
}

// TestSchedulesAsleep: Asleep follows the schedule across its changes (the cache is
// re-evaluated at the next change, and when the clock goes back), and a feed without a
// schedule is never asleep.
func TestSchedulesAsleep(t *testing.T) {
	b := brokertest.New(t)
	ctx := context.Background()
	s, err := broker.NewSchedules(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if _, err := s.Put(ctx, "lobby", schedule.Spec{TimeZone: "UTC", Week: map[string][]string{"mon": {"07:00-19:00"}}}, "test"); err != nil {
		t.Fatal(err)
	}
	mon := func(h, m int) time.Time { return time.Date(2026, 12, 7, h, m, 0, 0, time.UTC) }
	for _, c := range []struct {
		at     time.Time
		asleep bool
	}{
		{mon(6, 59), true}, {mon(7, 0), false}, {mon(18, 59), false}, {mon(19, 0), true},
		{mon(12, 0), false}, // the clock went back
		{mon(23, 0), true},
	} {
		if got := s.Asleep("lobby", c.at); got != c.asleep {
			t.Errorf("Asleep(%s) = %v, want %v", c.at.Format(time.RFC3339), got, c.asleep)
		}
	}
	if s.Asleep("hall", mon(3, 0)) {
		t.Error("a feed without a schedule is asleep")
	}
}

// TestSchedulesBound: at most MaxSchedules feeds have one; replacing one is still
// allowed at the bound, and bad input is invalid_request.
func TestSchedulesBound(t *testing.T) {
	b := brokertest.New(t)
	ctx := context.Background()
	s, err := broker.NewSchedules(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	spec := schedule.Spec{TimeZone: "UTC"}
	for i := range broker.MaxSchedules {
		if _, err := s.Put(ctx, fmt.Sprintf("feed-%d", i), spec, "test"); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if _, err := s.Put(ctx, "one-more", spec, "test"); !errors.Is(err, broker.ErrTooManySchedules) {
		t.Fatalf("the %dth feed: %v, want ErrTooManySchedules", broker.MaxSchedules+1, err)
	}
	if _, err := s.Put(ctx, "feed-0", schedule.Spec{TimeZone: "Europe/Berlin"}, "test"); err != nil {
		t.Fatalf("replacing at the bound: %v", err)
	}
	for _, bad := range []struct {
		feed string
		spec schedule.Spec
	}{{"Bad!", spec}, {"feed-0", schedule.Spec{TimeZone: "Nowhere/Else"}}} {
		if _, err := s.Put(ctx, bad.feed, bad.spec, "test"); !isInvalidRequest(err) {
			t.Errorf("Put(%q, %+v) = %v, want invalid_request", bad.feed, bad.spec, err)
		}
	}
}

func isInvalidRequest(err error) bool {
	var e *httpx.Error
	return errors.As(err, &e) && e.Code == httpx.CodeInvalidRequest
}

// BenchmarkSchedulesAsleep is what the alert rules and the devices list pay per device:
// a cached answer, evaluated again only at the feed's next change.
func BenchmarkSchedulesAsleep(b *testing.B) {
	br := brokertest.New(b)
	ctx := context.Background()
	s, err := broker.NewSchedules(ctx, br)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	if _, err := s.Put(ctx, "lobby", schedule.Spec{TimeZone: "Europe/Berlin", Week: map[string][]string{"mon": {"07:00-19:00"}}}, "bench"); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for b.Loop() {
		s.Asleep("lobby", now)
		s.Asleep("hall", now) // no schedule
	}
}
