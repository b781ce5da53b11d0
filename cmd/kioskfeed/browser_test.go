package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// socketWatch counts the tablet app's WebSockets: how many were ever open at the same
// time. Injected before the app's own script, so it wraps the constructor the app uses.
const socketWatch = `(() => {
  const Native = window.WebSocket;
  window.__ws = {open: 0, maxOpen: 0, made: 0};
  window.WebSocket = function(url, protocols) {
    const ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
    window.__ws.made++;
    window.__ws.open++;
    window.__ws.maxOpen = Math.max(window.__ws.maxOpen, window.__ws.open);
    ws.addEventListener('close', () => { window.__ws.open--; });
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})();`

// system is one kioskfeed served for a browser test: its public URL is its own address.
type system struct {
	*served
	dir, addr, password string
}

func startSystem(t *testing.T, dir, addr string) *system {
	t.Helper()
	s := startServe(t, dir, "--listen", addr, "--public-url", "http://"+addr, "--heartbeat", "2s")
	sys := &system{served: s, dir: dir, addr: addr}
	if m := regexp.MustCompile(`admin password:\s+(\S+)`).FindStringSubmatch(s.stdout.String()); m != nil {
		sys.password = m[1]
	}
	return sys
}

// adminLogin logs a browser into the dashboard.
func adminLogin(t *testing.T, ctx context.Context, base, password string) {
	t.Helper()
	if err := chromedp.Do(ctx,
		injectOnEveryDocument(`window.confirm = () => true;`), // the person clicks OK
		chromedp.Navigate(base+"/admin"),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login-submit")),
	); err != nil {
		t.Fatalf("admin login: %v", err)
	}
	waitJS(t, ctx, `!!document.querySelector('#live-count')`, 10*time.Second)
}

// issuePIN uses the dashboard's PIN form and returns the PIN it shows.
func issuePIN(t *testing.T, ctx context.Context, feed string) string {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("pin-feed-input"), feed),
		chromedp.Click(chromedp.ID("pin-submit")),
		chromedp.WaitVisible(chromedp.ID("pin-value")),
	); err != nil {
		t.Fatalf("issue PIN: %v", err)
	}
	pin, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("pin-value")))
	if err != nil || !regexp.MustCompile(`^[A-Z]{4}-[A-Z]{4}$`).MatchString(strings.TrimSpace(pin)) {
		t.Fatalf("PIN shown %q: %v", pin, err)
	}
	return strings.TrimSpace(pin)
}

// pairTablet pairs the tablet browser with feed using pin, as a person would type it.
func pairTablet(t *testing.T, ctx context.Context, base, feed, pin string) {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		// The code screen comes first; the PIN form is behind "Enter a PIN instead".
		chromedp.WaitVisible(chromedp.ID("use-pin")),
		chromedp.Click(chromedp.ID("use-pin")),
		chromedp.WaitVisible(chromedp.ID("pair-form")),
		chromedp.SendKeys(chromedp.ID("feed"), feed),
		chromedp.SendKeys(chromedp.ID("pin"), strings.ToLower(strings.ReplaceAll(pin, "-", ""))),
	); err != nil {
		t.Fatalf("pairing form: %v", err)
	}
	typed, _ := chromedp.Run(ctx, chromedp.Value(chromedp.ID("pin")))
	if typed != pin {
		t.Fatalf("the PIN field shows %q as typed, want it formatted %q", typed, pin)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("pair-submit"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, `document.body.dataset.view === 'feed'`, 15*time.Second)
}

func producerPublish(t *testing.T, base, key, feed, kind, data string) uint64 {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/api/feeds/"+feed+"/events", strings.NewReader(fmt.Sprintf(`{"kind":%q,"data":%s}`, kind, data)))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res struct{ Seq uint64 }
	if resp.StatusCode != 202 || json.NewDecoder(resp.Body).Decode(&res) != nil {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
	return res.Seq
}

// TestBrowserTabletAndDashboard walks a person through the system in real Chromium: an
// admin pairs a tablet with a PIN, a producer publishes, the tablet survives reloads,
// going offline, a closed tab and a server restart, and is revoked.
func TestBrowserTabletAndDashboard(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	sys := startSystem(t, dir, addr)
	if sys.password == "" || sys.token == "" {
		t.Fatalf("first start printed no admin password or token:\n%s", sys.stdout)
	}
	artifacts := os.Getenv("KIOSKFEED_ARTIFACTS")

	admin := newBrowser(t, "", 1280, 900)
	adminLogin(t, admin, sys.base, sys.password)
	pin := issuePIN(t, admin, "lobby")
	shot(t, admin, artifacts, "dashboard-pin")

	tabletDir := t.TempDir()
	tablet := newBrowser(t, tabletDir, 1280, 800)
	if err := chromedp.Do(tablet, injectOnEveryDocument(socketWatch)); err != nil {
		t.Fatal(err)
	}
	pairTablet(t, tablet, sys.base, "lobby", pin)

	// 1. The key in IndexedDB is a CryptoKey that cannot be exported.
	keyCheck := `(async () => {
	  const db = await new Promise((ok, no) => { const r = indexedDB.open('kioskfeed'); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
	  const rec = await new Promise((ok, no) => { const q = db.transaction('kv').objectStore('kv').get('device'); q.onsuccess = () => ok(q.result); q.onerror = () => no(q.error); });
	  const k = rec && rec.privateKey;
	  let exportRejected = false;
	  try { await crypto.subtle.exportKey('jwk', k); } catch (e) { exportRejected = e.name === 'InvalidAccessError'; }
	  return JSON.stringify({isKey: k instanceof CryptoKey, extractable: k && k.extractable, exportRejected, deviceId: rec && rec.deviceId});
	})()`
	raw, err := chromedp.Run(tablet, chromedp.Evaluate[string](keyCheck, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	var key struct {
		IsKey, Extractable, ExportRejected bool
		DeviceID                           string
	}
	_ = json.Unmarshal([]byte(raw), &key)
	if !key.IsKey || key.Extractable || !key.ExportRejected || !strings.HasPrefix(key.DeviceID, "dev_") {
		t.Fatalf("device key in IndexedDB: %s; want a non-extractable CryptoKey whose export is refused", raw)
	}
	noSecrets := `JSON.stringify({ls: Object.keys(localStorage).length, ss: Object.keys(sessionStorage).length, url: location.href, cookie: document.cookie})`
	if raw, _ := chromedp.Run(tablet, chromedp.Evaluate[string](noSecrets)); !strings.Contains(raw, `"ls":0,"ss":0,"url":"http://`+addr+`/","cookie":""`) {
		t.Fatalf("the tablet keeps something outside IndexedDB: %s", raw)
	}

	// 2. A producer publishes; the tablet shows it.
	keyResp := adminAPI(t, sys, "POST", "/api/admin/producer-keys", `{"name":"browser test","feeds":["lobby"]}`)
	producer := keyResp["key"].(string)
	producerPublish(t, sys.base, producer, "lobby", "state", `{"title":"Room Aurora","body":"Design review at 11:00","rows":[["09:00","Stand-up"],["11:00","Design review"]]}`)
	producerPublish(t, sys.base, producer, "lobby", "item", `{"text":"Order 4711 is ready"}`)
	waitJS(t, tablet, `document.querySelector('#title').textContent === 'Room Aurora' && document.querySelector('#items').textContent.includes('4711')`, 15*time.Second)
	waitJS(t, tablet, `document.querySelector('#status').dataset.state === 'live'`, 10*time.Second)
	shot(t, tablet, artifacts, "tablet-landscape")
	if err := chromedp.Do(tablet, chromedp.EmulateViewport(800, 1280)); err != nil {
		t.Fatal(err)
	}
	shot(t, tablet, artifacts, "tablet-portrait")
	_ = chromedp.Do(tablet, chromedp.EmulateViewport(1280, 800))

	// Close the tab and open a new one in the same browser: still paired.
	tablet2, cancel2 := chromedp.NewContext(tablet)
	defer cancel2()
	if err := chromedp.Do(tablet2, injectOnEveryDocument(cspWatch), injectOnEveryDocument(socketWatch), chromedp.Navigate(sys.base+"/")); err != nil {
		t.Fatal(err)
	}
	// The first tab closes (its context stays: the second tab's derives from it).
	if _, err := chromedp.Call(tablet, page.Close, cdpEmpty()); err != nil {
		t.Fatalf("close the first tab: %v", err)
	}
	tablet = tablet2
	waitJS(t, tablet, `document.body.dataset.view === 'feed' && document.querySelector('#status').dataset.state === 'live'`, 30*time.Second)

	// 3. The server stops: the tablet goes stale. Reloaded while it is down, the service
	// worker serves the app and the last state shows at once, marked stale: before any
	// socket could have connected.
	if err := sys.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	waitJS(t, tablet, `document.querySelector('#status').dataset.state !== 'live'`, 15*time.Second)
	if err := chromedp.Do(tablet, chromedp.Reload()); err != nil {
		t.Fatalf("reload while the server is down: %v", err)
	}
	waitJS(t, tablet, `document.body.dataset.view === 'feed' && document.querySelector('#title').textContent === 'Room Aurora' && document.querySelector('#status').dataset.state === 'stale'`, 15*time.Second)
	shot(t, tablet, artifacts, "tablet-stale")

	// The server comes back: the tablet reconnects and gets what it missed, with never
	// more than one socket open.
	sys = startSystem(t, dir, addr)
	producerPublish(t, sys.base, producer, "lobby", "item", `{"text":"Missed while restarting"}`)
	waitJS(t, tablet, `document.querySelector('#items').textContent.includes('Missed while restarting') && document.querySelector('#status').dataset.state === 'live'`, 60*time.Second)
	if raw, _ := chromedp.Run(tablet, chromedp.Evaluate[string](`JSON.stringify(window.__ws)`)); !strings.Contains(raw, `"maxOpen":1`) {
		t.Fatalf("sockets: %s; want never more than one open", raw)
	}

	// 6. CSP: nothing refused on the tablet app or the dashboard.
	if v := cspViolations(t, tablet); len(v) > 0 {
		t.Fatalf("tablet CSP violations: %v", v)
	}
	if v := cspViolations(t, admin); len(v) > 0 {
		t.Fatalf("dashboard CSP violations: %v", v)
	}

	// 4. The admin revokes the tablet from the dashboard: it returns to pairing.
	if err := chromedp.Do(admin, chromedp.Navigate(sys.base+"/admin"), chromedp.WaitVisible(chromedp.CSS(`tr[data-device-id] button.revoke-button`))); err != nil {
		t.Fatalf("devices page after restart (session kept): %v", err)
	}
	waitJS(t, admin, `document.querySelector('tr[data-device-id] span.dot.online') !== null`, 10*time.Second)
	shot(t, admin, artifacts, "dashboard-devices")
	if err := chromedp.Do(admin, chromedp.Click(chromedp.CSS(`tr[data-device-id] button.revoke-button`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tablet, `document.body.dataset.view === 'pair'`, 15*time.Second)
	shot(t, tablet, artifacts, "tablet-pairing")
}

// TestBrowserInstallableAndCrossSiteRefused: the PWA is installable with a manifest that
// holds no secret, and a form posted to the dashboard from another origin is refused.
func TestBrowserInstallableAndCrossSiteRefused(t *testing.T) {
	sys := startSystem(t, t.TempDir(), freeAddr(t))
	tablet := newBrowser(t, "", 1280, 800)
	if err := chromedp.Do(tablet, chromedp.Navigate(sys.base+"/"), chromedp.WaitVisible(chromedp.ID("user-code"))); err != nil {
		t.Fatal(err)
	}
	// 5. Installability: the service worker must control the page first.
	waitJS(t, tablet, `!!navigator.serviceWorker.controller`, 15*time.Second)
	res, err := chromedp.Call(tablet, page.GetInstallabilityErrors, cdpEmpty())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.InstallabilityErrors) > 0 {
		var errs []string
		for _, e := range res.InstallabilityErrors {
			errs = append(errs, e.ErrorID)
		}
		t.Fatalf("installability errors: %v", errs)
	}
	manifest, err := chromedp.Run(tablet, chromedp.Evaluate[string](`fetch('/manifest.webmanifest').then(r => r.text())`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		StartURL string `json:"start_url"`
		Display  string
	}
	if json.Unmarshal([]byte(manifest), &m) != nil || m.StartURL != "/" || m.Display != "fullscreen" {
		t.Fatalf("manifest %s: want start_url \"/\" (no secret, no per-device value) and fullscreen", manifest)
	}
	if v := cspViolations(t, tablet); len(v) > 0 {
		t.Fatalf("tablet CSP violations: %v", v)
	}

	admin := newBrowser(t, "", 1280, 900)
	adminLogin(t, admin, sys.base, sys.password)

	// 6. A page on another origin posts a form to the dashboard: refused.
	var got int
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<form id=f method=post action="%s/admin/pins"><input name=feed value=lobby></form><script>document.getElementById('f').submit()</script>`, sys.base)
	}))
	defer evil.Close()
	responses := chromedp.Events(admin, network.ResponseReceived)
	if err := chromedp.Do(admin, chromedp.Navigate(evil.URL)); err != nil {
		t.Fatal(err)
	}
	for ev, err := range responses {
		if err != nil {
			t.Fatalf("no answer to the cross-site post: %v", err)
		}
		if strings.HasSuffix(ev.Response.URL, "/admin/pins") {
			got = int(ev.Response.Status)
			break
		}
	}
	if got != http.StatusForbidden {
		t.Fatalf("cross-site form post to the dashboard: %d, want 403", got)
	}
	// And it issued nothing.
	recs := adminAPIList(t, sys, "/api/admin/audit?type=pin_issued")
	if len(recs) != 0 {
		t.Fatalf("the refused cross-site post issued a PIN: %v", recs)
	}
}

func cdpEmpty() struct{} { return struct{}{} }

func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	t.Setenv("KIOSKFEED_ARTIFACTS", dir)
	screenshot(t, ctx, name)
}

// adminAPI calls the admin API with the admin token printed at first start.
func adminAPI(t *testing.T, sys *system, method, path, body string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(method, sys.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+sys.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %v", method, path, resp.StatusCode, m)
	}
	return m
}

func adminAPIList(t *testing.T, sys *system, path string) []map[string]any {
	t.Helper()
	req, _ := http.NewRequest("GET", sys.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+sys.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l []map[string]any
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&l) != nil {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	return l
}

// TestBrowserPairByCode walks the reverse pairing flow (docs/protocol.md §3b) in real
// Chromium: the unpaired tablet shows a code and a QR code; an admin, logged out, opens
// the QR's URL, logs in, lands back on the approval page, and approves the tablet for a
// feed; the tablet shows that feed's state without a reload.
func TestBrowserPairByCode(t *testing.T) {
	sys := startSystem(t, t.TempDir(), freeAddr(t))
	artifacts := os.Getenv("KIOSKFEED_ARTIFACTS")
	keyResp := adminAPI(t, sys, "POST", "/api/admin/producer-keys", `{"name":"browser test","feeds":["lobby"]}`)
	producer := keyResp["key"].(string)
	producerPublish(t, sys.base, producer, "lobby", "state", `{"title":"Room Aurora","body":"Design review at 11:00"}`)

	// 1. The tablet: a code in large type and a QR image, drawn by our own server.
	tablet := newBrowser(t, "", 1280, 800)
	if err := chromedp.Do(tablet, injectOnEveryDocument(socketWatch), chromedp.Navigate(sys.base+"/")); err != nil {
		t.Fatal(err)
	}
	codeShown := `/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/.test(document.querySelector('#user-code').textContent)`
	qrLoaded := `(() => { const i = document.querySelector('img#pair-qr'); return !!i && i.complete && i.naturalWidth > 0 && i.offsetParent !== null; })()`
	waitJS(t, tablet, `document.body.dataset.view === 'pair' && `+codeShown+` && `+qrLoaded, 20*time.Second)
	code, err := chromedp.Run(tablet, chromedp.Text(chromedp.ID("user-code")))
	if err != nil {
		t.Fatal(err)
	}
	plain := strings.ReplaceAll(code, "-", "")
	raw, err := chromedp.Run(tablet, chromedp.Evaluate[string](`JSON.stringify({
	  qr: document.querySelector('#pair-qr').src,
	  uri: document.querySelector('#verification-uri').textContent,
	  pinFormShown: document.querySelector('#pair-form').offsetParent !== null,
	  usePinShown: document.querySelector('#use-pin').offsetParent !== null,
	  fontPx: parseFloat(getComputedStyle(document.querySelector('#user-code')).fontSize),
	  qrPx: document.querySelector('#pair-qr').getBoundingClientRect().width,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	var screen struct {
		QR, URI                   string
		PinFormShown, UsePinShown bool
		FontPx, QRPx              float64
	}
	_ = json.Unmarshal([]byte(raw), &screen)
	if screen.QR != sys.base+"/api/pair/qr.svg?code="+code || screen.URI != sys.base+"/admin/approve" {
		t.Fatalf("pairing screen %s: want the QR from %s/api/pair/qr.svg and the approval URL", raw, sys.base)
	}
	if screen.PinFormShown || !screen.UsePinShown || screen.FontPx < 48 || screen.QRPx < 200 {
		t.Fatalf("pairing screen %s: want the PIN form hidden behind #use-pin, a code of 48 px or more and a QR of 200 px or more", raw)
	}
	shot(t, tablet, artifacts, "tablet-pair-code")

	// The PIN form is one tap away, and back again to the same code.
	if err := chromedp.Do(tablet, chromedp.Click(chromedp.ID("use-pin")), chromedp.WaitVisible(chromedp.ID("pair-form"))); err != nil {
		t.Fatalf("enter a PIN instead: %v", err)
	}
	waitJS(t, tablet, `document.querySelector('#code-panel').offsetParent === null`, 5*time.Second)
	if err := chromedp.Do(tablet, chromedp.Click(chromedp.ID("use-code")), chromedp.WaitVisible(chromedp.ID("pair-qr"))); err != nil {
		t.Fatalf("back to the code: %v", err)
	}
	waitJS(t, tablet, `document.querySelector('#user-code').textContent === '`+code+`' && document.querySelector('#pair-form').offsetParent === null`, 10*time.Second)
	// A reload shows the same code: the request and its key are kept in IndexedDB.
	if err := chromedp.Do(tablet, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tablet, `document.querySelector('#user-code').textContent === '`+code+`' && `+qrLoaded, 20*time.Second)
	if _, err := chromedp.Run(tablet, chromedp.Evaluate[bool](`window.__notReloaded = true`)); err != nil {
		t.Fatal(err)
	}

	// 2. The admin, logged out, opens what the QR code holds: login first, then back.
	admin := newBrowser(t, "", 1280, 900)
	approveURL := sys.base + "/admin/approve?code=" + plain
	if err := chromedp.Do(admin,
		chromedp.Navigate(approveURL),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("password"), sys.password),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("approve-form")),
	); err != nil {
		t.Fatalf("login by the QR's URL: %v", err)
	}
	if u, _ := chromedp.Run(admin, chromedp.Evaluate[string](`location.href`)); u != approveURL {
		t.Fatalf("after login the admin is at %q, want back at %q", u, approveURL)
	}
	facts, err := chromedp.Run(admin, chromedp.Evaluate[string](`['approve-code','approve-address','approve-agent','approve-key','approve-age'].map(id => document.getElementById(id).textContent.trim()).join('|')`))
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Split(facts, "|"); len(f) != 5 || f[0] != code || f[1] != "127.0.0.1" || !strings.HasPrefix(f[2], "Chrome") || len(f[3]) != 8 || f[4] == "" {
		t.Fatalf("approval page shows %q: want the code, the tablet's address, its browser, a short key and the age", facts)
	}
	shot(t, admin, artifacts, "dashboard-approve")
	if err := chromedp.Do(admin,
		chromedp.SendKeys(chromedp.ID("approve-feed"), "lobby"),
		chromedp.SetValue(chromedp.ID("approve-name"), "Lobby left"),
		chromedp.Click(chromedp.ID("approve-submit")),
		chromedp.WaitVisible(chromedp.ID("page-notice")),
	); err != nil {
		t.Fatalf("approve: %v", err)
	}

	// 3. The tablet shows the feed's state, live, without a reload.
	waitJS(t, tablet, `document.body.dataset.view === 'feed' && document.querySelector('#title').textContent === 'Room Aurora' && document.querySelector('#status').dataset.state === 'live' && window.__notReloaded === true`, 30*time.Second)
	producerPublish(t, sys.base, producer, "lobby", "item", `{"text":"Approved from a phone"}`)
	waitJS(t, tablet, `document.querySelector('#items').textContent.includes('Approved from a phone')`, 15*time.Second)
	if raw, _ := chromedp.Run(tablet, chromedp.Evaluate[string](`JSON.stringify(window.__ws)`)); !strings.Contains(raw, `"maxOpen":1`) {
		t.Fatalf("sockets: %s; want never more than one open", raw)
	}

	// The dashboard lists the device, and no request is waiting any more.
	if err := chromedp.Do(admin, chromedp.Navigate(sys.base+"/admin"), chromedp.WaitVisible(chromedp.CSS(`tr[data-device-id]`))); err != nil {
		t.Fatal(err)
	}
	row, _ := chromedp.Run(admin, chromedp.Text(chromedp.CSS(`tr[data-device-id]`)))
	waiting, _ := chromedp.Run(admin, chromedp.Evaluate[bool](`document.querySelector('#pair-requests') !== null`))
	if !strings.Contains(row, "Lobby left") || waiting {
		t.Fatalf("devices page: row %q, requests still listed %v; want the approved tablet and no open request", row, waiting)
	}
	// The key the tablet paired with is the non-extractable one of its request.
	keyCheck := `(async () => {
	  const db = await new Promise((ok, no) => { const r = indexedDB.open('kioskfeed'); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
	  const get = (k) => new Promise((ok, no) => { const q = db.transaction('kv').objectStore('kv').get(k); q.onsuccess = () => ok(q.result); q.onerror = () => no(q.error); });
	  const rec = await get('device');
	  const pending = await get('pending');
	  return JSON.stringify({isKey: rec.privateKey instanceof CryptoKey, extractable: rec.privateKey.extractable, deviceId: rec.deviceId, feed: rec.feed, pendingLeft: pending !== undefined});
	})()`
	raw, err = chromedp.Run(tablet, chromedp.Evaluate[string](keyCheck, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(raw, `"isKey":true,"extractable":false,"deviceId":"dev_`) || !strings.Contains(raw, `"feed":"lobby","pendingLeft":false`) {
		t.Fatalf("device in IndexedDB: %s; want a non-extractable key for a lobby device, and the request forgotten", raw)
	}
	if v := cspViolations(t, tablet); len(v) > 0 {
		t.Fatalf("tablet CSP violations: %v", v)
	}
	if v := cspViolations(t, admin); len(v) > 0 {
		t.Fatalf("dashboard CSP violations: %v", v)
	}
	recs := adminAPIList(t, sys, "/api/admin/audit?type=pair_approved")
	if len(recs) != 1 || recs[0]["feed"] != "lobby" {
		t.Fatalf("pair_approved records %v, want one for lobby", recs)
	}
}
