package broker_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// BenchmarkHTTPPublish measures POST /api/feeds/{feed}/events end to end over loopback:
// key check, body decode, JetStream publish with Nats-Msg-Id and its acknowledgement.
// "new" publishes a fresh id each time; "duplicate" repeats one id (answered from the
// dedup window, nothing stored). sync=always is the embedded default (fsync per write).
// "serial" is one producer waiting for each answer (latency); "parallel" is 16 producers
// at once (throughput).
func BenchmarkHTTPPublish(b *testing.B) {
	for _, sync := range []bool{false, true} {
		for _, dup := range []bool{false, true} {
			for _, parallel := range []bool{false, true} {
				name := fmt.Sprintf("sync=%s/%s/%s", map[bool]string{true: "always", false: "interval"}[sync],
					map[bool]string{true: "duplicate", false: "new"}[dup], map[bool]string{true: "parallel", false: "serial"}[parallel])
				b.Run(name, func(b *testing.B) { benchPublish(b, sync, dup, parallel) })
			}
		}
	}
}

func benchPublish(b *testing.B, sync, dup, parallel bool) {
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
	var n atomic.Int64
	post := func() error {
		id := "fixed"
		if !dup {
			id = fmt.Sprintf("e-%d", n.Add(1))
		}
		req, _ := http.NewRequest("POST", url, strings.NewReader(`{"id":"`+id+`","kind":"item","data":{"text":"Now serving 4711","desk":3}}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		for b.Loop() {
			if err := post(); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism(8) // 8 × GOMAXPROCS(2) = 16 producers
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := post(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
