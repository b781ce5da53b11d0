package admin

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// The device list (the admin API's and the dashboard's home page), and the dashboard's
// PIN and revoke forms.

// DeviceView is a device as the admin API lists it (docs/protocol.md §6): the
// registry's record with its presence, without its key thumbprint.
type DeviceView struct {
	ID         string     `json:"device_id"`
	Feed       string     `json:"feed"`
	Name       string     `json:"name"`
	PairedAt   time.Time  `json:"paired_at"`
	Online     bool       `json:"online"`
	LastSeen   *time.Time `json:"last_seen"`
	RemoteAddr string     `json:"remote_addr"`
	UserAgent  string     `json:"user_agent"`
	// Tags are the administrator's labels (tags.go); [] when none.
	Tags []string `json:"tags"`
	// Proof of display (delivery.go).
	ShownSeq uint64     `json:"shown_seq"`
	ShownAt  *time.Time `json:"shown_at"`
	Lag      int        `json:"lag"`
	State    string     `json:"state"`
}

// DeviceViews lists the devices of feed (all when empty), oldest pairing first, with
// their presence.
func (a *Admin) DeviceViews(feed string) []DeviceView {
	devs := a.p.Devices().List(feed)
	slices.SortFunc(devs, func(x, y pairing.Device) int {
		return cmp.Or(cmp.Compare(x.Feed, y.Feed), x.PairedAt.Compare(y.PairedAt), cmp.Compare(x.ID, y.ID))
	})
	out := make([]DeviceView, len(devs))
	for i, d := range devs {
		online, seen := a.presence.Presence(d.ID)
		v := viewOf(d)
		v.Online = online
		if !seen.IsZero() {
			v.LastSeen = &seen
		}
		a.shownOf(&v)
		out[i] = v
	}
	return out
}

// viewOf is a device's record as listed, without its presence.
func viewOf(d pairing.Device) DeviceView {
	tags := d.Tags
	if tags == nil {
		tags = []string{}
	}
	return DeviceView{ID: d.ID, Feed: d.Feed, Name: d.Name, PairedAt: d.PairedAt, RemoteAddr: d.RemoteAddr, UserAgent: d.UserAgent, Tags: tags}
}

// feeds are the feeds that have devices, in the device list's order: the choices of
// the approve and test event forms.
func (d *dashboard) feeds() []string {
	var out []string
	for _, dv := range d.a.DeviceViews("") {
		if !slices.Contains(out, dv.Feed) {
			out = append(out, dv.Feed)
		}
	}
	return out
}

type feedGroup struct {
	Name    string
	Online  int
	Devices []DeviceView
}

type devicesBody struct {
	Online   int
	Feeds    []feedGroup
	Form     pinForm
	Requests []pairing.PairRequestView // open pair requests, oldest first
	// Fleet is the filter and the bulk actions on it (fleetpage.go).
	Fleet fleetFilter
}

type pinForm struct {
	Feed    string
	Minutes int
	Replace bool
	Tags    string // as typed: comma- or space-separated
}

func (d *dashboard) devicesPage(w http.ResponseWriter, r *http.Request, s adminSession) {
	v := d.base(s, "Devices", "devices")
	v.Notice = notices[r.URL.Query().Get("notice")]
	if n := fleetNotice(r.URL.Query()); n != "" {
		v.Notice = n
	}
	d.renderDevices(w, r, http.StatusOK, v, pinForm{Minutes: int(pairing.DefaultPINTTL / time.Minute)})
}

func (d *dashboard) renderDevices(w http.ResponseWriter, r *http.Request, status int, v view, form pinForm) {
	requests, err := d.a.p.OpenPairRequests(r.Context())
	if err != nil {
		d.fail(w, err)
		return
	}
	filter, problem := pageFilter(r.URL.Query())
	if problem != "" && v.Error == "" {
		v.Error = problem
	}
	matched := d.a.Matching(filter)
	var groups []feedGroup
	for _, dv := range matched { // sorted by feed
		if len(groups) == 0 || groups[len(groups)-1].Name != dv.Feed {
			groups = append(groups, feedGroup{Name: dv.Feed})
		}
		g := &groups[len(groups)-1]
		g.Devices = append(g.Devices, dv)
		if dv.Online {
			g.Online++
		}
	}
	v.Body = devicesBody{Online: d.a.presence.OnlineCount(), Feeds: groups, Form: form, Requests: requests, Fleet: d.fleetOf(filter, len(matched))}
	d.render(w, status, "devices", v)
}

type pinBody struct {
	Code      string
	Feed      string
	ExpiresAt time.Time
	Replace   bool
	Minutes   int
	Tags      []string
}

func (d *dashboard) issuePIN(w http.ResponseWriter, r *http.Request, s adminSession) {
	a := d.a
	form := pinForm{Feed: strings.TrimSpace(r.PostForm.Get("feed")), Replace: r.PostForm.Get("replace") != "", Tags: r.PostForm.Get("tags")}
	tags, tagErr := pairing.CheckTags("tags", splitTags(form.Tags))
	minutes, err := strconv.Atoi(strings.TrimSpace(r.PostForm.Get("ttl")))
	form.Minutes = minutes
	var problem string
	switch {
	case !broker.ValidFeedID(form.Feed):
		problem = "A feed id is lower-case letters, digits and hyphens, such as lobby or floor-2."
	case err != nil || minutes < 1 || minutes > maxPINMinutes:
		problem = fmt.Sprintf("A PIN can be valid for 1 to %d minutes.", maxPINMinutes)
	case tagErr != nil:
		problem = messageOf(tagErr)
	}
	if problem != "" {
		v := d.base(s, "Devices", "devices")
		v.Error = problem
		d.renderDevices(w, r, http.StatusBadRequest, v, form)
		return
	}
	pin, err := a.p.IssueTaggedPIN(r.Context(), form.Feed, time.Duration(minutes)*time.Minute, form.Replace, tags)
	if err != nil {
		d.fail(w, err)
		return
	}
	detail := "expires " + pin.ExpiresAt.Format(time.RFC3339) + ", from the dashboard"
	if len(pin.Tags) > 0 {
		detail += ", tags " + tagList(pin.Tags)
	}
	if form.Replace {
		detail += ", replaces the feed's devices"
	}
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditPinIssued), Feed: form.Feed, RemoteAddr: a.addr.Of(r), Detail: detail})
	v := d.base(s, "Pairing PIN", "devices")
	v.Body = pinBody{Code: pin.PIN, Feed: pin.Feed, ExpiresAt: pin.ExpiresAt, Replace: pin.Replace, Minutes: minutes, Tags: pin.Tags}
	d.render(w, http.StatusOK, "pin", v)
}

func (d *dashboard) revoke(w http.ResponseWriter, r *http.Request, _ adminSession) {
	a := d.a
	id := r.PathValue("id")
	var dev pairing.Device
	ok := false
	if recordIDRe.MatchString(id) {
		var err error
		if dev, ok, err = a.p.RevokeDevice(r.Context(), id); err != nil {
			d.fail(w, err)
			return
		}
	}
	if !ok {
		d.errorPage(w, http.StatusNotFound, "No such device", "There is no device with that id; it may have been revoked already.")
		return
	}
	remote := a.addr.Of(r)
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditDeviceRevoked), Feed: dev.Feed, DeviceID: id, RemoteAddr: remote, Detail: "revoked by an administrator in the dashboard"})
	a.log.Info("device revoked", slog.String("device_id", id), slog.String("feed", dev.Feed), slog.String("remote_addr", remote))
	http.Redirect(w, r, "/admin?notice=revoked", http.StatusSeeOther)
}
