package bridgetest

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// This file holds the protocol steps built on the raw socket of bridgetest.go: waiting
// for a message type or the close, the handshake, re-auth and the catch-up
// (docs/protocol.md §5).

// Expect reads messages until one of type typ arrives within d, skipping others
// (heartbeats, events a test does not care about). A close or any other error ends it.
func (c *Conn) Expect(typ string, d time.Duration) (Msg, error) {
	deadline := time.Now().Add(d)
	var skipped []string
	for {
		m, err := c.Next(time.Until(deadline))
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return Msg{}, fmt.Errorf("bridgetest: no %q within %v (skipped %v): %w", typ, d, skipped, err)
			}
			return m, err
		}
		if m.Type == typ {
			return m, nil
		}
		if len(skipped) < 16 {
			skipped = append(skipped, m.Type)
		}
	}
}

// ExpectClose reads until the server closes within d, ignoring messages (also binary or
// malformed ones), and returns the close code (1005 when the frame had none): the
// protocol's verdicts are close codes.
func (c *Conn) ExpectClose(d time.Duration) (int, error) {
	deadline := time.Now().Add(d)
	for {
		_, err := c.Next(time.Until(deadline))
		var ce *CloseError
		if errors.As(err, &ce) {
			return ce.Code, nil
		}
		if err != nil && (c.broken != nil || errors.Is(err, os.ErrDeadlineExceeded)) {
			return 0, err
		}
	}
}

// sendAuth writes the client's auth message (docs/protocol.md §5 step 2) as t: its
// token, and a proof over nonce for wsURL (the public ws URL the server expects as
// htu) with the token's ath; since, and epoch (omitted when "").
func (c *Conn) sendAuth(t *pairingtest.Tablet, wsURL, nonce string, since uint64, epoch string) error {
	msg, err := t.Device().AuthMessage(wsURL, nonce, client.Resume{Since: since, Epoch: epoch})
	if err != nil {
		return fmt.Errorf("bridgetest: auth message: %w", err)
	}
	return c.sendChecked(msg)
}

// Handshake plays steps 1–3 of docs/protocol.md §5 as the tablet t: it reads the challenge,
// sends auth with t's token and a proof over the challenge for wsURL (the public ws URL
// the server expects as htu), since, and epoch (omitted when ""), and returns the
// welcome. It is strict, because the protocol is: the first message must be the
// challenge and the next one the welcome; a close before the welcome (4401, 4403, 4409,
// 4429, ...) is returned as *CloseError. d bounds the whole exchange.
func (c *Conn) Handshake(t *pairingtest.Tablet, wsURL string, since uint64, epoch string, d time.Duration) (Msg, error) {
	deadline := time.Now().Add(d)
	m, err := c.Next(d)
	if err != nil {
		return m, err
	}
	if m.Type != "challenge" {
		return m, fmt.Errorf("bridgetest: first message is %s, not a challenge", m.Raw)
	}
	nonce := m.Str("nonce")
	if nonce == "" {
		return m, fmt.Errorf("bridgetest: challenge without a nonce: %s", m.Raw)
	}
	if err := c.sendAuth(t, wsURL, nonce, since, epoch); err != nil {
		return Msg{}, err
	}
	m, err = c.Next(time.Until(deadline))
	if err != nil {
		return m, err
	}
	if m.Type != "welcome" {
		return m, fmt.Errorf("bridgetest: got %s before the welcome", m.Raw)
	}
	return m, nil
}

// Reauth answers the server's {"type":"reauth","nonce"} message m (docs/protocol.md §5 step
// 7) with a new auth message: t's current token (refresh it first) and a proof over m's
// nonce; since is 0, the server ignores it.
func (c *Conn) Reauth(t *pairingtest.Tablet, wsURL string, m Msg) error {
	if m.Type != "reauth" {
		return fmt.Errorf("bridgetest: Reauth needs a reauth message, got %s", m.Raw)
	}
	nonce := m.Str("nonce")
	if nonce == "" {
		return fmt.Errorf("bridgetest: reauth without a nonce: %s", m.Raw)
	}
	return c.sendAuth(t, wsURL, nonce, 0, "")
}

// Collect reads the catch-up after the welcome (docs/protocol.md §5 step 4) until "synced",
// within d, and returns its events and whether a reset came first. Heartbeats are
// skipped; a reset after an event, a second reset or any other message type is an
// error, since the return values could not show it.
func (c *Conn) Collect(d time.Duration) (events []Msg, reset bool, synced Msg, err error) {
	deadline := time.Now().Add(d)
	for {
		m, err := c.Next(time.Until(deadline))
		if err != nil {
			return events, reset, Msg{}, err
		}
		switch m.Type {
		case "event":
			events = append(events, m)
		case "reset":
			if reset || len(events) > 0 {
				return events, reset, Msg{}, fmt.Errorf("bridgetest: reset after %d events (reset before: %v)", len(events), reset)
			}
			reset = true
		case "synced":
			return events, reset, m, nil
		case "heartbeat":
		default:
			return events, reset, Msg{}, fmt.Errorf("bridgetest: got %s before synced", m.Raw)
		}
	}
}
