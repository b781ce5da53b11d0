package pairing

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"rsc.io/qr"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// qrQuietZone is the blank border a QR code needs around it (ISO/IEC 18004: 4 modules).
const qrQuietZone = 4

// qrModulePixels is the size of one module in the SVG's nominal width and height; the
// page scales the image as it likes, and crispEdges keeps the modules sharp.
const qrModulePixels = 8

// handlePairQR is GET /api/pair/qr.svg?code=WDJBMJHT: a QR code of the approval page of
// that code (verification_uri_complete), for the tablet to show as an image of its own
// origin. It needs nothing but the code, which whoever asks for it already has, and it
// can only ever encode this server's approval page for a well-formed code, so it looks
// nothing up and hands out nothing.
func (a *Authority) handlePairQR(w http.ResponseWriter, r *http.Request) error {
	code := NormalizeCode(r.URL.Query().Get("code"))
	if code == "" {
		return httpx.Errorf(httpx.CodeInvalidRequest, `"code" must be a pairing code such as WDJB-MJHT`)
	}
	svg, err := qrSVG(a.verificationURIComplete(code))
	if err != nil {
		a.log.Error("qr code", slog.String("error", err.Error()))
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "image/svg+xml")
	// The code is secret-ish: keep the image out of every cache.
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Length", strconv.Itoa(len(svg)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(svg)
	return nil
}

// qrSVG draws text as a QR code (error correction M) in SVG: one path of dark runs on a
// white square with the quiet zone, no script, no style, no text.
func qrSVG(text string) ([]byte, error) {
	c, err := qr.Encode(text, qr.M)
	if err != nil {
		return nil, fmt.Errorf("encode qr: %w", err)
	}
	dim := c.Size + 2*qrQuietZone
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" shape-rendering="crispEdges">`,
		dim, dim, dim*qrModulePixels, dim*qrModulePixels)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, dim, dim)
	for y := range c.Size {
		for x := 0; x < c.Size; {
			if !c.Black(x, y) {
				x++
				continue
			}
			run := 1
			for x+run < c.Size && c.Black(x+run, y) {
				run++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", x+qrQuietZone, y+qrQuietZone, run, run)
			x += run
		}
	}
	b.WriteString(`"/></svg>`)
	return b.Bytes(), nil
}
