package admin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// rawJSON is a body sent as written.
func rawJSON(s string) json.RawMessage { return json.RawMessage(s) }

// tagsOf is a device row's tags.
func tagsOf(row map[string]any) []string {
	var out []string
	list, ok := row["tags"].([]any)
	if !ok {
		return nil // absent or not a list: tests want [] when empty
	}
	out = []string{}
	for _, t := range list {
		out = append(out, fmt.Sprint(t))
	}
	return out
}

// row finds device id in a devices answer.
func row(t *testing.T, a answer, id string) map[string]any {
	t.Helper()
	for _, r := range a.list {
		if r["device_id"] == id {
			return r
		}
	}
	t.Fatalf("device %s not in %s", id, a.raw)
	return nil
}

func idsIn(a answer) []string {
	var out []string
	for _, r := range a.list {
		out = append(out, fmt.Sprint(r["device_id"]))
	}
	slices.Sort(out)
	return out
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// Tags come with a PIN or an approval, are folded and checked, are edited with PATCH
// (audited), and the devices list filters by feed, tag and state.
func TestDeviceTags(t *testing.T) {
	s := startService(t, nil, nil, manyPairs)
	pin := s.admin(t, "POST", "/api/admin/feeds/lobby/pins", map[string]any{"ttl": "5m", "tags": []string{" Floor-2 ", "reception", "floor-2"}})
	if pin.status != http.StatusCreated || fmt.Sprint(pin.body["tags"]) != "[floor-2 reception]" {
		t.Fatalf("PIN with tags: %d %s; want 201 with tags [floor-2 reception]", pin.status, pin.raw)
	}
	tagged := s.tablet(t)
	if err := tagged.Pair(bg, "lobby", pin.body["pin"].(string), "left"); err != nil {
		t.Fatal(err)
	}
	plain := s.paired(t, "lobby")
	// An approval with tags.
	tab := s.codeTablet(t)
	pr := s.request(t, tab, "hall screen")
	if a := s.approveCode(t, pr.UserCode, map[string]any{"feed": "hall", "tags": []string{"floor-2", "entrance"}}); a.status != http.StatusOK {
		t.Fatalf("approve with tags: %d %s", a.status, a.raw)
	}
	approved := a2id(t, s, "hall")

	all := s.admin(t, "GET", "/api/admin/devices", nil)
	if got := tagsOf(row(t, all, tagged.DeviceID)); !slices.Equal(got, []string{"floor-2", "reception"}) {
		t.Errorf("PIN-paired device's tags %v", got)
	}
	if got := tagsOf(row(t, all, plain.DeviceID)); got == nil || len(got) != 0 {
		t.Errorf("untagged device's tags %v (raw %s), want []", got, all.raw)
	}
	if got := tagsOf(row(t, all, approved)); !slices.Equal(got, []string{"entrance", "floor-2"}) {
		t.Errorf("approved device's tags %v", got)
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"?tag=floor-2", sorted(tagged.DeviceID, approved)},
		{"?tag=FLOOR-2", sorted(tagged.DeviceID, approved)},
		{"?feed=lobby&tag=floor-2", []string{tagged.DeviceID}},
		{"?feed=lobby", sorted(tagged.DeviceID, plain.DeviceID)},
		{"?state=offline&tag=entrance", []string{approved}},
		{"?state=live", nil},
		{"?tag=nobody", nil},
	} {
		if got := idsIn(s.admin(t, "GET", "/api/admin/devices"+tc.query, nil)); !slices.Equal(got, tc.want) {
			t.Errorf("devices%s = %v, want %v", tc.query, got, tc.want)
		}
	}
	for _, q := range []string{"?state=sleepy", "?tag=-x", "?tag=" + strings.Repeat("a", 33), "?feed=Lobby"} {
		wantAnswer(t, s.admin(t, "GET", "/api/admin/devices"+q, nil), http.StatusBadRequest, "invalid_request", "")
	}

	// PATCH: tags and name; the answer is the device as listed.
	p := s.admin(t, "PATCH", "/api/admin/devices/"+plain.DeviceID, map[string]any{"tags": []string{"b.2", "a_1"}, "name": "Lobby right"})
	if p.status != http.StatusOK || p.body["name"] != "Lobby right" || fmt.Sprint(p.body["tags"]) != "[a_1 b.2]" || p.body["feed"] != "lobby" {
		t.Fatalf("PATCH: %d %s", p.status, p.raw)
	}
	rec := s.auditHas(t, string(broker.AuditDeviceUpdated), func(r broker.AuditRecord) bool { return r.DeviceID == plain.DeviceID })
	if !strings.Contains(rec.Detail, "tags a_1,b.2") || !strings.Contains(rec.Detail, "name") || rec.Actor == "" {
		t.Errorf("device_updated record %+v", rec)
	}
	if p := s.admin(t, "PATCH", "/api/admin/devices/"+plain.DeviceID, map[string]any{"tags": []string{}}); p.status != http.StatusOK || fmt.Sprint(p.body["tags"]) != "[]" || p.body["name"] != "Lobby right" {
		t.Fatalf("PATCH clearing tags: %d %s", p.status, p.raw)
	}
	nine := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}
	for name, body := range map[string]any{
		"nine tags":     map[string]any{"tags": nine},
		"bad character": map[string]any{"tags": []string{"floor 2"}},
		"leading dash":  map[string]any{"tags": []string{"-floor"}},
		"too long":      map[string]any{"tags": []string{strings.Repeat("x", 33)}},
		"not a string":  map[string]any{"tags": []int{1}},
		"empty body":    map[string]any{},
		"unknown field": map[string]any{"feed": "hall"},
		"control char":  map[string]any{"name": "a\u0007b"},
	} {
		a := s.admin(t, "PATCH", "/api/admin/devices/"+plain.DeviceID, body)
		if a.status != http.StatusBadRequest || a.body["error"] != "invalid_request" || a.body["message"] == "" {
			t.Errorf("%s: %d %s, want 400 invalid_request", name, a.status, a.raw)
		}
	}
	// Eight distinct tags are fine, however many duplicates come with them.
	eight := append(slices.Clone(nine[:8]), "a", "B", " c ")
	if p := s.admin(t, "PATCH", "/api/admin/devices/"+plain.DeviceID, map[string]any{"tags": eight}); p.status != http.StatusOK || len(tagsOf(p.body)) != 8 {
		t.Fatalf("eight tags with duplicates: %d %s", p.status, p.raw)
	}
	for _, id := range []string{"dev_AAAAAAAAAAAAAAAAAAAA", "nope"} {
		wantAnswer(t, s.admin(t, "PATCH", "/api/admin/devices/"+id, map[string]any{"tags": []string{"x"}}), http.StatusNotFound, "not_found", "")
	}
	// A bad tag on a PIN or an approval is refused before anything is made.
	wantAnswer(t, s.admin(t, "POST", "/api/admin/feeds/lobby/pins", map[string]any{"tags": []string{"UPPER CASE"}}), http.StatusBadRequest, "invalid_request", "not a tag")
	pr2 := s.request(t, s.codeTablet(t), "")
	wantAnswer(t, s.approveCode(t, pr2.UserCode, map[string]any{"feed": "hall", "tags": nine}), http.StatusBadRequest, "invalid_request", "at most 8")
}

// a2id is the one device of feed.
func a2id(t *testing.T, s *service, feed string) string {
	t.Helper()
	a := s.admin(t, "GET", "/api/admin/devices?feed="+feed, nil)
	if len(a.list) != 1 {
		t.Fatalf("devices of %s: %s, want one", feed, a.raw)
	}
	return fmt.Sprint(a.list[0]["device_id"])
}

// The bulk endpoint refuses what could be a slip (an empty filter), bad input, and
// filters past its bound, doing nothing; a dry run matches without acting; revoke and
// move act on exactly the filter's devices, each audited.
func TestBulkActions(t *testing.T) {
	s := startService(t, nil, nil, manyPairs)
	tag := func(id string, tags ...string) {
		if p := s.admin(t, "PATCH", "/api/admin/devices/"+id, map[string]any{"tags": tags}); p.status != http.StatusOK {
			t.Fatalf("tag: %d %s", p.status, p.raw)
		}
	}
	one, two, three := s.paired(t, "lobby"), s.paired(t, "lobby"), s.paired(t, "hall")
	tag(one.DeviceID, "floor-2")
	tag(three.DeviceID, "floor-2")
	for name, body := range map[string]string{
		"empty filter":        `{"action":"revoke","filter":{}}`,
		"no filter":           `{"action":"revoke"}`,
		"empty device list":   `{"action":"revoke","filter":{"devices":[]}}`,
		"all with criteria":   `{"action":"revoke","filter":{"all":true,"feed":"lobby"}}`,
		"unknown action":      `{"action":"delete","filter":{"feed":"lobby"}}`,
		"move without feed":   `{"action":"move","filter":{"feed":"lobby"}}`,
		"move to a bad feed":  `{"action":"move","filter":{"feed":"lobby"},"feed":"No Feed"}`,
		"feed on a revoke":    `{"action":"revoke","filter":{"feed":"lobby"},"feed":"hall"}`,
		"bad state":           `{"action":"reload","filter":{"state":"gone"}}`,
		"bad tag":             `{"action":"reload","filter":{"tag":"a b"}}`,
		"bad device id":       `{"action":"reload","filter":{"devices":["dev_x; DROP"]}}`,
		"unknown field":       `{"action":"reload","filter":{"feed":"lobby","everything":true}}`,
		"too many device ids": `{"action":"reload","filter":{"devices":[` + strings.Repeat(`"dev_AAAAAAAAAAAAAAAAAAAA",`, 1000) + `"dev_AAAAAAAAAAAAAAAAAAAA"]}}`,
	} {
		a := s.admin(t, "POST", "/api/admin/devices/bulk", rawJSON(body))
		if a.status != http.StatusBadRequest || a.body["error"] != "invalid_request" || a.body["message"] == "" {
			t.Errorf("%s: %d %.300s, want 400 invalid_request", name, a.status, a.raw)
		}
	}
	if n := len(s.admin(t, "GET", "/api/admin/devices", nil).list); n != 3 {
		t.Fatalf("%d devices after refused bulk requests, want 3: nothing done", n)
	}

	// A dry run of all: three matched, nothing done.
	dry := s.admin(t, "POST", "/api/admin/devices/bulk", rawJSON(`{"action":"revoke","filter":{"all":true},"dry_run":true}`))
	if dry.status != http.StatusOK || dry.body["matched"] != float64(3) || dry.body["done"] != float64(0) || dry.body["dry_run"] != true {
		t.Fatalf("dry run: %d %s", dry.status, dry.raw)
	}
	if n := len(s.admin(t, "GET", "/api/admin/devices", nil).list); n != 3 {
		t.Fatalf("%d devices after a dry run, want 3", n)
	}

	// Move the floor-2 devices to hall: one moves, three is there already.
	mv := s.admin(t, "POST", "/api/admin/devices/bulk", rawJSON(`{"action":"move","filter":{"tag":"floor-2"},"feed":"hall"}`))
	if mv.status != http.StatusOK || mv.body["matched"] != float64(2) || mv.body["done"] != float64(1) || mv.body["failed"] != float64(0) {
		t.Fatalf("bulk move: %d %s", mv.status, mv.raw)
	}
	if got := idsIn(s.admin(t, "GET", "/api/admin/devices?feed=hall", nil)); !slices.Equal(got, sorted(one.DeviceID, three.DeviceID)) {
		t.Fatalf("hall after the move: %v", got)
	}
	s.auditHas(t, string(broker.AuditDeviceMoved), func(r broker.AuditRecord) bool {
		return r.DeviceID == one.DeviceID && r.Feed == "hall" && strings.Contains(r.Detail, "from lobby to hall") && r.Actor != ""
	})
	// The moved device keeps its key: its next token is for the new feed.
	if err := one.Refresh(bg); err != nil || one.Feed != "hall" {
		t.Fatalf("token after the move: feed %q, %v; want hall", one.Feed, err)
	}

	// Revoke an explicit list, one of which is not a device.
	ghost := "dev_AAAAAAAAAAAAAAAAAAAA"
	rv := s.admin(t, "POST", "/api/admin/devices/bulk", rawJSON(`{"action":"revoke","filter":{"devices":["`+two.DeviceID+`","`+ghost+`"]}}`))
	if rv.status != http.StatusOK || rv.body["matched"] != float64(1) || rv.body["done"] != float64(1) || rv.body["failed"] != float64(1) {
		t.Fatalf("bulk revoke: %d %s", rv.status, rv.raw)
	}
	if !strings.Contains(string(rv.raw), `"device_id":"`+ghost+`","name":"","feed":"","outcome":"failed","error":"no device with that id"`) {
		t.Errorf("bulk revoke answer %s: want the unknown id failed", rv.raw)
	}
	if got := idsIn(s.admin(t, "GET", "/api/admin/devices", nil)); !slices.Equal(got, sorted(one.DeviceID, three.DeviceID)) {
		t.Fatalf("devices after the revoke: %v", got)
	}
	s.auditHas(t, string(broker.AuditDeviceRevoked), func(r broker.AuditRecord) bool {
		return r.DeviceID == two.DeviceID && strings.Contains(r.Detail, "bulk action")
	})
	// Reload: nobody is connected here (no bridge), so every one is not_connected.
	rl := s.admin(t, "POST", "/api/admin/devices/bulk", rawJSON(`{"action":"reload","filter":{"feed":"hall"}}`))
	if rl.status != http.StatusOK || rl.body["matched"] != float64(2) || rl.body["done"] != float64(0) || strings.Count(string(rl.raw), `"not_connected"`) != 2 {
		t.Fatalf("bulk reload with nobody connected: %d %s", rl.status, rl.raw)
	}
}

// A filter that matches more devices than one request may touch is refused whole.
func TestBulkBound(t *testing.T) {
	s := startService(t, nil, nil, manyPairs)
	// Past the bound by one, written straight into the registry (pairing 1,001 tablets
	// would take the test's whole budget): the devices bucket is the registry.
	kv, err := s.b.JetStream().KeyValue(bg, "kioskfeed_devices")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1001 {
		id := fmt.Sprintf("dev_%020d", i)
		val := fmt.Sprintf(`{"device_id":%q,"feed":"big","name":"","jkt":"x","paired_at":%q}`, id, time.Now().UTC().Format(time.RFC3339))
		if _, err := kv.Put(bg, id, []byte(val)); err != nil {
			t.Fatal(err)
		}
	}
	brokertest.Eventually(t, 10*time.Second, "the registry to list 1,001 devices", func() bool {
		return len(s.admin(t, "GET", "/api/admin/devices?feed=big", nil).list) == 1001
	})
	wantAnswer(t, s.admin(t, "POST", "/api/admin/devices/bulk", rawJSON(`{"action":"revoke","filter":{"feed":"big"}}`)), http.StatusBadRequest, "invalid_request", "at most 1000")
	if n := len(s.admin(t, "GET", "/api/admin/devices?feed=big", nil).list); n != 1001 {
		t.Fatalf("%d devices after a refused bulk revoke, want 1001", n)
	}
}
