package client_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
	"github.com/kioskfeed/kioskfeed/internal/schematest"
)

// shared is the server the examples run against (they take no testing.T).
var shared *testServer

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) != "" {
		serveUntilStdinCloses()
		return
	}
	s, stop, err := newServer(serverOpts{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start the examples' server:", err)
		os.Exit(1)
	}
	shared = s
	client.SetFrameCheck(checkFrame) // every frame to and from a real server (schema_test.go)
	code := schematest.Main(m.Run)   // fails the run if any frame failed its schema
	stop()
	for _, err := range s.takeAPIFailures() {
		fmt.Fprintln(os.Stderr, "apitest (the examples' server):", err)
		code = 1
	}
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

// serveEnv makes the test binary a server in a process of its own, for measurements of
// the client's memory that the server's must not blur.
const serveEnv = "KIOSKFEED_CLIENT_TEST_SERVE"

func serveUntilStdinCloses() {
	s, stop, err := newServer(serverOpts{heartbeat: 20 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start server:", err)
		os.Exit(1)
	}
	fmt.Println("serving", s.URL)
	_, _ = io.Copy(io.Discard, os.Stdin)
	stop()
	os.Exit(0)
}

// startServerProcess runs a server in a child process until the test ends. Only its
// HTTP surface is usable (pin, approve, revoke), not publish.
func startServerProcess(tb testing.TB) *testServer {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- l
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		url, ok := strings.CutPrefix(strings.TrimSpace(l), "serving ")
		if !ok {
			tb.Fatalf("server process said %q", l)
		}
		return &testServer{URL: url}
	case <-time.After(60 * time.Second):
		tb.Fatal("the server process did not start within 60s")
	}
	return nil
}
