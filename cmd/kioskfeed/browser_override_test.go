package main

import (
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// overrideShown is true when the tablet shows the override with this id full screen: the
// layer is there with it on top, and it is what the centre of the screen is.
const overrideShown = `((id) => {
  const o = document.getElementById('override');
  if (!o || !o.dataset.ids || o.dataset.ids.split(' ')[0] !== id) return false;
  const r = o.getBoundingClientRect();
  return r.width >= innerWidth && r.height >= innerHeight && o.contains(document.elementFromPoint(innerWidth / 2, innerHeight / 2));
})`

// TestBrowserOverride: in real Chromium, an override raised through the admin API
// covers the paired tablet's screen; the API counts its acknowledgement; it stays
// through a reload, and through a reload while the server is down; cleared from the
// dashboard, the feed shows again.
func TestBrowserOverride(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	sys := startSystem(t, dir, addr)
	artifacts := os.Getenv("KIOSKFEED_ARTIFACTS")

	admin := newBrowser(t, "", 1280, 900)
	adminLogin(t, admin, sys.base, sys.password)
	pin := issuePIN(t, admin, "lobby")
	tablet := newBrowser(t, t.TempDir(), 1280, 800)
	pairTablet(t, tablet, sys.base, "lobby", pin)
	key := adminAPI(t, sys, "POST", "/api/admin/producer-keys", `{"name":"override test","feeds":["lobby"]}`)["key"].(string)
	producerPublish(t, sys.base, key, "lobby", "state", `{"title":"Room Aurora","body":"Design review at 11:00"}`)
	waitJS(t, tablet, `document.querySelector('#title').textContent === 'Room Aurora' && document.querySelector('#status').dataset.state === 'live'`, 15*time.Second)

	ov := adminAPI(t, sys, "POST", "/api/admin/overrides", `{"feeds":["*"],"title":"Fire alarm","body":"Evacuate via stairwell B.\nDo not use the lifts.","level":"danger","expires_in":"30m"}`)
	id := ov["id"].(string)
	shown := overrideShown + `(` + jsString(id) + `)`
	waitJS(t, tablet, shown+` && document.getElementById('override-heading').textContent === 'EMERGENCY' && document.getElementById('override').textContent.includes('Evacuate via stairwell B.')`, 10*time.Second)
	shot(t, tablet, artifacts, "tablet-override")

	// The tablet acknowledged it: the API counts one screen of one.
	deadline := time.Now().Add(15 * time.Second)
	for {
		l := adminAPIList(t, sys, "/api/admin/overrides")
		if len(l) == 1 && l[0]["shown"] == float64(1) && l[0]["devices"] == float64(1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API never counted the tablet's acknowledgement: %v", l)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A reload shows it again; so does a reload while the server is down (from the
	// tablet's own copy).
	if err := chromedp.Do(tablet, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tablet, shown, 10*time.Second)
	if err := sys.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	waitJS(t, tablet, `document.querySelector('#status').dataset.state !== 'live'`, 15*time.Second)
	if err := chromedp.Do(tablet, chromedp.Reload()); err != nil {
		t.Fatalf("reload while the server is down: %v", err)
	}
	waitJS(t, tablet, shown+` && document.querySelector('#status').dataset.state !== 'live'`, 15*time.Second)
	token := sys.token // printed at the first start only; kept (as a hash) in dir
	sys = startSystem(t, dir, addr)
	sys.token = token
	waitJS(t, tablet, shown+` && document.querySelector('#status').dataset.state === 'live'`, 60*time.Second)

	// The dashboard lists it with its screen; its clear button ends it on the tablet.
	if err := chromedp.Do(admin, chromedp.Navigate(sys.base+"/admin/overrides"), chromedp.WaitVisible(chromedp.CSS(`article[data-override-id] button.clear-button`))); err != nil {
		t.Fatalf("overrides page: %v", err)
	}
	shot(t, admin, artifacts, "dashboard-overrides")
	if err := chromedp.Do(admin, chromedp.Click(chromedp.CSS(`article[data-override-id] button.clear-button`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tablet, `!document.getElementById('override') && document.body.dataset.override === undefined && document.querySelector('#title').textContent === 'Room Aurora'`, 10*time.Second)
	waitJS(t, admin, `!!document.getElementById('no-overrides')`, 10*time.Second)
	if v := cspViolations(t, tablet); len(v) > 0 {
		t.Fatalf("tablet CSP violations: %v", v)
	}

	// A revoked tablet goes back to pairing without the override it was showing: it is
	// no longer told when that ends.
	next := adminAPI(t, sys, "POST", "/api/admin/overrides", `{"feeds":["lobby"],"title":"Lockdown","level":"warning"}`)["id"].(string)
	waitJS(t, tablet, overrideShown+`(`+jsString(next)+`) && document.getElementById('override').dataset.level === 'warning'`, 10*time.Second)
	// The dashboard's page follows its screens live: 1 of 1 once acknowledged, 0 of 0
	// once the tablet is revoked, without a reload.
	if err := chromedp.Do(admin, chromedp.Navigate(sys.base+"/admin/overrides"), chromedp.WaitVisible(chromedp.CSS(`article[data-override-id="`+next+`"]`))); err != nil {
		t.Fatalf("overrides page: %v", err)
	}
	count := `document.querySelector('article[data-override-id="` + next + `"] .override-shown').textContent`
	waitJS(t, admin, count+` === '1 of 1'`, 15*time.Second)
	if err := chromedp.Do(admin, injectOnEveryDocument(`window.__loaded = true;`)); err != nil {
		t.Fatal(err)
	}
	devs := adminAPIList(t, sys, "/api/admin/devices")
	if len(devs) != 1 {
		t.Fatalf("devices: %v", devs)
	}
	adminAPI(t, sys, "DELETE", "/api/admin/devices/"+devs[0]["device_id"].(string), "")
	waitJS(t, tablet, `document.body.dataset.view === 'pair' && !document.getElementById('override')`, 15*time.Second)
	waitJS(t, admin, count+` === '0 of 0' && window.__loaded === undefined`, 15*time.Second)
	if v := cspViolations(t, admin); len(v) > 0 {
		t.Fatalf("dashboard CSP violations: %v", v)
	}
}

// jsString quotes s as a JavaScript string literal (ids are [a-z0-9_]: no escapes).
func jsString(s string) string { return `'` + s + `'` }
