package bridge

// This file owns the upgrade itself: after checkUpgrade and the admission checks, the
// connection is taken from net/http and answered with its 101 and the socket's first
// frame in one write: a refused socket's close (refuse), or the challenge, which waits
// in the session's cork (write.go) until start has the socket polled, so a close that
// comes first (a drain) still follows the 101. ws.HTTPUpgrader flushed the 101 alone,
// and the challenge then went out on a writer goroutine of its own: two sends, each
// waking the tablet, and a goroutine per handshake (issue 15).

import (
	"crypto/sha1" // RFC 6455 §4.2.2 names SHA-1 for Sec-WebSocket-Accept; not a security use
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// wsGUID is RFC 6455's fixed suffix of the accept hash.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// hijack takes the connection over from net/http once the request has been checked
// (checkUpgrade), clears the deadlines the HTTP server set on it, and returns it with
// whatever bytes the client sent early (kept out of net/http's buffers, which are not
// kept per connection).
func hijack(w http.ResponseWriter) (net.Conn, []byte, error) {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if rw.Writer.Buffered() > 0 { // net/http writes nothing before a handler does
		_ = conn.Close()
		return nil, nil, errors.New("hijacked with unwritten response bytes")
	}
	conn = httpx.Socket(conn) // a connection the lane handed on: its socket
	_ = conn.SetDeadline(time.Time{})
	var early []byte
	if n := rw.Reader.Buffered(); n > 0 {
		p, _ := rw.Reader.Peek(n)
		early = append([]byte(nil), p...)
	}
	return conn, early, nil
}

// upgradeResponse is the 101 for the request's Sec-WebSocket-Key (checked by
// checkUpgrade) followed by frame, to be written at once.
func upgradeResponse(key string, frame []byte) []byte {
	const head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
	buf := make([]byte, 0, len(head)+28+4+len(frame))
	buf = append(buf, head...)
	buf = base64.StdEncoding.AppendEncode(buf, acceptKey(key))
	buf = append(buf, "\r\n\r\n"...)
	return append(buf, frame...)
}

// acceptKey is the SHA-1 of key and wsGUID, which Sec-WebSocket-Accept carries in base64.
func acceptKey(key string) []byte {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(wsGUID))
	return h.Sum(nil)
}
