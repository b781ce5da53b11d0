package bridge_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
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

// TestScheduleAsleepState: a device of a feed scheduled asleep now is asleep in the
// devices list, connected or not, and awake again (live) once the schedule is deleted;
// a device of another feed is unaffected (docs/protocol.md #device-state).
func TestScheduleAsleepState(t *testing.T) {
	s := startStack(t, stackOpts{})
	lobby, hall := s.pair(t, "lobby"), s.pair(t, "hall")
	off := s.pair(t, "lobby") // never connects
	for _, tab := range []*pairingtest.Tablet{lobby, hall} {
		c, _ := s.connect(t, tab, 0, "")
		startPump(c).expect(t, "synced")
	}
	states := func() map[string]string {
		_, raw := s.call(t, "GET", "/api/admin/devices", "")
		var l []struct {
			ID    string `json:"device_id"`
			State string `json:"state"`
		}
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatalf("devices list %s: %v", raw, err)
		}
		out := map[string]string{}
		for _, d := range l {
			out[d.ID] = d.State
		}
		return out
	}
	if st := states(); st[lobby.DeviceID] != "live" || st[off.DeviceID] != "offline" {
		t.Fatalf("before any schedule: %v", st)
	}
	if status, raw := s.call(t, "PUT", "/api/admin/feeds/lobby/schedule", `{"time_zone":"UTC","week":{}}`); status != http.StatusOK {
		t.Fatalf("PUT: %d %s", status, raw)
	}
	brokertest.Eventually(t, 5*time.Second, "the lobby's devices asleep", func() bool {
		st := states()
		return st[lobby.DeviceID] == "asleep" && st[off.DeviceID] == "asleep" && st[hall.DeviceID] == "live"
	})
	if status, raw := s.call(t, "DELETE", "/api/admin/feeds/lobby/schedule", ""); status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", status, raw)
	}
	brokertest.Eventually(t, 5*time.Second, "the lobby awake again", func() bool {
		st := states()
		return st[lobby.DeviceID] == "live" && st[off.DeviceID] == "offline"
	})
}
