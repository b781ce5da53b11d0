package client_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/kioskfeed/kioskfeed/client"
)

// recorder holds every message a Client.Run handler got.
type recorder struct {
	mu  sync.Mutex
	got []client.Message
}

// all is a copy of what was got so far.
func (r *recorder) all() []client.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]client.Message(nil), r.got...)
}

// runRecording runs c until the test ends (its Run must then end with ctx, or
// cancelled), recording every message, and returns once the first synced came.
func runRecording(t *testing.T, ctx context.Context, c *client.Client) *recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	r := &recorder{}
	synced := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func(m client.Message) error {
			r.mu.Lock()
			r.got = append(r.got, m)
			r.mu.Unlock()
			if m.Type == client.TypeSynced {
				select {
				case synced <- struct{}{}:
				default:
				}
			}
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-synced:
	case <-ctx.Done():
		t.Fatal("no synced")
	}
	return r
}
