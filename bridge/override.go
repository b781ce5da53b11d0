package bridge

// This file owns delivering the emergency overrides (docs/protocol.md §5, #ws-override):
// the instance's copy of the active set (fed by broker.Overrides' watch of the log,
// which also evaluates expiry with the cluster's clock), the live override and
// override_clear frames to every tablet of a covered feed, the active ones after a
// tablet's catch-up, and the tablets' acknowledgements.
//
// Lock order: broker.Overrides' lock, then overrides.mu, then Bridge.mu, then
// session.mu. changed runs under the first (Subscribe says so) and sends under the
// others; sendActive takes overrides.mu then session.mu. Nothing that holds Bridge.mu or
// a session's lock calls in here.

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
)

// overrides is the bridge's side of the emergency overrides.
type overrides struct {
	br  *Bridge
	src *broker.Overrides

	mu     sync.Mutex
	active map[string]activeOverride // at most broker.MaxOverrides (and a race's few)
}

type activeOverride struct {
	ov    broker.Override
	frame []byte // the override message, encoded once for every tablet
}

// overrideMsg is the override message of docs/protocol.md §5 (#ws-override).
type overrideMsg struct {
	Type      string    `json:"type"`
	ID        string    `json:"id"`
	Title     string    `json:"title"`
	Body      string    `json:"body"`
	Level     string    `json:"level"`
	Feeds     []string  `json:"feeds"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

func overrideFrame(ov broker.Override) []byte {
	return jsonFrame(overrideMsg{Type: "override", ID: ov.ID, Title: ov.Title, Body: ov.Body, Level: ov.Level,
		Feeds: ov.Feeds, CreatedAt: ov.CreatedAt.UTC(), ExpiresAt: ov.ExpiresAt.UTC()})
}

func overrideClearFrame(id string) []byte {
	p, _ := json.Marshal(struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}{"override_clear", id})
	return textFrame(p)
}

// newOverrides loads the active overrides and follows their changes.
func newOverrides(ctx context.Context, br *Bridge) (*overrides, error) {
	src, err := broker.NewOverrides(ctx, br.b)
	if err != nil {
		return nil, err
	}
	o := &overrides{br: br, src: src, active: map[string]activeOverride{}}
	src.Subscribe(o.changed)
	if br.overrideShown == nil { // Config.Shown.OnOverride, when set, replaces it
		br.overrideShown = o.acked
	}
	return o, nil
}

// changed applies one change of the set and tells every live tablet of a covered feed
// (on this instance) at once. Sends never block: a full queue closes that tablet
// (1013), as for events.
func (o *overrides) changed(ov broker.Override, cleared bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var frame []byte
	if cleared {
		if _, ok := o.active[ov.ID]; !ok {
			return
		}
		delete(o.active, ov.ID)
		frame = overrideClearFrame(ov.ID)
	} else {
		if _, ok := o.active[ov.ID]; ok {
			return
		}
		a := activeOverride{ov: ov, frame: overrideFrame(ov)}
		o.active[ov.ID] = a
		frame = a.frame
	}
	for _, s := range o.br.liveSessions() {
		if ov.Covers(s.feed) {
			s.send(frame)
		}
	}
}

// idsFor lists the ids of the overrides in force for feed, for the welcome: a tablet
// forgets the kept copy of any other (it ended while the tablet was away). Never nil.
func (o *overrides) idsFor(feed string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	ids := []string{}
	now := o.br.cfg.Now()
	for id, a := range o.active {
		if a.ov.Covers(feed) && a.ov.ExpiresAt.After(now) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// sendActive sends s every active override of its feed: right after its catch-up's
// synced, so a tablet that connects (or comes back) shows what is in force. One raised
// meanwhile may reach it twice (live, and here): tablets key overrides by id. Of
// welcomed, the ids its welcome named, those that ended since get an override_clear:
// between the welcome and the session's registration for live changes (Bridge.byDevice)
// a clear would reach it otherwise neither way.
func (o *overrides) sendActive(s *session, welcomed []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.br.cfg.Now()
	for _, id := range welcomed {
		if a, ok := o.active[id]; !ok || !a.ov.ExpiresAt.After(now) {
			s.send(overrideClearFrame(id))
		}
	}
	for _, a := range o.active {
		if a.ov.Covers(s.feed) && a.ov.ExpiresAt.After(now) {
			s.send(a.frame)
		}
	}
}

// stop ends the watch and writes the acknowledgements still queued.
func (o *overrides) stop() { o.src.Stop() }

// acked is the acknowledgement hook (Bridge.overrideShown, called by shown.go): the
// tablet of deviceID sent {"type":"shown","override":id} (docs/protocol.md §5,
// #ws-shown). It runs on the tablet's reader goroutine with no lock held and never
// blocks (the write is queued, once per device and override: broker.Overrides.Ack). An
// id that names no active override of the device's feed is ignored: a clear may cross
// the tablet's ack.
func (o *overrides) acked(deviceID, id string) {
	s := o.br.session(deviceID)
	if s == nil || !broker.ValidOverrideID(id) {
		return
	}
	ov, ok := o.src.Get(id)
	if !ok || !ov.Covers(s.feed) {
		return
	}
	o.src.Ack(id, deviceID)
}
