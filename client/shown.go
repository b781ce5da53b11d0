package client

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// DefaultShownEvery is the least time between two shown messages of one socket
// (docs/protocol.md §5 step 8: at most one a second, coalesced to the newest seq).
const DefaultShownEvery = time.Second

// Shown tells the server that the display has rendered what it was sent up to seq
// (docs/protocol.md §5 step 8): an event's seq, or a synced seq once the catch-up is
// on screen. The server closes the socket 4400 for a seq it did not send on this
// socket, or for 0. Send at most one a second (Client.Run coalesces for you); safe
// from any goroutine.
func (c *Conn) Shown(seq uint64) error {
	b := strconv.AppendUint([]byte(`{"type":"shown","seq":`), seq, 10)
	return c.write(ws.OpText, append(b, '}'))
}

// ShownOverride tells the server that the display shows the override id
// (docs/protocol.md §5 step 8); Client.Run sends it once the handler has taken a
// TypeOverride. An id the server does not hold in force for the feed is ignored.
func (c *Conn) ShownOverride(id string) error {
	b, err := json.Marshal(struct {
		Type     string `json:"type"`
		Override string `json:"override"`
	}{"shown", id})
	if err != nil {
		return err
	}
	return c.write(ws.OpText, b)
}

// shownAcks coalesces a socket's acknowledgements: at most one shown per every, each
// the newest seq rendered; one that must wait is sent by a timer, so it goes out even
// if nothing more arrives.
type shownAcks struct {
	conn  *Conn
	every time.Duration

	mu      sync.Mutex
	pending uint64 // newest seq rendered
	sent    uint64 // newest seq sent
	last    time.Time
	timer   *time.Timer
	stopped bool
}

func newShownAcks(conn *Conn, every time.Duration) *shownAcks {
	if every <= 0 {
		every = DefaultShownEvery
	}
	return &shownAcks{conn: conn, every: every}
}

// rendered notes that seq is on screen.
func (a *shownAcks) rendered(seq uint64) {
	if seq == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending = max(a.pending, seq)
	if a.stopped || a.timer != nil {
		return // the timer sends the newest
	}
	if wait := a.every - time.Since(a.last); wait > 0 {
		a.timer = time.AfterFunc(wait, a.flush)
		return
	}
	a.sendLocked()
}

func (a *shownAcks) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.timer = nil
	if !a.stopped {
		a.sendLocked()
	}
}

func (a *shownAcks) sendLocked() {
	if a.pending <= a.sent {
		return
	}
	// A failed write fails the socket's reads too: Run sees it there.
	_ = a.conn.Shown(a.pending)
	a.sent, a.last = a.pending, time.Now()
}

// stop ends the acks with the socket: what is pending is not sent (the next socket's
// catch-up and synced are acknowledged anew).
func (a *shownAcks) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
}
