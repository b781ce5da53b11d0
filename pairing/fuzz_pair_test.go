package pairing

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// FuzzDecodePairRequest: whatever body reaches /api/pair, decodePairRequest either
// refuses it with a client error or returns a request the rest of the handler may
// trust: a feed id, a bounded PIN, and a name fit to show in the dashboard and logs.
func FuzzDecodePairRequest(f *testing.F) {
	for _, seed := range []string{
		`{"feed":"lobby","pin":"WDJB-MJHT","name":"Lobby left"}`,
		`{"feed":"lobby","pin":"WDJB-MJHT"}`,
		`{"feed":"floor-2","pin":"wdjb mjht","name":"  Küche rechts  "}`,
		`{"feed":"lobby","pin":"WDJB-MJHT","name":"` + strings.Repeat("ü", 64) + `"}`,
		`{"feed":"lobby","pin":"WDJB-MJHT","name":"` + strings.Repeat("ü", 65) + `"}`,
		`{"feed":"lobby","pin":"` + strings.Repeat("B", 33) + `"}`,
		`{"feed":"lobby","pin":""}`,
		`{"feed":"Lobby","pin":"WDJB-MJHT"}`,
		`{"feed":"lobby\n","pin":"WDJB-MJHT"}`,
		`{"feed":"lobby.>","pin":"WDJB-MJHT"}`,
		`{"feed":"lobby","pin":"WDJB-MJHT","name":"a\u0000b"}`,
		`{"feed":"lobby","pin":"WDJB-MJHT","name":"bell\u0007"}`,
		`{"feed":"lobby","pin":"WDJB-MJHT","name":"Lobby\u009b2J"}`, // C1 CSI: a terminal escape without ESC
		`{"feed":"lobby","pin":"WDJB-MJHT","name":"Lobby\u0085left"}`,
		"{\"feed\":\"lobby\",\"pin\":\"WDJB-MJHT\",\"name\":\"\xff\xfe\"}",
		`{"feed":"lobby","pin":"WDJB-MJHT","admin":true}`,
		`{"feed":"lobby","pin":"WDJB-MJHT"} {"feed":"kitchen"}`,
		`{"feed":"lobby","pin":7}`,
		`{"feed":["lobby"],"pin":"WDJB-MJHT"}`,
		`null`,
		`[]`,
		``,
		`{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodePairRequest(body)
		if err != nil {
			var e *httpx.Error
			if !errors.As(err, &e) {
				t.Fatalf("refusal %v (%T) is not a *httpx.Error", err, err)
			}
			status := e.HTTPStatus
			if status == 0 {
				status = httpx.Status(e.Code)
			}
			if status < 400 || status > 499 || e.Message == "" {
				t.Fatalf("refusal %q: status %d, want a 4xx with a message", e.Code, status)
			}
			return
		}
		if !broker.ValidFeedID(req.Feed) {
			t.Fatalf("accepted feed %q, not a feed id", req.Feed)
		}
		if req.PIN == "" || len(req.PIN) > 32 {
			t.Fatalf("accepted a PIN of %d bytes, want 1 to 32", len(req.PIN))
		}
		if !utf8.ValidString(req.Name) || utf8.RuneCountInString(req.Name) > maxNameRunes {
			t.Fatalf("accepted name %q: want valid UTF-8 of at most %d runes", req.Name, maxNameRunes)
		}
		if i := strings.IndexFunc(req.Name, unicode.IsControl); i >= 0 {
			r, _ := utf8.DecodeRuneInString(req.Name[i:])
			t.Fatalf("accepted name %q with the control character %U", req.Name, r)
		}
	})
}
