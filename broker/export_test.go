package broker

import "time"

// ClockOffset is the last measured offset of the NATS server's clock to this machine's.
// Only tests read it: production reads the cluster clock through Now.
func (b *Broker) ClockOffset() time.Duration { return time.Duration(b.clock.offset.Load()) }
