package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// natsSub is one raw NATS-over-WebSocket subscriber: what a NATS user would put on a
// tablet instead of kioskfeed (nats.ws in the browser speaks exactly this). It sends
// CONNECT, SUB and PING, answers the server's PINGs, and records each MSG's latency.
type natsSub struct {
	src     net.IP
	url     string // ws://127.0.0.1:port
	addr    string
	subject string

	deliveries

	mu    sync.Mutex // guards err
	ready chan struct{}
	err   error
}

func (s *natsSub) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// run connects, subscribes, and reads until ctx ends or the connection fails. ready is
// closed once the server has answered the first PING (the subscription is in place).
func (s *natsSub) run(ctx context.Context) {
	var once sync.Once
	markReady := func() { once.Do(func() { close(s.ready) }) }
	defer markReady()
	d := ws.Dialer{
		Timeout: 10 * time.Second,
		NetDial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: s.src}}
			return nd.DialContext(ctx, network, s.addr)
		},
	}
	nc, br, _, err := d.Dial(ctx, s.url)
	if err != nil {
		s.fail(err)
		return
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	defer stop()
	defer nc.Close()
	c := newFrameConn(nc, br, ws.StateClientSide)
	hello := "CONNECT {\"verbose\":false,\"pedantic\":false,\"lang\":\"kioskfeed-loadtest\",\"version\":\"1\",\"protocol\":1,\"headers\":false}\r\nSUB " + s.subject + " 1\r\nPING\r\n"
	if err := c.write(ws.OpBinary, []byte(hello)); err != nil {
		s.fail(err)
		return
	}
	_ = nc.SetReadDeadline(time.Time{})
	r := bufio.NewReaderSize(&messageStream{c: c}, 4096)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if ctx.Err() == nil {
				s.fail(err)
			}
			return
		}
		now := time.Now()
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case bytes.HasPrefix(line, []byte("MSG ")):
			f := bytes.Fields(line)
			size, err := strconv.Atoi(string(f[len(f)-1]))
			if err != nil || size < 0 || size > maxServerFrame {
				s.fail(fmt.Errorf("bad MSG line %q", line))
				return
			}
			payload := make([]byte, size+2)
			if _, err := io.ReadFull(r, payload); err != nil {
				s.fail(err)
				return
			}
			var m struct {
				P int   `json:"p"`
				N int   `json:"n"`
				T int64 `json:"t"`
			}
			if json.Unmarshal(payload[:size], &m) == nil {
				s.record(m.P, m.N, m.T, now)
			}
		case bytes.Equal(line, []byte("PING")):
			if err := c.write(ws.OpBinary, []byte("PONG\r\n")); err != nil {
				s.fail(err)
				return
			}
		case bytes.Equal(line, []byte("PONG")):
			markReady()
		case bytes.HasPrefix(line, []byte("-ERR")):
			s.fail(errors.New(string(line)))
			return
		}
	}
}

// messageStream is the byte stream of NATS protocol carried in WebSocket messages: a
// protocol line may span messages, and one message may hold many lines.
type messageStream struct {
	c   *frameConn
	buf []byte
}

func (m *messageStream) Read(p []byte) (int, error) {
	for len(m.buf) == 0 {
		msg, err := m.c.next()
		if err != nil {
			return 0, err
		}
		m.buf = msg
	}
	n := copy(p, m.buf)
	m.buf = m.buf[n:]
	return n, nil
}
