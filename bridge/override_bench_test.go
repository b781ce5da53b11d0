package bridge_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
)

// BenchmarkOverrideFanout raises an override for a feed with N connected tablets through
// the admin API and waits until every tablet has read it: HTTP → the KV bucket → the
// bridge's watch → one frame → N queues → N sockets → N client reads, on this machine's
// two cores. Each override is cleared (and its clear read) outside the timing.
func BenchmarkOverrideFanout(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("tablets=%d", n), func(b *testing.B) {
			s := benchStack(b)
			conns := connectN(b, s, "lobby", n)
			waitAll := func(typ, id string) {
				const readers = 4
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
								if m.Type == typ && m.Str("id") == id {
									break
								}
							}
						}
					}()
				}
				wg.Wait()
			}
			for i := 0; b.Loop(); i++ {
				id := s.raise(b, fmt.Sprintf(`{"feeds":["lobby"],"title":"Drill %d"}`, i))
				waitAll("override", id)
				b.StopTimer()
				if status, _ := s.call(b, "DELETE", "/api/admin/overrides/"+id, ""); status != http.StatusNoContent {
					b.Fatalf("clear: %d", status)
				}
				waitAll("override_clear", id)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/override")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(n), "µs/tablet")
		})
	}
}
