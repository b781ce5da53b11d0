package admin

import (
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// Device tags and the device filter (docs/protocol.md §6, #device-tags): the devices
// list's ?feed=&tag=&state=, the bulk actions' filter (bulk.go), and
// PATCH /api/admin/devices/{id} to rename a device or edit its tags.

// deviceStates are the states a filter may name (delivery.go's, and asleep: screen
// schedules).
var deviceStates = []string{"live", "behind", "stale", "offline", "asleep"}

// DeviceFilter picks devices: every criterion given must hold (feed, tag, state, and
// being one of Devices). All says "every device" explicitly: a bulk action with no
// criterion is refused without it, so that a slip cannot revoke a building.
type DeviceFilter struct {
	Feed    string   `json:"feed,omitempty"`
	Tag     string   `json:"tag,omitempty"`
	State   string   `json:"state,omitempty"`
	Devices []string `json:"devices,omitempty"`
	All     bool     `json:"all,omitempty"`
}

// empty reports whether f names no criterion.
func (f DeviceFilter) empty() bool {
	return f.Feed == "" && f.Tag == "" && f.State == "" && f.Devices == nil
}

// check validates f's criteria, with messages fit for the API.
func (f *DeviceFilter) check() error {
	f.Tag = strings.ToLower(strings.TrimSpace(f.Tag))
	switch {
	case f.Feed != "" && !broker.ValidFeedID(f.Feed):
		return httpx.Errorf(httpx.CodeInvalidRequest, "feed id must match ^[a-z0-9][a-z0-9-]{0,62}$")
	case f.Tag != "" && !pairing.ValidTag(f.Tag):
		return httpx.Errorf(httpx.CodeInvalidRequest, `a tag is 1 to 32 of a-z, 0-9, "-", "_" and ".", starting with a letter or digit`)
	case f.State != "" && !slices.Contains(deviceStates, f.State):
		return httpx.Errorf(httpx.CodeInvalidRequest, `"state" must be one of live, behind, stale, offline, asleep`)
	case len(f.Devices) > MaxBulkDevices:
		return httpx.Errorf(httpx.CodeInvalidRequest, `"devices" may list at most 1000 ids`)
	case f.Devices != nil && len(f.Devices) == 0:
		return httpx.Errorf(httpx.CodeInvalidRequest, `"devices" is empty: list device ids, or leave it out`)
	case f.All && !f.empty():
		return httpx.Errorf(httpx.CodeInvalidRequest, `"all" cannot go with other criteria: give one or the other`)
	}
	for _, id := range f.Devices {
		if !broker.ValidDeviceID(id) {
			return httpx.Errorf(httpx.CodeInvalidRequest, `"devices" holds something that is not a device id`)
		}
	}
	return nil
}

// keep reports whether v passes f (an explicit list is matched by the caller).
func (f DeviceFilter) keep(v DeviceView) bool {
	return (f.Tag == "" || slices.Contains(v.Tags, f.Tag)) && (f.State == "" || v.State == f.State) &&
		(f.Devices == nil || slices.Contains(f.Devices, v.ID))
}

// Matching lists the devices f picks, in the device list's order.
func (a *Admin) Matching(f DeviceFilter) []DeviceView {
	return slices.DeleteFunc(a.DeviceViews(f.Feed), func(v DeviceView) bool { return !f.keep(v) })
}

// filterOf reads the devices list's query: ?feed=&tag=&state=.
func filterOf(r *http.Request) (DeviceFilter, error) {
	q := r.URL.Query()
	f := DeviceFilter{Feed: q.Get("feed"), Tag: q.Get("tag"), State: q.Get("state")}
	return f, f.check()
}

// deviceEdit is PATCH /api/admin/devices/{id}'s body: the fields given change.
type deviceEdit struct {
	Name *string   `json:"name"`
	Tags *[]string `json:"tags"`
}

func (a *Admin) handleEditDevice(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !broker.ValidDeviceID(id) {
		return httpx.Errorf(httpx.CodeNotFound, "no device with that id")
	}
	var req deviceEdit
	if err := httpx.ReadOptionalJSON(w, r, maxBody, &req); err != nil {
		return err
	}
	if req.Name == nil && req.Tags == nil {
		return httpx.Errorf(httpx.CodeInvalidRequest, `give "name", "tags" or both`)
	}
	v, err := a.EditDevice(r, id, pairing.DeviceChange{Name: req.Name, Tags: req.Tags}, viaAPI)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, v)
	return nil
}

// EditDevice renames a device or sets its tags for an administrator (via names the
// API or the dashboard in the audit record) and returns it as listed.
func (a *Admin) EditDevice(r *http.Request, id string, ch pairing.DeviceChange, via string) (DeviceView, error) {
	before, after, found, err := a.p.UpdateDevice(r.Context(), id, ch)
	if err != nil {
		return DeviceView{}, err
	}
	if !found {
		return DeviceView{}, httpx.Errorf(httpx.CodeNotFound, "no device with that id")
	}
	var changed []string
	if after.Name != before.Name {
		changed = append(changed, "name")
	}
	if !slices.Equal(after.Tags, before.Tags) {
		changed = append(changed, "tags "+tagList(after.Tags))
	}
	if len(changed) > 0 {
		remote := a.addr.Of(r)
		a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditDeviceUpdated), Feed: after.Feed, DeviceID: id, RemoteAddr: remote,
			Detail: "changed in " + via + ": " + strings.Join(changed, ", ")})
		a.log.Info("device updated", slog.String("device_id", id), slog.String("remote_addr", remote))
	}
	for _, v := range a.DeviceViews(after.Feed) {
		if v.ID == id {
			return v, nil
		}
	}
	return viewOf(after), nil // revoked a moment ago
}

// tagList shows tags in an audit detail: "(none)" for none.
func tagList(tags []string) string {
	if len(tags) == 0 {
		return "(none)"
	}
	return strings.Join(tags, ",")
}
