package client_test

import (
	"context"
	"encoding/json"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/kioskfeed/kioskfeed/client"
)

// BenchmarkIdleClientMemory measures what an idle, connected display costs in heap
// and stack, Client.Run against the load tool's own socket loop before it used this
// package (loadtest/tablet.go's frameConn, copied below as the baseline).
// The server runs in a child process, so the figures are the clients' alone. Run with
// -benchtime=1x.
func BenchmarkIdleClientMemory(b *testing.B) {
	const n = 300
	s := startServerProcess(b)
	// A first round, not reported, makes what the server makes once (the feed's hub,
	// pools, caches), so the rounds measured compare like with like.
	idleRound(b, s, n, baselineTablet)
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context, d *client.Device, synced func())
	}{
		{"client.Run", runClientIdle},
		{"client.Conn", runConnIdle},
		{"loadtest-frameConn", baselineTablet},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				d := idleRound(b, s, n, tc.run)
				b.ReportMetric(float64(d.heap)/n, "heap-B/conn")
				b.ReportMetric(float64(d.stack)/n, "stack-B/conn")
				b.ReportMetric(float64(d.goroutines)/n, "goroutines/conn")
			}
		})
	}
}

// idleRound connects n fresh devices with run, waits until all are synced, and
// returns what the process grew by.
func idleRound(tb testing.TB, s *testServer, n int, run func(ctx context.Context, d *client.Device, synced func())) memSample {
	tb.Helper()
	devs := make([]*client.Device, n)
	for i := range devs {
		devs[i] = pairedDevice(tb, s, "mem")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var ready, done sync.WaitGroup
	before := memNow()
	for _, d := range devs {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			run(ctx, d, ready.Done)
		}()
	}
	waitGroup(tb, &ready, 60*time.Second)
	after := memNow()
	cancel()
	done.Wait()
	return memSample{after.heap - before.heap, after.stack - before.stack, after.goroutines - before.goroutines}
}

// runConnIdle is a socket of its own loop on Conn.Next, as a load tool keeps one.
func runConnIdle(ctx context.Context, d *client.Device, synced func()) {
	c, err := client.Connect(ctx, d, client.Resume{}, client.SocketOptions{})
	if err != nil {
		return
	}
	defer c.Close()
	for {
		m, err := c.Next()
		if err != nil {
			return
		}
		if m.Type == client.TypeSynced {
			synced()
		}
	}
}

// runClientIdle is a display on Client.Run that only waits.
func runClientIdle(ctx context.Context, d *client.Device, synced func()) {
	var once sync.Once
	c := &client.Client{Device: d}
	_ = c.Run(ctx, func(m client.Message) error {
		if m.Type == client.TypeSynced {
			once.Do(synced)
		}
		return nil
	})
}

type memSample struct{ heap, stack, goroutines int64 }

func memNow() memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{int64(ms.HeapInuse), int64(ms.StackInuse), int64(runtime.NumGoroutine())}
}

func waitGroup(tb testing.TB, wg *sync.WaitGroup, d time.Duration) {
	tb.Helper()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(d):
		tb.Fatalf("not every client synced within %v", d)
	}
}

// baselineTablet is loadtest/tablet.go's session before it used this package, less
// its measurements: one goroutine, a wsutil.Reader over the connection, no buffer kept.
func baselineTablet(ctx context.Context, d *client.Device, synced func()) {
	dl := ws.Dialer{Timeout: 10 * time.Second, Header: ws.HandshakeHeaderString("Origin: " + d.BaseURL + "\r\n")}
	nc, br, _, err := dl.Dial(ctx, d.WSURL())
	if err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	defer stop()
	defer nc.Close()
	var src io.Reader = nc
	if br != nil && br.Buffered() > 0 {
		early, _ := br.Peek(br.Buffered())
		src = io.MultiReader(strings.NewReader(string(early)), nc)
	}
	if br != nil {
		ws.PutReader(br)
	}
	rd := wsutil.Reader{Source: src, State: ws.StateClientSide, MaxFrameSize: 1 << 20, MaxMessageSize: 1 << 20}
	var once sync.Once
	for {
		_ = nc.SetReadDeadline(time.Now().Add(50 * time.Second))
		hdr, err := rd.NextFrame()
		if err != nil {
			return
		}
		if hdr.OpCode.IsControl() {
			payload := make([]byte, hdr.Length)
			if _, err := io.ReadFull(&rd, payload); err != nil {
				return
			}
			if hdr.OpCode == ws.OpPing {
				_ = wsutil.WriteClientMessage(nc, ws.OpPong, payload)
			}
			if hdr.OpCode == ws.OpClose {
				return
			}
			continue
		}
		raw, err := io.ReadAll(&rd)
		if err != nil {
			return
		}
		var m struct{ Type, Nonce string }
		_ = json.Unmarshal(raw, &m)
		switch m.Type {
		case "challenge":
			c := d.Credentials()
			proof, _ := d.Key.Proof("GET", d.WSURL(), m.Nonce, c.Token, time.Time{})
			msg, _ := json.Marshal(map[string]any{"type": "auth", "token": c.Token, "proof": proof, "since": 0})
			_ = wsutil.WriteClientMessage(nc, ws.OpText, msg)
		case "synced":
			once.Do(synced)
		}
	}
}
