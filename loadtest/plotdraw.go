package loadtest

// This file draws Plot's picture with the standard library's image packages and the
// 7×13 bitmap font of golang.org/x/image/font/basicfont: nothing is antialiased, so
// every mark of a peer is drawn in exactly its colour (the tests look for it).

import (
	"image"
	"image/color"
	"image/draw"
	"math"
	"strconv"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var (
	plotInk   = color.RGBA{0x20, 0x20, 0x20, 0xff}
	plotMuted = color.RGBA{0x55, 0x55, 0x55, 0xff}
	plotFrame = color.RGBA{0x90, 0x90, 0x90, 0xff}
	plotGrid  = color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
	plotPaper = color.RGBA{0xff, 0xff, 0xff, 0xff}
)

const (
	plotPad    = 16 // pixels between a panel's frame and its outermost point
	plotDodge  = 7  // pixels between the peers' points at one N, so whiskers do not overlap
	plotMarker = 4  // a marker is a (2·4+1)-pixel square
	plotCap    = 6  // a whisker's cap reaches this far either side
)

type legendEntry struct {
	label string
	color color.RGBA
}

// plotTick is one labelled value on an axis, at pixel pos.
type plotTick struct {
	pos   int
	label string
}

type plotPanel struct {
	title, ylabel  string
	series         []plotSeries
	area           image.Rectangle // the frame; points lie plotPad inside it
	xTicks, yTicks []plotTick
}

// plotChart is the whole picture, placed (place) and then drawn (draw).
type plotChart struct {
	w, h     int
	title    string
	subtitle []string // lines, each wrapped to the width
	legend   []legendEntry
	panels   []plotPanel
	// Set by place:
	subLines   []string
	titleScale int
	subTop     int // the subtitle's first line
	legendY    int
}

// place lays the picture out: the header's lines, then the panels side by side on one
// N axis, each with a y axis of its own from 0 (or below, for a negative figure).
func (c *plotChart) place() {
	c.subLines = nil
	for _, line := range c.subtitle {
		c.subLines = append(c.subLines, wrapText(line, (c.w-40)/basicfont.Face7x13.Advance)...)
	}
	// The title at twice the font's size, or its size when that does not fit.
	c.titleScale = 2
	if 2*textWidth(c.title) > c.w-20 {
		c.titleScale = 1
	}
	c.subTop = 12 + c.titleScale*13 + 8
	y := c.subTop
	y += len(c.subLines) * 15
	c.legendY = y + 4
	top := c.legendY + len(c.legendRows())*legendRow + 30 // the legend, then the panels' titles
	bottom := c.h - 48                                    // x tick labels and the x axis' label below
	xmax := 0.0
	for _, p := range c.panels {
		for _, s := range p.series {
			for _, pt := range s.points {
				xmax = max(xmax, float64(pt.n))
			}
		}
	}
	xstep := niceStep(xmax / 5)
	xmax = math.Ceil(xmax/xstep) * xstep
	for i := range c.panels {
		p := &c.panels[i]
		p.area = image.Rect(i*c.w/len(c.panels)+84, top, (i+1)*c.w/len(c.panels)-24, bottom)
		x := func(n float64) int {
			return p.area.Min.X + plotPad + int(math.Round(n/xmax*float64(p.area.Dx()-2*plotPad)))
		}
		for k := 0; k < 50; k++ { // about 5; the bound is for figures out of all measure
			v := float64(k) * xstep
			if v > xmax+xstep/2 {
				break
			}
			p.xTicks = append(p.xTicks, plotTick{pos: x(v), label: formatN(v)})
		}
		lo, hi := 0.0, 0.0
		for _, s := range p.series {
			for _, pt := range s.points {
				lo, hi = min(lo, pt.lo), max(hi, pt.hi)
			}
		}
		if hi <= lo {
			hi = lo + 1
		}
		ystep := niceStep((hi - lo) / 5)
		lo, hi = math.Floor(lo/ystep)*ystep, math.Ceil(hi/ystep)*ystep
		y := func(v float64) int {
			return p.area.Max.Y - plotPad - int(math.Round((v-lo)/(hi-lo)*float64(p.area.Dy()-2*plotPad)))
		}
		decimals := max(0, -int(math.Floor(math.Log10(ystep)+1e-9)))
		for k := 0; k < 50; k++ {
			v := lo + float64(k)*ystep
			if v > hi+ystep/2 {
				break
			}
			p.yTicks = append(p.yTicks, plotTick{pos: y(v), label: strconv.FormatFloat(v, 'f', decimals, 64)})
		}
		for si := range p.series {
			s := &p.series[si]
			for k := range s.points {
				pt := &s.points[k]
				pt.px = x(float64(pt.n)) + (s.peer-1)*plotDodge
				pt.py, pt.pyLo, pt.pyHi = y(pt.mid), y(pt.lo), y(pt.hi)
				pt.whisker = pt.hi > pt.lo
			}
		}
	}
}

const legendRow = 16 // pixels from one legend row to the next

func legendWidth(e legendEntry) int { return 30 + textWidth(e.label) + 24 }

// legendRows breaks the legend into rows that fit the picture's width.
func (c *plotChart) legendRows() [][]legendEntry {
	var rows [][]legendEntry
	width := 0
	for _, e := range c.legend {
		if len(rows) == 0 || width+legendWidth(e) > c.w-20 {
			rows, width = append(rows, nil), 0
		}
		rows[len(rows)-1] = append(rows[len(rows)-1], e)
		width += legendWidth(e)
	}
	return rows
}

func (c *plotChart) draw() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, c.w, c.h))
	draw.Draw(img, img.Bounds(), image.NewUniform(plotPaper), image.Point{}, draw.Src)
	drawText(img, c.w/2, 12, c.title, plotInk, c.titleScale, 0)
	for i, line := range c.subLines {
		drawText(img, c.w/2, c.subTop+i*15, line, plotMuted, 1, 0)
	}
	// The legend, centred rows: a swatch (a line through a marker) and the label.
	for i, row := range c.legendRows() {
		width := 0
		for _, e := range row {
			width += legendWidth(e)
		}
		x, y := (c.w-width)/2, c.legendY+i*legendRow
		for _, e := range row {
			drawLine(img, img.Bounds(), x, y+6, x+24, y+6, 1, e.color)
			drawMarker(img, img.Bounds(), x+12, y+6, e.color)
			drawText(img, x+30, y, e.label, plotInk, 1, -1)
			x += legendWidth(e)
		}
	}
	for i := range c.panels {
		c.drawPanel(img, &c.panels[i])
	}
	return img
}

func (c *plotChart) drawPanel(img *image.RGBA, p *plotPanel) {
	a := p.area
	drawText(img, (a.Min.X+a.Max.X)/2, a.Min.Y-22, p.title, plotInk, 1, 0)
	for _, t := range p.xTicks {
		fillRect(img, image.Rect(t.pos, a.Min.Y+1, t.pos+1, a.Max.Y), plotGrid)
		fillRect(img, image.Rect(t.pos, a.Max.Y, t.pos+1, a.Max.Y+5), plotFrame)
		drawText(img, t.pos, a.Max.Y+8, t.label, plotInk, 1, 0)
	}
	for _, t := range p.yTicks {
		fillRect(img, image.Rect(a.Min.X+1, t.pos, a.Max.X, t.pos+1), plotGrid)
		fillRect(img, image.Rect(a.Min.X-5, t.pos, a.Min.X, t.pos+1), plotFrame)
		drawText(img, a.Min.X-8, t.pos-6, t.label, plotInk, 1, 1)
	}
	strokeRect(img, a, plotFrame)
	drawText(img, (a.Min.X+a.Max.X)/2, a.Max.Y+26, "tablets (N)", plotInk, 1, 0)
	drawTextUp(img, a.Min.X-66, (a.Min.Y+a.Max.Y)/2, p.ylabel, plotInk)
	inner := a.Inset(1)
	// Lines first, then whiskers, then markers, so that each point is seen whole.
	for _, s := range p.series {
		col := plotPeers[s.peer].color
		for k := 1; k < len(s.points); k++ {
			q, r := s.points[k-1], s.points[k]
			drawLine(img, inner, q.px, q.py, r.px, r.py, 1, col)
		}
	}
	for _, s := range p.series {
		col := plotPeers[s.peer].color
		for _, pt := range s.points {
			if !pt.whisker {
				continue
			}
			drawLine(img, inner, pt.px, pt.pyHi, pt.px, pt.pyLo, 0, col)
			drawLine(img, inner, pt.px-plotCap, pt.pyHi, pt.px+plotCap, pt.pyHi, 0, col)
			drawLine(img, inner, pt.px-plotCap, pt.pyLo, pt.px+plotCap, pt.pyLo, 0, col)
		}
	}
	for _, s := range p.series {
		for _, pt := range s.points {
			drawMarker(img, inner, pt.px, pt.py, plotPeers[s.peer].color)
		}
	}
}

// drawMarker draws a filled square with a white rim, clipped to clip.
func drawMarker(img *image.RGBA, clip image.Rectangle, x, y int, col color.RGBA) {
	fillRect(img, image.Rect(x-plotMarker-1, y-plotMarker-1, x+plotMarker+2, y+plotMarker+2).Intersect(clip), plotPaper)
	fillRect(img, image.Rect(x-plotMarker, y-plotMarker, x+plotMarker+1, y+plotMarker+1).Intersect(clip), col)
}

// drawLine draws from (x0, y0) to (x1, y1) with a square brush of half-width r
// (Bresenham's line), clipped to clip.
func drawLine(img *image.RGBA, clip image.Rectangle, x0, y0, x1, y1, r int, col color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for range dx - dy + 1 { // a step moves x, y or both: at most that many
		fillRect(img, image.Rect(x0-r, y0-r, x0+r+1, y0+r+1).Intersect(clip), col)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func fillRect(img *image.RGBA, r image.Rectangle, col color.RGBA) {
	draw.Draw(img, r.Intersect(img.Bounds()), image.NewUniform(col), image.Point{}, draw.Src)
}

func strokeRect(img *image.RGBA, r image.Rectangle, col color.RGBA) {
	fillRect(img, image.Rect(r.Min.X, r.Min.Y, r.Max.X+1, r.Min.Y+1), col)
	fillRect(img, image.Rect(r.Min.X, r.Max.Y, r.Max.X+1, r.Max.Y+1), col)
	fillRect(img, image.Rect(r.Min.X, r.Min.Y, r.Min.X+1, r.Max.Y+1), col)
	fillRect(img, image.Rect(r.Max.X, r.Min.Y, r.Max.X+1, r.Max.Y+1), col)
}

// textMask renders s in the 7×13 font as an alpha mask.
func textMask(s string) *image.Alpha {
	s = asciiText(s)
	f := basicfont.Face7x13
	m := image.NewAlpha(image.Rect(0, 0, max(textWidth(s), 1), f.Ascent+f.Descent))
	d := font.Drawer{Dst: m, Src: image.Opaque, Face: f, Dot: fixed.P(0, f.Ascent)}
	d.DrawString(s)
	return m
}

func textWidth(s string) int { return len([]rune(s)) * basicfont.Face7x13.Advance }

// drawText draws s with its top at y, scaled up by scale, starting at x (align -1),
// centred on it (0) or ending at it (1).
func drawText(img *image.RGBA, x, y int, s string, col color.RGBA, scale, align int) {
	m := textMask(s)
	w := m.Bounds().Dx() * scale
	switch align {
	case 0:
		x -= w / 2
	case 1:
		x -= w
	}
	for my := range m.Bounds().Dy() {
		for mx := range m.Bounds().Dx() {
			if m.AlphaAt(mx, my).A >= 0x80 {
				fillRect(img, image.Rect(x+mx*scale, y+my*scale, x+(mx+1)*scale, y+(my+1)*scale), col)
			}
		}
	}
}

// drawTextUp draws s turned a quarter left (read from the bottom up), centred on (x, y).
func drawTextUp(img *image.RGBA, x, y int, s string, col color.RGBA) {
	m := textMask(s)
	w, h := m.Bounds().Dx(), m.Bounds().Dy()
	for my := range h {
		for mx := range w {
			if m.AlphaAt(mx, my).A >= 0x80 {
				px, py := x-h/2+my, y+w/2-mx-1
				if image.Pt(px, py).In(img.Bounds()) {
					img.SetRGBA(px, py, col)
				}
			}
		}
	}
}

// asciiText maps what the ASCII-only font lacks to its nearest ASCII, or '?'.
func asciiText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r < 0x7f && r >= 0x20:
			return r
		case r == '–' || r == '—' || r == '−':
			return '-'
		case r == '×':
			return 'x'
		case r == 'µ':
			return 'u'
		case r == '‘' || r == '’':
			return '\''
		case r == '\t' || r == '\n':
			return ' '
		}
		return '?'
	}, s)
}

// wrapText breaks s into lines of at most width characters, at spaces.
func wrapText(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// niceStep is the 1, 2 or 5 × 10^k at or above x, for axis ticks (x > 0).
func niceStep(x float64) float64 {
	if x <= 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	switch f := x / p; {
	case f <= 1:
		return p
	case f <= 2:
		return 2 * p
	case f <= 5:
		return 5 * p
	}
	return 10 * p
}

// formatN writes a tablet count for an axis: 500, 2k, 2.5k, 10k.
func formatN(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
