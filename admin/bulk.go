package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// Bulk actions on a filter of devices (docs/protocol.md §6,
// #http-post-api-admin-devices-bulk): revoke, move to another feed, or tell the
// tablets to reload their app. Each device's action is audited on its own.

// MaxBulkDevices is how many devices one bulk request may touch: a filter that matches
// more is refused whole (narrow it), as is a longer explicit list.
const MaxBulkDevices = 1000

// maxBulkBody bounds a bulk request's body: 1000 device ids and the rest.
const maxBulkBody = 64 << 10

// The bulk actions.
const (
	BulkRevoke = "revoke"
	BulkMove   = "move"
	BulkReload = "reload"
)

// Outcomes of one device in a bulk answer.
const (
	OutcomeDone         = "done"
	OutcomeFailed       = "failed"
	OutcomeUnchanged    = "unchanged"     // move: it is on that feed already
	OutcomeNotConnected = "not_connected" // reload: no live socket, nothing kept for it
	OutcomeMatched      = "matched"       // dry run
)

// BulkRequest is POST /api/admin/devices/bulk's body.
type BulkRequest struct {
	Action string       `json:"action"`
	Filter DeviceFilter `json:"filter"`
	// Feed is the target of a move (only there).
	Feed string `json:"feed,omitempty"`
	// DryRun answers what would be matched, and does nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// BulkResult is one device's outcome.
type BulkResult struct {
	DeviceID string `json:"device_id"`
	Name     string `json:"name"`
	Feed     string `json:"feed"` // before the action
	Outcome  string `json:"outcome"`
	Error    string `json:"error,omitempty"`
}

// BulkResponse is the 200 answer of a bulk request.
type BulkResponse struct {
	Action  string       `json:"action"`
	DryRun  bool         `json:"dry_run"`
	Matched int          `json:"matched"`
	Done    int          `json:"done"`
	Failed  int          `json:"failed"`
	Results []BulkResult `json:"results"`
}

// check validates the request, with messages fit for the API.
func (req *BulkRequest) check() error {
	switch req.Action {
	case BulkRevoke, BulkReload:
		if req.Feed != "" {
			return httpx.Errorf(httpx.CodeInvalidRequest, `"feed" is the target of a move: give it with "action":"move" only`)
		}
	case BulkMove:
		if !broker.ValidFeedID(req.Feed) {
			return httpx.Errorf(httpx.CodeInvalidRequest, `a move needs "feed", the feed id to move to, such as "lobby"`)
		}
	default:
		return httpx.Errorf(httpx.CodeInvalidRequest, `"action" must be revoke, move or reload`)
	}
	if err := req.Filter.check(); err != nil {
		return err
	}
	if req.Filter.empty() && !req.Filter.All {
		return httpx.Errorf(httpx.CodeInvalidRequest, `the filter is empty: give "feed", "tag", "state" or "devices", or "all":true to act on every device`)
	}
	return nil
}

func (a *Admin) handleBulk(w http.ResponseWriter, r *http.Request) error {
	body, err := httpx.ReadJSONBody(w, r, maxBulkBody)
	if err != nil {
		return err
	}
	var req BulkRequest
	if err := httpx.StrictJSON(body, &req); err != nil {
		return err
	}
	resp, err := a.Bulk(r.Context(), req, a.addr.Of(r), viaAPI)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// Bulk runs req for an administrator at remote (via names the API or the dashboard in
// the audit records). A bad request, or a filter matching more than MaxBulkDevices, is
// 400 invalid_request and nothing is done.
func (a *Admin) Bulk(ctx context.Context, req BulkRequest, remote, via string) (BulkResponse, error) {
	if err := req.check(); err != nil {
		return BulkResponse{}, err
	}
	matched := a.Matching(req.Filter)
	if len(matched) > MaxBulkDevices {
		return BulkResponse{}, httpx.Errorf(httpx.CodeInvalidRequest,
			fmt.Sprintf("the filter matches %d devices; one request may touch at most %d: narrow it", len(matched), MaxBulkDevices))
	}
	resp := BulkResponse{Action: req.Action, DryRun: req.DryRun, Matched: len(matched), Results: make([]BulkResult, 0, len(matched))}
	for _, id := range req.Filter.Devices { // named but not registered
		if !slices.ContainsFunc(matched, func(v DeviceView) bool { return v.ID == id }) && !slices.ContainsFunc(resp.Results, func(b BulkResult) bool { return b.DeviceID == id }) {
			if _, ok := a.p.Devices().Device(id); !ok {
				resp.Results = append(resp.Results, BulkResult{DeviceID: id, Outcome: OutcomeFailed, Error: "no device with that id"})
			}
		}
	}
	var reload []int // indexes into resp.Results of the devices to signal
	for _, v := range matched {
		res := BulkResult{DeviceID: v.ID, Name: v.Name, Feed: v.Feed, Outcome: OutcomeDone}
		switch {
		case req.DryRun:
			res.Outcome = OutcomeMatched
		case req.Action == BulkRevoke:
			a.bulkRevoke(ctx, &res, remote, via)
		case req.Action == BulkMove:
			a.bulkMove(ctx, &res, req.Feed, remote, via)
		case req.Action == BulkReload:
			if online, _ := a.presence.Presence(v.ID); !online {
				res.Outcome = OutcomeNotConnected
			} else {
				reload = append(reload, len(resp.Results))
			}
		}
		resp.Results = append(resp.Results, res)
	}
	if len(reload) > 0 {
		a.bulkReload(ctx, resp.Results, reload, remote, via)
	}
	for _, res := range resp.Results {
		switch res.Outcome {
		case OutcomeDone:
			resp.Done++
		case OutcomeFailed:
			resp.Failed++
		}
	}
	if !req.DryRun {
		a.log.Info("bulk action", slog.String("action", req.Action), slog.Int("matched", resp.Matched),
			slog.Int("done", resp.Done), slog.Int("failed", resp.Failed), slog.String("remote_addr", remote))
	}
	return resp, nil
}

// failure is the message of a device's failed action: the API's own message, or
// "unavailable" for a store that could not be reached (never an internal error text).
func failure(err error) string {
	if he := (*httpx.Error)(nil); errors.As(err, &he) {
		return he.Message
	}
	if errors.Is(err, broker.ErrUnavailable) {
		return "the store could not be reached: try again"
	}
	return "failed"
}

func (a *Admin) bulkRevoke(ctx context.Context, res *BulkResult, remote, via string) {
	_, ok, err := a.p.RevokeDevice(ctx, res.DeviceID)
	switch {
	case err != nil:
		res.Outcome, res.Error = OutcomeFailed, failure(err)
	case !ok:
		res.Outcome, res.Error = OutcomeFailed, "no device with that id (revoked a moment ago?)"
	default:
		a.audit(ctx, broker.AuditRecord{Type: string(broker.AuditDeviceRevoked), Feed: res.Feed, DeviceID: res.DeviceID, RemoteAddr: remote,
			Detail: "revoked by a bulk action in " + via})
	}
}

func (a *Admin) bulkMove(ctx context.Context, res *BulkResult, feed, remote, via string) {
	if res.Feed == feed {
		res.Outcome = OutcomeUnchanged
		return
	}
	before, _, found, err := a.p.UpdateDevice(ctx, res.DeviceID, pairing.DeviceChange{Feed: feed})
	switch {
	case err != nil:
		res.Outcome, res.Error = OutcomeFailed, failure(err)
	case !found:
		res.Outcome, res.Error = OutcomeFailed, "no device with that id (revoked a moment ago?)"
	default:
		a.audit(ctx, broker.AuditRecord{Type: string(broker.AuditDeviceMoved), Feed: feed, DeviceID: res.DeviceID, RemoteAddr: remote,
			Detail: "moved from " + before.Feed + " to " + feed + " by a bulk action in " + via})
	}
}

// bulkReload signals the connected devices at idx in one message to every instance.
func (a *Admin) bulkReload(ctx context.Context, results []BulkResult, idx []int, remote, via string) {
	ids := make([]string, len(idx))
	for i, j := range idx {
		ids[i] = results[j].DeviceID
	}
	if err := a.b.SignalReload(ids); err != nil {
		for _, j := range idx {
			results[j].Outcome, results[j].Error = OutcomeFailed, failure(err)
		}
		return
	}
	for _, j := range idx {
		a.audit(ctx, broker.AuditRecord{Type: string(broker.AuditDeviceReload), Feed: results[j].Feed, DeviceID: results[j].DeviceID, RemoteAddr: remote,
			Detail: "told to reload its app by a bulk action in " + via})
	}
}
