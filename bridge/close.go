package bridge

// This file owns ending a socket: the close frame queued after what is queued, or
// instead of it for a tablet too slow to take it (closeWith, closeLocked), the grace the
// tablet has to answer it, the TCP hang-up once the queue is out (FIN and a bounded
// drain, or a reset for a dead tablet), and the cleanup that runs once reading is over.

import (
	"io"
	"net"
	"time"
)

// closeWith sends a close frame after what is queued (or instead of it, for a tablet
// too slow to take it) and gives the tablet Config.CloseGrace to answer.
func (s *session) closeWith(r closeReason) {
	s.mu.Lock()
	s.closeWithLocked(r)
	s.mu.Unlock()
}

// closeWithLocked is closeWith for a caller that holds s.mu.
func (s *session) closeWithLocked(r closeReason) { s.closeLocked(r, r.code == CloseTooSlow) }

func (s *session) closeLocked(r closeReason, dropQueue bool) {
	if s.state.closing() {
		return
	}
	r = s.br.closeVerdict(s, r) // a failed auth counts (admit.go)
	if s.corked && !dropQueue {
		s.uncorkLocked() // what the handshake sent goes out before the close frame
	}
	s.corked, s.cork = false, nil
	if dropQueue {
		if s.queueBegun {
			s.queue = s.queue[:1] // the rest of a frame half on the wire: the stream needs it
		} else {
			s.queue = nil
		}
	}
	// Written at once when nothing is queued, as any frame is (putLocked): a drain's
	// 1012s to thousands of tablets then start no writer goroutine each.
	s.putLocked(closeFrame(r.code, r.reason))
	s.endSendingLocked()
	s.br.metrics.closes.WithLabelValues(r.label()).Inc()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.closeTimer = time.AfterFunc(s.br.cfg.CloseGrace, s.closeTimedOut)
}

func (s *session) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.closing()
}

// hangUp ends the TCP connection once everything queued is written. It sends FIN first
// and discards what the tablet still sends, briefly and boundedly: closing a socket with
// unread input makes the kernel answer with a reset, which can destroy a close frame the
// tablet has not read yet. Called once, after the reader is gone.
//
// A dead tablet's socket (abort) is closed at once instead, with a reset: it has no
// close frame to protect, and waiting for a dead peer only holds a goroutine and the
// kernel's buffers.
//
// So is one whose close handshake is over (closeRead: the tablet's close frame was
// read, and ours is out): the tablet has nothing more to send, so nothing unread makes
// a reset, and RFC 6455 §7.1.1 has the server close the TCP connection first. The
// kernel still sends what it holds of our close frame, then FIN. A drain's 10,000
// sockets are then closed as their echoes arrive, with no FIN-and-wait each.
func (s *session) hangUp() {
	s.mu.Lock()
	dead, done := s.dead, s.closeRead
	s.mu.Unlock()
	switch {
	case dead:
		if tc, ok := s.conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = s.conn.Close()
	case done:
		_ = s.conn.Close()
	default:
		closeGracefully(s.conn, s.br.cfg.CloseGrace)
	}
}

// closeGracefully sends FIN and discards what the peer still sends (its close reply),
// for at most grace, before it closes conn: closing with unread input makes the
// kernel answer with a reset, which can destroy a close frame not yet read.
func closeGracefully(conn net.Conn, grace time.Duration) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_ = conn.SetReadDeadline(time.Now().Add(grace))
		// Bounded by grace; the byte cap only stops a fast peer spinning us longer.
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, 64<<20))
	}
	_ = conn.Close()
}

// cleanup runs once, when reading is over (endReading).
func (s *session) cleanup() {
	defer s.br.wg.Done()
	if s.polled {
		s.br.poller.remove(s.poll) // before the conn can close
	}
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.closeTimer != nil {
		s.closeTimer.Stop()
	}
	writing := s.writing // if so, drain hangs up once the queue is out
	h, rev := s.hub, s.leaseRev
	s.mu.Unlock()
	if !writing {
		s.hangUp()
	}
	if h != nil {
		h.detach(s)
	}
	if rev != 0 {
		// Before the remove (Shutdown's last timeline flush waits for the sessions to be
		// gone) and the release (a next socket's online comes after it).
		s.br.timeline.closed(s)
	}
	s.br.remove(s)
	if rev != 0 && !(s.br.cfg.LeasesEndWithProcess && s.br.isDraining()) {
		s.br.leases.release(s.device, rev)
	}
}
