package loadtest

// This file holds the load tablet's reconnect policy: client/run.go's policy, the
// PWA's (pwa/static/app.js), with the client's own defaults. It is a copy only because
// client does not export the decision apart from Client.Run, whose filtering of seen
// seqs would hide what the catch-up check must see (/work/notes/client-needs.md asks
// for the export; then this file goes).

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
)

// reconnect is one tablet's policy state between attempts: full jitter from 1 s
// doubling to 30 s, reset after 60 s connected; 1012 comes back within 2 s, and for
// 30 s after it failed attempts retry within 2 s too; 4429 waits 10 s more.
type reconnect struct {
	attempt      int
	restartUntil time.Time
}

// next is the wait after a socket that ended with err (a *client.CloseError for the
// server's close frame), welcomed at welcomed (zero if never).
func (p *reconnect) next(err error, welcomed time.Time) time.Duration {
	now := time.Now()
	if !welcomed.IsZero() {
		p.restartUntil = time.Time{} // back: later failures are failures again
		if now.Sub(welcomed) >= client.DefaultBackoffReset {
			p.attempt = 0
		}
	}
	code := 0
	var ce *client.CloseError
	if errors.As(err, &ce) {
		code = ce.Code
	}
	switch code {
	case 4401:
		return p.backoff()
	case 4429:
		return client.DefaultTooManyFloor + p.backoff()
	case 1012:
		p.restartUntil = now.Add(client.DefaultRestartWindow)
		return jitter(client.DefaultRestartJitter)
	}
	if now.Before(p.restartUntil) {
		return jitter(client.DefaultRestartJitter)
	}
	return p.backoff()
}

// backoff is full jitter: random in [0, min(cap, base·2^attempt)).
func (p *reconnect) backoff() time.Duration {
	ceiling := min(client.DefaultBackoffCap, client.DefaultBackoffBase<<p.attempt)
	p.attempt = min(p.attempt+1, 10)
	return jitter(ceiling)
}

func jitter(ceiling time.Duration) time.Duration {
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling)
}
