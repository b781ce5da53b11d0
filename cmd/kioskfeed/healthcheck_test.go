package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// healthcheck runs `kioskfeed healthcheck` in-process and returns its exit code, its
// output and the line main would print for its error.
func healthcheck(lookupEnv func(string) (string, bool), args ...string) (code int, stdout, msg string) {
	var out, errOut syncBuffer
	err := run(context.Background(), append([]string{"healthcheck"}, args...), lookupEnv, &out, &errOut)
	if err != nil {
		return exitCode(err), out.String(), err.Error()
	}
	return 0, out.String(), ""
}

// TestHealthcheck: the container's HEALTHCHECK exits 0 against a ready server, found
// through --url or through the listen address the config gives (as in the image, where
// only KIOSKFEED_LISTEN says where serve is); non-zero with a one-line reason against a
// port where nothing listens, and against a real instance whose NATS went away (its
// /readyz answers 503).
func TestHealthcheck(t *testing.T) {
	n := brokertest.StartNATS(t)
	addr := freeAddr(t)
	s := startServe(t, t.TempDir(), "--listen", addr, "--public-url", "http://"+addr, "--nats-url", n.URL(), "--nats-start-timeout", "5s")
	_, port, _ := net.SplitHostPort(addr)

	if code, out, msg := healthcheck(env(nil), "--url", s.base); code != 0 || strings.TrimSpace(out) != "ready" {
		t.Fatalf("healthcheck --url %s against a ready server: exit %d, stdout %q, error %q; want 0 and ready", s.base, code, out, msg)
	}
	// The image sets KIOSKFEED_LISTEN=0.0.0.0:8080: the check goes to loopback on that port.
	if code, _, msg := healthcheck(env(map[string]string{"KIOSKFEED_LISTEN": "0.0.0.0:" + port})); code != 0 {
		t.Fatalf("healthcheck with KIOSKFEED_LISTEN=0.0.0.0:%s: exit %d, %q; want 0", port, code, msg)
	}
	if code, _, msg := healthcheck(env(nil), "--listen", ":"+port); code != 0 {
		t.Fatalf("healthcheck --listen :%s: exit %d, %q; want 0", port, code, msg)
	}

	dead := freeAddr(t) // closed again: nothing listens there
	code, _, msg := healthcheck(env(nil), "--url", "http://"+dead)
	if code == 0 || !strings.Contains(msg, "nothing is listening") || !strings.Contains(msg, dead+"/readyz") || strings.Contains(msg, "\n") {
		t.Fatalf("healthcheck against %s where nothing listens: exit %d, %q; want non-zero and one line naming the URL and that nothing listens", dead, code, msg)
	}

	n.Stop() // the instance stays up, but cannot serve: /readyz answers 503
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, msg = healthcheck(env(nil), "--url", s.base)
		if code != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthcheck still exits 0 30s after the instance's NATS stopped")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(msg, "HTTP 503") || !strings.Contains(msg, "NATS or JetStream is not reachable") || strings.Contains(msg, "\n") {
		t.Fatalf("healthcheck against an instance without NATS: exit %d, %q; want one line with HTTP 503 and the server's message", code, msg)
	}
}

// TestHealthcheckRefusesWhatItCannotCheck: a bad --url or a listen address with no
// port to reach is a usage error (exit 2), not a hang or a panic.
func TestHealthcheckRefusesWhatItCannotCheck(t *testing.T) {
	for _, args := range [][]string{
		{"--url", "ftp://127.0.0.1:1"},
		{"--url", "127.0.0.1:8080"},
		{"--listen", "127.0.0.1:0"},
		{"--listen", "nonsense"},
	} {
		err := run(context.Background(), append([]string{"healthcheck"}, args...), env(nil), &syncBuffer{}, &syncBuffer{})
		var u usageError
		if !errors.As(err, &u) || exitCode(err) != 2 {
			t.Errorf("healthcheck %v: %v; want a usage error", args, err)
		}
	}
}
