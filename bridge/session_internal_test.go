//go:build linux

package bridge

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// A frame the socket took only part of (a tablet reading slowly) must go out whole even
// when the queue behind it is dropped for a 1013: otherwise the tablet reads the close
// frame's bytes as the rest of the half-sent frame, and never sees the close. This is
// the window where sends keep the session's lock until the queue fills, before the
// writer goroutine can take the rest.
func TestDroppedQueueKeepsTheRestOfAHalfSentFrame(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = server.(*net.TCPConn).SetWriteBuffer(4096)
	_ = client.(*net.TCPConn).SetReadBuffer(4096)

	br := &Bridge{cfg: Config{QueueFrames: 8, WriteTimeout: 5 * time.Second}, metrics: newMetrics(nil, nil),
		sessions: map[string]*session{}, byDevice: map[string]*session{}}
	if br.poller, err = newPoller(); err != nil {
		t.Fatal(err)
	}
	br.wg.Add(1) // the session's cleanup is done by it
	s := newSession(br, server, nil, "test")
	rc, err := server.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	_ = rc.Control(func(fd uintptr) { s.poll.fd = int(fd) })
	s.polled = true

	// A frame larger than what the socket can hold: the kernel takes a part of it.
	big := bytes.Repeat([]byte("x"), 256<<10)
	frame := textFrame(bytes.Repeat([]byte("x"), 1000))
	sent := 1
	s.mu.Lock()
	s.sendLocked(textFrame(big))
	begun := s.queueBegun
	for !s.state.closing() { // the queue fills: 1013, queue dropped, all before the writer runs
		s.sendLocked(frame)
		sent++
	}
	s.mu.Unlock()
	if !begun {
		t.Fatalf("the socket took %d frames whole; the test needs one taken in part", sent)
	}

	// The tablet reads: whole text frames, then the close frame, 1013.
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		hdr, err := ws.ReadHeader(client)
		if err != nil {
			t.Fatalf("reading frames: %v (a corrupt stream looks like this)", err)
		}
		payload := make([]byte, hdr.Length)
		if _, err := io.ReadFull(client, payload); err != nil {
			t.Fatal(err)
		}
		if hdr.OpCode == ws.OpClose {
			if code, _ := ws.ParseCloseFrameData(payload); code != CloseTooSlow {
				t.Fatalf("close %d, want 1013", code)
			}
			break
		}
		if hdr.OpCode != ws.OpText || !bytes.Equal(payload, big[:len(payload)]) || (len(payload) != 1000 && len(payload) != len(big)) {
			t.Fatalf("frame %v of %d bytes, want a whole text frame or the close", hdr.OpCode, len(payload))
		}
	}
	s.abort() // end the session: its timers and the conn
	br.wg.Wait()
	br.poller.close()
}
