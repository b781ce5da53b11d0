package admin

// The dashboard's screen schedules page (docs/protocol.md §6, #schedule-format): the
// feeds with a schedule, what each says now, and a form that stores (or replaces) one,
// through the same path as PUT /api/admin/feeds/{feed}/schedule.

import (
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/schedule"
)

// scheduleForm is the form's fields as typed: a weekday's ranges comma-separated, one
// exception per line ("2026-12-25" alone is asleep all day).
type scheduleForm struct {
	Feed, TimeZone, AsleepView, Exceptions string
	Days                                   []scheduleDay
}

type scheduleDay struct{ Key, Ranges string }

type schedulesBody struct {
	Schedules []ScheduleView
	Form      scheduleForm
	Feeds     []string
}

var scheduleNotices = map[string]string{
	"saved":   "The schedule is saved: the feed's tablets follow it now.",
	"deleted": "The schedule is deleted: the feed's tablets stay awake.",
}

func (d *dashboard) registerSchedulesPage(mux *http.ServeMux) {
	mux.Handle("GET /admin/schedules", d.headers(d.withSession(d.schedulesPage)))
	mux.Handle("POST /admin/schedules", d.headers(d.cop.Handler(d.withSession(d.checkCSRF(d.saveSchedule)))))
	mux.Handle("POST /admin/schedules/{feed}/delete", d.headers(d.cop.Handler(d.withSession(d.checkCSRF(d.deleteSchedule)))))
}

// parseSchedulesPage adds the page's template to the dashboard's.
func (d *dashboard) parseSchedulesPage() error {
	funcs := template.FuncMap{
		"ts":      formatTime,
		"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"join":    strings.Join,
		"day":     func(spec schedule.Spec, day string) string { return strings.Join(spec.Week[day], ", ") },
		"days":    func() []string { return schedule.Days[:] },
	}
	t, err := template.New("schedules").Funcs(funcs).ParseFS(webFS, "web/templates/layout.html", "web/templates/schedules.html")
	if err != nil {
		return err
	}
	d.pages["schedules"] = t
	return nil
}

// formOf is the form filled with spec (for editing a stored schedule).
func formOf(feed string, spec schedule.Spec) scheduleForm {
	f := scheduleForm{Feed: feed, TimeZone: spec.TimeZone, AsleepView: spec.AsleepView}
	for _, day := range schedule.Days {
		f.Days = append(f.Days, scheduleDay{Key: day, Ranges: strings.Join(spec.Week[day], ", ")})
	}
	var lines []string
	for date, ranges := range spec.Exceptions {
		lines = append(lines, strings.TrimSpace(date+" "+strings.Join(ranges, ", ")))
	}
	slices.Sort(lines)
	f.Exceptions = strings.Join(lines, "\n")
	return f
}

// specOf is the schedule the form describes; Parse (through Put) checks it.
func (f scheduleForm) specOf() schedule.Spec {
	spec := schedule.Spec{TimeZone: strings.TrimSpace(f.TimeZone), AsleepView: f.AsleepView, Week: map[string][]string{}}
	for _, day := range f.Days {
		if r := ranges(day.Ranges); len(r) > 0 {
			spec.Week[day.Key] = r
		}
	}
	for _, line := range strings.Split(f.Exceptions, "\n") {
		fields := ranges(line)
		if len(fields) == 0 {
			continue
		}
		if spec.Exceptions == nil {
			spec.Exceptions = map[string][]string{}
		}
		spec.Exceptions[fields[0]] = fields[1:]
	}
	return spec
}

// ranges splits a typed list at commas and spaces.
func ranges(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' })
}

func (d *dashboard) schedulesPage(w http.ResponseWriter, r *http.Request, s adminSession) {
	v := d.base(s, "Schedules", "schedules")
	v.Notice = scheduleNotices[r.URL.Query().Get("notice")]
	form := formOf("", schedule.Spec{TimeZone: "UTC", AsleepView: schedule.ViewBlack})
	if feed := r.URL.Query().Get("feed"); broker.ValidFeedID(feed) {
		form.Feed = feed
		if fs, ok := d.a.schedules.Get(feed); ok {
			form = formOf(feed, fs.Schedule)
		}
	}
	d.renderSchedules(w, http.StatusOK, v, form)
}

func (d *dashboard) renderSchedules(w http.ResponseWriter, status int, v view, form scheduleForm) {
	now := d.a.b.Now()
	var views []ScheduleView
	for _, fs := range d.a.schedules.All() {
		views = append(views, scheduleView(fs, now))
	}
	v.Body = schedulesBody{Schedules: views, Form: form, Feeds: d.feeds()}
	d.render(w, status, "schedules", v)
}

func (d *dashboard) saveSchedule(w http.ResponseWriter, r *http.Request, s adminSession) {
	f := r.PostForm
	form := scheduleForm{Feed: strings.TrimSpace(f.Get("feed")), TimeZone: f.Get("time_zone"), AsleepView: f.Get("asleep_view"),
		Exceptions: strings.ReplaceAll(f.Get("exceptions"), "\r\n", "\n")}
	for _, day := range schedule.Days {
		form.Days = append(form.Days, scheduleDay{Key: day, Ranges: f.Get("week_" + day)})
	}
	_, err := d.a.putSchedule(r, form.Feed, form.specOf(), ", from the dashboard")
	if err != nil {
		if e, ok := err.(*httpx.Error); ok && e.Code == httpx.CodeInvalidRequest {
			v := d.base(s, "Schedules", "schedules")
			v.Error = e.Message
			d.renderSchedules(w, http.StatusBadRequest, v, form)
			return
		}
		d.fail(w, err)
		return
	}
	http.Redirect(w, r, "/admin/schedules?notice=saved", http.StatusSeeOther)
}

func (d *dashboard) deleteSchedule(w http.ResponseWriter, r *http.Request, _ adminSession) {
	ok, err := d.a.deleteSchedule(r, r.PathValue("feed"), ", from the dashboard")
	if err != nil {
		d.fail(w, err)
		return
	}
	if !ok {
		d.errorPage(w, http.StatusNotFound, "No such schedule", "That feed has no schedule; it may have been deleted already.")
		return
	}
	http.Redirect(w, r, "/admin/schedules?notice=deleted", http.StatusSeeOther)
}
