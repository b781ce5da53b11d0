package loadtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/gobwas/ws"
	"github.com/kioskfeed/kioskfeed/client"
)

// centSub is one Centrifugo subscriber, as lean as the kioskfeed load tablet: what a
// Centrifugo user would put on a tablet for our job. It speaks Centrifugo's JSON
// protocol (v6): a connect command with an ES256 connection token, a subscribe to
// the channel, each push's publication recorded with its latency, and the server's
// empty ping `{}` answered with `{}`. It checks that publications come once and in
// order, by their offsets.
type centSub struct {
	natsSub // the address, the deliveries, ready and the first error
	token   string
	origin  string
	offset  uint64 // the last publication's offset
}

// centToken is a Centrifugo connection token for user: an ES256 JWT with sub and exp,
// signed by the key whose public half is in the server's config.
func centToken(key *ecdsa.PrivateKey, user string, ttl time.Duration) (string, error) {
	claims, err := json.Marshal(map[string]any{"sub": user, "exp": time.Now().Add(ttl).Unix()})
	if err != nil {
		return "", err
	}
	return client.SignES256(key, []byte(`{"alg":"ES256","typ":"JWT"}`), claims)
}

// centFrame is what one message of a Centrifugo frame may hold, decoded only as far
// as a subscriber needs.
type centFrame struct {
	ID    uint32 `json:"id"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Push *struct {
		Channel string `json:"channel"`
		Pub     *struct {
			Data struct {
				P int   `json:"p"`
				N int   `json:"n"`
				T int64 `json:"t"`
			} `json:"data"`
			Offset uint64 `json:"offset"`
		} `json:"pub"`
		Disconnect *struct {
			Code   int    `json:"code"`
			Reason string `json:"reason"`
		} `json:"disconnect"`
	} `json:"push"`
}

// run connects, subscribes, and reads until ctx ends or the connection fails. ready is
// closed once the subscribe command is answered.
func (s *centSub) run(ctx context.Context) {
	ready := func() {
		select {
		case <-s.ready:
		default:
			close(s.ready)
		}
	}
	defer ready()
	d := ws.Dialer{
		Timeout: 10 * time.Second,
		Header:  ws.HandshakeHeaderHTTP{"Origin": []string{s.origin}},
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
	// Both commands in one frame, newline-separated, as Centrifugo's own SDKs may.
	hello := `{"id":1,"connect":{"token":` + strconv.Quote(s.token) + `,"name":"kioskfeed-loadtest"}}` + "\n" +
		`{"id":2,"subscribe":{"channel":` + strconv.Quote(s.subject) + `}}`
	if err := c.write(ws.OpText, []byte(hello)); err != nil {
		s.fail(err)
		return
	}
	_ = nc.SetReadDeadline(time.Time{})
	for {
		frame, err := c.next()
		if err != nil {
			if ctx.Err() == nil {
				s.fail(err)
			}
			return
		}
		now := time.Now()
		for len(frame) > 0 {
			var line []byte
			if i := bytes.IndexByte(frame, '\n'); i >= 0 {
				line, frame = frame[:i], frame[i+1:]
			} else {
				line, frame = frame, nil
			}
			done, err := s.handle(c, bytes.TrimSpace(line), now)
			if err != nil {
				s.fail(err)
				return
			}
			if done {
				ready()
			}
		}
	}
}

// handle takes one message of a frame. done says the subscription is in place.
func (s *centSub) handle(c *frameConn, line []byte, now time.Time) (done bool, err error) {
	if len(line) == 0 {
		return false, nil
	}
	if bytes.Equal(line, []byte("{}")) {
		return false, c.write(ws.OpText, []byte("{}")) // the server's ping
	}
	var m centFrame
	if err := json.Unmarshal(line, &m); err != nil {
		return false, fmt.Errorf("centrifugo: bad message %.80q: %w", line, err)
	}
	switch {
	case m.Error != nil:
		return false, fmt.Errorf("centrifugo: command %d: error %d %s", m.ID, m.Error.Code, m.Error.Message)
	case m.ID == 2:
		return true, nil
	case m.Push != nil && m.Push.Disconnect != nil:
		return false, fmt.Errorf("centrifugo: disconnected %d %s", m.Push.Disconnect.Code, m.Push.Disconnect.Reason)
	case m.Push != nil && m.Push.Pub != nil:
		pub := m.Push.Pub
		if s.offset != 0 && pub.Offset != s.offset+1 {
			return false, fmt.Errorf("centrifugo: publication offset %d after %d", pub.Offset, s.offset)
		}
		s.offset = pub.Offset
		s.record(pub.Data.P, pub.Data.N, pub.Data.T, now)
	}
	return false, nil
}
