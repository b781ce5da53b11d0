package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
)

// shared is the server the examples run against (they take no testing.T).
var shared *testServer

func TestMain(m *testing.M) {
	s, stop, err := newServer(serverOpts{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start the examples' server:", err)
		os.Exit(1)
	}
	shared = s
	code := m.Run()
	stop()
	os.Exit(code)
}

// wait bounds one expected step of a test.
const wait = 10 * time.Second

// pairedDevice is a device with a fresh key, paired with feed by PIN.
func pairedDevice(tb testing.TB, s *testServer, feed string) *client.Device {
	tb.Helper()
	key, err := client.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	d := client.NewDevice(s.URL, key)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := d.PairWithPIN(ctx, feed, s.mustPIN(tb, feed), "test display"); err != nil {
		tb.Fatalf("pair: %v", err)
	}
	return d
}

// collector is a Handler that hands messages to the test.
type collector chan client.Message

func (c collector) handle(m client.Message) error {
	select {
	case c <- m:
		return nil
	case <-time.After(wait):
		return errors.New("the test stopped reading")
	}
}

// next returns the next message that is not a heartbeat.
func (c collector) next(tb testing.TB) client.Message {
	tb.Helper()
	deadline := time.After(wait)
	for {
		select {
		case m := <-c:
			if m.Type != client.TypeHeartbeat {
				return m
			}
		case <-deadline:
			tb.Fatalf("no message within %v", wait)
		}
	}
}

// expect reads the next non-heartbeat messages and checks their types and, for
// events, seqs (0 for "any").
func (c collector) expect(tb testing.TB, want ...any) []client.Message {
	tb.Helper()
	var got []client.Message
	for _, w := range want {
		m := c.next(tb)
		got = append(got, m)
		switch w := w.(type) {
		case string:
			if m.Type != w {
				tb.Fatalf("got %s (seq %d), want %s; so far %v", m.Type, m.Seq, w, got)
			}
		case uint64:
			if m.Type != client.TypeEvent || m.Seq != w {
				tb.Fatalf("got %s seq %d, want event seq %d; so far %v", m.Type, m.Seq, w, got)
			}
		}
	}
	return got
}

// runClient runs c until the test ends and returns Run's result channel.
func runClient(tb testing.TB, c *client.Client) (collector, <-chan error, context.CancelFunc) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	msgs := make(collector, 64)
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- c.Run(ctx, msgs.handle)
	}()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(wait):
			tb.Errorf("Run did not return within %v of its context ending", wait)
		}
	})
	return msgs, done, cancel
}
