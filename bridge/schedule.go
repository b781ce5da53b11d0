package bridge

// This file owns delivering the screen schedules (docs/protocol.md §5, #ws-schedule):
// the instance's copy of every feed's schedule as a frame encoded once (fed by
// broker.Schedules' watch of the bucket), the welcome's "schedule", the live schedule
// message to every tablet of a feed whose schedule changed or was deleted, and the
// asleep state the devices list reads (shownview.go).
//
// Lock order: broker.Schedules' lock, then schedules.mu, then Bridge.mu, then
// session.mu. changed runs under the first (Subscribe says so) and sends under the
// others. Nothing that holds Bridge.mu or a session's lock calls in here.

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/schedule"
)

// schedules is the bridge's side of the screen schedules.
type schedules struct {
	br  *Bridge
	src *broker.Schedules

	mu    sync.Mutex
	gen   uint64                    // counts the changes, so a welcome can tell it missed one
	feeds map[string]feedSchedFrame // every feed with a schedule, and the deleted ones (at most maxDeletedFrames)
}

// maxDeletedFrames bounds the deleted schedules kept (for resend): past it they are
// dropped, the oldest first; a tablet welcomed before a delete and registered after
// it is the only one that needed one.
const maxDeletedFrames = broker.MaxSchedules

type feedSchedFrame struct {
	gen   uint64
	spec  *schedule.Spec // nil: deleted
	frame []byte         // the schedule message, encoded once for every tablet of the feed
}

// scheduleMsg is the schedule message of docs/protocol.md §5 (#ws-schedule).
type scheduleMsg struct {
	Type      string         `json:"type"`
	Feed      string         `json:"feed"`
	Schedule  *schedule.Spec `json:"schedule"`
	UpdatedAt *time.Time     `json:"updated_at,omitempty"`
}

// newSchedules loads the stored schedules and follows their changes.
func newSchedules(ctx context.Context, br *Bridge) (*schedules, error) {
	src, err := broker.NewSchedules(ctx, br.b)
	if err != nil {
		return nil, err
	}
	s := &schedules{br: br, src: src, feeds: map[string]feedSchedFrame{}}
	src.Subscribe(s.changed)
	return s, nil
}

// changed records one feed's new schedule (nil: deleted) and sends it to every live
// tablet of the feed on this instance at once. Sends never block: a full queue closes
// that tablet (1013), as for events.
func (s *schedules) changed(feed string, fs *broker.FeedSchedule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	m := scheduleMsg{Type: "schedule", Feed: feed}
	if fs != nil {
		spec, at := fs.Schedule, fs.UpdatedAt.UTC()
		m.Schedule, m.UpdatedAt = &spec, &at
	}
	p, _ := json.Marshal(m)
	f := feedSchedFrame{gen: s.gen, spec: m.Schedule, frame: textFrame(p)}
	s.feeds[feed] = f
	if fs == nil {
		s.dropDeletedLocked()
	}
	for _, sess := range s.br.liveSessions() {
		if sess.feed == feed {
			sess.send(f.frame)
		}
	}
}

// dropDeletedLocked drops the oldest deleted schedules past maxDeletedFrames.
func (s *schedules) dropDeletedLocked() {
	var deleted []string
	for feed, f := range s.feeds {
		if f.spec == nil {
			deleted = append(deleted, feed)
		}
	}
	if len(deleted) <= maxDeletedFrames {
		return
	}
	slices.SortFunc(deleted, func(a, b string) int { return cmp.Compare(s.feeds[a].gen, s.feeds[b].gen) })
	for _, feed := range deleted[:len(deleted)-maxDeletedFrames] {
		delete(s.feeds, feed)
	}
}

// forWelcome is the welcome's "schedule" for feed (nil: none) and the generation it is
// of, for resend.
func (s *schedules) forWelcome(feed string) (*schedule.Spec, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.feeds[feed].spec, s.gen // every stored one came through changed (Subscribe)
}

// resend sends sess its feed's schedule again, after synced, if it changed since the
// welcome's (gen): between the welcome and the session's registration for live
// changes (Bridge.byDevice) a change would reach it otherwise neither way.
func (s *schedules) resend(sess *session, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.feeds[sess.feed]; ok && f.gen > gen {
		sess.send(f.frame)
	}
}

// asleep reports whether feed is scheduled asleep now.
func (s *schedules) asleep(feed string) bool { return s.src.Asleep(feed, s.br.cfg.Now()) }

// stop ends the watch.
func (s *schedules) stop() { s.src.Stop() }

// Asleep reports whether feed is scheduled asleep now (docs/protocol.md §6,
// #schedule-format): its tablets show their asleep view, its devices' state is asleep,
// and the offline alerts keep quiet for them.
func (br *Bridge) Asleep(feed string) bool { return br.schedules.asleep(feed) }
