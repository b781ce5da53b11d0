package broker

// This file holds the drains of the devices' timelines (docs/protocol.md §6,
// #device-timeline): an instance that drains writes one record for all its tablets
// instead of an offline each (WriteDrain), and the reader draws it into the records of
// the devices it held (TimelineDrains).

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// WriteDrain stores that instance drained at at: instead of an offline record per
// tablet, which a drain of thousands could not write in time, one record for all
// (Records draws it). instance is the bridge's instance id.
func (t *Timeline) WriteDrain(ctx context.Context, instance string, at time.Time) error {
	if !validInstance(instance) {
		return fmt.Errorf("timeline drain: bad instance id %q", instance)
	}
	ctx, cancel := t.b.opCtx(ctx)
	defer cancel()
	val, _ := json.Marshal(TimelineRecord{State: TimelineDrain, At: at.UTC(), By: instance})
	if _, err := t.b.js.Publish(ctx, timelineDrainPrefix+instance, val); err != nil {
		return t.b.unavailable("write the drain's timeline record", err)
	}
	return nil
}

// validInstance: an instance id is a subject token of at most 64 bytes of letters,
// digits, '-' and '_'.
func validInstance(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// addDrain puts an instance's drain into the index, in time order, the newest
// maxTimelineDrains kept.
func (t *Timeline) addDrain(inst string, data []byte) {
	var rec TimelineRecord
	if json.Unmarshal(data, &rec) != nil || rec.State != TimelineDrain || rec.By != inst || !validInstance(inst) || rec.At.IsZero() {
		return
	}
	if rec.At.Before(t.b.Now().Add(-TimelineKeep)) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	i := len(t.drains)
	for i > 0 && t.drains[i-1].At.After(rec.At) {
		i--
	}
	t.drains = slices.Insert(t.drains, i, rec)
	if n := len(t.drains) - maxTimelineDrains; n > 0 {
		t.drains = slices.Clone(t.drains[n:])
	}
}

// TimelineDrains draws the drains (oldest first) into a device's records (oldest
// first; changed in place and returned): a drain writes no offline per tablet. It
// applies to a device whose newest record at or before it is its instance's and not
// offline (the device was connected there). If the device's next record comes within
// TimelineDrainGap of the drain, the drop is counted as a flap of that record, as a
// change undone within the writer's gap is; otherwise the device is offline from the
// drain (once TimelineDrainGap has passed by now, when no record follows yet).
func TimelineDrains(recs, drains []TimelineRecord, now time.Time) []TimelineRecord {
	for _, d := range drains {
		i, _ := slices.BinarySearchFunc(recs, d.At, func(r TimelineRecord, at time.Time) int {
			if r.At.After(at) {
				return 1
			}
			return -1 // at or before: stays left of i
		})
		if i == 0 {
			continue
		}
		if prev := recs[i-1]; prev.By == "" || prev.By != d.By || prev.State == TimelineOffline {
			continue
		}
		switch {
		case i < len(recs) && recs[i].At.Sub(d.At) <= TimelineDrainGap:
			recs[i].Flaps++
		case i == len(recs) && now.Sub(d.At) <= TimelineDrainGap:
			// It may still come back.
		default:
			recs = slices.Insert(recs, i, TimelineRecord{State: TimelineOffline, At: d.At, By: d.By})
		}
	}
	return recs
}
