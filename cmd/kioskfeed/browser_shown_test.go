package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserShown: a real tablet in Chromium acknowledges what it shows: the devices
// list's shown_seq becomes the published event's seq, and after a burst the burst's
// last, within a deadline; the delivery endpoint lists the tablet as shown.
func TestBrowserShown(t *testing.T) {
	sys := startSystem(t, t.TempDir(), freeAddr(t))
	producer := adminAPI(t, sys, "POST", "/api/admin/producer-keys", `{"name":"shown test","feeds":["lobby"]}`)["key"].(string)
	pin := adminAPI(t, sys, "POST", "/api/admin/feeds/lobby/pins", `{"ttl":"5m"}`)["pin"].(string)
	tablet := newBrowser(t, t.TempDir(), 1280, 800)
	if err := chromedp.Do(tablet, injectOnEveryDocument(socketWatch)); err != nil {
		t.Fatal(err)
	}
	pairTablet(t, tablet, sys.base, "lobby", pin)
	list := adminAPIList(t, sys, "/api/admin/devices?feed=lobby")
	if len(list) != 1 {
		t.Fatalf("devices: %v", list)
	}
	id := list[0]["device_id"].(string)

	seq := producerPublish(t, sys.base, producer, "lobby", "state", `{"title":"Proof of display"}`)
	waitJS(t, tablet, `document.querySelector('#title').textContent === 'Proof of display'`, 15*time.Second)
	row := deviceRow(t, sys, "lobby", id, shownSeqIs(seq), 10*time.Second)
	if row["state"] != "live" || row["lag"] != float64(0) {
		t.Errorf("after the tablet showed it: %v; want live, lag 0", row)
	}
	var last uint64
	for i := range 5 {
		last = producerPublish(t, sys.base, producer, "lobby", "item", fmt.Sprintf(`{"text":"item %d"}`, i))
	}
	waitJS(t, tablet, `document.querySelector('#items').textContent.includes('item 4')`, 15*time.Second)
	deviceRow(t, sys, "lobby", id, shownSeqIs(last), 10*time.Second)
	code, body := delivery(t, sys, "lobby", fmt.Sprintf("seq=%d", last), producer)
	if got := idsOf(body["shown"]); code != 200 || len(got) != 1 || got[0] != id {
		t.Errorf("delivery of the last item: %d %v", code, body)
	}
	// The PWA sent no shown the server refused (4400): its one socket is still open.
	if raw, err := chromedp.Run(tablet, chromedp.Evaluate[string](`JSON.stringify(window.__ws)`)); err != nil || !strings.Contains(raw, `"made":1}`) {
		t.Errorf("sockets %s (%v); want the one the tablet opened after pairing", raw, err)
	}
}
