package admin

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// Each device's last hour (docs/protocol.md §6, #http-get-api-admin-devices-id-timeline):
// GET /api/admin/devices/{id}/timeline, GET /api/admin/timelines for many at once, and
// the bar the dashboard's device list draws from the same spans. The records are the
// bridge's (the TIMELINE stream, broker/timeline.go); this instance reads them all into
// memory (broker.Timeline.Follow), so any instance answers for any device, from memory.

// maxTimelineIDs bounds the ids of one GET /api/admin/timelines.
const maxTimelineIDs = 500

// timelineView is one device's last hour.
type timelineView struct {
	DeviceID string                `json:"device_id"`
	From     time.Time             `json:"from"`
	To       time.Time             `json:"to"`
	Spans    []broker.TimelineSpan `json:"spans"`
}

func (a *Admin) registerTimeline(mux *http.ServeMux) {
	mux.Handle("GET /api/admin/devices/{id}/timeline", a.adminOnly(a.handleTimeline))
	mux.Handle("GET /api/admin/timelines", a.adminOnly(a.handleTimelines))
}

// timelineOf draws a device's hour up to now. The records say what the instances that
// held its socket saw (one that died wrote no offline: when the device has no live
// connection now and was last seen after its newest record, the hour ends offline from
// then, until another instance's record says so). Where its feed's screen schedule says
// asleep, it is asleep, connected or not, as the device list says.
func (a *Admin) timelineOf(id string, now time.Time) timelineView {
	now = now.UTC().Truncate(time.Second)
	from := now.Add(-broker.TimelineWindow)
	recs := a.timeline.Records(id)
	if online, seen := a.presence.Presence(id); !online && len(recs) > 0 {
		last := recs[len(recs)-1]
		if last.State != broker.TimelineOffline && seen.After(last.At) {
			recs = append(recs, broker.TimelineRecord{State: broker.TimelineOffline, At: seen})
		}
	}
	spans := broker.TimelineSpans(recs, from, now)
	if d, ok := a.p.Devices().Device(id); ok {
		spans = broker.TimelineOverlay(spans, broker.TimelineAsleep, a.asleepSpans(d.Feed, from, now))
	}
	for i := range spans {
		spans[i].From, spans[i].To = spans[i].From.UTC(), spans[i].To.UTC()
	}
	return timelineView{DeviceID: id, From: from, To: now, Spans: spans}
}

// asleepSpans are the stretches of from to to that feed's screen schedule (its current
// one) says asleep, at most one a change of the schedule's state within the hour.
func (a *Admin) asleepSpans(feed string, from, to time.Time) []broker.TimelineSpan {
	fs, ok := a.schedules.Get(feed)
	if !ok || fs.Parsed() == nil {
		return nil
	}
	sched := fs.Parsed()
	var out []broker.TimelineSpan
	t, awake := from, sched.Awake(from)
	for range 64 { // a schedule changes at most a few times an hour; bounded anyway
		next := sched.Next(t)
		end := to
		if !next.IsZero() && next.Before(to) {
			end = next
		}
		if !awake {
			out = append(out, broker.TimelineSpan{State: broker.TimelineAsleep, From: t, To: end})
		}
		if !end.Before(to) {
			break
		}
		t, awake = end, !awake
	}
	return out
}

func (a *Admin) handleTimeline(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !broker.ValidDeviceID(id) {
		return httpx.Errorf(httpx.CodeNotFound, "no device with that id")
	}
	if _, ok := a.p.Devices().Device(id); !ok {
		return httpx.Errorf(httpx.CodeNotFound, "no device with that id")
	}
	httpx.WriteJSON(w, http.StatusOK, a.timelineOf(id, a.cfg.Now()))
	return nil
}

// handleTimelines answers the timelines of the devices ids names (comma-separated, at
// most maxTimelineIDs; ids of no paired device are left out), or of every paired
// device without ids: one request for a page of the dashboard, not one per row.
func (a *Admin) handleTimelines(w http.ResponseWriter, r *http.Request) error {
	var ids []string
	if q := r.URL.Query().Get("ids"); q != "" {
		ids = strings.Split(q, ",")
		if len(ids) > maxTimelineIDs {
			return httpx.Errorf(httpx.CodeInvalidRequest, fmt.Sprintf(`"ids" names at most %d devices`, maxTimelineIDs))
		}
	} else {
		for _, d := range a.p.Devices().List("") {
			ids = append(ids, d.ID)
		}
	}
	now := a.cfg.Now().UTC().Truncate(time.Second)
	out := struct {
		From      time.Time      `json:"from"`
		To        time.Time      `json:"to"`
		Timelines []timelineView `json:"timelines"`
	}{From: now.Add(-broker.TimelineWindow), To: now, Timelines: []timelineView{}}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] || !broker.ValidDeviceID(id) {
			continue
		}
		seen[id] = true
		if _, ok := a.p.Devices().Device(id); ok {
			out.Timelines = append(out.Timelines, a.timelineOf(id, now))
		}
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// timelineBar is a device's hour as the dashboard draws it: an SVG whose x axis is the
// hour in seconds, one rect per span (attributes only: the CSP allows no inline style).
type timelineBar struct {
	Label string // what the bar says, for screen readers
	Rects []timelineRect
}

type timelineRect struct {
	State string
	X, W  int64 // seconds from the hour's start
	Title string
	Flaps int // changes within it too short to draw: drawn lighter
}

// timelineBar is the dashboard's bar for device id (the template function "timeline").
func (a *Admin) timelineBar(id string) timelineBar {
	tv := a.timelineOf(id, a.cfg.Now())
	var bar timelineBar
	var parts []string
	for _, s := range tv.Spans {
		// Whole seconds from the hour's start, each edge rounded alike, so that the
		// rects tile the bar; a span shorter than a second still shows.
		x, end := int64(s.From.Sub(tv.From).Round(time.Second)/time.Second), int64(s.To.Sub(tv.From).Round(time.Second)/time.Second)
		w := max(end-x, 1)
		title := fmt.Sprintf("%s %s–%s UTC", s.State, s.From.Format("15:04:05"), s.To.Format("15:04:05"))
		part := fmt.Sprintf("%s %s", s.State, roundMinutes(s.To.Sub(s.From)))
		if s.Flaps > 0 {
			title += fmt.Sprintf(", %d short changes", s.Flaps)
			part += fmt.Sprintf(" (%d short changes)", s.Flaps)
		}
		bar.Rects = append(bar.Rects, timelineRect{State: s.State, X: x, W: w, Title: title, Flaps: s.Flaps})
		parts = append(parts, part)
	}
	bar.Label = "last hour: " + strings.Join(parts, ", ")
	return bar
}

func roundMinutes(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%d s", int(d/time.Second))
	}
	return fmt.Sprintf("%d min", int((d+30*time.Second)/time.Minute))
}
