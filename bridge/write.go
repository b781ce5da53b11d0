package bridge

// This file owns writing: the bounded per-tablet queue (send, and catchUpLocked for a
// catch-up, which the bound does not cut), the first write tried at once on the socket
// (putLocked), live events held back during a catch-up (deliver and the pending
// helpers), and the drain goroutine that exists only while something is queued.

import (
	"net"
	"time"
)

type pendingFrame struct {
	seq   uint64
	frame []byte
}

// send queues one frame; a tablet whose queue is full is closed (1013) so it never
// slows the others.
func (s *session) send(frame []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sendLocked(frame)
}

func (s *session) sendLocked(frame []byte) bool {
	if s.state.closing() {
		return false
	}
	if len(s.queue) >= s.br.cfg.QueueFrames {
		s.br.metrics.queueDrops.Inc()
		s.closeLocked(reasonTooSlow, true)
		return false
	}
	return s.putLocked(frame)
}

// catchUpLocked queues one frame of a catch-up (reset, state, replayed events,
// synced). A catch-up is bounded (CatchupLimit events, or ReplayLimit items and their
// state), so it is never cut short by the queue's bound: a tablet that just connected
// is not too slow, and closing it 1013 would only make it come back for the same
// catch-up. Live frames after it meet the bound as usual.
func (s *session) catchUpLocked(frame []byte) bool {
	if s.state.closing() {
		return false
	}
	return s.putLocked(frame)
}

func (s *session) putLocked(frame []byte) bool {
	if s.corked {
		s.cork = append(s.cork, frame...)
		return true
	}
	if !s.writing && len(s.queue) == 0 && s.polled {
		// Nothing queued and no writer: try the socket right away, without blocking.
		// Almost always it takes the whole frame, and a fan-out to thousands of
		// tablets starts no goroutine and sets no deadline per tablet. What it does not
		// take goes to the queue and a writer goroutine as before. Safe: s.mu is held,
		// no writer exists, and the conn is closed only once sending has ended.
		// On an error other than "full", the writer meets it again on the conn and drops
		// the tablet.
		n, _ := writeNow(s.poll.fd, frame)
		if n == len(frame) {
			return true
		}
		frame = frame[n:]
		s.queueBegun = n > 0 // its rest must go out even if the queue is dropped
	}
	s.queue = append(s.queue, frame)
	s.startDrainLocked()
	return true
}

// startCork gathers the frames sent from now until uncork in one buffer, written with
// one system call: a handshake's welcome, its catch-up from memory (reset, state or
// replayed events) and synced, and whatever live event or heartbeat comes meanwhile, in
// the order they were sent. A reconnect storm then costs one write per tablet instead of
// three or more (each a loopback send the kernel does the receiver's work for).
func (s *session) startCork() {
	s.mu.Lock()
	s.corked = true
	s.mu.Unlock()
}

// uncork writes what the cork gathered; a no-op when nothing is corked.
func (s *session) uncork() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.uncorkLocked()
}

func (s *session) uncorkLocked() {
	if !s.corked {
		return
	}
	s.corked = false
	b := s.cork
	s.cork = nil
	if len(b) > 0 && !s.state.closing() {
		s.putLocked(b)
	}
}

// deliver hands one live event to the session: held back while a replay is read, and
// never sent twice.
func (s *session) deliver(seq uint64, frame []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.catchingUp {
		if s.overflowed || len(s.pending) >= s.br.cfg.QueueFrames {
			// More live events came while the catch-up waited than a queue holds: the
			// catch-up ends in a reset instead (the state covers them), never in a
			// 1013 that would bring the tablet back for the same catch-up.
			s.overflowed, s.pending = true, nil
			return
		}
		s.pending = append(s.pending, pendingFrame{seq, frame})
		return
	}
	if seq <= s.lastSent {
		return
	}
	s.lastSent = seq
	s.sendLocked(frame)
}

// startCatchUp holds live events back in pending while a replay is read from the log.
func (s *session) startCatchUp() {
	s.mu.Lock()
	s.catchingUp = true
	s.mu.Unlock()
}

// endCatchUpLocked lets live events through again and returns those held back. The
// caller holds s.mu from here until the catch-up and the held-back events are queued:
// a live event delivered in between would raise lastSent past the catch-up's events,
// which would then be skipped (issue 12 §2).
func (s *session) endCatchUpLocked() []pendingFrame {
	s.catchingUp, s.overflowed = false, false
	p := s.pending
	s.pending = nil
	return p
}

// flushPendingLocked sends the held-back events the replay did not already cover.
func (s *session) flushPendingLocked(pending []pendingFrame) {
	for _, p := range pending {
		if p.seq > s.lastSent {
			s.lastSent = p.seq
			s.sendLocked(p.frame)
		}
	}
}

func (s *session) startDrainLocked() {
	if !s.writing {
		s.writing = true
		go s.drain()
	}
}

// drain writes the queue out and exits when it is empty.
func (s *session) drain() {
	for {
		s.mu.Lock()
		batch := s.queue
		s.queue, s.queueBegun = nil, false
		if len(batch) == 0 {
			s.writing = false
			finished := s.state == stateFinished
			s.mu.Unlock()
			if finished {
				s.hangUp()
			}
			return
		}
		s.mu.Unlock()
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.br.cfg.WriteTimeout))
		var err error
		if len(batch) == 1 {
			// The common case (one event, one heartbeat): a plain write, which unlike
			// writev keeps no iovec array on the connection afterwards.
			_, err = s.conn.Write(batch[0])
		} else {
			bufs := net.Buffers(batch)
			_, err = bufs.WriteTo(s.conn)
		}
		if err != nil {
			s.mu.Lock()
			s.endSendingLocked()
			s.queue, s.queueBegun = nil, false
			s.writing = false
			s.dead = true
			finished := s.state == stateFinished
			s.mu.Unlock()
			if finished {
				// Cleanup has run and left the hang-up to this drain: do it, or the
				// conn (and its file) stays open until the runtime finalizes it.
				s.hangUp()
				return
			}
			s.abort() // a tablet that cannot take writes is dead
			return
		}
	}
}
