package client

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// FuzzServerFrames feeds arbitrary bytes from a server, after a welcome, to a Conn over
// a real loopback connection: whatever arrives, Next returns messages or an error,
// within its deadline, and never panics or returns a message larger than the bound.
func FuzzServerFrames(f *testing.F) {
	frame := func(op ws.OpCode, fin bool, p string) []byte {
		var b bytes.Buffer
		_ = ws.WriteFrame(&b, ws.NewFrame(op, fin, []byte(p)))
		return b.Bytes()
	}
	f.Add(frame(ws.OpText, true, `{"type":"event","seq":7,"kind":"item","time":"2026-01-02T03:04:05Z","data":{"a":1}}`))
	f.Add(frame(ws.OpText, true, `{"type":"heartbeat","time":"x"}`))
	f.Add(append(frame(ws.OpText, false, `{"type":"re`), frame(ws.OpContinuation, true, `set"}`)...))
	f.Add(append(frame(ws.OpText, false, `{"type":`), append(frame(ws.OpPing, true, "p"), frame(ws.OpContinuation, true, `"synced","seq":3}`)...)...))
	f.Add(frame(ws.OpClose, true, "\x0f\xa4bye"))
	f.Add(frame(ws.OpText, true, `{"type":"reauth","nonce":""}`))
	f.Add(frame(ws.OpBinary, true, "\x00"))
	f.Add(frame(ws.OpText, true, "\xff\xfe"))
	f.Add([]byte{0x81, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	key, err := NewKey()
	if err != nil {
		f.Fatal(err)
	}
	dev := NewDevice("http://127.0.0.1:1", key) // a reauth's refresh fails at once
	f.Fuzz(func(t *testing.T, data []byte) {
		srv := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				srv <- nil
				return
			}
			srv <- c
		}()
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		peer := <-srv
		if peer == nil {
			t.Fatal("accept failed")
		}
		defer peer.Close()
		go func() {
			_, _ = peer.Write(data)
			_ = peer.(*net.TCPConn).CloseWrite()
		}()
		go func() { _, _ = peer.Read(make([]byte, 1<<16)) }() // take pongs and close answers
		c := newConn(context.Background(), dev, nc, nil, SocketOptions{MaxMessage: 4 << 10})
		c.silence = 2 * time.Second
		defer c.Close()
		for range 1000 {
			m, err := c.Next()
			if err != nil {
				return
			}
			if len(m.Data) > 4<<10 {
				t.Fatalf("a message of %d bytes passed a bound of 4 KiB", len(m.Data))
			}
		}
		t.Fatal("1000 messages from a finite input")
	})
}
