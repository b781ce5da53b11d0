package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// The dashboard's fleet tools on the devices page (docs/protocol.md #device-tags,
// #bulk-actions): the filter by feed, tag and state (GET /admin?feed=&tag=&state=),
// each device's tags form, and the bulk action buttons on the current filter, whose
// confirmation says how many devices they touch. A bulk form carries the count the
// administrator confirmed; if the filter matches another number by then, nothing is
// done and the page says why.

// fleetFilter is the devices page's filter, as shown in its form.
type fleetFilter struct {
	DeviceFilter
	// Query is the filter as a query string ("" for none), for links and the forms
	// that come back to the same view.
	Query string
	// Active says a criterion is set; Matched is how many devices it shows.
	Active  bool
	Matched int
	Feeds   []string // every feed with devices: the feed filter's and move's choices
	States  []string
}

// pageFilter reads the devices page's filter from q; a bad one is ignored with a
// message for the page.
func pageFilter(q url.Values) (DeviceFilter, string) {
	f := DeviceFilter{Feed: q.Get("feed"), Tag: q.Get("tag"), State: q.Get("state")}
	if err := f.check(); err != nil {
		return DeviceFilter{}, "That filter is not valid, so every device is shown: " + messageOf(err)
	}
	return f, ""
}

// query is f as a query string.
func (f DeviceFilter) query() string {
	q := url.Values{}
	for k, v := range map[string]string{"feed": f.Feed, "tag": f.Tag, "state": f.State} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q.Encode()
}

// devicesURL is the devices page with filter query q and more parameters.
func devicesURL(q string, more url.Values) string {
	all, _ := url.ParseQuery(q)
	for k, v := range more {
		all[k] = v
	}
	if len(all) == 0 {
		return "/admin"
	}
	return "/admin?" + all.Encode()
}

func messageOf(err error) string {
	if he := (*httpx.Error)(nil); errors.As(err, &he) {
		return he.Message
	}
	return "it could not be read"
}

// fleetNotice is the notice a bulk action's or a tag edit's redirect asks for.
func fleetNotice(q url.Values) string {
	if q.Get("notice") == "tagged" {
		return "The device's tags were saved."
	}
	action := q.Get("bulk")
	if !slices.Contains([]string{BulkRevoke, BulkMove, BulkReload}, action) {
		return ""
	}
	n := func(k string) int { v, _ := strconv.Atoi(q.Get(k)); return max(v, 0) }
	msg := fmt.Sprintf("%s: %d devices matched, %d done, %d failed", strings.ToUpper(action[:1])+action[1:], n("matched"), n("done"), n("failed"))
	switch action {
	case BulkReload:
		msg += fmt.Sprintf(", %d not connected (nothing is kept for them)", n("nc"))
	case BulkMove:
		msg += fmt.Sprintf(", %d on that feed already", n("unchanged"))
	}
	return msg + "."
}

func (a *Admin) registerFleetPages(mux *http.ServeMux) {
	d := a.dash
	form := func(h sessionHandler) http.Handler { return d.headers(d.cop.Handler(d.withSession(d.checkCSRF(h)))) }
	mux.Handle("POST /admin/devices/{id}/tags", form(d.editTags))
	mux.Handle("POST /admin/devices/bulk", form(d.bulk))
}

// parseFleet adds fleet.html (the filter and the bulk forms) to the devices page.
func (d *dashboard) parseFleet() error {
	t, err := d.pages["devices"].ParseFS(webFS, "web/templates/fleet.html")
	if err != nil {
		return err
	}
	d.pages["devices"] = t
	return nil
}

// fleetOf is the page's filter section for f, which matched n devices.
func (d *dashboard) fleetOf(f DeviceFilter, n int) fleetFilter {
	return fleetFilter{DeviceFilter: f, Query: f.query(), Active: !f.empty(), Matched: n, Feeds: d.feeds(), States: deviceStates}
}

// backQuery is the filter a form came from (its "back" field), re-checked.
func backQuery(r *http.Request) string {
	q, _ := url.ParseQuery(r.PostForm.Get("back"))
	f, problem := pageFilter(q)
	if problem != "" {
		return ""
	}
	return f.query()
}

// editTags is POST /admin/devices/{id}/tags: the tags field, comma- or space-separated.
func (d *dashboard) editTags(w http.ResponseWriter, r *http.Request, s adminSession) {
	tags := splitTags(r.PostForm.Get("tags"))
	back := backQuery(r)
	_, err := d.a.EditDevice(r, r.PathValue("id"), pairing.DeviceChange{Tags: &tags}, viaDashboard)
	var he *httpx.Error
	switch {
	case errors.As(err, &he) && he.Code == httpx.CodeNotFound:
		d.errorPage(w, http.StatusNotFound, "No such device", "There is no device with that id; it may have been revoked.")
		return
	case errors.As(err, &he) && he.Code == httpx.CodeInvalidRequest:
		v := d.base(s, "Devices", "devices")
		v.Error = "The tags were not saved: " + he.Message
		r.URL.RawQuery = back
		d.renderDevices(w, r, http.StatusBadRequest, v, d.defaultPINForm())
		return
	case err != nil:
		d.fail(w, err)
		return
	}
	http.Redirect(w, r, devicesURL(back, url.Values{"notice": {"tagged"}}), http.StatusSeeOther)
}

// bulk is POST /admin/devices/bulk: an action on the filter the page showed, with the
// count the administrator confirmed (expect).
func (d *dashboard) bulk(w http.ResponseWriter, r *http.Request, s adminSession) {
	pf := r.PostForm
	back := backQuery(r)
	q, _ := url.ParseQuery(back)
	f, _ := pageFilter(q)
	f.All = f.empty() && pf.Get("all") == "1"
	req := BulkRequest{Action: pf.Get("action"), Filter: f}
	if req.Action == BulkMove {
		req.Feed = strings.TrimSpace(pf.Get("to"))
	}
	problem := func(status int, msg string) {
		v := d.base(s, "Devices", "devices")
		v.Error = msg
		r.URL.RawQuery = back
		d.renderDevices(w, r, status, v, d.defaultPINForm())
	}
	expect, err := strconv.Atoi(pf.Get("expect"))
	if err != nil {
		problem(http.StatusBadRequest, "The form did not say how many devices it was confirmed for; nothing was done.")
		return
	}
	if n := len(d.a.Matching(f)); req.Filter.check() == nil && n != expect {
		problem(http.StatusConflict, fmt.Sprintf("The filter now matches %d devices, not the %d you confirmed, so nothing was done. Check the list and try again.", n, expect))
		return
	}
	resp, err := d.a.Bulk(r.Context(), req, d.a.addr.Of(r), viaDashboard)
	if he := (*httpx.Error)(nil); errors.As(err, &he) && he.Code == httpx.CodeInvalidRequest {
		problem(http.StatusBadRequest, "Nothing was done: "+he.Message)
		return
	} else if err != nil {
		d.fail(w, err)
		return
	}
	count := map[string]int{}
	for _, res := range resp.Results {
		count[res.Outcome]++
	}
	more := url.Values{"bulk": {req.Action}, "matched": {strconv.Itoa(resp.Matched)}, "done": {strconv.Itoa(resp.Done)},
		"failed": {strconv.Itoa(resp.Failed)}, "nc": {strconv.Itoa(count[OutcomeNotConnected])}, "unchanged": {strconv.Itoa(count[OutcomeUnchanged])}}
	http.Redirect(w, r, devicesURL(back, more), http.StatusSeeOther)
}

// splitTags reads a form's tags field: comma- or space-separated ([] for none).
func splitTags(s string) []string {
	tags := strings.FieldsFunc(s, func(c rune) bool { return c == ',' || c == ' ' })
	if tags == nil {
		return []string{}
	}
	return tags
}

// defaultPINForm is the PIN form as the devices page first shows it.
func (d *dashboard) defaultPINForm() pinForm {
	return pinForm{Minutes: int(pairing.DefaultPINTTL / time.Minute)}
}
