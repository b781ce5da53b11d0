package client

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// The frame layer of a Conn: reading whole text messages with their bounds, answering
// control frames, classifying how a stream ended, and writing masked frames.

// frameCheck, when set, sees every text message a Conn reads (toServer false) before
// it is decoded, and every one it writes (toServer true) before it is sent; an error
// fails the socket as a malformed message would. Only the client's tests set it
// (export_test.go), to check each frame against the protocol's JSON Schemas; it is nil
// otherwise, and costs a nil check.
var frameCheck func(c *Conn, toServer bool, payload []byte) error

// read returns the next text message by deadline, answering control frames.
func (c *Conn) read(deadline time.Time) (*wireMsg, error) {
	if c.err != nil {
		return nil, c.err
	}
	if err := c.nc.SetReadDeadline(deadline); err != nil {
		return nil, c.fail(err)
	}
	for {
		hdr, err := c.rd.NextFrame()
		if err != nil {
			return nil, c.fail(err)
		}
		if hdr.OpCode.IsControl() {
			err := c.control(hdr, &c.rd)
			if err == nil {
				err = c.rd.Discard()
			}
			if err != nil {
				return nil, c.fail(err)
			}
			continue
		}
		if hdr.OpCode != ws.OpText {
			return nil, c.fail(errors.New("client: the server sent a binary message"))
		}
		payload, err := c.payload(hdr)
		if err != nil {
			return nil, c.fail(err)
		}
		if frameCheck != nil {
			if err := frameCheck(c, false, payload); err != nil {
				return nil, c.fail(err)
			}
		}
		var m wireMsg
		if err := json.Unmarshal(payload, &m); err != nil {
			return nil, c.fail(fmt.Errorf("client: malformed server message: %w", err))
		}
		return &m, nil
	}
}

// payload reads the message whose first frame is hdr; a final frame's size is known
// and bounded, so it is read into an exact buffer.
func (c *Conn) payload(hdr ws.Header) ([]byte, error) {
	if hdr.Fin {
		buf := make([]byte, hdr.Length)
		if _, err := io.ReadFull(&c.rd, buf); err != nil {
			return nil, err
		}
		return buf, c.rd.Discard()
	}
	return io.ReadAll(&c.rd)
}

// control handles a control frame (payload at most 125 bytes); it is also the reader's
// hook for control frames between the fragments of a message.
func (c *Conn) control(hdr ws.Header, r io.Reader) error {
	var buf [ws.MaxControlFramePayloadSize]byte
	p := buf[:hdr.Length]
	if _, err := io.ReadFull(r, p); err != nil {
		return err
	}
	switch hdr.OpCode {
	case ws.OpPing:
		return c.write(ws.OpPong, p)
	case ws.OpClose:
		// Parsed by hand: wsutil refuses 1012 and 1013, which the protocol uses.
		ce := &CloseError{Code: noStatus}
		var echo []byte
		if len(p) >= 2 {
			code, reason := ws.ParseCloseFrameData(p)
			ce.Code, ce.Reason = int(code), reason
			echo = p[:2]
		}
		_ = c.write(ws.OpClose, echo) // the close frame is the answer either way
		return ce
	}
	return nil
}

// fail makes err the socket's sticky error, classified.
func (c *Conn) fail(err error) error {
	if c.err != nil {
		return c.err
	}
	var ce *CloseError
	switch {
	case errors.As(err, &ce):
		err = ce
	case errors.Is(err, os.ErrDeadlineExceeded) && c.silence > 0:
		err = fmt.Errorf("%w: %w", ErrSilent, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		err = fmt.Errorf("%w: %w", ErrNoCloseFrame, err)
	}
	c.err = err
	return err
}

// write sends one masked frame in a single write, so the server never waits for a
// payload after its header.
func (c *Conn) write(op ws.OpCode, payload []byte) error {
	if op == ws.OpText && frameCheck != nil {
		if err := frameCheck(c, true, payload); err != nil {
			return err
		}
	}
	h := ws.Header{Fin: true, OpCode: op, Masked: true, Mask: ws.NewMask(), Length: int64(len(payload))}
	var b bytes.Buffer
	b.Grow(ws.HeaderSize(h) + len(payload))
	_ = ws.WriteHeader(&b, h)
	start := b.Len()
	b.Write(payload)
	ws.Cipher(b.Bytes()[start:], h.Mask, 0)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return nil // RFC 6455 §5.5.1: nothing follows a close frame
	}
	c.closeSent = op == ws.OpClose
	wtime := c.wtime
	if c.closeSent {
		wtime = min(wtime, closeWriteTimeout) // a dead link must not hold Close up
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(wtime))
	if _, err := c.nc.Write(b.Bytes()); err != nil {
		return fmt.Errorf("client: write: %w", err)
	}
	return nil
}

// source reads what the dialer buffered with the handshake before the connection, then
// gives that buffer back to gobwas' pool, so an idle Conn holds no read buffer.
type source struct {
	br *bufio.Reader
	nc net.Conn
}

func (s *source) Read(p []byte) (int, error) {
	if s.br != nil {
		if b := s.br.Buffered(); b > 0 {
			return s.br.Read(p[:min(len(p), b)]) // served from the buffer alone
		}
		ws.PutReader(s.br)
		s.br = nil
	}
	return s.nc.Read(p)
}
