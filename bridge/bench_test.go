package bridge_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// connectN pairs and connects n tablets to feed, each synced, and returns their sockets.
func connectN(b *testing.B, s *stack, feed string, n int) []*bridgetest.Conn {
	b.Helper()
	conns, _ := connectTablets(b, s, feed, n)
	return conns
}

// connectTablets is connectN that also returns each socket's device id.
func connectTablets(b *testing.B, s *stack, feed string, n int) ([]*bridgetest.Conn, []string) {
	b.Helper()
	conns := make([]*bridgetest.Conn, n)
	devices := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tab := s.pair(b, feed)
			c, err := bridgetest.Dial(bg, s.wsURL, s.origin, "")
			if err != nil {
				errs <- err
				return
			}
			if _, err := c.Handshake(tab, s.wsURL, 0, "", wait); err != nil {
				errs <- err
				return
			}
			if _, _, _, err := c.Collect(wait); err != nil {
				errs <- err
				return
			}
			conns[i], devices[i] = c, tab.DeviceID
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatalf("connect: %v", err)
	}
	b.Cleanup(func() {
		for _, c := range conns {
			_ = c.Abort()
		}
	})
	return conns, devices
}

func benchStack(b *testing.B) *stack {
	return startStack(b, stackOpts{pair: func(c *pairing.Config) { c.PairBurst = 1 << 20 }})
}

// BenchmarkFanout publishes one event to a feed with N connected tablets and waits until
// every tablet has read it: publish → JetStream → one ordered consumer → one frame →
// N queues → N sockets → N client reads, all on this machine's two cores.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("tablets=%d", n), func(b *testing.B) {
			s := benchStack(b)
			conns := connectN(b, s, "lobby", n)
			const readers = 4
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				seq := s.publish(b, "lobby", "item", fmt.Sprintf(`{"text":"Now serving %d"}`, i))
				var wg sync.WaitGroup
				for r := range readers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := r; j < len(conns); j += readers {
							for {
								m, err := conns[j].Next(wait)
								if err != nil {
									b.Errorf("tablet %d: %v", j, err)
									return
								}
								if m.Type == "event" && m.Seq() == seq {
									break
								}
							}
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(n), "µs/tablet")
		})
	}
}

// BenchmarkIdleTablets connects N authenticated, synced tablets and reports the growth of
// Go heap and stacks, and of goroutines, per tablet. Client and server share this process,
// so the figure includes the test client's own socket state (no goroutine, a small
// struct); the load tool measures the server alone, from another process.
func BenchmarkIdleTablets(b *testing.B) {
	const n = 1000
	// One measurement per run, however many iterations are asked for: each would hold
	// n more sockets open until the benchmark ends.
	s := benchStack(b)
	s.pair(b, "warm") // warm the paths that allocate once
	heap0, stack0 := memNow()
	g0 := runtime.NumGoroutine()
	connectN(b, s, "lobby", n)
	time.Sleep(500 * time.Millisecond) // let handshake goroutines exit before measuring
	heap1, stack1 := memNow()
	goroutines := runtime.NumGoroutine() - g0
	for b.Loop() {
	}
	b.ReportMetric(float64(heap1+stack1-heap0-stack0)/n, "B/tablet")
	b.ReportMetric(float64(heap1-heap0)/n, "heapB/tablet")
	b.ReportMetric(float64(stack1-stack0)/n, "stackB/tablet")
	b.ReportMetric(float64(goroutines)/n, "goroutines/tablet")
}

// memNow is the Go heap and the goroutine stacks in use, after two collections (the
// second lets stacks that shrank be counted small).
func memNow() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse
}
