package loadtest

// This file holds "kioskfeed loadtest plot": the result files of several runs (what
// --json prints and --dir keeps as result.json) drawn as one PNG, fan-out p99 and RSS
// per tablet against N for kioskfeed, Centrifugo and nats-server's WebSocket
// (BENCHMARKS.md shows it). plotdraw.go draws; this file picks the figures.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"image/png"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// PlotOptions shape the PNG of Plot.
type PlotOptions struct {
	// Title heads the picture, e.g. the machine the runs were taken on (default: what
	// the picture shows). The font has ASCII only: other characters are replaced.
	Title string
	// Width and Height are the picture's size in pixels (default 1200 × 560).
	Width, Height int
}

// The default size of Plot's picture.
const (
	PlotWidth  = 1200
	PlotHeight = 560
)

// errNotResult is a file that holds JSON but not a full run's result.
var errNotResult = errors.New("not a result of a full kioskfeed loadtest run")

// ReadResultFile reads one run's result: a file written by "kioskfeed loadtest --json"
// (one JSON object) or the result.json that --dir keeps; path may also name that
// directory. It is read whole, but at most 1 MiB of it (a result is a few KB).
func ReadResultFile(path string) (*Result, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "result.json")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, err // it names the file
	}
	if len(raw) > 1<<20 {
		return nil, fmt.Errorf("%s: %w: over 1 MiB", path, errNotResult)
	}
	// A result is one object; tolerate the table that "task loadtest" prints before
	// the JSON line by taking the last line that starts an object.
	if i := bytes.LastIndex(raw, []byte("\n{")); i >= 0 && !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		raw = raw[i+1:]
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, errNotResult, err)
	}
	if _, ok := probe["tablets"]; !ok {
		return nil, fmt.Errorf("%s: %w: no \"tablets\"", path, errNotResult)
	}
	if c, ok := probe["cluster"]; ok && string(c) != "null" {
		return nil, fmt.Errorf("%s: %w: a cluster run (--instances), not one server beside its peers", path, errNotResult)
	}
	var r Result
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, errNotResult, err)
	}
	switch {
	case r.Tablets <= 0:
		return nil, fmt.Errorf("%s: %w: tablets %d", path, errNotResult, r.Tablets)
	case r.Scenario != "" && r.Scenario != ScenarioFull:
		return nil, fmt.Errorf("%s: %w: a --scenario %s run (its figures are not the fan-out's)", path, errNotResult, r.Scenario)
	case !kioskfeedRan(&r) && !natsRan(&r) && !centrifugoRan(&r):
		return nil, fmt.Errorf("%s: %w: no fan-out figures", path, errNotResult)
	}
	return &r, nil
}

func kioskfeedRan(r *Result) bool  { return r.Deliveries > 0 }
func natsRan(r *Result) bool       { return r.NATSDeliveries > 0 }
func centrifugoRan(r *Result) bool { return r.Centrifugo != nil && r.Centrifugo.Deliveries > 0 }

// The RSS a peer's per-socket figure is: the growth over the connect storm, read a
// settle after it (comparable across the three), or kioskfeed's after the idle when a
// result lacks the reading after the connects.
const (
	rssAfterConnect = "RSS right after the connects"
	rssAfterIdle    = "RSS after the idle"
)

// plotPeer is one line of the plot: its name, its colour and its figures in a result.
type plotPeer struct {
	name  string
	color color.RGBA
	p99   func(*Result) (ms float64, ok bool)
	rss   func(*Result) (bytes float64, which string, ok bool)
}

var plotPeers = []plotPeer{
	{name: "kioskfeed", color: color.RGBA{0x1f, 0x5f, 0xbf, 0xff},
		p99: func(r *Result) (float64, bool) { return r.FanoutP99Ms, kioskfeedRan(r) },
		rss: func(r *Result) (float64, string, bool) {
			if r.ServerRSSAfterConnectBytes > 0 && r.ServerRSSPairedBytes > 0 {
				return float64(r.ServerRSSAfterConnectBytes-r.ServerRSSPairedBytes) / float64(r.Tablets), rssAfterConnect, true
			}
			return r.RSSBytesPerTablet, rssAfterIdle, r.RSSBytesPerTablet != 0
		}},
	{name: "Centrifugo", color: color.RGBA{0xe0, 0x70, 0x10, 0xff},
		p99: func(r *Result) (float64, bool) {
			if !centrifugoRan(r) {
				return 0, false
			}
			return r.Centrifugo.FanoutP99Ms, true
		},
		rss: func(r *Result) (float64, string, bool) {
			if !centrifugoRan(r) {
				return 0, "", false
			}
			return r.Centrifugo.RSSBytesPerSub, rssAfterConnect, true
		}},
	{name: "nats-server ws", color: color.RGBA{0x20, 0x9a, 0x40, 0xff},
		p99: func(r *Result) (float64, bool) { return r.NATSWSFanoutP99Ms, natsRan(r) },
		rss: func(r *Result) (float64, string, bool) {
			return r.NATSWSRSSBytesPerSub, rssAfterConnect, natsRan(r)
		}},
}

// plotPoint is the runs of one peer at one N: their median, least and greatest.
type plotPoint struct {
	n           int
	mid, lo, hi float64
	runs        int
	px, py      int // the marker's centre in the picture, set by the layout
	pyLo, pyHi  int // the whisker's ends
	whisker     bool
}

// plotSeries is one peer's line in one panel.
type plotSeries struct {
	peer   int
	points []plotPoint
}

// collect groups the results' figures by N for each peer, with get the figure of peer
// plotPeers[pi] in r.
func collect(results []*Result, get func(pi int, r *Result) (float64, bool)) []plotSeries {
	var out []plotSeries
	for pi := range plotPeers {
		byN := map[int][]float64{}
		for _, r := range results {
			if v, ok := get(pi, r); ok {
				byN[r.Tablets] = append(byN[r.Tablets], v)
			}
		}
		if len(byN) == 0 {
			continue
		}
		s := plotSeries{peer: pi}
		for _, n := range slices.Sorted(maps.Keys(byN)) {
			v := byN[n]
			slices.Sort(v)
			mid := v[len(v)/2]
			if len(v)%2 == 0 {
				mid = (v[len(v)/2-1] + v[len(v)/2]) / 2
			}
			s.points = append(s.points, plotPoint{n: n, mid: mid, lo: v[0], hi: v[len(v)-1], runs: len(v)})
		}
		out = append(out, s)
	}
	return out
}

// Plot draws results (one a run; several runs at one N make a whisker) as a PNG into
// w: two panels, fan-out p99 in ms and RSS per tablet (or subscriber) in KiB against N,
// one line a peer through the median of its runs at each N, their min–max as a
// whisker. A peer a result lacks (--no-centrifugo, --no-nats) is absent at that N.
func Plot(w io.Writer, results []*Result, opts PlotOptions) error {
	c, err := layoutPlot(results, opts)
	if err != nil {
		return err
	}
	return png.Encode(w, c.draw())
}

// layoutPlot picks the figures and places everything of the picture.
func layoutPlot(results []*Result, opts PlotOptions) (*plotChart, error) {
	if len(results) == 0 {
		return nil, errors.New("plot: no results")
	}
	if opts.Width == 0 {
		opts.Width = PlotWidth
	}
	if opts.Height == 0 {
		opts.Height = PlotHeight
	}
	if opts.Width < 400 || opts.Height < 240 || opts.Width > 8000 || opts.Height > 8000 {
		return nil, fmt.Errorf("plot: %d × %d pixels: want 400–8000 × 240–8000", opts.Width, opts.Height)
	}
	p99 := collect(results, func(pi int, r *Result) (float64, bool) { return plotPeers[pi].p99(r) })
	// Which RSS each peer's figures are, counted, for its legend entry.
	which := make([]map[string]int, len(plotPeers))
	rss := collect(results, func(pi int, r *Result) (float64, bool) {
		v, kind, ok := plotPeers[pi].rss(r)
		if ok {
			if which[pi] == nil {
				which[pi] = map[string]int{}
			}
			which[pi][kind]++
		}
		return v / 1024, ok
	})
	if len(p99) == 0 && len(rss) == 0 {
		return nil, errors.New("plot: the results hold no peer's figures")
	}
	var legend []legendEntry
	for pi, p := range plotPeers {
		inP99 := slices.ContainsFunc(p99, func(s plotSeries) bool { return s.peer == pi })
		if !inP99 && which[pi] == nil {
			continue
		}
		label := p.name
		if pi == 1 { // the version the runs measured
			if i := slices.IndexFunc(results, centrifugoRan); i >= 0 {
				label = "Centrifugo " + strings.TrimPrefix(results[i].Centrifugo.Server, "centrifugo ")
			}
		}
		kinds := slices.Sorted(maps.Keys(which[pi]))
		switch len(kinds) {
		case 0:
		case 1:
			label += " (" + kinds[0] + ")"
		default:
			var parts []string
			for _, k := range kinds {
				parts = append(parts, fmt.Sprintf("%s in %d of %d runs", k, which[pi][k], sumValues(which[pi])))
			}
			label += " (" + strings.Join(parts, "; ") + ")"
		}
		legend = append(legend, legendEntry{label: label, color: p.color})
	}
	title := opts.Title
	if title == "" {
		title = "Fan-out p99 and RSS per tablet against N"
	}
	runs := map[int]int{}
	for _, r := range results {
		runs[r.Tablets]++
	}
	var perN []string
	for _, n := range slices.Sorted(maps.Keys(runs)) {
		perN = append(perN, fmt.Sprintf("%s x%d", groupDigits(n), runs[n]))
	}
	sub := []string{
		"The median of the runs at each N, a whisker from the least to the greatest; runs: " + strings.Join(perN, ", ") + ".",
		"RSS: the server's growth over the connect storm, per socket, read a settle after it (the loadtest's --settle).",
	}
	c := &plotChart{w: opts.Width, h: opts.Height, title: title, subtitle: sub, legend: legend}
	c.panels = []plotPanel{
		{title: "fan-out p99, publish to delivery", ylabel: "p99 (ms)", series: p99},
		{title: "server RSS per tablet / subscriber", ylabel: "KiB per socket", series: rss},
	}
	c.place()
	return c, nil
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// groupDigits writes n with commas between thousands: 10000 → 10,000.
func groupDigits(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
