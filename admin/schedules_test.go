package admin_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestScheduleAPI: store a schedule on one instance, read it on the other, replace
// and delete it, refuse bad input in the JSON error format (never a 500), and audit
// who acted.
func TestScheduleAPI(t *testing.T) {
	a, b := startCluster(t)
	spec := map[string]any{"time_zone": "Europe/Berlin", "week": map[string]any{"mon": []string{"07:00-19:00"}, "sun": []string{"22:00-06:00"}},
		"exceptions": map[string]any{"2026-12-25": []string{}}}
	put := a.admin(t, "PUT", "/api/admin/feeds/lobby/schedule", spec)
	wantAnswer(t, put, http.StatusOK, "", "")
	sch, _ := put.body["schedule"].(map[string]any)
	if put.body["feed"] != "lobby" || sch["time_zone"] != "Europe/Berlin" || sch["asleep_view"] != "black" || put.body["actor"] != broker.ActorConfigAdmin {
		t.Fatalf("PUT = %s; want the lobby's schedule, the black view by default, the config token as actor", put.raw)
	}
	if _, ok := put.body["awake"].(bool); !ok {
		t.Fatalf("PUT = %s; want awake", put.raw)
	}
	if next, err := time.Parse(time.RFC3339, put.body["next_change"].(string)); err != nil || !next.After(time.Now()) || next.After(time.Now().Add(8*24*time.Hour)) {
		t.Fatalf("next_change = %v; want within the coming week", put.body["next_change"])
	}
	rec := a.auditHas(t, string(broker.AuditScheduleSet), func(r broker.AuditRecord) bool { return r.Feed == "lobby" })
	if rec.Actor != broker.ActorConfigAdmin || !strings.Contains(rec.Detail, "Europe/Berlin") {
		t.Fatalf("audit record %+v; want the actor and the zone", rec)
	}

	// The other instance follows the bucket.
	brokertest.Eventually(t, 5*time.Second, "the other instance has the schedule", func() bool {
		g := b.admin(t, "GET", "/api/admin/feeds/lobby/schedule", nil)
		return g.status == http.StatusOK && g.body["schedule"].(map[string]any)["time_zone"] == "Europe/Berlin"
	})
	wantAnswer(t, b.admin(t, "PUT", "/api/admin/feeds/lobby/schedule", map[string]any{"time_zone": "UTC", "week": map[string]any{}, "asleep_view": "clock"}), http.StatusOK, "", "")
	brokertest.Eventually(t, 5*time.Second, "the replacement reaches the first instance", func() bool {
		g := a.admin(t, "GET", "/api/admin/feeds/lobby/schedule", nil)
		return g.status == http.StatusOK && g.body["schedule"].(map[string]any)["time_zone"] == "UTC" && g.body["awake"] == false && g.body["next_change"] == nil
	})

	for name, tc := range map[string]struct {
		path   string
		body   any
		status int
		code   string
		reason string
	}{
		"bad feed":      {"/api/admin/feeds/Lobby!/schedule", spec, 400, "invalid_request", "feed id"},
		"no zone":       {"/api/admin/feeds/lobby/schedule", map[string]any{"week": map[string]any{}}, 400, "invalid_request", `"time_zone"`},
		"unknown zone":  {"/api/admin/feeds/lobby/schedule", map[string]any{"time_zone": "Mars/Olympus"}, 400, "invalid_request", "Mars/Olympus"},
		"bad range":     {"/api/admin/feeds/lobby/schedule", map[string]any{"time_zone": "UTC", "week": map[string]any{"mon": []string{"7-19"}}}, 400, "invalid_request", "HH:MM-HH:MM"},
		"five ranges":   {"/api/admin/feeds/lobby/schedule", map[string]any{"time_zone": "UTC", "week": map[string]any{"mon": []string{"01:00-02:00", "03:00-04:00", "05:00-06:00", "07:00-08:00", "09:00-10:00"}}}, 400, "invalid_request", "at most 4"},
		"unknown field": {"/api/admin/feeds/lobby/schedule", map[string]any{"time_zone": "UTC", "brightness": 3}, 400, "invalid_request", "brightness"},
		"wrong type":    {"/api/admin/feeds/lobby/schedule", map[string]any{"time_zone": "UTC", "week": []string{"mon"}}, 400, "invalid_request", "week"},
		"too large":     {"/api/admin/feeds/lobby/schedule", map[string]any{"time_zone": strings.Repeat("x", 20<<10)}, 413, "too_large", ""},
	} {
		t.Run(name, func(t *testing.T) {
			wantAnswer(t, a.admin(t, "PUT", tc.path, tc.body), tc.status, tc.code, tc.reason)
		})
	}
	wantAnswer(t, a.admin(t, "PUT", "/api/admin/feeds/lobby/schedule", spec, "kfa.nope.nope"), 401, "invalid_token", "")
	wantAnswer(t, a.admin(t, "GET", "/api/admin/feeds/lobby/schedule", nil, ""), 401, "invalid_token", "")
	wantAnswer(t, a.admin(t, "DELETE", "/api/admin/feeds/lobby/schedule", nil, "kfa.nope.nope"), 401, "invalid_token", "")
	wantAnswer(t, a.admin(t, "GET", "/api/admin/feeds/hall/schedule", nil), 404, "not_found", "always awake")
	wantAnswer(t, a.admin(t, "DELETE", "/api/admin/feeds/hall/schedule", nil), 404, "not_found", "")

	wantAnswer(t, a.admin(t, "DELETE", "/api/admin/feeds/lobby/schedule", nil), http.StatusNoContent, "", "")
	a.auditHas(t, string(broker.AuditScheduleDeleted), func(r broker.AuditRecord) bool { return r.Feed == "lobby" && r.Actor == broker.ActorConfigAdmin })
	wantAnswer(t, a.admin(t, "GET", "/api/admin/feeds/lobby/schedule", nil), 404, "not_found", "")
	brokertest.Eventually(t, 5*time.Second, "the delete reaches the other instance", func() bool {
		return b.admin(t, "GET", "/api/admin/feeds/lobby/schedule", nil).status == http.StatusNotFound
	})
}
