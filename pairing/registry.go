package pairing

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
)

// BucketDevices holds one record per paired device, keyed by device id. Deleting a key
// is revoking the device: every instance's mirror sees it at once.
const BucketDevices = "kioskfeed_devices"

// Device is a paired tablet, bound to the key whose thumbprint is JKT.
type Device struct {
	ID         string    `json:"device_id"`
	Feed       string    `json:"feed"`
	Name       string    `json:"name"`
	JKT        string    `json:"jkt"`
	PairedAt   time.Time `json:"paired_at"`
	UserAgent  string    `json:"user_agent"`
	RemoteAddr string    `json:"remote_addr"`
	// Tags are the administrator's labels (tags.go): at most MaxTags, sorted.
	Tags []string `json:"tags,omitempty"`
	// MovedSeq is the newest seq of the feed the device was last moved from, at the
	// move (tags.go): the bridge resets a tablet whose since is not past it.
	MovedSeq uint64 `json:"moved_seq,omitempty"`
}

// newDeviceID makes dev_ plus 20 base32 characters: 100 random bits (docs/protocol.md §0).
func newDeviceID() string { return broker.NewID("dev_") }

// Registry is the device registry: the devices bucket, mirrored in memory so that a
// handshake costs no KV round trip.
type Registry struct {
	m   *broker.Mirror[Device]
	log *slog.Logger
}

func newRegistry(ctx context.Context, b *broker.Broker, log *slog.Logger) (*Registry, error) {
	kv, err := b.Bucket(ctx, jetstream.KeyValueConfig{Bucket: BucketDevices, Description: "paired devices", History: 1})
	if err != nil {
		return nil, err
	}
	m, err := broker.NewMirror[Device](kv, log)
	if err != nil {
		return nil, err
	}
	return &Registry{m: m, log: log}, nil
}

// add registers a new device.
func (r *Registry) add(ctx context.Context, d Device) error {
	val, _ := json.Marshal(d)
	if _, err := r.m.KV().Create(ctx, d.ID, val); err != nil {
		return err
	}
	r.m.Put(d.ID, val)
	return nil
}

// Device returns a registered device from memory.
func (r *Registry) Device(id string) (Device, bool) { return r.m.Get(id) }

// current reads a device from the bucket itself: for token issuance, where a revocation
// made on another instance a moment ago must already count.
func (r *Registry) current(ctx context.Context, id string) (Device, bool, error) {
	e, err := r.m.KV().Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Device{}, false, nil
	}
	if err != nil {
		return Device{}, false, err
	}
	var d Device
	if err := json.Unmarshal(e.Value(), &d); err != nil {
		return Device{}, false, err
	}
	return d, true, nil
}

// List returns the devices of feed, or every device when feed is empty.
func (r *Registry) List(feed string) []Device {
	return r.m.All(func(d Device) bool { return feed == "" || d.Feed == feed })
}

// Each calls fn for every paired device, copying none of the list: fn runs under the
// registry's read lock and must not block or call back into the registry.
func (r *Registry) Each(fn func(Device)) {
	r.m.Each(func(_ string, d Device) { fn(d) })
}

// revoke deletes a device: its tokens stop working at once and every instance closes
// its connection. It reports whether the device existed.
func (r *Registry) revoke(ctx context.Context, id string) (bool, error) {
	if _, ok, err := r.current(ctx, id); err != nil || !ok {
		return false, err
	}
	if err := r.m.KV().Delete(ctx, id); err != nil {
		return false, err
	}
	r.m.Remove(id)
	return true, nil
}

// OnRevoke registers fn to run whenever a device is revoked on any instance (and when a
// device record disappears for any other reason). fn runs on the registry's watcher
// goroutine and must not block.
func (r *Registry) OnRevoke(fn func(deviceID, feed string)) {
	r.m.OnRemove(func(id string, d Device) { fn(id, d.Feed) })
}

func (r *Registry) stop() { r.m.Stop() }

// RevokeDevice revokes the device id for an administrator: its tokens stop working at
// once and every instance closes its connection. It returns the device as it was (from
// memory: its feed, for the audit record the caller writes) and whether it existed; a
// store failure is broker.ErrUnavailable.
func (a *Authority) RevokeDevice(ctx context.Context, id string) (Device, bool, error) {
	d, _ := a.devices.Device(id)
	ok, err := a.devices.revoke(ctx, id)
	if err != nil {
		return Device{}, false, a.unavailable("revoke device", err)
	}
	return d, ok, nil
}
