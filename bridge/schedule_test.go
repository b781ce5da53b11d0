package bridge_test

import (
	"net/http"
	"testing"
)

// TestScheduleDelivery: the welcome names the feed's schedule (null without one); a
// stored schedule reaches the feed's connected tablets at once and no other feed's; a
// tablet that connects later has it in its welcome; a delete reaches them as a schedule
// message with a null schedule (docs/protocol.md #ws-schedule).
func TestScheduleDelivery(t *testing.T) {
	s := startStack(t, stackOpts{})
	lobby, hall := s.pair(t, "lobby"), s.pair(t, "hall")

	c, w := s.connect(t, lobby, 0, "")
	if v, ok := w.Fields["schedule"]; !ok || v != nil {
		t.Fatalf("welcome %s: want \"schedule\":null before any is stored", w.Raw)
	}
	p := startPump(c)
	p.expect(t, "synced")
	hc, _ := s.connect(t, hall, 0, "")
	hp := startPump(hc)
	hp.expect(t, "synced")

	night := `{"time_zone":"Europe/Berlin","week":{"sun":["22:00-06:00"]},"asleep_view":"clock"}`
	if status, raw := s.call(t, "PUT", "/api/admin/feeds/lobby/schedule", night); status != http.StatusOK {
		t.Fatalf("PUT lobby schedule: %d %s", status, raw)
	}
	m := p.expect(t, "schedule")
	sch, _ := m.Fields["schedule"].(map[string]any)
	if m.Str("feed") != "lobby" || sch["time_zone"] != "Europe/Berlin" || sch["asleep_view"] != "clock" || m.Str("updated_at") == "" {
		t.Fatalf("schedule message %s; want the lobby's, with its time", m.Raw)
	}
	if status, raw := s.call(t, "PUT", "/api/admin/feeds/hall/schedule", `{"time_zone":"UTC","week":{"mon":["07:00-19:00"]}}`); status != http.StatusOK {
		t.Fatalf("PUT hall schedule: %d %s", status, raw)
	}
	if m := hp.expect(t, "schedule"); m.Str("feed") != "hall" {
		t.Fatalf("the hall tablet's first schedule is %s; want only its own feed's", m.Raw)
	}

	late := s.pair(t, "lobby")
	_, lw := s.connect(t, late, 0, "")
	if sch, _ := lw.Fields["schedule"].(map[string]any); sch["time_zone"] != "Europe/Berlin" {
		t.Fatalf("late welcome %s: want the lobby's schedule", lw.Raw)
	}

	if status, raw := s.call(t, "DELETE", "/api/admin/feeds/lobby/schedule", ""); status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", status, raw)
	}
	if m := p.expect(t, "schedule"); m.Str("feed") != "lobby" || m.Fields["schedule"] != nil {
		t.Fatalf("after the delete: %s; want \"schedule\":null", m.Raw)
	}
}
