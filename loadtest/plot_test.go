package loadtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// synthResult is a full run's result at n tablets with the given p99s (ms) and RSS per
// socket right after the connects (KiB), all three peers present.
func synthResult(n int, kfP99, centP99, natsP99, kfRSS, centRSS, natsRSS float64) *Result {
	const paired = 100 << 20
	return &Result{
		Tablets: n, Scenario: ScenarioFull, Events: 5, Deliveries: 5 * n, FanoutP50Ms: kfP99 / 2, FanoutP99Ms: kfP99,
		ServerRSSPairedBytes: paired, ServerRSSAfterConnectBytes: paired + int64(kfRSS*1024*float64(n)),
		RSSBytesPerTablet: 3 * 1024, // after the idle: not the figure plotted when the above is there
		NATSDeliveries:    5 * n, NATSWSFanoutP99Ms: natsP99, NATSWSRSSBytesPerSub: natsRSS * 1024,
		Centrifugo: &PeerResult{Server: "centrifugo " + CentrifugoVersion, Subscribers: n, Deliveries: 5 * n,
			FanoutP99Ms: centP99, RSSBytesPerSub: centRSS * 1024},
	}
}

// threeN is runs at 1k, 10k (three, with different figures) and 18k.
func threeN() []*Result {
	return []*Result{
		synthResult(1000, 100, 300, 600, 16, 40, 49),
		synthResult(10000, 200, 330, 1000, 15, 46, 48),
		synthResult(10000, 300, 320, 1200, 16, 47, 49),
		synthResult(10000, 400, 340, 1100, 17, 45, 50),
		synthResult(18000, 500, 360, 1500, 15, 48, 50),
	}
}

func mustLayout(t *testing.T, results []*Result, opts PlotOptions) (*plotChart, *image.RGBA) {
	t.Helper()
	c, err := layoutPlot(results, opts)
	if err != nil {
		t.Fatalf("layoutPlot: %v", err)
	}
	return c, c.draw()
}

// point is peer's point at n in panel, or fails the test.
func point(t *testing.T, p plotPanel, peer string, n int) plotPoint {
	t.Helper()
	for _, s := range p.series {
		if plotPeers[s.peer].name != peer {
			continue
		}
		for _, pt := range s.points {
			if pt.n == n {
				return pt
			}
		}
	}
	t.Fatalf("panel %q has no point of %s at N=%d", p.title, peer, n)
	return plotPoint{}
}

func rgbaAt(img *image.RGBA, x, y int) color.RGBA { return img.RGBAAt(x, y) }

func TestPlotIsAPNGOfTheSizeAsked(t *testing.T) {
	for _, tc := range []struct {
		name         string
		opts         PlotOptions
		wantW, wantH int
	}{
		{"default", PlotOptions{}, PlotWidth, PlotHeight},
		{"asked", PlotOptions{Title: "2 vCPU AMD EPYC VM — 24 GiB", Width: 900, Height: 420}, 900, 420},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Plot(&buf, threeN(), tc.opts); err != nil {
				t.Fatalf("Plot: %v", err)
			}
			img, err := png.Decode(&buf)
			if err != nil {
				t.Fatalf("the PNG does not decode: %v", err)
			}
			if got := img.Bounds().Size(); got != image.Pt(tc.wantW, tc.wantH) {
				t.Errorf("size %v, want %dx%d", got, tc.wantW, tc.wantH)
			}
		})
	}
}

func TestPlotRefusesASizeOutOfBounds(t *testing.T) {
	for _, o := range []PlotOptions{{Width: 10, Height: 10}, {Width: 100000, Height: 500}} {
		if err := Plot(&bytes.Buffer{}, threeN(), o); err == nil {
			t.Errorf("Plot at %dx%d: no error", o.Width, o.Height)
		}
	}
}

// TestPlotEachPeerInEachPanel: every peer's colour is drawn inside both panels' frames,
// and its marker at each N is its colour.
func TestPlotEachPeerInEachPanel(t *testing.T) {
	c, img := mustLayout(t, threeN(), PlotOptions{})
	if len(c.panels) != 2 {
		t.Fatalf("%d panels, want 2", len(c.panels))
	}
	if c.panels[0].area.Max.X > c.panels[1].area.Min.X {
		t.Fatalf("the panels overlap: %v and %v", c.panels[0].area, c.panels[1].area)
	}
	for _, p := range c.panels {
		for _, peer := range plotPeers {
			n := 0
			for y := p.area.Min.Y; y <= p.area.Max.Y; y++ {
				for x := p.area.Min.X; x <= p.area.Max.X; x++ {
					if rgbaAt(img, x, y) == peer.color {
						n++
					}
				}
			}
			if n < 100 {
				t.Errorf("panel %q: %d pixels of %s's colour, want a line and markers (≥ 100)", p.title, n, peer.name)
			}
			for _, tablets := range []int{1000, 10000, 18000} {
				pt := point(t, p, peer.name, tablets)
				if got := rgbaAt(img, pt.px, pt.py); got != peer.color {
					t.Errorf("panel %q: %s's marker at N=%d (%d,%d) is %v, want %v", p.title, peer.name, tablets, pt.px, pt.py, got, peer.color)
				}
				if !image.Pt(pt.px, pt.py).In(p.area) {
					t.Errorf("panel %q: %s's point at N=%d lies outside the frame %v", p.title, peer.name, tablets, p.area)
				}
			}
		}
	}
}

// TestPlotLargerIsHigher: at one N, the peer with the larger figure is drawn higher
// (smaller y) in both panels, and a larger N further right.
func TestPlotLargerIsHigher(t *testing.T) {
	c, _ := mustLayout(t, threeN(), PlotOptions{})
	p99, rss := c.panels[0], c.panels[1]
	// p99 at 1k: kioskfeed 100 < Centrifugo 300 < nats 600.
	kf, cent, nats := point(t, p99, "kioskfeed", 1000), point(t, p99, "Centrifugo", 1000), point(t, p99, "nats-server ws", 1000)
	if !(nats.py < cent.py && cent.py < kf.py) {
		t.Errorf("p99 at 1k: y of nats %d, Centrifugo %d, kioskfeed %d: want nats highest, then Centrifugo", nats.py, cent.py, kf.py)
	}
	// At 18k Centrifugo (360) is below kioskfeed (500).
	if kf, cent := point(t, p99, "kioskfeed", 18000), point(t, p99, "Centrifugo", 18000); !(kf.py < cent.py) {
		t.Errorf("p99 at 18k: y of kioskfeed %d, Centrifugo %d: want kioskfeed (500 ms) above Centrifugo (360 ms)", kf.py, cent.py)
	}
	// RSS at 1k: kioskfeed 16 < Centrifugo 40 < nats 49 KiB.
	kf, cent, nats = point(t, rss, "kioskfeed", 1000), point(t, rss, "Centrifugo", 1000), point(t, rss, "nats-server ws", 1000)
	if !(nats.py < cent.py && cent.py < kf.py) {
		t.Errorf("RSS at 1k: y of nats %d, Centrifugo %d, kioskfeed %d: want nats highest, then Centrifugo", nats.py, cent.py, kf.py)
	}
	if a, b := point(t, p99, "kioskfeed", 1000), point(t, p99, "kioskfeed", 10000); !(a.px < b.px) {
		t.Errorf("x of N=1k %d, N=10k %d: want 1k left of 10k", a.px, b.px)
	}
	// The plotted RSS is the reading right after the connects (16 KiB), not the one
	// after the idle (3 KiB): it lies above the 10 KiB tick.
	for _, tk := range rss.yTicks {
		if tk.label == "10" && !(kf.py < tk.pos) {
			t.Errorf("kioskfeed's RSS at 1k (16 KiB) drawn at y %d, not above the 10 KiB tick at %d", kf.py, tk.pos)
		}
	}
}

// TestPlotWhiskers: where the runs at one N differ, a whisker in the peer's colour
// reaches from the least to the greatest, the marker on the median; a single run has
// none.
func TestPlotWhiskers(t *testing.T) {
	c, img := mustLayout(t, threeN(), PlotOptions{})
	p := c.panels[0]
	kf := point(t, p, "kioskfeed", 10000) // runs 200, 300, 400 ms
	if kf.mid != 300 || kf.lo != 200 || kf.hi != 400 || kf.runs != 3 {
		t.Fatalf("kioskfeed at 10k: median %g, min %g, max %g over %d runs; want 300, 200, 400 over 3", kf.mid, kf.lo, kf.hi, kf.runs)
	}
	if !kf.whisker || !(kf.pyHi < kf.py-plotMarker && kf.py+plotMarker < kf.pyLo) {
		t.Fatalf("kioskfeed at 10k: whisker %v from y %d to %d around the marker at %d: want it to reach past the marker", kf.whisker, kf.pyHi, kf.pyLo, kf.py)
	}
	col := plotPeers[0].color
	for _, at := range []image.Point{{kf.px, kf.pyHi}, {kf.px, kf.pyLo}, {kf.px, (kf.pyHi + kf.py - plotMarker) / 2}, {kf.px + plotCap, kf.pyHi}, {kf.px - plotCap, kf.pyLo}} {
		if got := rgbaAt(img, at.X, at.Y); got != col {
			t.Errorf("whisker pixel %v is %v, want kioskfeed's %v", at, got, col)
		}
	}
	one := point(t, p, "kioskfeed", 1000)
	if one.whisker {
		t.Errorf("kioskfeed at 1k (one run) has a whisker")
	}
	for _, y := range []int{one.py - plotMarker - 6, one.py + plotMarker + 6} {
		if got := rgbaAt(img, one.px, y); got == col {
			t.Errorf("kioskfeed at 1k (one run): pixel (%d,%d) in its colour, want no whisker", one.px, y)
		}
	}
}

// TestPlotPeerMissingAtAnN: a run without Centrifugo (--no-centrifugo) or nats-server
// (--no-nats) leaves that peer out at its N, and the rest is drawn.
func TestPlotPeerMissingAtAnN(t *testing.T) {
	rs := threeN()
	lone := synthResult(5000, 250, 0, 0, 16, 0, 0)
	lone.Centrifugo, lone.NATSDeliveries, lone.NATSWSFanoutP99Ms, lone.NATSWSRSSBytesPerSub = nil, 0, 0, 0
	rs = append(rs, lone)
	c, img := mustLayout(t, rs, PlotOptions{})
	for _, p := range c.panels {
		for _, s := range p.series {
			var ns []int
			for _, pt := range s.points {
				ns = append(ns, pt.n)
			}
			name := plotPeers[s.peer].name
			want := 3
			if name == "kioskfeed" {
				want = 4
			}
			if len(ns) != want {
				t.Errorf("panel %q: %s at N %v, want %d of them", p.title, name, ns, want)
			}
		}
		kf := point(t, p, "kioskfeed", 5000)
		if got := rgbaAt(img, kf.px, kf.py); got != plotPeers[0].color {
			t.Errorf("kioskfeed's marker at 5k is %v", got)
		}
	}
}

// TestPlotSaysWhichRSS: the legend names the RSS reading of each peer, and a result
// without the reading after the connects falls back to the one after the idle, saying so.
func TestPlotSaysWhichRSS(t *testing.T) {
	c, _ := mustLayout(t, threeN(), PlotOptions{})
	for _, e := range c.legend {
		if !strings.Contains(e.label, rssAfterConnect) {
			t.Errorf("legend %q does not say %q", e.label, rssAfterConnect)
		}
	}
	old := synthResult(2000, 250, 300, 400, 16, 46, 48)
	old.ServerRSSAfterConnectBytes = 0 // a result from before that reading
	c, _ = mustLayout(t, append(threeN(), old), PlotOptions{})
	if got := c.legend[0].label; !strings.Contains(got, rssAfterIdle+" in 1 of 6 runs") || !strings.Contains(got, rssAfterConnect+" in 5 of 6 runs") {
		t.Errorf("kioskfeed's legend %q: want both readings counted", got)
	}
	// That legend is too long for one row: it takes two, each within the picture.
	rows := c.legendRows()
	if len(rows) < 2 {
		t.Errorf("legend in %d rows, want 2 or more for labels this long", len(rows))
	}
	for i, row := range rows {
		w := 0
		for _, e := range row {
			w += legendWidth(e)
		}
		if w > c.w {
			t.Errorf("legend row %d is %d pixels wide, the picture %d", i, w, c.w)
		}
	}
	if top := c.legendY + len(rows)*legendRow; top > c.panels[0].area.Min.Y-22 {
		t.Errorf("legend ends at y %d, into the panels' titles (frame at %d)", top, c.panels[0].area.Min.Y)
	}
	if pt := point(t, c.panels[1], "kioskfeed", 2000); pt.mid != 3 {
		t.Errorf("kioskfeed's RSS at 2k: %g KiB, want the reading after the idle, 3", pt.mid)
	}
}

func TestPlotWithoutFigures(t *testing.T) {
	if err := Plot(&bytes.Buffer{}, nil, PlotOptions{}); err == nil {
		t.Error("Plot of no results: no error")
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadResultFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	writeJSON(t, good, synthResult(1000, 100, 300, 600, 16, 40, 49))
	runDir := filepath.Join(dir, "run")
	if err := os.Mkdir(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeJSON(t, filepath.Join(runDir, "result.json"), synthResult(2000, 100, 300, 600, 16, 40, 49))
	printed := filepath.Join(dir, "printed.txt") // what task loadtest prints: the table, then the JSON
	raw, _ := json.Marshal(synthResult(3000, 1, 2, 3, 4, 5, 6))
	if err := os.WriteFile(printed, append([]byte("3000 tablets, 5 events\n\n\tkioskfeed\n"), append(raw, '\n')...), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{good: 1000, runDir: 2000, printed: 3000} {
		r, err := ReadResultFile(path)
		if err != nil {
			t.Errorf("ReadResultFile(%s): %v", filepath.Base(path), err)
			continue
		}
		if r.Tablets != want || r.Centrifugo == nil {
			t.Errorf("ReadResultFile(%s): %d tablets, Centrifugo %v; want %d and Centrifugo's figures", filepath.Base(path), r.Tablets, r.Centrifugo, want)
		}
	}

	storm := synthResult(1000, 1, 1, 1, 1, 1, 1)
	storm.Scenario = ScenarioStorm
	for name, content := range map[string]string{
		"text.json":    "not json at all",
		"array.json":   "[1, 2, 3]",
		"other.json":   `{"name": "something else"}`,
		"zero.json":    `{"tablets": 0}`,
		"empty.json":   "",
		"nofig.json":   `{"tablets": 1000}`,
		"badtype.json": `{"tablets": "many"}`,
		"storm.json":   string(must(json.Marshal(storm))),
		"cluster.json": `{"tablets": 50000, "deliveries": 250000, "cluster": {"instances": 3}}`,
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadResultFile(path)
		if !errors.Is(err, errNotResult) || !strings.Contains(err.Error(), path) {
			t.Errorf("ReadResultFile(%s) = %v, want errNotResult naming the file", name, err)
		}
	}
	if _, err := ReadResultFile(filepath.Join(dir, "absent.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadResultFile(absent) = %v, want fs.ErrNotExist", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestPlotFiguresOutOfAllMeasure: absurd figures in a hand-edited file still give a
// picture (clipped to its frames), neither a hang nor a panic.
func TestPlotFiguresOutOfAllMeasure(t *testing.T) {
	for name, rs := range map[string][]*Result{
		"huge":     {synthResult(1000, 1e300, 1, 1, 1, 1, 1), synthResult(2000, 1, 1, 1, 1, 1, 1)},
		"negative": {synthResult(1000, -1e300, 1, 1, -5e300, 1, 1)},
		"zeros":    {synthResult(1, 0, 0, 0, 0, 0, 0)},
		"huge N":   {synthResult(1<<50, 1, 2, 3, 4, 5, 6), synthResult(1, 1, 2, 3, 4, 5, 6)},
	} {
		var buf bytes.Buffer
		if err := Plot(&buf, rs, PlotOptions{}); err != nil {
			t.Errorf("%s: Plot: %v", name, err)
			continue
		}
		if _, err := png.Decode(&buf); err != nil {
			t.Errorf("%s: the PNG does not decode: %v", name, err)
		}
	}
}

// TestPlotTitleFits: a title too wide at twice the font's size is drawn at its size.
func TestPlotTitleFits(t *testing.T) {
	for _, tc := range []struct {
		title string
		want  int
	}{{"", 2}, {"2 vCPU AMD EPYC VM, 24 GiB", 2}, {strings.Repeat("a long title ", 10), 1}} {
		c, _ := mustLayout(t, threeN(), PlotOptions{Title: tc.title})
		if c.titleScale != tc.want || 2*textWidth(c.title) <= c.w-20 && c.titleScale != 2 {
			t.Errorf("title %q (%d characters) drawn at %dx, want %dx", c.title, len(c.title), c.titleScale, tc.want)
		}
	}
}
