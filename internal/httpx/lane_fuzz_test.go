package httpx_test

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzLaneAnswersAsNetHTTP: whatever bytes a client sends, the lane changes nothing net/http
// would answer. Through a lane whose take declines everything, the answer is the same
// as without the lane, byte for byte but the Date. Through one that takes what it is
// offered, a request it takes is one net/http would have handed its handler (answered
// 200 by it), with the same method, URI and Host.
func FuzzLaneAnswersAsNetHTTP(f *testing.F) {
	for _, seed := range []string{
		upgradeHead,
		strings.Replace(upgradeHead, "/ws ", "/ws?a=b ", 1),
		"GET /api/x HTTP/1.1\r\nHost: kiosk.test\r\n\r\n",
		"GET /ws HTTP/1.0\r\nHost: kiosk.test\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: kiosk.test\r\nContent-Length: 4\r\n\r\nbody",
		"GET /ws HTTP/1.1\r\nHost: kiosk.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: kiosk.test\r\n X: folded\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: kiosk.test\r\n",
		"GET /ws\r\n\r\n",
		"GET http://kiosk.test/ws HTTP/1.1\r\nHost: kiosk.test\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: kiosk.test\r\n\r\n" + upgradeHead,
	} {
		f.Add(seed)
	}
	h := http.HandlerFunc(echoHandler)
	plain := startPlain(f, h)
	declining := startLane(f, 2*time.Second, h)
	declining.mu.Lock()
	declining.decline = true
	declining.mu.Unlock()
	taking := startLane(f, 2*time.Second, h)
	f.Fuzz(func(t *testing.T, raw string) {
		// What fits net/http's first read of a connection: a server that closes with a
		// client's bytes still unread resets the connection, and whether the answer is
		// read before the reset is the kernel's race, not the lane's. The lane's own
		// limit is the same 4 KiB, and TestLaneHandsOnWhatIsNotItsOwn sends a longer head.
		raw = raw[:min(len(raw), 4<<10)]
		want := exchange(t, plain, raw)
		if got := exchange(t, declining.addr, raw); withoutDate(got) != withoutDate(want) {
			t.Fatalf("through a declining lane\n%q\nwithout it\n%q", got, want)
		}
		taking.mu.Lock()
		before := len(taking.taken)
		taking.mu.Unlock()
		got := exchange(t, taking.addr, raw)
		taking.mu.Lock()
		taken := taking.taken[before:]
		taking.mu.Unlock()
		if len(taken) == 0 {
			if withoutDate(got) != withoutDate(want) {
				t.Fatalf("not taken, but answered\n%q\nwithout the lane\n%q", got, want)
			}
			return
		}
		r := taken[0]
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(want)), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("the lane took %s %s, which net/http answers %q", r.Method, r.RequestURI, want)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		echo := "net/http " + r.Method + " " + r.RequestURI + " host=" + r.Host + ` body=""`
		if string(body) != echo {
			t.Fatalf("the lane took %q; net/http saw %q", echo, body)
		}
	})
}
