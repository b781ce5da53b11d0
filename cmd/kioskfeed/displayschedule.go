package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/kioskfeed/kioskfeed/schedule"
)

// scheduleLine is what kioskfeed display prints of its feed's screen schedule (the
// welcome's, and each schedule message, docs/protocol.md #ws-schedule): whether the
// display is awake or asleep at now, and until when, in the schedule's zone. A terminal
// does not go dark; it says so.
func scheduleLine(raw json.RawMessage, now time.Time) string {
	if raw == nil {
		return "-- schedule: none, always awake --"
	}
	var spec schedule.Spec
	if json.Unmarshal(raw, &spec) != nil {
		return "-- schedule: unreadable --"
	}
	s, err := schedule.Parse(spec)
	if err != nil {
		return "-- schedule: " + strconv.Quote(err.Error()) + " --"
	}
	state := "awake"
	if !s.Awake(now) {
		state = "asleep"
	}
	next := s.Next(now)
	if next.IsZero() {
		return fmt.Sprintf("-- schedule (%s): %s, no change within a week --", spec.TimeZone, state)
	}
	return fmt.Sprintf("-- schedule (%s): %s until %s --", spec.TimeZone, state, next.In(s.Location()).Format("Mon 2006-01-02 15:04 MST"))
}
