package admin_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
)

// TestOverrideAPI: raise, list (with the devices of the override's feeds), clear, the
// refusals of bad input in the JSON error format, and the audit records, with the
// credential that acted.
func TestOverrideAPI(t *testing.T) {
	s := startService(t, nil, nil)
	lobby := s.paired(t, "lobby")
	s.paired(t, "hall")

	a := s.admin(t, "POST", "/api/admin/overrides", map[string]any{"feeds": []string{"lobby"}, "title": "Fire alarm", "body": "Evacuate via stairwell B", "expires_in": "30m"})
	wantAnswer(t, a, http.StatusCreated, "", "")
	id, _ := a.body["id"].(string)
	created, _ := time.Parse(time.RFC3339, a.body["created_at"].(string))
	expires, _ := time.Parse(time.RFC3339, a.body["expires_at"].(string))
	if !broker.ValidOverrideID(id) || a.body["level"] != "danger" || a.body["actor"] != broker.ActorConfigAdmin || expires.Sub(created) != 30*time.Minute {
		t.Fatalf("raised %s; want an id, level danger, the config token as actor, 30 minutes", a.raw)
	}
	rec := s.auditHas(t, string(broker.AuditOverrideRaised), func(r broker.AuditRecord) bool { return strings.Contains(r.Detail, id) })
	if rec.Actor != broker.ActorConfigAdmin || !strings.Contains(rec.Detail, "Fire alarm") {
		t.Fatalf("audit record %+v; want the actor and the title", rec)
	}

	l := s.admin(t, "GET", "/api/admin/overrides", nil)
	if l.status != http.StatusOK || len(l.list) != 1 || l.list[0]["id"] != id || l.list[0]["shown"] != float64(0) || l.list[0]["devices"] != float64(1) {
		t.Fatalf("list = %d %s; want the override, 0 shown of the lobby's 1 device", l.status, l.raw)
	}
	sc := l.list[0]["screens"].([]any)[0].(map[string]any)
	if sc["device_id"] != lobby.DeviceID || sc["shown_at"] != nil || sc["online"] != false {
		t.Fatalf("screen = %v; want the lobby tablet, not shown, offline", sc)
	}

	for name, tc := range map[string]struct {
		body   any
		status int
		code   string
		reason string
	}{
		"no feeds":      {map[string]any{"title": "x"}, 400, "invalid_request", `"feeds"`},
		"bad level":     {map[string]any{"feeds": []string{"*"}, "title": "x", "level": "red"}, 400, "invalid_request", `"level"`},
		"long title":    {map[string]any{"feeds": []string{"*"}, "title": strings.Repeat("x", 121)}, 400, "invalid_request", `"title"`},
		"long body":     {map[string]any{"feeds": []string{"*"}, "body": strings.Repeat("x", 2001)}, 400, "invalid_request", `"body"`},
		"expiry":        {map[string]any{"feeds": []string{"*"}, "title": "x", "expires_in": "48h"}, 400, "invalid_request", `"expires_in"`},
		"unknown field": {map[string]any{"feeds": []string{"*"}, "title": "x", "sound": "siren"}, 400, "invalid_request", "sound"},
		"wrong type":    {map[string]any{"feeds": "*", "title": "x"}, 400, "invalid_request", "feeds"},
		"too large":     {map[string]any{"feeds": []string{"*"}, "body": strings.Repeat("x", 40<<10)}, 413, "too_large", ""},
	} {
		t.Run(name, func(t *testing.T) {
			wantAnswer(t, s.admin(t, "POST", "/api/admin/overrides", tc.body), tc.status, tc.code, tc.reason)
		})
	}
	wantAnswer(t, s.admin(t, "POST", "/api/admin/overrides", map[string]any{"feeds": []string{"*"}, "title": "x"}, "kfa.nope.nope"), 401, "invalid_token", "")
	wantAnswer(t, s.admin(t, "GET", "/api/admin/overrides", nil, "kfa.nope.nope"), 401, "invalid_token", "")
	wantAnswer(t, s.admin(t, "DELETE", "/api/admin/overrides/"+id, nil, ""), 401, "invalid_token", "")

	wantAnswer(t, s.admin(t, "DELETE", "/api/admin/overrides/ovr_aaaaaaaaaaaaa", nil), 404, "not_found", "no active override")
	wantAnswer(t, s.admin(t, "DELETE", "/api/admin/overrides/..%2F..%2Fx", nil), 404, "not_found", "")
	wantAnswer(t, s.admin(t, "DELETE", "/api/admin/overrides/"+id, nil), http.StatusNoContent, "", "")
	s.auditHas(t, string(broker.AuditOverrideCleared), func(r broker.AuditRecord) bool {
		return strings.Contains(r.Detail, id) && r.Actor == broker.ActorConfigAdmin
	})
	wantAnswer(t, s.admin(t, "DELETE", "/api/admin/overrides/"+id, nil), 404, "not_found", "")
	if l := s.admin(t, "GET", "/api/admin/overrides", nil); l.status != http.StatusOK || string(l.raw) != "[]\n" && string(l.raw) != "[]" {
		t.Fatalf("list after the clear = %d %s; want []", l.status, l.raw)
	}

	// The bound: at most 16 active; the 17th is refused until one is cleared.
	for i := range broker.MaxOverrides {
		wantAnswer(t, s.admin(t, "POST", "/api/admin/overrides", map[string]any{"feeds": []string{"*"}, "title": "n" + string(rune('a'+i))}), http.StatusCreated, "", "")
	}
	wantAnswer(t, s.admin(t, "POST", "/api/admin/overrides", map[string]any{"feeds": []string{"*"}, "title": "one too many"}), 400, "invalid_request", "at most 16")
}

// TestDashboardOverrides: the page's form raises an override (with its CSRF token),
// the list shows it with its screens and a clear button, and clearing works; a form
// without the token is refused.
func TestDashboardOverrides(t *testing.T) {
	s := startDashboard(t)
	s.paired(t, "lobby")
	c, token := s.login(t)

	p := s.get(t, "/admin/overrides", c)
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="override-form"`) || !strings.Contains(p.body, `id="no-overrides"`) {
		t.Fatalf("GET /admin/overrides: %d; want the form and no override", p.status)
	}
	if !strings.Contains(p.body, `id="nav-overrides" href="/admin/overrides" aria-current="page"`) {
		t.Fatal("the navigation does not mark the overrides page")
	}
	if p := s.post(t, "/admin/overrides", c, url.Values{"feeds": {"*"}, "title": {"x"}}); p.status != http.StatusForbidden {
		t.Fatalf("a form without the CSRF token: %d, want 403", p.status)
	}
	if n := len(s.admin(t, "GET", "/api/admin/overrides", nil).list); n != 0 {
		t.Fatalf("%d overrides after a refused form", n)
	}

	bad := s.post(t, "/admin/overrides", c, withToken(token, "feeds", "Lobby!", "title", "Fire", "level", "danger", "expires_in", "1h"))
	if bad.status != http.StatusBadRequest || !strings.Contains(bad.body, `id="page-error"`) || !strings.Contains(bad.body, `value="Fire"`) {
		t.Fatalf("a bad feed: %d; want 400 with the error and the form kept", bad.status)
	}
	ok := s.post(t, "/admin/overrides", c, withToken(token, "feeds", "lobby, hall", "title", "Fire", "body", "Leave by\r\nstairwell B", "level", "warning", "expires_in", "45m"))
	if ok.status != http.StatusSeeOther || ok.location() != "/admin/overrides?notice=raised" {
		t.Fatalf("raise: %d %q", ok.status, ok.location())
	}
	l := s.admin(t, "GET", "/api/admin/overrides", nil).list
	if len(l) != 1 || l[0]["level"] != "warning" || l[0]["body"] != "Leave by\nstairwell B" || l[0]["actor"] != broker.ActorDashboard {
		t.Fatalf("raised from the dashboard: %v", l)
	}
	id := l[0]["id"].(string)
	list := s.get(t, "/admin/overrides?notice=raised", c)
	if !strings.Contains(list.body, `data-override-id="`+id+`"`) || !regexp.MustCompile(`data-shown="0" data-devices="1">0 of 1<`).MatchString(list.body) ||
		!strings.Contains(list.body, `action="/admin/overrides/`+id+`/clear"`) || !strings.Contains(list.body, "<strong>not yet</strong>") {
		t.Fatalf("the list does not show the override, its 0 of 1 screens and its clear form:\n%s", list.body)
	}
	cl := s.post(t, "/admin/overrides/"+id+"/clear", c, withToken(token))
	if cl.status != http.StatusSeeOther {
		t.Fatalf("clear: %d", cl.status)
	}
	if n := len(s.admin(t, "GET", "/api/admin/overrides", nil).list); n != 0 {
		t.Fatalf("%d overrides after the clear", n)
	}
	if again := s.post(t, "/admin/overrides/"+id+"/clear", c, withToken(token)); again.status != http.StatusNotFound {
		t.Fatalf("clear again: %d, want 404", again.status)
	}
}

// TestOverrideByProducerKey: a producer key with the alert scope raises and clears
// overrides for its own feeds only; one without the scope, or for other feeds, is
// refused 403; the list stays an administrator's.
func TestOverrideByProducerKey(t *testing.T) {
	s := startService(t, nil, nil)
	mk := func(body map[string]any) (string, string) {
		a := s.admin(t, "POST", "/api/admin/producer-keys", body)
		wantAnswer(t, a, http.StatusCreated, "", "")
		return a.body["id"].(string), a.body["key"].(string)
	}
	wantAnswer(t, s.admin(t, "POST", "/api/admin/producer-keys", map[string]any{"name": "x", "feeds": []string{"lobby"}, "scopes": []string{"admin"}}), 400, "invalid_request", `"scopes"`)
	panelID, panel := mk(map[string]any{"name": "fire panel", "feeds": []string{"floor-*"}, "scopes": []string{"alert", "alert"}})
	_, plain := mk(map[string]any{"name": "room booking", "feeds": []string{"floor-*"}})
	if keys := s.admin(t, "GET", "/api/admin/producer-keys", nil); !strings.Contains(string(keys.raw), `"scopes":["alert"]`) {
		t.Fatalf("producer keys %s; want the panel's one alert scope", keys.raw)
	}

	raise := func(key string, feeds ...string) answer {
		return s.admin(t, "POST", "/api/admin/overrides", map[string]any{"feeds": feeds, "title": "Fire on floor 2"}, key)
	}
	wantAnswer(t, raise(plain, "floor-2"), 403, "forbidden", `"alert" scope`)
	wantAnswer(t, raise(panel, "floor-2", "lobby"), 403, "forbidden", `"lobby"`)
	wantAnswer(t, raise(panel, "*"), 403, "forbidden", `"*"`)
	wantAnswer(t, raise(panel, "Floor 2"), 400, "invalid_request", `"feeds"`)
	wantAnswer(t, raise("kfp.aaaaaaaaaaaaa.nope", "floor-2"), 401, "invalid_token", "producer key")
	s.auditHas(t, string(broker.AuditProducerRefused), func(r broker.AuditRecord) bool { return r.Actor == broker.ProducerKeyActor(panelID) })

	a := raise(panel, "floor-2", "floor-3")
	wantAnswer(t, a, http.StatusCreated, "", "")
	if a.body["actor"] != broker.ProducerKeyActor(panelID) {
		t.Fatalf("raised %s; want the key as actor", a.raw)
	}
	id := a.body["id"].(string)
	wantAnswer(t, s.admin(t, "GET", "/api/admin/overrides", nil, panel), 401, "invalid_token", "")

	lobby := s.admin(t, "POST", "/api/admin/overrides", map[string]any{"feeds": []string{"lobby"}, "title": "Admin's"})
	wantAnswer(t, lobby, http.StatusCreated, "", "")
	wantAnswer(t, s.admin(t, "DELETE", "/api/admin/overrides/"+lobby.body["id"].(string), nil, panel), 403, "forbidden", `"lobby"`)
	wantAnswer(t, s.admin(t, "DELETE", "/api/admin/overrides/ovr_aaaaaaaaaaaaa", nil, panel), 404, "not_found", "")
	wantAnswer(t, s.admin(t, "DELETE", "/api/admin/overrides/"+id, nil, panel), http.StatusNoContent, "", "")
	s.auditHas(t, string(broker.AuditOverrideCleared), func(r broker.AuditRecord) bool {
		return strings.Contains(r.Detail, id) && r.Actor == broker.ProducerKeyActor(panelID)
	})
}
