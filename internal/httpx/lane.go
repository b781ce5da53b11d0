package httpx

// The main listener's lane for WebSocket upgrades (issue 15). net/http gives every
// connection its request machinery and a bufio reader and writer (8.5 KB), which a
// hijacked socket never gives back: at a restart, 10,000 tablets upgrade at once, and
// those were a fifth of all a connect storm allocated and 5-7 % of its CPU. The lane
// reads each new connection's first request head itself, into a pooled buffer, and
// offers a well-formed GET of its path to take. Anything else, and any request take
// declines, goes on to the http.Server with the bytes already read, to be parsed again
// and answered exactly as it would be without the lane. So the lane has no error
// answers of its own, and a request it is unsure of is never its to answer.

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// laneHeadMax is the longest request head the lane reads: a tablet's upgrade is about
// 200 bytes, a browser's about 500. A longer head goes on to net/http, whose
// MaxHeaderBytes applies, and whose ReadHeaderTimeout starts again there: a client
// that trickles more than this gets at most twice the head timeout in all.
const laneHeadMax = 4 << 10

// Lane is a net.Listener for an http.Server (srv.Serve(lane)) in front of the real one.
type Lane struct {
	ln   net.Listener
	path string
	take func(conn net.Conn, r *http.Request, early []byte) bool
	// headTimeout bounds the reading of a request head, as the server's
	// ReadHeaderTimeout does (a connection that sends nothing is closed after it).
	headTimeout time.Duration

	start  sync.Once
	handed chan net.Conn // connections for the http.Server
	errs   chan error    // the real listener's Accept errors, for the http.Server's Serve
	done   chan struct{}
	close  sync.Once
}

// NewLane wraps ln. take gets the connection, the parsed request (RemoteAddr set, the
// Host header taken out as net/http does) and any bytes the client sent after the head
// (a copy); it returns true when it has taken the connection, false having written
// nothing to it. It runs on the connection's own goroutine.
func NewLane(ln net.Listener, path string, headTimeout time.Duration, take func(conn net.Conn, r *http.Request, early []byte) bool) *Lane {
	return &Lane{ln: ln, path: path, take: take, headTimeout: headTimeout,
		handed: make(chan net.Conn), errs: make(chan error), done: make(chan struct{})}
}

// Accept returns the next connection for the http.Server. The lane starts accepting
// on its first call, so nothing is read before the server serves.
func (l *Lane) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.handed:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes the real listener: no connection is accepted after it, and a
// connection whose head is still being read is closed once it is, neither taken nor
// handed on.
func (l *Lane) Close() error {
	var err error
	l.close.Do(func() {
		close(l.done)
		err = l.ln.Close()
	})
	return err
}

func (l *Lane) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Addr is the real listener's.
func (l *Lane) Addr() net.Addr { return l.ln.Addr() }

// acceptLoop accepts from the real listener. An error waits until the http.Server's
// Accept has taken it: Serve backs off from temporary ones (too many open files), so
// this loop does too.
func (l *Lane) acceptLoop() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
				return
			}
			continue
		}
		go l.look(c)
	}
}

// laneBuf is one connection's head buffer and the reader that parses it, pooled.
type laneBuf struct {
	b  [laneHeadMax]byte
	rd bytes.Reader
	br *bufio.Reader
}

var laneBufs = sync.Pool{New: func() any {
	lb := &laneBuf{}
	lb.br = bufio.NewReaderSize(&lb.rd, laneHeadMax)
	return lb
}}

// look reads the first request head of c and offers it to take, or hands c on.
func (l *Lane) look(c net.Conn) {
	lb := laneBufs.Get().(*laneBuf)
	defer laneBufs.Put(lb)
	n, end, ok := l.readHead(c, lb.b[:])
	if n == 0 {
		_ = c.Close()
		return
	}
	if l.closed() {
		_ = c.Close()
		return
	}
	if ok {
		if r := l.parse(lb, end); r != nil {
			r.RemoteAddr = c.RemoteAddr().String()
			var early []byte
			if n > end {
				early = append([]byte(nil), lb.b[end:n]...)
			}
			if l.take(c, r, early) {
				return
			}
		}
	}
	l.handOn(c, append([]byte(nil), lb.b[:n]...))
}

// readHead reads into b until the head's end (end is the index after its blank line),
// until what came cannot be a GET of the lane's path, b is full, or the client stops
// sending (ok false: hand it on, and net/http answers it as it would have), or until
// the head timeout passes before the head is whole, or nothing came before the client
// went (n 0: close it, which is what net/http does then too).
func (l *Lane) readHead(c net.Conn, b []byte) (n, end int, ok bool) {
	_ = c.SetReadDeadline(time.Now().Add(l.headTimeout))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	for n < len(b) {
		k, err := c.Read(b[n:])
		from := max(0, n-3)
		n += k
		if !l.couldBe(b[:n]) {
			return n, 0, false
		}
		if i := bytes.Index(b[from:n], []byte("\r\n\r\n")); i >= 0 {
			return n, from + i + 4, true
		}
		if err != nil {
			if ne, isNet := err.(net.Error); isNet && ne.Timeout() {
				return 0, 0, false
			}
			return n, 0, false
		}
	}
	return n, 0, false
}

// couldBe reports whether p can begin "GET <path> " or "GET <path>?".
func (l *Lane) couldBe(p []byte) bool {
	const method = "GET "
	want := len(method) + len(l.path)
	for i := range min(len(p), want) {
		var c byte
		if i < len(method) {
			c = method[i]
		} else {
			c = l.path[i-len(method)]
		}
		if p[i] != c {
			return false
		}
	}
	return len(p) <= want || p[want] == ' ' || p[want] == '?'
}

// parse reads the head with net/http's own parser and returns the request only when
// it is one the http.Server would hand its handler unchanged: HTTP/1.1, origin-form,
// exactly the lane's path, one valid Host header, valid header names and values, and
// no body. Anything else is nil: net/http answers it.
func (l *Lane) parse(lb *laneBuf, end int) *http.Request {
	lb.rd.Reset(lb.b[:end])
	lb.br.Reset(&lb.rd)
	r, err := http.ReadRequest(lb.br)
	if err != nil || r.Method != http.MethodGet || r.URL.Path != l.path || r.URL.Host != "" ||
		r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		return nil
	}
	// ReadRequest has taken the Host header out into r.Host (refusing two of them); in
	// origin-form nothing else sets it.
	if r.Host == "" || !httpguts.ValidHostHeader(r.Host) {
		return nil
	}
	for k, vv := range r.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil
			}
		}
	}
	return r
}

// handOn gives c to the http.Server, which reads read again first.
func (l *Lane) handOn(c net.Conn, read []byte) {
	select {
	case l.handed <- &replayConn{Conn: c, pending: read}:
	case <-l.done:
		_ = c.Close()
	}
}

// replayConn is a connection handed on: its reads return what the lane read first.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Socket is the connection underneath a connection the lane handed on, once everything
// the lane read has been read again (a handler that hijacks it, the WebSocket upgrade,
// wants the socket itself: its file descriptor, its linger), and c itself otherwise.
func Socket(c net.Conn) net.Conn {
	if rc, ok := c.(*replayConn); ok && len(rc.pending) == 0 {
		return rc.Conn
	}
	return c
}
