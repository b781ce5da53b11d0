package pwa

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"strconv"
)

// icon is one generated PNG. Icons are drawn at New rather than committed as binaries:
// the mark is a few shapes, and drawing it keeps the repository text only.
type icon struct {
	file    string
	size    int
	purpose string // manifest purpose; "" keeps it out of the manifest
	// fullBleed paints the whole square (the platform cuts its own shape); otherwise
	// the background is a rounded square on transparency.
	fullBleed bool
	// markScale shrinks the mark about the centre. A maskable icon may be cut to a
	// circle of 80% of its width, so its mark stays well inside that.
	markScale float64
}

var icons = []icon{
	{file: "icon-192.png", size: 192, purpose: "any", markScale: 1},
	{file: "icon-512.png", size: 512, purpose: "any", markScale: 1},
	{file: "icon-maskable-512.png", size: 512, purpose: "maskable", fullBleed: true, markScale: maskableMarkScale},
	// iOS ignores the manifest's icons and rounds the corners itself.
	{file: "apple-touch-icon.png", size: 180, fullBleed: true, markScale: 1},
}

// maskableMarkScale keeps the mark (which reaches 0.33 of the width from the centre at
// scale 1) within 0.26 of it, well inside the 0.40 safe-zone circle.
const maskableMarkScale = 0.8

func (ic icon) sizes() string { return strconv.Itoa(ic.size) + "x" + strconv.Itoa(ic.size) }

var (
	iconBackground = color.NRGBA{0x0b, 0x1d, 0x2a, 0xff} // backgroundColor
	iconInk        = color.NRGBA{0xf4, 0xf7, 0xfa, 0xff}
	iconAccent     = color.NRGBA{0x3d, 0xdc, 0x97, 0xff} // the "live" green of the status dot
)

// shape is a filled capsule (a segment thickened by r; a circle when a == b) in unit
// coordinates, the square's centre at (0.5, 0.5).
type shape struct {
	ax, ay, bx, by, r float64
	ink               color.NRGBA
}

// markShapes draw a feed: three rows, each a dot and a bar, the first dot live green.
var markShapes = []shape{
	{0.30, 0.34, 0.30, 0.34, 0.055, iconAccent},
	{0.43, 0.34, 0.72, 0.34, 0.05, iconInk},
	{0.30, 0.50, 0.30, 0.50, 0.055, iconInk},
	{0.43, 0.50, 0.63, 0.50, 0.05, iconInk},
	{0.30, 0.66, 0.30, 0.66, 0.055, iconInk},
	{0.43, 0.66, 0.68, 0.66, 0.05, iconInk},
}

// cornerRadius rounds the "any" icons' square.
const cornerRadius = 0.22

// markBounds holds every shape of the mark (the box of the centres, and the largest
// radius).
var markBounds = shape{ax: 0.30, ay: 0.34, bx: 0.72, by: 0.66, r: 0.055}

// near reports whether (u, v) is within margin of the shape's bounding box: most
// pixels are far from every shape, and skipping them keeps New quick.
func (s shape) near(u, v, margin float64) bool {
	m := s.r + margin
	return u >= min(s.ax, s.bx)-m && u <= max(s.ax, s.bx)+m && v >= min(s.ay, s.by)-m && v <= max(s.ay, s.by)+m
}

// render draws the icon, anti-aliased by signed distance, and encodes it as PNG. Only
// pixels near the corners or the mark need any arithmetic: the rest is a plain fill,
// which keeps New quick (it runs at every server start, and in every test).
func (ic icon) render() []byte {
	n := ic.size
	img := image.NewNRGBA(image.Rect(0, 0, n, n))
	px := 1 / float64(n) // one pixel in unit coordinates
	center := func(i int) float64 { return (float64(i) + 0.5) * px }

	copy(img.Pix, []byte{iconBackground.R, iconBackground.G, iconBackground.B, 0xff})
	for filled := 4; filled < len(img.Pix); filled *= 2 {
		copy(img.Pix[filled:], img.Pix[:filled])
	}

	if !ic.fullBleed {
		k := int(math.Ceil(cornerRadius*float64(n))) + 1
		edge := append(seq(0, k), seq(n-k, n)...)
		for _, y := range edge {
			for _, x := range edge {
				a := coverage(roundedSquare(center(x), center(y), cornerRadius), px)
				img.Pix[img.PixOffset(x, y)+3] = uint8(math.Round(a * 255))
			}
		}
	}

	// The mark's box in pixels, scaled about the centre, with a pixel to spare.
	toPx := func(m float64) int { return int((0.5 + (m-0.5)*ic.markScale) * float64(n)) }
	b := markBounds
	for y := max(toPx(b.ay-b.r)-1, 0); y <= min(toPx(b.by+b.r)+1, n-1); y++ {
		for x := max(toPx(b.ax-b.r)-1, 0); x <= min(toPx(b.bx+b.r)+1, n-1); x++ {
			mu, mv := 0.5+(center(x)-0.5)/ic.markScale, 0.5+(center(y)-0.5)/ic.markScale
			c := iconBackground
			for _, s := range markShapes {
				if !s.near(mu, mv, px/ic.markScale) {
					continue
				}
				d := segmentDistance(mu, mv, s.ax, s.ay, s.bx, s.by) - s.r
				if a := coverage(d*ic.markScale, px); a > 0 {
					c = mix(c, s.ink, a)
				}
			}
			if c != iconBackground {
				o := img.PixOffset(x, y)
				img.Pix[o], img.Pix[o+1], img.Pix[o+2] = c.R, c.G, c.B
			}
		}
	}
	var buf bytes.Buffer
	// BestSpeed: default compression costs several times as much for a few KiB.
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	_ = enc.Encode(&buf, img) // writing to memory cannot fail
	return buf.Bytes()
}

// seq is [from, to).
func seq(from, to int) []int {
	s := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// coverage turns a signed distance (negative inside) into a pixel's ink fraction.
func coverage(d, px float64) float64 {
	return min(max(0.5-d/px, 0), 1)
}

func segmentDistance(px, py, ax, ay, bx, by float64) float64 {
	dx, dy := bx-ax, by-ay
	t := 0.0
	if l := dx*dx + dy*dy; l > 0 {
		t = min(max(((px-ax)*dx+(py-ay)*dy)/l, 0), 1)
	}
	return math.Hypot(px-(ax+t*dx), py-(ay+t*dy))
}

// roundedSquare is the signed distance to the unit square with corner radius r.
func roundedSquare(u, v, r float64) float64 {
	qx := math.Abs(u-0.5) - (0.5 - r)
	qy := math.Abs(v-0.5) - (0.5 - r)
	return math.Hypot(max(qx, 0), max(qy, 0)) + min(max(qx, qy), 0) - r
}

func mix(a, b color.NRGBA, t float64) color.NRGBA {
	l := func(x, y uint8) uint8 { return uint8(math.Round(float64(x)*(1-t) + float64(y)*t)) }
	return color.NRGBA{l(a.R, b.R), l(a.G, b.G), l(a.B, b.B), 0xff}
}
