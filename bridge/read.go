package bridge

// This file owns reading one frame and acting on it: the frame checks of RFC 6455 and
// docs/protocol.md §5 (size, opcode, UTF-8, fragments), the control frames (ping, pong,
// close and the code that answers a tablet's close), the read deadlines, and the close
// code a failed read ends in. Text messages go on to message (session.go).

import (
	"errors"
	"io"
	"net"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// readWait bounds reading one frame: the auth deadline before the handshake, two
// heartbeats (and a little) after, as long as a live tablet may be silent.
func (s *session) readWait() time.Duration {
	if s.authed.Load() {
		return 2*s.br.cfg.Heartbeat + time.Second
	}
	return s.br.cfg.AuthTimeout
}

// readFrame reads one frame and acts on it. It reports whether reading is over: the
// tablet closed, the connection failed, or the frame broke the protocol (a close frame
// is queued then).
func (s *session) readFrame() (over bool) {
	in := (*input)(s)
	// The poller calls only when there is something to read: the frame's whole read is
	// bounded. A reader of its own waits for the next frame as long as it takes (the
	// heartbeat's sweep and the auth deadline end a silent socket); then its rest is.
	if s.polled {
		if !wholeEarly(s.early) { // else nothing is read from the conn: no deadline to set
			s.setReadDeadline(time.Now().Add(s.readWait()))
		}
	} else {
		s.setReadDeadline(time.Time{})
	}
	hdr, err := ws.ReadHeader(in)
	if err != nil {
		s.readFailed(err)
		return true
	}
	if !s.polled {
		s.setReadDeadline(time.Now().Add(s.readWait()))
	}
	state := ws.StateServerSide
	if s.fragOp != 0 {
		state |= ws.StateFragmented // a continuation must come, and only one
	}
	if err := ws.CheckHeader(hdr, state); err != nil {
		s.readFailed(err)
		return true
	}
	if hdr.Length > maxClientFrameBytes || int64(len(s.frag))+hdr.Length > maxClientFrameBytes {
		s.closeWith(reasonTooBig)
		return true
	}
	payload := make([]byte, hdr.Length)
	if _, err := io.ReadFull(in, payload); err != nil {
		s.readFailed(err)
		return true
	}
	ws.Cipher(payload, hdr.Mask, 0)
	if hdr.OpCode.IsControl() {
		// Handled, then heard: a lease probe woken by a close frame finds the socket
		// closing, which is no answer (session.probe). A tablet that closed and at once
		// connected again was refused 4409 by its own old socket's close.
		closed := s.controlFrame(hdr.OpCode, payload)
		s.heard()
		return closed
	}
	s.heard()
	switch {
	case hdr.OpCode == ws.OpContinuation:
		s.frag = append(s.frag, payload...)
		payload = s.frag
	case !hdr.Fin:
		s.frag, s.fragOp = payload, hdr.OpCode
	}
	if !hdr.Fin {
		return false
	}
	op := hdr.OpCode
	if op == ws.OpContinuation {
		op = s.fragOp
	}
	s.frag, s.fragOp = nil, 0
	if op == ws.OpBinary {
		s.closeWith(reasonBinary)
		return false
	}
	if !utf8.Valid(payload) {
		s.closeWith(reasonInvalidUTF8)
		return true
	}
	if !s.isClosing() {
		s.message(payload)
	}
	return false
}

func (s *session) setReadDeadline(t time.Time) {
	s.mu.Lock()
	if !s.state.aborted() {
		_ = s.conn.SetReadDeadline(t)
	}
	s.mu.Unlock()
}

// controlFrame answers pings, notes pongs and echoes a close; it reports whether the
// tablet closed. The payload is at most 125 bytes (ws.CheckHeader refuses longer).
func (s *session) controlFrame(op ws.OpCode, payload []byte) (closed bool) {
	switch op {
	case ws.OpPing:
		f, _ := ws.CompileFrame(ws.NewPongFrame(payload))
		s.send(f)
	case ws.OpClose:
		s.mu.Lock()
		s.closeRead = true
		s.closeWithLocked(echoReason(closeReply(payload)))
		s.mu.Unlock()
		return true
	}
	return false
}

// closeReply is the code that answers a tablet's close frame (RFC 6455 §5.5.1, §7.4):
// its own code when it may be sent, 1000 for a close without one, and 1002 for a
// one-byte body or a code no endpoint may send (1005 and 1006 are never on the wire).
func closeReply(payload []byte) ws.StatusCode {
	switch len(payload) {
	case 0:
		return closeNormal
	case 1:
		return ws.StatusProtocolError
	}
	code, _ := ws.ParseCloseFrameData(payload)
	switch c := int(code); {
	case c >= 1000 && c <= 1003, c >= 1007 && c <= 1014, c >= 3000 && c <= 4999:
		return code
	default:
		return ws.StatusProtocolError
	}
}

// readFailed closes the socket with the code docs/protocol.md §5 gives the failure.
func (s *session) readFailed(err error) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		if !s.authed.Load() && !s.isClosing() {
			s.closeWith(reasonNoAuthInTime)
			s.br.metrics.handshakes.WithLabelValues("timeout").Inc()
			return
		}
		// A live tablet silent for two heartbeats (or stuck in a frame that long) is
		// dead: drop it without ceremony (no FIN-and-drain). A stopped socket (stop)
		// times out at once, and stays as stop left it.
		s.mu.Lock()
		if !s.state.aborted() {
			s.abortReadingLocked()
			s.dead = true
		}
		s.mu.Unlock()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
	default:
		// Reserved opcodes, RSV bits, unmasked client frames, oversized or fragmented
		// control frames: what ws.CheckHeader refuses.
		s.closeWith(reasonProtocolError)
	}
}
