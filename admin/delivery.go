package admin

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// Proof of display, as the admin side reads it (docs/protocol.md §6): the device list's
// shown_seq, shown_at, lag and state, and GET /api/feeds/{feed}/delivery?seq=N, which
// tells a producer which of a feed's screens have shown an event.

// Delivery is what the admin side needs to know of what tablets have shown. It is
// declared here and satisfied by *bridge.Bridge, the Presence that cmd/kioskfeed passes
// to New (admin finds it there); a Presence that is not a Delivery knows of nothing
// shown.
type Delivery interface {
	// DeviceShown reports a device's newest shown seq and when it came (zero if never),
	// how many of its feed's events came after it (lag), and its state: live, behind,
	// stale, offline or asleep (#device-state).
	DeviceShown(deviceID, feed string) (seq uint64, at time.Time, lag int, state string)
}

// Device states without a Delivery: by presence alone.
const (
	stateLive    = "live"
	stateOffline = "offline"
)

// shownOf fills v's proof-of-display fields.
func (a *Admin) shownOf(v *DeviceView) {
	d, ok := a.presence.(Delivery)
	if !ok {
		v.State = stateOffline
		if v.Online {
			v.State = stateLive
		}
		return
	}
	seq, at, lag, state := d.DeviceShown(v.ID, v.Feed)
	v.ShownSeq, v.Lag, v.State = seq, lag, state
	if !at.IsZero() {
		v.ShownAt = &at
	}
}

// deliveryDevice is one device in a delivery answer.
type deliveryDevice struct {
	ID       string     `json:"device_id"`
	Name     string     `json:"name"`
	ShownSeq uint64     `json:"shown_seq"`
	ShownAt  *time.Time `json:"shown_at"`
	State    string     `json:"state"`
	LastSeen *time.Time `json:"last_seen"`
}

type deliveryAnswer struct {
	Feed     string           `json:"feed"`
	Seq      uint64           `json:"seq"`
	Shown    []deliveryDevice `json:"shown"`
	NotShown []deliveryDevice `json:"not_shown"`
}

func (a *Admin) registerDelivery(mux *http.ServeMux) {
	mux.Handle("GET /api/feeds/{feed}/delivery", httpx.HandlerFunc(a.handleDelivery))
}

// handleDelivery answers which of the feed's devices have shown seq or a later event
// (shown_seq >= seq) and which have not. A feed is any valid feed id: one without
// devices answers two empty lists.
func (a *Admin) handleDelivery(w http.ResponseWriter, r *http.Request) error {
	feed := r.PathValue("feed")
	if _, err := a.feedReader(r, feed); err != nil {
		return err // reading is not audited
	}
	if !broker.ValidFeedID(feed) {
		return httpx.Errorf(httpx.CodeInvalidRequest, "feed id must match ^[a-z0-9][a-z0-9-]{0,62}$")
	}
	raw := r.URL.Query().Get("seq")
	seq, err := strconv.ParseUint(raw, 10, 63)
	if err != nil || seq == 0 || raw[0] == '+' {
		return httpx.Errorf(httpx.CodeInvalidRequest, `"seq" must be a positive integer: the seq the publish answered`)
	}
	out := deliveryAnswer{Feed: feed, Seq: seq, Shown: []deliveryDevice{}, NotShown: []deliveryDevice{}}
	for _, v := range a.DeviceViews(feed) {
		d := deliveryDevice{ID: v.ID, Name: v.Name, ShownSeq: v.ShownSeq, ShownAt: v.ShownAt, State: v.State, LastSeen: v.LastSeen}
		if v.ShownSeq >= seq {
			out.Shown = append(out.Shown, d)
		} else {
			out.NotShown = append(out.NotShown, d)
		}
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// feedReader lets a producer key that may publish to feed, or an administrator, read
// the feed's delivery. Bad producer keys count against the address's allowance of bad
// admin bearer tokens (docs/protocol.md §10), and are refused before the lookup once it
// is used up.
func (a *Admin) feedReader(r *http.Request, feed string) (actor string, err error) {
	tok := httpx.Bearer(r)
	if !strings.HasPrefix(tok, "kfp.") {
		return a.AuthorizeAdmin(r)
	}
	remote := a.addr.Of(r)
	if blocked, wait := a.bearerFails.Blocked(remote); blocked {
		return "", httpx.RateLimited(wait)
	}
	key, ok := a.b.AuthenticateProducer(r.Context(), tok)
	if !ok {
		a.bearerFails.Allow(remote)
		return "", &httpx.Error{Code: httpx.CodeInvalidToken, Message: "unknown or deleted producer key"}
	}
	if !key.Allows(feed) {
		a.b.Audit(broker.AuditRecord{Type: string(broker.AuditProducerRefused), Feed: feed, RemoteAddr: remote,
			Actor: broker.ProducerKeyActor(key.ID), Detail: "delivery of a feed the key may not publish to"})
		return "", httpx.Errorf(httpx.CodeForbidden, "this producer key may not read that feed")
	}
	return broker.ProducerKeyActor(key.ID), nil
}
