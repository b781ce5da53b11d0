package pairing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// Tags are an administrator's labels for devices (floor-2, reception), kept in the
// device record, so that a fleet can be filtered and acted on in bulk
// (docs/protocol.md §6, #device-tags). They are set with a PIN or an approval and
// edited later; a device's feed can be changed too (a move), keeping its key.

// Bounds of a device's tags (docs/protocol.md §10).
const (
	// MaxTags is how many tags one device may carry.
	MaxTags = 8
	// MaxTagLen is a tag's length in bytes (ASCII only).
	MaxTagLen = 32
)

// tagRe is a tag's form: lower-case ASCII letters and digits, then also '-', '_', '.'.
var tagRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)

// ValidTag reports whether s is a tag as stored (after CheckTags' folding).
func ValidTag(s string) bool { return tagRe.MatchString(s) }

// CheckTags cleans a list of tags: each is trimmed and lower-cased, duplicates are
// folded into one, and the list is sorted. A tag of another form, or more than MaxTags
// distinct tags, is 400 invalid_request naming the problem. An empty list is nil.
func CheckTags(field string, tags []string) ([]string, error) {
	if len(tags) > 4*MaxTags { // before any work: a list this long cannot fold to 8
		return nil, httpx.Errorf(httpx.CodeInvalidRequest, fmt.Sprintf("%q may hold at most %d tags", field, MaxTags))
	}
	var out []string
	for _, t := range tags {
		t = strings.ToLower(strings.TrimSpace(t))
		if !ValidTag(t) {
			if len(t) > 40 {
				t = t[:40] + "…"
			}
			return nil, httpx.Errorf(httpx.CodeInvalidRequest, fmt.Sprintf(`%q: %q is not a tag: 1 to %d of a-z, 0-9, "-", "_" and ".", starting with a letter or digit`, field, t, MaxTagLen))
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) > MaxTags {
		return nil, httpx.Errorf(httpx.CodeInvalidRequest, fmt.Sprintf("%q may hold at most %d tags", field, MaxTags))
	}
	slices.Sort(out)
	return out, nil
}

// HasTag reports whether d carries tag.
func (d Device) HasTag(tag string) bool { return slices.Contains(d.Tags, tag) }

// DeviceChange is an administrator's edit of a device: nil fields stay as they are.
type DeviceChange struct {
	Name *string
	Tags *[]string
	// Feed moves the device to another feed ("": stays). It keeps its key; its next
	// token is for the new feed, and its live socket is closed 4401 on whichever
	// instance holds it (the bridge hears it through OnMove).
	Feed string
	// movedSeq is the old feed's newest seq, recorded with a move (UpdateDevice).
	movedSeq uint64
}

// Check validates and cleans the change, with messages fit for the API.
func (c *DeviceChange) Check() error {
	if c.Name != nil {
		n, err := broker.CheckName("name", *c.Name, maxNameRunes)
		if err != nil {
			return err
		}
		c.Name = &n
	}
	if c.Tags != nil {
		t, err := CheckTags("tags", *c.Tags)
		if err != nil {
			return err
		}
		c.Tags = &t
	}
	if c.Feed != "" && !broker.ValidFeedID(c.Feed) {
		return httpx.Errorf(httpx.CodeInvalidRequest, `"feed" must be a feed id such as "lobby": lower-case letters, digits and hyphens`)
	}
	return nil
}

// errNoDevice ends an update of a device that is not registered (any more).
var errNoDevice = errors.New("no such device")

// update applies ch to device id by compare-and-set on its record, reading again when
// another instance wrote first. It returns the record before and after; found is false
// for an unknown device.
func (r *Registry) update(ctx context.Context, id string, ch DeviceChange) (before, after Device, found bool, err error) {
	for range 10 {
		e, err := r.m.KV().Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return Device{}, Device{}, false, nil
		}
		if err != nil {
			return Device{}, Device{}, false, err
		}
		if err := json.Unmarshal(e.Value(), &before); err != nil {
			return Device{}, Device{}, false, err
		}
		after = before
		after.Tags = slices.Clone(before.Tags)
		if ch.Name != nil {
			after.Name = *ch.Name
		}
		if ch.Tags != nil {
			after.Tags = *ch.Tags
		}
		if ch.Feed != "" && ch.Feed != before.Feed {
			after.Feed, after.MovedSeq = ch.Feed, ch.movedSeq
		}
		val, _ := json.Marshal(after)
		if _, err := r.m.KV().Update(ctx, id, val, e.Revision()); err != nil {
			if broker.IsKVConflict(err) {
				continue
			}
			return Device{}, Device{}, false, err
		}
		r.m.Put(id, val)
		return before, after, true, nil
	}
	return Device{}, Device{}, false, errors.New("device record too contended")
}

// OnMove registers fn to run whenever a device's feed changes on any instance (each
// instance's mirror hears it once). fn runs on the registry's watcher goroutine (or
// the writer's) and must not block.
func (r *Registry) OnMove(fn func(deviceID, from, to string)) {
	r.m.OnPut(func(id string, old Device, had bool, now Device) {
		if had && old.Feed != now.Feed {
			fn(id, old.Feed, now.Feed)
		}
	})
}

// DeviceFeed is the feed a device is registered to, from memory: what the bridge
// checks a socket it just admitted against, in case a move raced the handshake.
func (r *Registry) DeviceFeed(id string) (string, bool) {
	d, ok := r.m.Get(id)
	return d.Feed, ok
}

// UpdateDevice applies an administrator's change to device id (its name, tags or
// feed; the caller audits it under its own actor). It returns the record before and
// after and whether the device exists; a store failure is broker.ErrUnavailable.
func (a *Authority) UpdateDevice(ctx context.Context, id string, ch DeviceChange) (before, after Device, found bool, err error) {
	if err := ch.Check(); err != nil {
		return Device{}, Device{}, false, err
	}
	if !broker.ValidDeviceID(id) {
		return Device{}, Device{}, false, nil
	}
	if ch.Feed != "" {
		// Read before the move: a since up to the old feed's newest seq is that feed's.
		// (Its events stored between this read and its socket's close, within 2 s, are
		// not covered: clients that send their feed with auth need no bound.)
		if d, ok := a.devices.Device(id); ok && d.Feed != ch.Feed {
			if ch.movedSeq, err = a.b.LastSeq(ctx, d.Feed); err != nil {
				return Device{}, Device{}, false, err
			}
		}
	}
	before, after, found, err = a.devices.update(ctx, id, ch)
	if err != nil {
		return Device{}, Device{}, false, a.unavailable("update device", err)
	}
	return before, after, found, nil
}
