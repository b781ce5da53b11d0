package broker

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
)

// SubjectReload carries the bulk "reload app" signal (docs/protocol.md #ws-reload) from
// the instance that took the admin's request to every instance, core NATS, at most
// once: each bridge tells the named devices' sockets it holds, and nothing is kept for
// a tablet that is not connected.
const SubjectReload = "kioskfeed.fleet.reload"

// reloadSignal is SubjectReload's payload.
type reloadSignal struct {
	Devices []string `json:"devices"`
}

// SignalReload asks every instance to tell the sockets of ids to reload their app. It
// returns once the NATS server has the message (a flush), or ErrUnavailable.
func (b *Broker) SignalReload(ids []string) error {
	data, _ := json.Marshal(reloadSignal{Devices: ids})
	if err := b.nc.Publish(SubjectReload, data); err != nil {
		return b.unavailable("signal reload", err)
	}
	if err := b.nc.Flush(); err != nil {
		return b.unavailable("signal reload", err)
	}
	return nil
}

// OnReload runs fn (on the NATS client's goroutine: it must not block) with the device
// ids of every reload signal, from any instance. Unsubscribe the subscription to stop.
func (b *Broker) OnReload(fn func(ids []string)) (*nats.Subscription, error) {
	sub, err := b.nc.Subscribe(SubjectReload, func(m *nats.Msg) {
		var sig reloadSignal
		if json.Unmarshal(m.Data, &sig) == nil {
			fn(sig.Devices)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to reload signals: %w", err)
	}
	return sub, nil
}
