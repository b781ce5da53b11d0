package pairing

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"rsc.io/qr"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// TestQRSVGEncodesTheURL reads the modules back out of the SVG and compares them with
// the QR code of the URL: the image is that URL, with its quiet zone, and nothing else.
func TestQRSVGEncodesTheURL(t *testing.T) {
	for _, text := range []string{
		"http://127.0.0.1:8080/admin/approve?code=WDJBMJHT",
		"https://kiosk.example.com/admin/approve?code=BCDFGHJK",
	} {
		svg, err := qrSVG(text)
		if err != nil {
			t.Fatal(err)
		}
		want, err := qr.Encode(text, qr.M)
		if err != nil {
			t.Fatal(err)
		}
		dim := want.Size + 2*qrQuietZone
		if head := `viewBox="0 0 ` + strconv.Itoa(dim) + " " + strconv.Itoa(dim) + `"`; !strings.Contains(string(svg), head) {
			t.Fatalf("SVG lacks %s", head)
		}
		black := map[[2]int]bool{}
		runs := regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-(\d+)z`).FindAllStringSubmatch(string(svg), -1)
		for _, m := range runs {
			x, _ := strconv.Atoi(m[1])
			y, _ := strconv.Atoi(m[2])
			n, _ := strconv.Atoi(m[3])
			if m[3] != m[4] {
				t.Fatalf("run %q does not close", m[0])
			}
			for i := range n {
				black[[2]int{x + i - qrQuietZone, y - qrQuietZone}] = true
			}
		}
		for y := -qrQuietZone; y < want.Size+qrQuietZone; y++ {
			for x := -qrQuietZone; x < want.Size+qrQuietZone; x++ {
				inside := x >= 0 && y >= 0 && x < want.Size && y < want.Size
				if w := inside && want.Black(x, y); black[[2]int{x, y}] != w {
					t.Fatalf("%s: module (%d,%d) is %v in the SVG, want %v", text, x, y, !w, w)
				}
			}
		}
	}
}

// FuzzDecodeRequestName: whatever body reaches POST /api/pair/requests, it is refused
// with a client error or yields a name fit to show in the dashboard and logs.
func FuzzDecodeRequestName(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `{"name":"Lobby left"}`, `{"name":"  Küche  "}`, `{"name":null}`,
		`{"name":"` + strings.Repeat("ü", 64) + `"}`, `{"name":"` + strings.Repeat("ü", 65) + `"}`,
		`{"name":"a\u0085b"}`, `{"name":"bell\u0007"}`, `{"name":7}`, `{"feed":"lobby"}`,
		`{"name":"a"} {"name":"b"}`, `[]`, `null`, `{`, "{\"name\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		name, err := decodeRequestName(body)
		if err != nil {
			var e *httpx.Error
			if !errors.As(err, &e) || httpx.Status(e.Code) != 400 || e.Message == "" {
				t.Fatalf("refusal %v (%T): want a 400 *httpx.Error with a message", err, err)
			}
			return
		}
		if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxNameRunes || strings.ContainsFunc(name, unicode.IsControl) {
			t.Fatalf("accepted name %q", name)
		}
		if name != strings.TrimSpace(name) {
			t.Fatalf("accepted name %q with outer spaces", name)
		}
	})
}

// TestNormalizeCode: codes compare ignoring case, spaces and hyphens; anything else is
// no code.
func TestNormalizeCode(t *testing.T) {
	for in, want := range map[string]string{
		"WDJB-MJHT": "WDJBMJHT", "wdjb mjht": "WDJBMJHT", " W-D-J-B M-J-H-T ": "WDJBMJHT", "wdjbmjht": "WDJBMJHT",
		"WDJB-MJH": "", "WDJB-MJHTX": "", "AEIO-UAEI": "", "WDJB_MJHT": "", "": "", "WDJB\nMJHT": "",
		strings.Repeat(" ", 40) + "WDJBMJHT": "",
	} {
		if got := NormalizeCode(in); got != want {
			t.Errorf("NormalizeCode(%q) = %q, want %q", in, got, want)
		}
	}
}
