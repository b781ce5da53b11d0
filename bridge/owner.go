package bridge

// This file owns the bridge's goroutines and its context: what the bridge starts for
// itself goes through goSafe, which refuses once Shutdown has begun, and a tablet's
// waits on the broker or the authenticator (handshake, re-auth, a hub's start) derive
// from br.ctx, which Shutdown cancels. The lease's own calls (lease.go: renewal,
// release, probes) keep bounds of their own on purpose: a lease released as its socket
// ends during the drain must not be cut short by the cancel.

import (
	"context"
	"log/slog"
	"time"
)

// The bounds of the steps that wait on the broker or the authenticator. Each derives
// from the bridge's context, so Shutdown ends it at once instead of waiting it out.
const (
	// handshakeTimeout bounds a handshake after the auth message: authentication, the
	// lease, the hub and the catch-up.
	handshakeTimeout = 10 * time.Second
	// reauthTimeout bounds checking a re-auth's token and proof.
	reauthTimeout = 10 * time.Second
	// hubStartTimeout bounds a hub's first reads of the log (epoch, state, window).
	hubStartTimeout = 10 * time.Second
	// slowHubStart is when a hub's start is logged, with its parts.
	slowHubStart = 250 * time.Millisecond
	// resetWait bounds how long a reset waits for its hub to reach the log's newest
	// event (hub.awaitLogLocked); past it the reset carries the state the hub has, and
	// the newer events follow it live.
	resetWait = time.Second
	// busyFeed is how recently a hub must have had an event for a reset to ask the log
	// whether it lags: an idle feed's hub has long applied all there is.
	busyFeed = 2 * time.Second
)

// goSafe runs f on a goroutine the bridge owns, as nats-server's startGoRoutine does:
// counted in br.routines, which Shutdown waits for (bounded by its context), and
// refused once Shutdown has begun (draining), under br.mu, which Shutdown holds while it
// sets draining: no goroutine is added while Shutdown waits. On false f does not run,
// and the caller cleans up what it meant f to do. name says what the goroutine is, in
// the log line of a refusal.
//
// The bridge's own goroutines go through it: the heartbeat, the lease upkeep and the
// answers to lease probes. Two kinds do not, by design:
//   - a session's reader, drain and cleanup goroutines (conn.go, write.go): they are
//     what ends a session, so they must still start after Shutdown began (it closes
//     every socket with 1012, and each then drains its queue and reads the tablet's
//     reply). The session owns them, and holds a slot in br.wg from add (which refuses
//     new sessions once draining, like goSafe) to cleanup.
//   - the poller's one goroutine (poller_linux.go): it must outlive every session, and
//     Shutdown stops it (poller.close) once they are gone.
func (br *Bridge) goSafe(name string, f func()) bool {
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.draining {
		br.log.Debug("goroutine not started: shutting down", slog.String("goroutine", name))
		return false
	}
	br.routines.Add(1)
	go func() {
		defer br.routines.Done()
		f()
	}()
	return true
}

// opContext is a context for one step bounded by d, ended early by Shutdown.
func (br *Bridge) opContext(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(br.ctx, d)
}

// waitRoutines waits for the goroutines goSafe started, or for ctx.
func (br *Bridge) waitRoutines(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		br.routines.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
