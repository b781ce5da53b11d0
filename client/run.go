package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// The reconnect policy's defaults: docs/protocol.md §5 and pwa/static/reconnect.js.
const (
	DefaultBackoffBase   = time.Second
	DefaultBackoffCap    = 30 * time.Second
	DefaultBackoffReset  = 60 * time.Second
	DefaultRestartJitter = 2 * time.Second
	DefaultRestartWindow = 30 * time.Second
	DefaultTooManyFloor  = 10 * time.Second
	DefaultSaveEvery     = 500 * time.Millisecond
)

// Handler is given every message of the feed in order: TypeReset (clear what is shown:
// the feed's state follows as events), TypeEvent (each seq once, in order, across
// reconnects), TypeSynced (caught up: live from here), TypeHeartbeat, and
// TypeOverride / TypeOverrideClear (an emergency override to show above everything, and
// its end; Run acknowledges each override once the handler returned), and TypeReload
// (an administrator asks the app to reload: a Go display may ignore it). An error from it
// ends Run with that error.
type Handler func(m Message) error

// Client keeps a paired device connected to its feed and resumes where it left off,
// reconnecting as the PWA does. Set the fields before Run; the zero durations are the
// protocol's defaults.
type Client struct {
	// Device is the paired device (or one whose id the State holds).
	Device *Device
	// State keeps the device id, feed and replay position; default in memory only (a
	// restarted process then starts with a reset).
	State StateStore
	// Socket tunes each socket.
	Socket SocketOptions

	// Policy is the reconnect policy; its zero value is the protocol's. Run keeps its
	// own copy's state, so one Client value may Run again after it returned.
	Policy
	// SaveEvery spaces state writes during a burst of events (default 500 ms); the
	// state is also saved at each synced and when a socket ends.
	SaveEvery time.Duration
	// ShownEvery spaces the socket's shown acknowledgements (default 1 s): after the
	// handler returns for an event or synced, its seq is acknowledged, coalesced to the
	// newest (docs/protocol.md §5 step 8).
	ShownEvery time.Duration

	// OnWelcome, if set, hears each socket's welcome.
	OnWelcome func(Welcome)
	// OnDisconnect, if set, hears why a socket ended (or could not be opened) and how
	// long Run waits before the next attempt.
	OnDisconnect func(err error, retryIn time.Duration)
}

// Run connects and keeps connecting until ctx ends (it returns ctx's error), the device
// is revoked or unknown (an error that is ErrRevoked: forget the device, pair again),
// the state cannot be kept, or h fails. The close codes are answered as docs/protocol.md
// §5 says: 1012 soon, 4429 after at least TooManyFloor, 4401 with a new token, the others
// after the backoff.
func (c *Client) Run(ctx context.Context, h Handler) error {
	store := c.State
	if store == nil {
		store = &memState{}
	}
	st, err := store.Load()
	if err != nil {
		return err
	}
	creds := c.Device.Credentials()
	switch {
	case creds.DeviceID == "" && st.DeviceID == "":
		return ErrNotPaired
	case creds.DeviceID == "":
		c.Device.SetCredentials(Credentials{DeviceID: st.DeviceID, Feed: st.Feed})
	case creds.DeviceID != st.DeviceID: // newly paired: an old position means nothing
		st = State{DeviceID: creds.DeviceID, Feed: creds.Feed}
		if err := store.Save(st); err != nil {
			return err
		}
	}
	p := c.Policy // a copy: Run's attempts are its own
	for {
		s := &runSession{c: c, store: store, st: &st, h: h}
		err := s.run(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.fatal != nil {
			return s.fatal
		}
		if errors.Is(err, ErrRevoked) {
			return fmt.Errorf("client: %w (%w)", ErrRevoked, err)
		}
		wait := p.Next(err, s.welcomed)
		var ce *CloseError
		if errors.As(err, &ce) && ce.Code == 4401 {
			c.Device.forgetToken() // the next socket fetches a new one
		}
		if c.OnDisconnect != nil {
			c.OnDisconnect(err, wait)
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// Policy is the reconnect policy of docs/protocol.md §5, exactly as the PWA has it
// (pwa/static/reconnect.js): the wait before the next socket, decided from how the last
// one ended. It is exported for callers that run their own socket loop on Conn (a load
// generator); Client.Run uses it itself. Its zero value is the protocol's defaults; it
// keeps state between attempts, so one Policy serves one display, from one goroutine.
type Policy struct {
	// BackoffBase, doubling per failed attempt up to BackoffCap, is the ceiling of the
	// full-jitter wait (default 1 s and 30 s); a socket that lived BackoffReset
	// (default 60 s) starts the doubling over.
	BackoffBase, BackoffCap, BackoffReset time.Duration
	// RestartJitter bounds the wait after a 1012 (default 2 s), and of every failed
	// attempt for RestartWindow after it (default 30 s): the server is coming back.
	RestartJitter, RestartWindow time.Duration
	// TooManyFloor is added to the backoff after a 4429 (default 10 s).
	TooManyFloor time.Duration

	attempt      int       // the backoff's exponent
	restartUntil time.Time // after a 1012: failed attempts retry within the jitter until then
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Next is the wait after a socket that ended with err (a *CloseError for the server's
// close frame; anything else is a failed attempt or a lost link), welcomed at welcomed
// (zero if it never was). 4403 is not its business: the caller stops.
func (p *Policy) Next(err error, welcomed time.Time) time.Duration {
	now := time.Now()
	if !welcomed.IsZero() {
		p.restartUntil = time.Time{} // back: later failures are failures again
		if now.Sub(welcomed) >= orDefault(p.BackoffReset, DefaultBackoffReset) {
			p.attempt = 0
		}
	}
	code := 0
	var ce *CloseError
	if errors.As(err, &ce) {
		code = ce.Code
	}
	restartJitter := orDefault(p.RestartJitter, DefaultRestartJitter)
	switch code {
	case 4401:
		return p.backoff()
	case 4429:
		return orDefault(p.TooManyFloor, DefaultTooManyFloor) + p.backoff()
	case 1012:
		p.restartUntil = now.Add(orDefault(p.RestartWindow, DefaultRestartWindow))
		return jitter(restartJitter)
	}
	if now.Before(p.restartUntil) {
		return jitter(restartJitter)
	}
	return p.backoff()
}

// backoff is full jitter: random in [0, min(cap, base·2^attempt)).
func (p *Policy) backoff() time.Duration {
	ceiling := min(orDefault(p.BackoffCap, DefaultBackoffCap), orDefault(p.BackoffBase, DefaultBackoffBase)<<p.attempt)
	p.attempt = min(p.attempt+1, 10)
	return jitter(ceiling)
}

func jitter(ceiling time.Duration) time.Duration {
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling)
}

// runSession is one socket of Run.
type runSession struct {
	c        *Client
	store    StateStore
	st       *State
	h        Handler
	welcomed time.Time
	fatal    error // ends Run: the handler failed or the state could not be saved
	dirty    bool
	savedAt  time.Time
}

func (s *runSession) run(ctx context.Context) error {
	conn, err := Connect(ctx, s.c.Device, Resume{Since: s.st.Since, Epoch: s.st.Epoch, Feed: s.st.Feed}, s.c.Socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	w := conn.Welcome()
	if w.Feed != "" && w.Feed != s.st.Feed {
		// Moved to another feed: the server resets us (the seq was the old feed's).
		s.st.Feed, s.st.Since, s.dirty = w.Feed, 0, true
	}
	s.welcomed = time.Now()
	if s.c.OnWelcome != nil {
		s.c.OnWelcome(w)
	}
	defer s.save()
	acks := newShownAcks(conn, s.c.ShownEvery)
	defer acks.stop()
	for {
		m, err := conn.Next()
		if err != nil {
			return err
		}
		if m.Type == TypeEvent && m.Seq <= s.st.Since {
			continue // never shown twice
		}
		if err := s.h(m); err != nil {
			s.fatal = fmt.Errorf("client: handler: %w", err)
			return s.fatal
		}
		switch m.Type {
		case TypeReset:
			s.st.Since, s.st.Epoch, s.dirty = 0, w.Epoch, true
		case TypeEvent:
			s.st.Since, s.dirty = m.Seq, true
			acks.rendered(m.Seq)
		case TypeSynced:
			s.st.Epoch, s.dirty = w.Epoch, true
			s.savedAt = time.Time{} // now
			acks.rendered(m.Seq)
		case TypeOverride:
			if err := conn.ShownOverride(m.ID); err != nil {
				return err
			}
		}
		every := s.c.SaveEvery
		if every <= 0 {
			every = DefaultSaveEvery
		}
		if s.dirty && time.Since(s.savedAt) >= every {
			if s.save(); s.fatal != nil {
				return s.fatal
			}
		}
	}
}

func (s *runSession) save() {
	if !s.dirty || s.fatal != nil {
		return
	}
	if err := s.store.Save(*s.st); err != nil {
		s.fatal = err
		return
	}
	s.dirty, s.savedAt = false, time.Now()
}
