package main

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// TestBrowserFleetFilterAndReload: in real Chromium, an admin tags a tablet on the
// devices page, filters by that tag (the other tablet drops out of the list), and
// reloads the filter's one tablet with the bulk button, whose confirmation names the
// count: the tablet's page really loads again (counted from the browser's own load
// events) and is back live. A second reload right after is ignored by the reload guard.
func TestBrowserFleetFilterAndReload(t *testing.T) {
	sys := startSystem(t, t.TempDir(), freeAddr(t))
	artifacts := os.Getenv("KIOSKFEED_ARTIFACTS")
	admin := newBrowser(t, "", 1280, 900)
	adminLogin(t, admin, sys.base, sys.password)
	// Keep what the confirmation asked, across the navigation the form causes.
	if err := chromedp.Do(admin, injectOnEveryDocument(`window.confirm = (q) => { sessionStorage.setItem('asked', q); return true; };`)); err != nil {
		t.Fatal(err)
	}
	pin := issuePIN(t, admin, "lobby")
	tablet := newBrowser(t, t.TempDir(), 1280, 800)
	var loads atomic.Int64
	if err := chromedp.Listen(tablet, func(ev any) {
		if _, ok := ev.(*page.EventLoadEventFired); ok {
			loads.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	pairTablet(t, tablet, sys.base, "lobby", pin)
	key := adminAPI(t, sys, "POST", "/api/admin/producer-keys", `{"name":"fleet test","feeds":["lobby"]}`)["key"].(string)
	producerPublish(t, sys.base, key, "lobby", "state", `{"title":"Room Aurora"}`)
	live := `document.querySelector('#title').textContent === 'Room Aurora' && document.querySelector('#status').dataset.state === 'live'`
	waitJS(t, tablet, live, 15*time.Second)
	browserID := adminAPIList(t, sys, "/api/admin/devices")[0]["device_id"].(string)

	// A second tablet on the same feed (a Go one, never connected), not tagged.
	other, err := pairingtest.NewTablet(sys.base)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Pair(context.Background(), "lobby", adminAPI(t, sys, "POST", "/api/admin/feeds/lobby/pins", `{"ttl":"5m"}`)["pin"].(string), "spare"); err != nil {
		t.Fatal(err)
	}

	// Tag the browser's tablet in its row.
	row := `tr[data-device-id="` + browserID + `"]`
	if err := chromedp.Do(admin, chromedp.Navigate(sys.base+"/admin"), chromedp.WaitVisible(chromedp.CSS(row+` .tags-form input[name=tags]`)),
		chromedp.SetValue(chromedp.CSS(row+` .tags-form input[name=tags]`), "Floor-2, reception"),
		chromedp.Click(chromedp.CSS(row+` .tags-form button`))); err != nil {
		t.Fatalf("tag the tablet: %v", err)
	}
	waitJS(t, admin, `document.body.textContent.includes("tags were saved") && [...document.querySelectorAll('`+row+` span.tag')].map(e => e.textContent).join(' ') === 'floor-2 reception'`, 10*time.Second)

	// Filter by the tag: one device of two.
	if got := len(adminAPIList(t, sys, "/api/admin/devices")); got != 2 {
		t.Fatalf("%d devices, want 2", got)
	}
	if err := chromedp.Do(admin, chromedp.SetValue(chromedp.ID("filter-tag"), "floor-2"), chromedp.Click(chromedp.ID("filter-submit"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, admin, `location.search.includes('tag=floor-2') && document.getElementById('filter-count').dataset.matched === '1' && document.querySelectorAll('tr[data-device-id]').length === 1 && !!document.querySelector('`+row+`')`, 10*time.Second)
	shot(t, admin, artifacts, "dashboard-fleet-filter")

	// Reload the filter's tablets: the confirmation names one device, the tablet's page
	// loads again and is live again.
	before := loads.Load()
	if before < 1 {
		t.Fatalf("no page load counted on the tablet (%d): the count could not show a reload", before)
	}
	if err := chromedp.Do(admin, chromedp.Click(chromedp.CSS(`#bulk-reload button`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, admin, `document.body.textContent.includes('Reload: 1 devices matched, 1 done, 0 failed, 0 not connected')`, 10*time.Second)
	asked, _ := chromedp.Run(admin, chromedp.Evaluate[string](`sessionStorage.getItem('asked') || ''`))
	if !strings.Contains(asked, "Reload the app on 1 devices") {
		t.Fatalf("the confirmation asked %q, want it to name 1 device", asked)
	}
	deadline := time.Now().Add(15 * time.Second)
	for loads.Load() == before {
		if time.Now().After(deadline) {
			t.Fatalf("the tablet's page did not load again after the reload (%d loads)", loads.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitJS(t, tablet, live, 15*time.Second)
	reloaded := loads.Load()

	// Right after, a second reload reaches the tablet (it is connected: done) and is
	// ignored, so the page loads no more.
	res := adminAPI(t, sys, "POST", "/api/admin/devices/bulk", `{"action":"reload","filter":{"devices":["`+browserID+`"]}}`)
	if res["done"] != float64(1) {
		t.Fatalf("second reload: %v", res)
	}
	waitJS(t, tablet, `document.documentElement.dataset.reload === 'ignored' && `+live, 10*time.Second)
	if got := loads.Load(); got != reloaded {
		t.Fatalf("the page loaded %d times after the ignored reload, want %d", got, reloaded)
	}
	if v := cspViolations(t, admin); len(v) > 0 {
		t.Fatalf("dashboard CSP violations: %v", v)
	}
}

// TestBrowserMovedTablet: in real Chromium, a tablet on lobby moved to hall by a bulk
// action reconnects by itself and shows hall's state (older than what it showed of
// lobby, so only a reset brings it), then hall's events and none of lobby's.
func TestBrowserMovedTablet(t *testing.T) {
	sys := startSystem(t, t.TempDir(), freeAddr(t))
	admin := newBrowser(t, "", 1280, 900)
	adminLogin(t, admin, sys.base, sys.password)
	pin := issuePIN(t, admin, "lobby")
	tablet := newBrowser(t, t.TempDir(), 1280, 800)
	if err := chromedp.Do(tablet, injectOnEveryDocument(socketWatch)); err != nil {
		t.Fatal(err)
	}
	pairTablet(t, tablet, sys.base, "lobby", pin)
	key := adminAPI(t, sys, "POST", "/api/admin/producer-keys", `{"name":"move test","feeds":["lobby","hall"]}`)["key"].(string)
	producerPublish(t, sys.base, key, "hall", "state", `{"title":"Hall"}`)
	producerPublish(t, sys.base, key, "lobby", "state", `{"title":"Lobby"}`)
	showing := func(title string) string {
		return `document.querySelector('#title').textContent === '` + title + `' && document.querySelector('#status').dataset.state === 'live'`
	}
	waitJS(t, tablet, showing("Lobby"), 15*time.Second)
	id := adminAPIList(t, sys, "/api/admin/devices")[0]["device_id"].(string)

	res := adminAPI(t, sys, "POST", "/api/admin/devices/bulk", `{"action":"move","filter":{"devices":["`+id+`"]},"feed":"hall"}`)
	if res["done"] != float64(1) {
		t.Fatalf("bulk move: %v", res)
	}
	waitJS(t, tablet, showing("Hall"), 20*time.Second)
	// Lobby's next event first: if the tablet still got lobby's, it would show before hall's.
	producerPublish(t, sys.base, key, "lobby", "item", `{"text":"lobby news"}`)
	producerPublish(t, sys.base, key, "hall", "item", `{"text":"hall news"}`)
	waitJS(t, tablet, `document.querySelector('#items').textContent.includes('hall news')`, 10*time.Second)
	if raw, _ := chromedp.Run(tablet, chromedp.Evaluate[string](`document.querySelector('#items').textContent + '|' + document.querySelector('#title').textContent`)); strings.Contains(raw, "lobby news") || !strings.HasSuffix(raw, "|Hall") {
		t.Fatalf("the moved tablet shows %q: want hall's state and item, nothing of lobby's", raw)
	}
	if raw, _ := chromedp.Run(tablet, chromedp.Evaluate[string](`JSON.stringify(window.__ws)`)); !strings.Contains(raw, `"maxOpen":1`) || strings.Contains(raw, `"made":1,`) {
		t.Fatalf("sockets: %s; want a second socket after the move, never two open", raw)
	}
	if row := adminAPIList(t, sys, "/api/admin/devices?feed=hall"); len(row) != 1 || row[0]["device_id"] != id {
		t.Fatalf("hall's devices: %v", row)
	}
}
