package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// timelineRows reads, for every device row of the devices page, the states its
// last-hour bar draws, left to right.
const timelineRows = `JSON.stringify(Object.fromEntries(Array.from(document.querySelectorAll('tr[data-device-id]')).map(r =>
  [r.dataset.deviceId, Array.from(r.querySelectorAll('svg.tl rect')).map(x => x.getAttribute('class').replaceAll('tl-', ''))])))`

// TestBrowserTimeline: in real Chromium the dashboard's devices page draws each tablet's
// last hour: a tablet that shows everything online, one that confirms nothing behind,
// one whose link dropped offline, one never connected not known; the bars span the
// hour, in the legend's colours, without a CSP violation; and the page draws them again
// from one batched request for all its rows. It also takes the README's fleet view
// (dashboard-fleet.png, in $KIOSKFEED_ARTIFACTS).
func TestBrowserTimeline(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	s := startServe(t, dir, "--listen", addr, "--public-url", "http://"+addr, "--heartbeat", "2s", "--behind-events", "1")
	sys := &system{served: s, dir: dir, addr: addr}
	if m := regexp.MustCompile(`admin password:\s+(\S+)`).FindStringSubmatch(s.stdout.String()); m != nil {
		sys.password = m[1]
	}
	ctx := context.Background()
	wsURL := "ws" + strings.TrimPrefix(sys.base, "http") + "/ws"
	producer := adminAPI(t, sys, "POST", "/api/admin/producer-keys", `{"name":"timeline test","feeds":["*"]}`)["key"].(string)
	pair := func(feed, name string) *pairingtest.Tablet {
		pin := adminAPI(t, sys, "POST", "/api/admin/feeds/"+feed+"/pins", `{"ttl":"5m"}`)["pin"].(string)
		tab, err := pairingtest.NewTablet(sys.base)
		if err != nil {
			t.Fatal(err)
		}
		if err := tab.Pair(ctx, feed, pin, name); err != nil {
			t.Fatal(err)
		}
		return tab
	}
	// connect opens a tablet's socket; ack makes it acknowledge every event, as the PWA
	// does; either way it answers pings.
	connect := func(tab *pairingtest.Tablet, ack bool) *bridgetest.Conn {
		c, err := bridgetest.Dial(ctx, wsURL, sys.base, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Abort() })
		if _, err := c.Handshake(tab, wsURL, 0, "", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				m, err := c.Next(time.Minute)
				if err != nil {
					return
				}
				if ack && m.Seq() > 0 {
					_ = c.Send(json.RawMessage(fmt.Sprintf(`{"type":"shown","seq":%d}`, m.Seq())))
				}
			}
		}()
		return c
	}
	producerPublish(t, sys.base, producer, "lobby", "state", `{"title":"Welcome"}`)
	live := pair("lobby", "Lobby left")
	behind := pair("lobby", "Lobby right")
	dropped := pair("cafeteria", "Cafeteria")
	never := pair("floor-2", "Floor 2 east")
	flapping := pair("lobby", "Entrance")
	for range 8 { // its Wi-Fi drops and comes back within seconds, again and again
		connect(flapping, true).Abort()
		deadline := time.Now().Add(5 * time.Second)
		for { // until the server has let the socket go (its lease released)
			var online bool
			for _, d := range adminAPIList(t, sys, "/api/admin/devices?feed=lobby") {
				if d["device_id"] == flapping.DeviceID {
					online = d["online"] == true
				}
			}
			if !online || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	connect(flapping, true)
	connect(live, true)
	connect(behind, false)
	c := connect(dropped, true)
	for i := range 3 { // Lobby right confirms none of them: behind
		producerPublish(t, sys.base, producer, "lobby", "item", fmt.Sprintf(`{"text":"item %d"}`, i))
	}
	_ = c.Abort() // the cafeteria's Wi-Fi goes

	admin := newBrowser(t, "", 1280, 1000)
	adminLogin(t, admin, sys.base, sys.password)
	want := map[string][]string{
		live.DeviceID:     {"unknown", "online"},
		behind.DeviceID:   {"unknown", "online", "behind"},
		dropped.DeviceID:  {"unknown", "online", "offline"},
		never.DeviceID:    {"unknown"},
		flapping.DeviceID: {"unknown", "online flapping"},
	}
	matches := func() (bool, string) {
		raw, err := chromedp.Run(admin, chromedp.Evaluate[string](timelineRows))
		if err != nil {
			return false, err.Error()
		}
		var got map[string][]string
		if json.Unmarshal([]byte(raw), &got) != nil || len(got) != len(want) {
			return false, raw
		}
		for id, states := range want {
			if !slices.Equal(got[id], states) {
				return false, raw
			}
		}
		return true, raw
	}
	// Records are at most 15 s apart per device, and behind is seen within 10 s: reload
	// until the page draws every change.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := chromedp.Do(admin, chromedp.Navigate(sys.base+"/admin"), chromedp.WaitVisible(chromedp.ID("timeline-legend"))); err != nil {
			t.Fatal(err)
		}
		ok, raw := matches()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bars drew %s; want %v", raw, want)
		}
		time.Sleep(time.Second)
	}

	// Each bar spans the hour (3,600 s), is drawn at its fixed size, and each state has
	// its legend's colour.
	geometry := `JSON.stringify((() => {
  const bars = Array.from(document.querySelectorAll('svg.tl')).map(svg => {
    let sum = 0;
    for (const r of svg.querySelectorAll('rect')) sum += Number(r.getAttribute('width'));
    const box = svg.getBoundingClientRect();
    return {sum, width: box.width, height: box.height};
  });
  const states = ['online', 'behind', 'offline', 'unknown'];
  const fill = Object.fromEntries(states.map(s => [s, getComputedStyle(document.querySelector('svg.tl rect.tl-' + s)).fill]));
  const key = Object.fromEntries(states.map(s => [s, getComputedStyle(document.querySelector('.tl-legend .tl-key.tl-' + s)).backgroundColor]));
  return {bars, fill, key};
})())`
	raw, err := chromedp.Run(admin, chromedp.Evaluate[string](geometry))
	if err != nil {
		t.Fatal(err)
	}
	var geo struct {
		Bars []struct{ Sum, Width, Height float64 }
		Fill map[string]string
		Key  map[string]string
	}
	if err := json.Unmarshal([]byte(raw), &geo); err != nil {
		t.Fatal(err)
	}
	if len(geo.Bars) != 5 {
		t.Fatalf("%d bars drawn, want 5: %s", len(geo.Bars), raw)
	}
	for _, b := range geo.Bars {
		if b.Sum < 3600 || b.Sum > 3604 || b.Width < 100 || b.Height < 8 {
			t.Errorf("a bar's rects span %v s in a %vx%v px box; want the hour (3,600 s) at its fixed size: %s", b.Sum, b.Width, b.Height, raw)
		}
	}
	colours := map[string]bool{}
	for state, fill := range geo.Fill {
		colours[fill] = true
		if geo.Key[state] != fill {
			t.Errorf("%s is drawn %s but the legend says %s", state, fill, geo.Key[state])
		}
	}
	if len(colours) != 4 {
		t.Errorf("the four states share colours: %v", geo.Fill)
	}
	if label, err := chromedp.Run(admin, chromedp.Evaluate[string](`document.querySelector('tr[data-device-id="`+dropped.DeviceID+`"] svg.tl').getAttribute('aria-label')`)); err != nil || !strings.HasPrefix(label, "last hour: unknown ") || !strings.Contains(label, ", offline ") {
		t.Errorf("the dropped tablet's bar says %q (%v)", label, err)
	}
	shot(t, admin, os.Getenv("KIOSKFEED_ARTIFACTS"), "dashboard-fleet")

	// The page draws the bars again by itself, every 30 s, from one request for all rows.
	if _, err := chromedp.Run(admin, chromedp.Evaluate[bool](`document.querySelectorAll('svg.tl').forEach(s => s.replaceChildren()), true`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, admin, `document.querySelectorAll('svg.tl rect').length >= 11`, 40*time.Second)
	if ok, raw := matches(); !ok {
		t.Fatalf("redrawn, the bars drew %s; want %v", raw, want)
	}
	requests := `performance.getEntriesByType('resource').filter(e => e.name.includes('/api/admin/timelines')).length`
	if n, err := chromedp.Run(admin, chromedp.Evaluate[int](requests)); err != nil || n != 1 {
		t.Errorf("the redraw made %d timeline requests (%v), want one for the page's 5 rows", n, err)
	}
	if v := cspViolations(t, admin); len(v) > 0 {
		t.Fatalf("dashboard CSP violations: %v", v)
	}
}
