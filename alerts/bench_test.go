package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// idleFleet is 10k paired devices, all online and live: the steady state of a
// building at work.
type idleFleet struct{ devs []Device }

func (f idleFleet) AppendDevices(dst []Device) []Device { return append(dst, f.devs...) }
func (idleFleet) Presence(string) (bool, time.Time)     { return true, time.Now() }
func (idleFleet) DisplayState(string, string) string    { return "live" }

// BenchmarkOfflineTickIdle10k measures one evaluation of the offline and behind rules
// over 10,000 idle tablets that were all seen before: what every instance spends every
// alert_offline_after/4 (at most 5 s). It makes no JetStream write.
func BenchmarkOfflineTickIdle10k(b *testing.B) {
	br := brokertest.New(b)
	fl := idleFleet{}
	for i := range 10000 {
		fl.devs = append(fl.devs, Device{ID: fmt.Sprintf("dev_%020d", i), Feed: "lobby"})
	}
	s, err := New(context.Background(), Config{Every: time.Hour}, br, fl)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Shutdown(context.Background()) }()
	for _, d := range fl.devs { // seen before: no first-seen writes in the loop
		val, _ := json.Marshal(deviceState{Device: d.ID, Feed: d.Feed, Seen: time.Now()})
		s.offline.states.Put(d.ID, val)
	}
	stop := make(chan struct{})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s.offline.tick(ctx, stop)
	}
}
