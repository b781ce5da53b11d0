package bridge

// This file owns the socket's reader: who may read it and when. The poller calls
// readable when there is something to read; one reader at a time claims the socket
// (claimReading), reads the frames there are and gives it back to the poller
// (doneReading), or ends reading (endReading), which runs cleanup once. Where the poller
// cannot watch the conn, readLoop is a reader goroutine for the socket's whole life.
// stop (abort, closeTimedOut) ends reading from outside the reader.

import (
	"time"
)

// start arms the auth deadline and starts reading: through the poller, or with a reader
// goroutine of its own where the poller cannot watch the conn. The 101 and the
// challenge wait in the cork until then (upgrade.go), and are written once the socket is
// polled: at once, without a writer goroutine.
func (s *session) start() {
	s.mu.Lock()
	if !s.state.closing() {
		s.timer = time.AfterFunc(s.br.cfg.AuthTimeout, s.authTimedOut)
	}
	s.mu.Unlock()
	if s.br.poller != nil {
		// Registered before any read, and the early bytes (rare) read at once: the
		// reader's own guard keeps the two from reading together.
		early := len(s.early) > 0 // read before arming: from then on the reader owns it
		h, err := s.br.poller.add(s.conn, s.readable)
		if err == nil {
			s.mu.Lock() // sendLocked reads them from other goroutines (the auth timer's)
			s.poll, s.polled = h, true
			s.uncorkLocked() // the 101 and the challenge, written right here
			s.mu.Unlock()
			if err := s.br.poller.arm(h); err == nil {
				if early {
					go func() {
						if s.claimReading() {
							s.readFrames()
						}
					}()
				}
				return
			}
			s.mu.Lock()
			s.polled = false
			s.mu.Unlock()
		}
	}
	s.uncork() // queued for a writer goroutine: the conn is not polled
	go s.readLoop()
}

// readable is called by the poller, on its own goroutine, when the socket has something
// to read. It takes what the socket holds in one read (takeInput); when that is one
// whole ping or pong (what an idle tablet sends: the answer to the heartbeat's ping) or
// one shown in the spelling every client sends (ten thousand a second while every
// tablet acknowledges; recording it takes short locks only, shown.go), the frame is read
// right here, so neither costs a goroutine (nor its stack) nor more reads. Anything else
// is read by a goroutine started for it, from what was taken on.
func (s *session) readable() {
	if !s.claimReading() {
		return
	}
	if len(s.early) == 0 && s.authed.Load() {
		if b := takeInput(s.poll.fd); b != nil {
			s.early = b
			if !inlineFrame(b) {
				s.br.readers.run(s.readFrames)
				return
			}
			if over := s.readFrame(); over {
				go s.endReading() // cleanup may wait: never on the poller's goroutine
				return
			}
			s.doneReading()
			return
		}
	}
	s.br.readers.run(s.readFrames)
}

// maxTakeInput is how much takeInput reads at once: a ping, pong or shown frame
// (at most 131 bytes) and more, which then waits in early for the reader.
const maxTakeInput = 256

// inlineFrame reports whether b is exactly one whole frame the poller's goroutine reads
// itself: final, masked, its length in the header's first byte (at most 125), and a
// ping, a pong or a text frame holding a plain shown (isPlainShown).
func inlineFrame(b []byte) bool {
	if len(b) < 6 || b[0]&0xf0 != 0x80 || b[1]&0x80 == 0 {
		return false
	}
	op, length := b[0]&0x0f, int(b[1]&0x7f)
	if length > 125 || len(b) != 6+length {
		return false
	}
	switch op {
	case 0x9, 0xa: // ping, pong
		return true
	case 0x1:
		return isPlainShown(b[2:6], b[6:])
	}
	return false
}

// wholeEarly reports whether b starts with a whole frame whose length is in the header's
// first byte (every ping, pong and shown the poller takes): reading it takes nothing from
// the conn. Setting a read deadline for it was half the cost of reading an ack's frame.
func wholeEarly(b []byte) bool {
	if len(b) < 2 || b[1]&0x7f > 125 {
		return false
	}
	n := 2 + int(b[1]&0x7f)
	if b[1]&0x80 != 0 {
		n += 4 // the mask
	}
	return len(b) >= n
}

// claimReading makes the caller the socket's one reader, unless another is at work or
// reading is over.
func (s *session) claimReading() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reading || s.state == stateFinished {
		return false
	}
	s.reading = true
	return true
}

// readFrames reads the frames the socket has, then lets the poller watch it again.
func (s *session) readFrames() {
	for {
		if over := s.readFrame(); over {
			s.endReading()
			return
		}
		if len(s.early) == 0 {
			break
		}
	}
	s.doneReading()
}

// doneReading lets the poller watch the socket again, or ends the socket if it was
// aborted meanwhile. It may run on the poller's goroutine, so what may wait (cleanup)
// goes to a goroutine of its own.
func (s *session) doneReading() {
	s.mu.Lock()
	s.reading = false
	if s.state.aborted() {
		s.mu.Unlock()
		go s.endReading()
		return
	}
	// Under s.mu, so that cleanup (which runs once finished is set under s.mu) never
	// races a rearm of a socket it is about to close.
	err := s.br.poller.rearm(s.poll)
	s.mu.Unlock()
	if err != nil {
		go s.endReading()
	}
}

// readLoop is the reader where the poller cannot watch the conn: a goroutine for the
// socket's whole life, as every socket had before the poller.
func (s *session) readLoop() {
	s.mu.Lock()
	s.reading = true
	s.mu.Unlock()
	for !s.readFrame() {
	}
	s.endReading()
}

// endReading runs cleanup once, when reading is over.
func (s *session) endReading() {
	s.mu.Lock()
	s.reading = false
	first := s.state != stateFinished
	if first {
		s.moveLocked(stateFinished)
	}
	s.mu.Unlock()
	if first {
		s.cleanup()
	}
}

// abort drops a dead tablet's socket without ceremony (silent, or it cannot take
// writes): a reader at work stops at its next read, else cleanup runs on a goroutine
// of its own. It never waits: the heartbeat calls it for every dead tablet in one
// sweep, and cleanup may wait for the broker (the lease's release). The socket is then
// closed at once, with a reset and no FIN-and-drain: nothing sent to it matters now.
func (s *session) abort() { s.stop(true) }

// closeTimedOut ends a socket whose tablet did not answer our close frame within
// Config.CloseGrace. Unlike abort it keeps the close frame: a slow tablet may still be
// reading the backlog in front of it (1013), so the socket gets FIN after it and a
// bounded drain, on the session's own goroutine.
func (s *session) closeTimedOut() { s.stop(false) }

func (s *session) stop(dead bool) {
	s.mu.Lock()
	s.abortReadingLocked()
	s.dead = s.dead || dead
	if s.reading {
		_ = s.conn.SetReadDeadline(time.Unix(1, 0))
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	go s.endReading()
}

// input reads the early bytes, then the conn: what frames are read from.
type input session

func (in *input) Read(p []byte) (int, error) {
	if len(in.early) > 0 {
		n := copy(p, in.early)
		in.early = in.early[n:]
		if len(in.early) == 0 {
			in.early = nil
		}
		return n, nil
	}
	return in.conn.Read(p)
}
