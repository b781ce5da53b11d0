package admin_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestDashboardFleet: the devices page filters by tag, its tags form saves (and refuses
// a bad tag with the reason, saving nothing), and a bulk form acts only when the filter
// still matches the count the administrator confirmed.
func TestDashboardFleet(t *testing.T) {
	s := startDashboard(t, manyPairs)
	c, token := s.login(t)
	one, two := s.paired(t, "lobby"), s.paired(t, "lobby")

	p := s.post(t, "/admin/devices/"+one.DeviceID+"/tags", c, withToken(token, "tags", "Floor-2 reception,floor-2", "back", "feed=lobby"))
	if p.status != http.StatusSeeOther || p.location() != "/admin?feed=lobby&notice=tagged" {
		t.Fatalf("save tags: %d %q", p.status, p.location())
	}
	p = s.post(t, "/admin/devices/"+two.DeviceID+"/tags", c, withToken(token, "tags", "not/a/tag"))
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "The tags were not saved") {
		t.Fatalf("bad tag: %d, body has no reason", p.status)
	}
	if d := s.admin(t, "GET", "/api/admin/devices?tag=floor-2", nil); len(d.list) != 1 || d.list[0]["device_id"] != one.DeviceID {
		t.Fatalf("tagged devices: %s", d.raw)
	}
	// The back field is a filter, re-checked: anything else is dropped.
	p = s.post(t, "/admin/devices/"+one.DeviceID+"/tags", c, withToken(token, "tags", "floor-2", "back", "feed=https://evil.example/"))
	if p.status != http.StatusSeeOther || p.location() != "/admin?notice=tagged" {
		t.Fatalf("save tags with a bad back field: %d %q", p.status, p.location())
	}

	page := s.get(t, "/admin?tag=floor-2", c)
	if page.status != http.StatusOK || !strings.Contains(page.body, one.DeviceID) || strings.Contains(page.body, two.DeviceID) ||
		!strings.Contains(page.body, `data-matched="1"`) || !strings.Contains(page.body, "Reload the app on 1 devices") {
		t.Fatalf("filtered page: %d, want only the tagged device and a bulk confirmation for 1", page.status)
	}
	if page = s.get(t, "/admin?state=sleepy", c); page.status != http.StatusOK || !strings.Contains(page.body, "That filter is not valid") || !strings.Contains(page.body, two.DeviceID) {
		t.Fatalf("bad filter: %d, want every device and the reason", page.status)
	}

	// Confirmed for 1, but the filter matches 2 by now: nothing is done.
	p = s.post(t, "/admin/devices/bulk", c, withToken(token, "action", "revoke", "back", "feed=lobby", "expect", "1"))
	if p.status != http.StatusConflict || !strings.Contains(p.body, "now matches 2 devices, not the 1 you confirmed") {
		t.Fatalf("bulk with a stale count: %d", p.status)
	}
	// No filter and no "all": refused by the API's rule, with its reason.
	p = s.post(t, "/admin/devices/bulk", c, withToken(token, "action", "revoke", "expect", "2"))
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "the filter is empty") {
		t.Fatalf("bulk without a filter or all: %d", p.status)
	}
	if d := s.admin(t, "GET", "/api/admin/devices", nil); len(d.list) != 2 {
		t.Fatalf("devices after refused bulk forms: %s", d.raw)
	}
	// The right count: done, and the page says so.
	p = s.post(t, "/admin/devices/bulk", c, withToken(token, "action", "move", "to", "hall", "back", "tag=floor-2", "expect", "1"))
	if p.status != http.StatusSeeOther {
		t.Fatalf("bulk move: %d %s", p.status, p.body)
	}
	loc, _ := url.Parse(p.location())
	if loc.Query().Get("tag") != "floor-2" || loc.Query().Get("done") != "1" {
		t.Fatalf("bulk move redirect %q", p.location())
	}
	if page = s.get(t, p.location(), c); !strings.Contains(page.body, "Move: 1 devices matched, 1 done, 0 failed, 0 on that feed already.") {
		t.Fatalf("page after the move has no notice")
	}
	if d := s.admin(t, "GET", "/api/admin/devices?feed=hall", nil); len(d.list) != 1 || d.list[0]["device_id"] != one.DeviceID {
		t.Fatalf("hall after the move: %s", d.raw)
	}
	// Every device, explicitly (the page without a filter sends all=1).
	p = s.post(t, "/admin/devices/bulk", c, withToken(token, "action", "revoke", "all", "1", "expect", "2"))
	if p.status != http.StatusSeeOther || !strings.Contains(p.location(), "done=2") {
		t.Fatalf("bulk revoke of all: %d %q", p.status, p.location())
	}
	if d := s.admin(t, "GET", "/api/admin/devices", nil); len(d.list) != 0 {
		t.Fatalf("devices after revoking all: %s", d.raw)
	}
}

// TestDashboardTagsAtPairing: the PIN form and the approve form give the new device
// their tags, and refuse a bad one with the reason.
func TestDashboardTagsAtPairing(t *testing.T) {
	s := startDashboard(t, manyPairs)
	c, token := s.login(t)
	p := s.post(t, "/admin/pins", c, withToken(token, "feed", "lobby", "ttl", "5", "tags", "floor/2"))
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "is not a tag") {
		t.Fatalf("PIN form with a bad tag: %d", p.status)
	}
	p = s.post(t, "/admin/pins", c, withToken(token, "feed", "lobby", "ttl", "5", "tags", "Floor-2, reception"))
	if p.status != http.StatusOK || !strings.Contains(p.body, "gets the tags floor-2, reception") {
		t.Fatalf("PIN form with tags: %d", p.status)
	}
	tab := s.tablet(t)
	if err := tab.Pair(bg, "lobby", strings.TrimSpace(byID(t, p.body, "pin-value")), "left"); err != nil {
		t.Fatal(err)
	}
	pr := s.request(t, s.codeTablet(t), "hall screen")
	p = s.post(t, "/admin/approve", c, withToken(token, "code", pr.UserCode, "action", "approve", "feed", "hall", "tags", "a b c d e f g h i"))
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "at most 8 tags") {
		t.Fatalf("approve with nine tags: %d", p.status)
	}
	p = s.post(t, "/admin/approve", c, withToken(token, "code", pr.UserCode, "action", "approve", "feed", "hall", "tags", "entrance"))
	if p.status != http.StatusSeeOther {
		t.Fatalf("approve with a tag: %d", p.status)
	}
	for _, want := range []struct{ feed, tags string }{{"lobby", "[floor-2 reception]"}, {"hall", "[entrance]"}} {
		d := s.admin(t, "GET", "/api/admin/devices?feed="+want.feed, nil)
		if len(d.list) != 1 || fmt.Sprint(d.list[0]["tags"]) != want.tags {
			t.Errorf("devices of %s: %s, want tags %s", want.feed, d.raw, want.tags)
		}
	}
}
