package broker_test

import (
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestClockFollowsNATS: a machine whose clock is 5 minutes fast measures its offset to
// the NATS server, and Now gives the server's time.
func TestClockFollowsNATS(t *testing.T) {
	const skew = 5 * time.Minute
	b := brokertest.New(t, func(c *broker.Config) { c.Now = func() time.Time { return time.Now().Add(skew) } })
	if off := b.ClockOffset(); (off + skew).Abs() > time.Second {
		t.Fatalf("measured offset %v, want about %v", off, -skew)
	}
	if d := b.Now().Sub(time.Now()).Abs(); d > time.Second {
		t.Fatalf("Now is %v from the server's time, want within 1s", d)
	}
}
