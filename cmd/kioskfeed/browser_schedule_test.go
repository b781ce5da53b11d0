package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// moduleJS imports one of the app's own modules, by the hashed URL the page loaded it
// from, so the test reads the very instance the app runs (its exported state): no hook
// in the app for tests.
const moduleJS = `((name) => import(performance.getEntriesByType('resource').map((e) => e.name)
  .find((n) => new RegExp('/' + name + '\\.[^/]+\\.js$').test(n))))`

// virtualClockJS replaces the page's Date with one that runs from an offset the test
// sets (window.__setVirtualNow(ms)), kept across reloads, and notes by that clock when
// the asleep view first went up and came down: the test's clock, not a hook in the app.
const virtualClockJS = `(() => {
  const Real = Date, key = 'kf-test-virtual-offset';
  let off = Number(localStorage.getItem(key)) || 0;
  const now = () => Real.now() + off;
  function D(...a) {
    if (!new.target) return new Real(now()).toString();
    return a.length ? new Real(...a) : new Real(now());
  }
  D.prototype = Real.prototype;
  D.now = now; D.parse = Real.parse; D.UTC = Real.UTC;
  globalThis.Date = D;
  globalThis.__setVirtualNow = (ms) => { off = ms - Real.now(); localStorage.setItem(key, String(off)); };
  new MutationObserver(() => {
    const a = document.body && document.body.dataset.asleep;
    if (a && !globalThis.__asleepAt) globalThis.__asleepAt = now();
    if (!a && globalThis.__asleepAt && !globalThis.__awakeAt) globalThis.__awakeAt = now();
  }).observe(document, { attributes: true, subtree: true, attributeFilter: ['data-asleep'] });
})();`

// TestBrowserScheduleCases runs schedule/testdata/cases.json (the DST changes, the
// midnight wraps, the exception dates) through the PWA's schedule.js in Chromium, in a
// browser whose own zone is none of the cases': the tablet and the server agree.
func TestBrowserScheduleCases(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	sys := startSystem(t, dir, addr)
	raw, err := os.ReadFile("../../schedule/testdata/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	tab := newBrowser(t, "", 800, 600)
	if _, err := chromedp.Call(tab, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Pacific/Auckland"}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(tab, chromedp.Navigate(sys.base+"/")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tab, `!!document.body.dataset.view`, 15*time.Second)
	lit, _ := json.Marshal(string(raw))
	out, err := chromedp.Run(tab, chromedp.Evaluate[string](moduleJS+`('schedule').then((m) => {
  const all = JSON.parse(`+string(lit)+`);
  const got = [];
  for (const c of all.cases) for (const ch of c.checks) {
    const awake = m.awakeAt(c.schedule, Date.parse(ch.at));
    got.push({ name: c.name, at: ch.at, awake, want: ch.awake });
  }
  return JSON.stringify(got);
})`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	var got []struct {
		Name, At    string
		Awake, Want bool
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) < 20 {
		t.Fatalf("schedule.js ran only %d checks: %s", len(got), out)
	}
	for _, g := range got {
		if g.Awake != g.Want {
			t.Errorf("%s: schedule.js says awake=%v at %s, want %v (as schedule.Awake)", g.Name, g.Awake, g.At, g.Want)
		}
	}
}

// TestBrowserSleepWake: in real Chromium, with the page's clock stepped by the test and
// a browser zone (Tokyo) other than the schedule's (Berlin): the tablet falls asleep at
// its schedule's boundary (the dim clock of Berlin's time up, the feed hidden, the
// wake lock released, the socket still connected on both ends); an emergency override
// still shows (and holds the wake lock) while asleep; it keeps taking events, and wakes
// at the next boundary showing the newest event published while it slept, which it
// then acknowledges; with the server stopped it sleeps on time from its own copy, and
// after a reload too.
func TestBrowserSleepWake(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	sys := startSystem(t, dir, addr)
	artifacts := os.Getenv("KIOSKFEED_ARTIFACTS")

	admin := newBrowser(t, "", 1280, 900)
	adminLogin(t, admin, sys.base, sys.password)
	pin := issuePIN(t, admin, "lobby")
	tablet := newBrowser(t, t.TempDir(), 1280, 800)
	if _, err := chromedp.Call(tablet, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Tokyo"}); err != nil {
		t.Fatal(err)
	}
	_, _ = chromedp.Call(tablet, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: "screen-wake-lock"}, Setting: browser.PermissionSettingGranted, Origin: sys.base})
	if err := chromedp.Do(tablet, injectOnEveryDocument(virtualClockJS)); err != nil {
		t.Fatal(err)
	}
	pairTablet(t, tablet, sys.base, "lobby", pin)
	key := adminAPI(t, sys, "POST", "/api/admin/producer-keys", `{"name":"schedule test","feeds":["lobby"]}`)["key"].(string)
	morning := producerPublish(t, sys.base, key, "lobby", "state", `{"title":"Morning","body":"Good morning"}`)
	waitJS(t, tablet, `document.querySelector('#title').textContent === 'Morning' && document.querySelector('#status').dataset.state === 'live'`, 15*time.Second)

	// Asleep from the next whole minute (at least 15 s away) for one minute: the
	// awake range runs from the wake to the sleep, past midnight, every day.
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sleepAt := now.Truncate(time.Minute).Add(time.Minute)
	if sleepAt.Sub(now) < 15*time.Second {
		sleepAt = sleepAt.Add(time.Minute)
	}
	wakeAt := sleepAt.Add(time.Minute)
	rng := fmt.Sprintf("%q", wakeAt.In(berlin).Format("15:04")+"-"+sleepAt.In(berlin).Format("15:04"))
	var week []string
	for _, d := range []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"} {
		week = append(week, fmt.Sprintf("%q:[%s]", d, rng))
	}
	adminAPI(t, sys, "PUT", "/api/admin/feeds/lobby/schedule", `{"time_zone":"Europe/Berlin","asleep_view":"clock","week":{`+strings.Join(week, ",")+`}}`)
	kiosk, socket := moduleJS+`('kiosk')`, moduleJS+`('socket')`
	waitJS(t, tablet, `document.querySelector('#title').textContent === 'Morning' && !document.body.dataset.asleep`, 5*time.Second)
	lockHeld, _ := chromedp.Run(tablet, chromedp.Evaluate[bool](kiosk+`.then((m) => m.wake.lock !== null)`, chromedp.EvalAwaitPromise))

	// The page's clock to 3 s before the boundary: asleep at it, not before.
	if err := chromedp.Do(tablet, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`__setVirtualNow(%d)`, sleepAt.Add(-3*time.Second).UnixMilli()))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tablet, `document.body.dataset.asleep === 'clock'`, 15*time.Second)
	at, err := chromedp.Run(tablet, chromedp.Evaluate[int64](`__asleepAt`))
	if err != nil || at < sleepAt.UnixMilli() || at > sleepAt.Add(5*time.Second).UnixMilli() {
		t.Fatalf("asleep at %d (%v); want at the boundary %d, by the page's clock", at, err, sleepAt.UnixMilli())
	}
	clock := []string{sleepAt.In(berlin).Format("15:04"), sleepAt.Add(time.Minute).In(berlin).Format("15:04")}
	waitJS(t, tablet, fmt.Sprintf(`(() => {
  const layer = document.getElementById('asleep'), c = layer && layer.querySelector('.asleep-clock');
  return !!c && [%q, %q].includes(c.textContent) && layer.contains(document.elementFromPoint(innerWidth / 2, innerHeight / 2)) &&
    getComputedStyle(document.getElementById('feed-screen')).visibility === 'hidden';
})()`, clock[0], clock[1]), 5*time.Second)
	waitJS(t, tablet, socket+`.then((m) => m.conn.ws !== null && m.conn.ws.readyState === WebSocket.OPEN && m.conn.welcomedAt > 0)`, 5*time.Second)
	waitJS(t, tablet, kiosk+`.then((m) => m.wake.lock === null && m.wake.suspended)`, 5*time.Second)
	shot(t, tablet, artifacts, "tablet-asleep-clock")
	devState := func() (string, bool, float64) {
		for _, d := range adminAPIList(t, sys, "/api/admin/devices") {
			if d["feed"] == "lobby" {
				seq, _ := d["shown_seq"].(float64)
				return d["state"].(string), d["online"] == true, seq
			}
		}
		t.Fatal("the lobby's device is not listed")
		return "", false, 0
	}
	// Awake, the tablet acknowledged Morning (the path works on this socket).
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, _, seq := devState(); uint64(seq) == morning {
			break
		} else if time.Now().After(end) {
			t.Fatalf("shown_seq %v; want Morning's %d, acknowledged while awake", seq, morning)
		}
	}
	// The server still holds its socket (its own clock, behind the page's, says whether
	// it is asleep: bridge.TestScheduleAsleepState).
	if _, online, _ := devState(); !online {
		t.Fatal("the asleep tablet's device is not online on the server")
	}

	// Asleep, it takes events (they are not on screen, so not acknowledged).
	evening := producerPublish(t, sys.base, key, "lobby", "state", `{"title":"Evening","body":"Published while asleep"}`)
	waitJS(t, tablet, `document.querySelector('#title').textContent === 'Evening' && document.body.dataset.asleep === 'clock'`, 10*time.Second)
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if _, _, seq := devState(); uint64(seq) == evening {
			t.Fatal("the asleep tablet acknowledged an event it does not show")
		}
	}

	// An emergency wakes the screen: the override shows above the asleep view, the wake
	// lock is held again; cleared, the screen sleeps on.
	ov := adminAPI(t, sys, "POST", "/api/admin/overrides", `{"feeds":["lobby"],"title":"Fire alarm","body":"Evacuate","expires_in":"30m"}`)["id"].(string)
	waitJS(t, tablet, overrideShown+`(`+jsString(ov)+`) && document.body.dataset.asleep === 'clock'`, 10*time.Second)
	if lockHeld {
		waitJS(t, tablet, kiosk+`.then((m) => m.wake.lock !== null && !m.wake.suspended)`, 5*time.Second)
	}
	adminAPI(t, sys, "DELETE", "/api/admin/overrides/"+ov, "")
	waitJS(t, tablet, `!document.getElementById('override') && document.getElementById('asleep').contains(document.elementFromPoint(innerWidth / 2, innerHeight / 2))`, 10*time.Second)
	waitJS(t, tablet, kiosk+`.then((m) => m.wake.lock === null && m.wake.suspended)`, 5*time.Second)

	// To 2 s before the wake: awake at it, the newest event on screen.
	if err := chromedp.Do(tablet, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`__setVirtualNow(%d)`, wakeAt.Add(-2*time.Second).UnixMilli()))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tablet, `!document.body.dataset.asleep && !document.getElementById('asleep')`, 15*time.Second)
	woke, err := chromedp.Run(tablet, chromedp.Evaluate[int64](`__awakeAt`))
	if err != nil || woke < wakeAt.UnixMilli() || woke > wakeAt.Add(5*time.Second).UnixMilli() {
		t.Fatalf("awake at %d (%v); want at the boundary %d", woke, err, wakeAt.UnixMilli())
	}
	waitJS(t, tablet, `document.querySelector('#title').textContent === 'Evening' && getComputedStyle(document.getElementById('feed-screen')).visibility === 'visible' &&
  document.getElementById('feed-screen').contains(document.elementFromPoint(innerWidth / 2, innerHeight / 2))`, 5*time.Second)
	if lockHeld {
		waitJS(t, tablet, kiosk+`.then((m) => m.wake.lock !== null && !m.wake.suspended)`, 5*time.Second)
	} else {
		t.Log("this headless Chromium granted no wake lock, so its release and return are not observable here")
		waitJS(t, tablet, kiosk+`.then((m) => !m.wake.suspended)`, 5*time.Second)
	}
	// Awake, the newest is acknowledged: it is on screen now.
	deadline := time.Now().Add(10 * time.Second)
	for _, _, seq := devState(); uint64(seq) != evening; _, _, seq = devState() {
		if time.Now().After(deadline) {
			t.Fatalf("after the wake: shown_seq %v; want %d", seq, evening)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Offline: with the server stopped, the tablet sleeps on time the next day from its
	// own copy, and a reload while the server is down comes back asleep.
	if v := cspViolations(t, tablet); len(v) > 0 {
		t.Errorf("CSP violations: %v", v)
	}
	if err := sys.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	waitJS(t, tablet, `document.querySelector('#status').dataset.state !== 'live'`, 15*time.Second)
	tomorrow := sleepAt.In(berlin).AddDate(0, 0, 1)
	if err := chromedp.Do(tablet, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`__asleepAt = 0; __awakeAt = 0; __setVirtualNow(%d)`, tomorrow.Add(-2*time.Second).UnixMilli()))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tablet, `document.body.dataset.asleep === 'clock'`, 15*time.Second)
	if at, err := chromedp.Run(tablet, chromedp.Evaluate[int64](`__asleepAt`)); err != nil || at < tomorrow.UnixMilli() || at > tomorrow.Add(5*time.Second).UnixMilli() {
		t.Fatalf("offline, asleep at %d (%v); want at the boundary %d", at, err, tomorrow.UnixMilli())
	}
	if err := chromedp.Do(tablet, chromedp.Reload()); err != nil {
		t.Fatalf("reload while the server is down: %v", err)
	}
	waitJS(t, tablet, `document.body.dataset.asleep === 'clock' && document.querySelector('#status').dataset.state !== 'live' &&
  document.getElementById('asleep').contains(document.elementFromPoint(innerWidth / 2, innerHeight / 2))`, 15*time.Second)
}

// TestBrowserScheduleDashboard: in real Chromium, the dashboard's schedules page stores
// a feed's schedule (the API then answers it), refuses a bad one with the reason, edits
// the stored one, and deletes it.
func TestBrowserScheduleDashboard(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	sys := startSystem(t, dir, addr)
	admin := newBrowser(t, "", 1280, 900)
	adminLogin(t, admin, sys.base, sys.password)
	fill := func(zone string) {
		t.Helper()
		if err := chromedp.Do(admin,
			chromedp.Navigate(sys.base+"/admin/schedules"),
			chromedp.WaitVisible(chromedp.ID("schedule-form")),
			chromedp.SetValue(chromedp.ID("schedule-feed"), "lobby"),
			chromedp.SetValue(chromedp.ID("schedule-zone"), zone),
			chromedp.SetValue(chromedp.ID("schedule-view"), "clock"),
			chromedp.SetValue(chromedp.ID("schedule-mon"), "07:00-19:00, 20:00-21:00"),
			chromedp.SetValue(chromedp.ID("schedule-sun"), "22:00-06:00"),
			chromedp.SetValue(chromedp.ID("schedule-exceptions"), "2026-12-25\n2026-12-24 08:00-12:00"),
			chromedp.Click(chromedp.ID("schedule-submit")),
		); err != nil {
			t.Fatal(err)
		}
	}
	fill("Mars/Olympus")
	waitJS(t, admin, `document.body.textContent.includes('Mars/Olympus') && document.body.textContent.includes('is not a time zone')`, 10*time.Second)
	fill("Europe/Berlin")
	waitJS(t, admin, `!!document.querySelector('#schedules tr[data-feed="lobby"]') && document.body.textContent.includes('The schedule is saved')`, 10*time.Second)
	got := adminAPI(t, sys, "GET", "/api/admin/feeds/lobby/schedule", "")
	sch, _ := got["schedule"].(map[string]any)
	week, _ := sch["week"].(map[string]any)
	exc, _ := sch["exceptions"].(map[string]any)
	if sch["time_zone"] != "Europe/Berlin" || sch["asleep_view"] != "clock" || fmt.Sprint(week["mon"]) != "[07:00-19:00 20:00-21:00]" ||
		fmt.Sprint(week["sun"]) != "[22:00-06:00]" || fmt.Sprint(exc["2026-12-25"]) != "[]" || fmt.Sprint(exc["2026-12-24"]) != "[08:00-12:00]" {
		t.Fatalf("stored %v; want what the form said", got)
	}
	// Editing starts from the stored schedule.
	if err := chromedp.Do(admin, chromedp.Navigate(sys.base+"/admin/schedules?feed=lobby")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, admin, `document.getElementById('schedule-zone').value === 'Europe/Berlin' && document.getElementById('schedule-mon').value === '07:00-19:00, 20:00-21:00' &&
  document.getElementById('schedule-exceptions').value === '2026-12-24 08:00-12:00\n2026-12-25'`, 10*time.Second)
	if err := chromedp.Do(admin, chromedp.Click(`#schedules tr[data-feed="lobby"] button`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, admin, `!!document.getElementById('no-schedules') && document.body.textContent.includes('The schedule is deleted')`, 10*time.Second)
	if v := cspViolations(t, admin); len(v) > 0 {
		t.Errorf("CSP violations: %v", v)
	}
}
