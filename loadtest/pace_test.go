package loadtest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestPaceIsOpenLoop: pace starts each publish on its schedule although the ones
// before it have not answered. Here each publish waits until the next one has begun, so
// a publisher that waited for each answer would never get past the first; and an error
// from any publish ends the pacing with that error.
func TestPaceIsOpenLoop(t *testing.T) {
	const events = 10
	r := &run{opts: Options{Rate: 100}}
	started := make([]chan struct{}, events+2)
	for i := range started {
		started[i] = make(chan struct{})
	}
	var most, now atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := r.pace(ctx, events, func(n int) error {
		if c := now.Add(1); c > most.Load() {
			most.Store(c)
		}
		defer now.Add(-1)
		close(started[n])
		if n == events {
			return nil
		}
		select {
		case <-started[n+1]:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err != nil {
		t.Fatalf("pace = %v, want every publish done (a closed-loop pacer never gets past the first)", err)
	}
	if len(r.paced) != events {
		t.Fatalf("%d publishes timed, want %d", len(r.paced), events)
	}
	if most.Load() < 2 {
		t.Fatalf("at most %d publishes in flight, want two or more", most.Load())
	}

	boom := errors.New("publish refused")
	var calls atomic.Int32
	err = r.pace(ctx, events, func(n int) error {
		calls.Add(1)
		if n == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("pace with a failing publish = %v, want %v", err, boom)
	}
	if c := calls.Load(); c < 3 || c > events {
		t.Fatalf("%d publishes called, want from 3 to %d", c, events)
	}
}
