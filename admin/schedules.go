package admin

// The screen schedules (docs/protocol.md §6, #http-put-api-admin-feeds-feed-schedule):
// the admin API that stores, reads and deletes a feed's schedule. broker.Schedules
// stores them; the bridge delivers them and the tablets evaluate them.

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/schedule"
)

// maxScheduleBody bounds a schedule's JSON body (docs/protocol.md §10,
// #limits-schedules): 64 exception dates of 4 ranges and the week fit in a quarter.
const maxScheduleBody = 16 << 10

// ScheduleView is a feed's schedule as the admin API answers it: the stored record,
// and what it says now by the cluster's clock.
type ScheduleView struct {
	broker.FeedSchedule
	Awake bool `json:"awake"`
	// NextChange is when Awake next flips; null when not within 8 days.
	NextChange *time.Time `json:"next_change"`
}

func (a *Admin) registerSchedules(mux *http.ServeMux) {
	mux.Handle("PUT /api/admin/feeds/{feed}/schedule", a.adminOnly(a.handlePutSchedule))
	mux.Handle("GET /api/admin/feeds/{feed}/schedule", a.adminOnly(a.handleGetSchedule))
	mux.Handle("DELETE /api/admin/feeds/{feed}/schedule", a.adminOnly(a.handleDeleteSchedule))
	a.dash.registerSchedulesPage(mux)
}

// scheduleView is fs with its state at now.
func scheduleView(fs broker.FeedSchedule, now time.Time) ScheduleView {
	v := ScheduleView{FeedSchedule: fs, Awake: fs.Parsed().Awake(now)}
	if next := fs.Parsed().Next(now); !next.IsZero() {
		next = next.UTC()
		v.NextChange = &next
	}
	return v
}

// scheduleFeed is the request's feed id, checked.
func scheduleFeed(r *http.Request) (string, error) {
	feed := r.PathValue("feed")
	if !broker.ValidFeedID(feed) {
		return "", httpx.Errorf(httpx.CodeInvalidRequest, "feed id must match ^[a-z0-9][a-z0-9-]{0,62}$")
	}
	return feed, nil
}

func (a *Admin) handlePutSchedule(w http.ResponseWriter, r *http.Request) error {
	feed, err := scheduleFeed(r)
	if err != nil {
		return err
	}
	body, err := httpx.ReadJSONBody(w, r, maxScheduleBody)
	if err != nil {
		return err
	}
	var spec schedule.Spec
	if err := httpx.StrictJSON(body, &spec); err != nil {
		return err
	}
	fs, err := a.putSchedule(r, feed, spec, "")
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, scheduleView(fs, a.b.Now()))
	return nil
}

// putSchedule stores spec as feed's schedule and audits it; r's context carries the
// actor.
func (a *Admin) putSchedule(r *http.Request, feed string, spec schedule.Spec, via string) (broker.FeedSchedule, error) {
	fs, err := a.schedules.Put(r.Context(), feed, spec, broker.ActorOf(r.Context()))
	if err != nil {
		return fs, err
	}
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditScheduleSet), Feed: feed, RemoteAddr: a.addr.Of(r),
		Detail: "schedule in " + fs.Schedule.TimeZone + ", asleep view " + fs.Schedule.AsleepView + via})
	a.log.Info("schedule set", slog.String("feed", feed), slog.String("time_zone", fs.Schedule.TimeZone))
	return fs, nil
}

// deleteSchedule deletes feed's schedule and audits it; ok is false when it had none.
func (a *Admin) deleteSchedule(r *http.Request, feed, via string) (bool, error) {
	ok, err := a.schedules.Delete(r.Context(), feed)
	if err != nil || !ok {
		return false, err
	}
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditScheduleDeleted), Feed: feed, RemoteAddr: a.addr.Of(r),
		Detail: "schedule deleted: its tablets stay awake" + via})
	a.log.Info("schedule deleted", slog.String("feed", feed))
	return true, nil
}

func (a *Admin) handleGetSchedule(w http.ResponseWriter, r *http.Request) error {
	feed, err := scheduleFeed(r)
	if err != nil {
		return err
	}
	fs, ok := a.schedules.Get(feed)
	if !ok {
		return httpx.Errorf(httpx.CodeNotFound, "this feed has no schedule: its tablets are always awake")
	}
	httpx.WriteJSON(w, http.StatusOK, scheduleView(fs, a.b.Now()))
	return nil
}

func (a *Admin) handleDeleteSchedule(w http.ResponseWriter, r *http.Request) error {
	feed, err := scheduleFeed(r)
	if err != nil {
		return err
	}
	ok, err := a.deleteSchedule(r, feed, "")
	if err != nil {
		return err
	}
	if !ok {
		return httpx.Errorf(httpx.CodeNotFound, "this feed has no schedule")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
