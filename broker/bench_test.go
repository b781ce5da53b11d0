package broker_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// BenchmarkHTTPPublish measures POST /api/feeds/{feed}/events end to end over loopback:
// key check, body decode, JetStream publish with Nats-Msg-Id and its acknowledgement.
// "new" publishes a fresh id each time; "duplicate" repeats one id (answered from the
// dedup window, nothing stored). sync=always is the embedded default (fsync per write).
func BenchmarkHTTPPublish(b *testing.B) {
	for _, sync := range []bool{false, true} {
		for _, dup := range []bool{false, true} {
			name := fmt.Sprintf("sync=%v/%s", map[bool]string{true: "always", false: "interval"}[sync], map[bool]string{true: "duplicate", false: "new"}[dup])
			b.Run(name, func(b *testing.B) {
				br := brokertest.New(b, func(c *broker.Config) { c.SyncAlways = sync })
				mux := http.NewServeMux()
				broker.NewAPI(br, staticAdmin{}).Register(mux)
				srv := &http.Server{Handler: mux}
				ln := listen(b)
				go srv.Serve(ln)
				defer srv.Close()
				_, key, err := br.CreateProducerKey(ctx, "bench", []string{"lobby"})
				if err != nil {
					b.Fatal(err)
				}
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
				url := "http://" + ln.Addr().String() + "/api/feeds/lobby/events"
				b.ReportAllocs()
				b.ResetTimer()
				i := 0
				for b.Loop() {
					id := "fixed"
					if !dup {
						id = fmt.Sprintf("e-%d", i)
					}
					i++
					req, _ := http.NewRequest("POST", url, strings.NewReader(`{"id":"`+id+`","kind":"item","data":{"text":"Now serving 4711","desk":3}}`))
					req.Header.Set("Authorization", "Bearer "+key)
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
			})
		}
	}
}
