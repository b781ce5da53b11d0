package loadtest

// This file holds the tablets' side of a cluster run: the load balancer in front of the
// instances. A tablet dials its instance; when that dial fails (the instance is dead)
// it dials the next one in the same attempt, as a proxy that retries the next upstream
// on a connection error does (nginx's proxy_next_upstream error), and stays there.

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
)

// dialBackends dials t's current instance of cfg.addrs, falling over to the next on a
// failed dial, each instance at most once per call.
func (t *tablet) dialBackends(ctx context.Context, nd *net.Dialer, network string) (net.Conn, error) {
	addrs := t.cfg.addrs
	var errs []error
	for range addrs {
		c, err := nd.DialContext(ctx, network, addrs[t.backend])
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
		t.backend = nextBackend(t.backend, len(addrs))
	}
	return nil, errors.Join(errs...)
}

// nextBackend is the instance a tablet tries after a failed dial to backend: from its
// own (0) one of the others at random, so that a dead instance's tablets spread over the
// survivors; from there the next in turn.
func nextBackend(backend, n int) int {
	switch {
	case n < 2:
		return 0
	case backend == 0:
		return 1 + rand.IntN(n-1)
	default:
		return (backend + 1) % n
	}
}
