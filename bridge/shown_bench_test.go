package bridge_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// BenchmarkShownAcks: N connected tablets each send one {"type":"shown","seq":N}, as the
// PWA and the Go client write it, and the benchmark waits until the bridge has recorded
// every one (the device's newest shown seq is the one sent). One op is N acks: the
// client writes, the poller's wake-up, the frame's read and check, and the record. The
// seq alternates between the two events the tablets were sent (each socket's sync names
// the second), so each ack is news.
func BenchmarkShownAcks(b *testing.B) {
	for _, n := range []int{1000} {
		b.Run(fmt.Sprintf("tablets=%d", n), func(b *testing.B) {
			// A heartbeat longer than the run: the tablets read nothing after their sync,
			// and would not answer the server's pings.
			s := startStack(b, stackOpts{
				pair:   func(c *pairing.Config) { c.PairBurst = 1 << 20 },
				bridge: func(c *bridge.Config) { c.Heartbeat = 10 * time.Minute },
			})
			seqs := [2]uint64{s.publish(b, "lobby", "item", `{"text":"one"}`), s.publish(b, "lobby", "item", `{"text":"two"}`)}
			conns, devices := connectTablets(b, s, "lobby", n)
			var frames [2]ws.Frame
			for i, seq := range seqs {
				frames[i] = ws.NewTextFrame(fmt.Appendf(nil, `{"type":"shown","seq":%d}`, seq))
			}
			const writers = 4
			b.ReportAllocs()
			cpu0 := processCPU(b)
			iters := 0
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				iters++
				seq := seqs[i%2]
				var wg sync.WaitGroup
				for w := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := w; j < n; j += writers {
							if err := conns[j].SendFrame(frames[i%2]); err != nil {
								code, cerr := conns[j].ExpectClose(time.Second)
								b.Errorf("send shown: %v (close %d, %v)", err, code, cerr)
								return
							}
						}
					}()
				}
				wg.Wait()
				for j, d := range devices {
					for deadline := time.Now().Add(wait); ; {
						if got, _, _, _ := s.br.DeviceShown(d, "lobby"); got == seq {
							break
						}
						if time.Now().After(deadline) {
							b.Fatalf("tablet %d: shown %d not recorded within %s", j, seq, wait)
						}
						time.Sleep(50 * time.Microsecond)
					}
				}
			}
			// The whole process's CPU (server and clients, which share it) per ack.
			b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(iters*n), "cpu-ns/ack")
		})
	}
}

// BenchmarkDeviceShown: what the alert rules' behind check asks of every device each
// tick (and the devices list of each one): a connected tablet's shown record, lag and
// state.
func BenchmarkDeviceShown(b *testing.B) {
	s := startStack(b, stackOpts{bridge: func(c *bridge.Config) { c.Heartbeat = 10 * time.Minute }})
	s.publish(b, "lobby", "item", `{"text":"one"}`)
	_, devices := connectTablets(b, s, "lobby", 1)
	if _, _, _, st := s.br.DeviceShown(devices[0], "lobby"); st != bridge.StateLive {
		b.Fatalf("state %s, want live", st)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.br.DeviceShown(devices[0], "lobby")
	}
}
