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
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
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
// from one batched request for all its rows. Then the hour before the tablets were
// paired is written into the TIMELINE stream, as their instance would have written it,
// and drawn at its place in each bar: that page is the README's fleet view
// (dashboard-fleet.png, in $KIOSKFEED_ARTIFACTS).
func TestBrowserTimeline(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	n := brokertest.StartNATS(t) // a NATS of its own, so that the test can write the hour before
	s := startServe(t, dir, "--listen", addr, "--public-url", "http://"+addr, "--heartbeat", "2s", "--behind-events", "1", "--nats-url", n.URL())
	sys := &system{served: s, dir: dir, addr: addr}
	if m := regexp.MustCompile(`admin password:\s+(\S+)`).FindStringSubmatch(s.stdout.String()); m != nil {
		sys.password = m[1]
	}
	ctx := context.Background()
	wsURL := "ws" + strings.TrimPrefix(sys.base, "http") + "/ws"
	producer := adminAPI(t, sys, "POST", "/api/admin/producer-keys", `{"name":"timeline test","feeds":["*"]}`)["key"].(string)
	pair := func(feed, name string, tags ...string) *pairingtest.Tablet {
		tagList, _ := json.Marshal(append([]string{}, tags...))
		pin := adminAPI(t, sys, "POST", "/api/admin/feeds/"+feed+"/pins", `{"ttl":"5m","tags":`+string(tagList)+`}`)["pin"].(string)
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
	live := pair("lobby", "Lobby left", "ground-floor", "reception")
	behind := pair("lobby", "Lobby right", "ground-floor", "reception")
	dropped := pair("cafeteria", "Cafeteria", "ground-floor")
	never := pair("floor-2", "Floor 2 east", "floor-2")
	flapping := pair("lobby", "Entrance", "ground-floor")
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

	admin := newBrowser(t, "", 1280, 2000) // tall enough for the whole fleet view
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

	// The hour before: written as the instance would have, and a night desk whose
	// feed's schedule has been asleep for 30 minutes.
	night := pair("night-desk", "Night desk", "floor-2")
	connect(night, true)
	sleptAt := time.Now().UTC().Add(-30 * time.Minute).Truncate(time.Minute)
	rng := fmt.Sprintf(`"%s-%s"`, sleptAt.Add(-10*time.Hour).Format("15:04"), sleptAt.Format("15:04"))
	week := strings.ReplaceAll(`{"mon":[R],"tue":[R],"wed":[R],"thu":[R],"fri":[R],"sat":[R],"sun":[R]}`, "R", rng)
	adminAPI(t, sys, "PUT", "/api/admin/feeds/night-desk/schedule", `{"time_zone":"UTC","week":`+week+`}`)
	nc, err := nats.Connect(n.URL(), nats.Timeout(10*time.Second)) // 2 s fails on a loaded machine
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	base := time.Now()
	seed := func(tab *pairingtest.Tablet, minutesAgo float64, state string, flaps int) {
		at := base.Add(-time.Duration(minutesAgo * float64(time.Minute))).UTC()
		rec, _ := json.Marshal(map[string]any{"state": state, "at": at, "flaps": flaps})
		if _, err := js.Publish(ctx, "kioskfeed.timeline."+tab.DeviceID, rec); err != nil {
			t.Fatal(err)
		}
	}
	for _, tab := range []*pairingtest.Tablet{live, behind, dropped, flapping, night} {
		seed(tab, 62, "online", 0)
	}
	seed(live, 41, "offline", 0) // a three-minute drop, 41 minutes ago
	seed(live, 38, "online", 0)
	seed(behind, 24, "behind", 0)
	seed(behind, 17, "online", 0)
	seed(dropped, 52, "offline", 0)
	seed(dropped, 47, "online", 0)
	seed(flapping, 33, "online", 14)
	seed(never, 62, "offline", 0)
	drawnAt := func(tab *pairingtest.Tablet, state string) (x, w float64) {
		raw, err := chromedp.Run(admin, chromedp.Evaluate[string](`JSON.stringify(Array.from(document.querySelectorAll('tr[data-device-id="`+tab.DeviceID+`"] svg.tl rect.tl-`+state+`')).map(r => [Number(r.getAttribute('x')), Number(r.getAttribute('width'))]))`))
		var rects [][2]float64
		if err != nil || json.Unmarshal([]byte(raw), &rects) != nil || len(rects) == 0 {
			return -1, -1
		}
		return rects[0][0], rects[0][1]
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		if err := chromedp.Do(admin, chromedp.Navigate(sys.base+"/admin"), chromedp.WaitVisible(chromedp.ID("timeline-legend"))); err != nil {
			t.Fatal(err)
		}
		// Lobby left's drop is drawn from 19 minutes into the hour (1,140 s), 3 minutes
		// (180 s) wide; the night desk is asleep for the last 30 minutes.
		x, w := drawnAt(live, "offline")
		ax, aw := drawnAt(night, "asleep")
		if x >= 1100 && x <= 1145 && w >= 175 && w <= 185 && ax >= 1700 && ax <= 1805 && aw >= 1795 && aw <= 1905 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the drop 41 minutes ago is drawn at x %v, %v wide (want about 1,140 and 180); the asleep half hour at %v, %v wide (want about 1,800 and 1,800)", x, w, ax, aw)
		}
		time.Sleep(time.Second)
	}
	shot(t, admin, os.Getenv("KIOSKFEED_ARTIFACTS"), "dashboard-fleet")
	rowsRaw, err := chromedp.Run(admin, chromedp.Evaluate[string](timelineRows))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(rowsRaw), &want); err != nil {
		t.Fatal(err)
	}

	// The page draws the bars again by itself, every 30 s, from one request for all rows.
	if _, err := chromedp.Run(admin, chromedp.Evaluate[bool](`document.querySelectorAll('svg.tl').forEach(s => s.replaceChildren()), true`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, admin, `document.querySelectorAll('svg.tl rect').length >= 11`, 40*time.Second)
	if ok, raw := matches(); !ok {
		t.Fatalf("redrawn, the bars drew %s; want what the server drew, %s", raw, rowsRaw)
	}
	requests := `performance.getEntriesByType('resource').filter(e => e.name.includes('/api/admin/timelines')).length`
	if n, err := chromedp.Run(admin, chromedp.Evaluate[int](requests)); err != nil || n != 1 {
		t.Errorf("the redraw made %d timeline requests (%v), want one for the page's 6 rows", n, err)
	}
	if v := cspViolations(t, admin); len(v) > 0 {
		t.Fatalf("dashboard CSP violations: %v", v)
	}
}
