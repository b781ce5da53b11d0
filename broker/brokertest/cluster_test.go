package brokertest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestMain fails the package if a test leaves a goroutine running: a Cluster must stop
// every node it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStartClusterHasMetaLeader(t *testing.T) {
	start := time.Now()
	c := brokertest.StartCluster(t, 3)
	t.Logf("3-node cluster ready in %v", time.Since(start).Round(time.Millisecond))

	if got := len(c.Nodes); got != 3 {
		t.Fatalf("nodes = %d, want 3", got)
	}
	leader := c.MetaLeader()
	if leader < 0 {
		t.Fatal("no meta leader after StartCluster")
	}
	names, dirs, ports := map[string]bool{}, map[string]bool{}, map[int]bool{}
	for _, n := range c.Nodes {
		if n.Srv == nil {
			t.Fatalf("node %s not running", n.Name)
		}
		jsz, err := n.Srv.Jsz(nil)
		if err != nil {
			t.Fatal(err)
		}
		if jsz.Meta == nil || jsz.Meta.Leader != c.Nodes[leader].Name {
			t.Errorf("node %s: meta leader %v, want %s", n.Name, jsz.Meta, c.Nodes[leader].Name)
		}
		if got := n.Srv.NumRoutes(); got < 2 {
			t.Errorf("node %s: %d routes, want at least one to each of 2 peers", n.Name, got)
		}
		names[n.Name], dirs[n.StoreDir] = true, true
		ports[n.ClientPort], ports[n.ClusterPort] = true, true
	}
	if len(names) != 3 || len(dirs) != 3 || len(ports) != 6 {
		t.Errorf("names %v, store dirs %v, ports %v: want each unique", names, dirs, ports)
	}
	if urls := strings.Split(c.URLs(), ","); len(urls) != 3 {
		t.Errorf("URLs() = %q, want 3 comma-separated URLs", c.URLs())
	}
	if got := c.StreamLeader("NONE"); got != -1 {
		t.Errorf("StreamLeader(missing stream) = %d, want -1", got)
	}

	// Any node answers JetStream at once: the first API call does not stall.
	for _, n := range c.Nodes {
		nc := connect(t, n.URL())
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err != nil {
			t.Fatalf("account info through %s: %v", n.Name, err)
		}
		nc.Close()
	}

	// KVLeader finds the leader of the stream behind a bucket.
	nc := connect(t, c.URLs())
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b", Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if got, want := c.KVLeader("b"), c.WaitStreamLeader(t, "KV_b"); got != want || got < 0 {
		t.Errorf("KVLeader(b) = %d, want %d (the leader of KV_b)", got, want)
	}
}

// TestClusterR3StreamSurvivesLeaderLoss stops a stream's leader, checks that a new one
// takes over with every acknowledged message, then restarts the old leader and checks
// that it rejoined by making the cluster depend on it.
func TestClusterR3StreamSurvivesLeaderLoss(t *testing.T) {
	start := time.Now()
	c := brokertest.StartCluster(t, 3)
	nc := connect(t, c.URLs())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	t.Logf("cluster up in %v", time.Since(start))
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stream created at %v", time.Since(start))
	if _, err := js.Publish(ctx, "t.1", []byte("one"), jetstream.WithMsgID("1")); err != nil {
		t.Fatalf("publish before the leader stops: %v", err)
	}
	first := c.WaitStreamLeader(t, "T")
	t.Logf("cluster and stream ready in %v; stream leader %s", time.Since(start).Round(time.Millisecond), c.Nodes[first].Name)

	stopped := time.Now()
	c.Stop(first)
	if got := c.StreamLeader("T"); got == first {
		t.Fatalf("StreamLeader = stopped node %d", got)
	}
	// Publishes fail until a new leader is elected; the same message id makes retries safe.
	publishUntilAcked(t, ctx, js, "t.2", "two", "2")
	second := c.WaitStreamLeader(t, "T")
	t.Logf("new leader %s after %v", c.Nodes[second].Name, time.Since(stopped).Round(time.Millisecond))
	if second == first {
		t.Fatalf("stream leader is still the stopped node %d", first)
	}
	wantMsgs(t, ctx, s, "one", "two")

	c.Restart(first)
	if c.Nodes[first].Srv == nil {
		t.Fatal("restarted node not running")
	}
	if c.MetaLeader() < 0 {
		t.Fatal("no meta leader after Restart")
	}
	// The restarted node has caught up once, with the second leader gone, the stream
	// still has a quorum and every message: it can only be the restarted node's doing.
	c.WaitStreamLeader(t, "T")
	c.Stop(second)
	publishUntilAcked(t, ctx, js, "t.3", "three", "3")
	third := c.WaitStreamLeader(t, "T")
	if third == second {
		t.Fatalf("stream leader is still the stopped node %d", second)
	}
	wantMsgs(t, ctx, s, "one", "two", "three")
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}

func connect(tb testing.TB, urls string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

func publishUntilAcked(tb testing.TB, ctx context.Context, js jetstream.JetStream, subject, data, id string) {
	tb.Helper()
	var last error
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.Publish(pctx, subject, []byte(data), jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("publish %s never acknowledged: %v", id, last)
}

func wantMsgs(tb testing.TB, ctx context.Context, s jetstream.Stream, want ...string) {
	tb.Helper()
	var got []string
	for seq := uint64(1); ; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			tb.Fatalf("get message %d: %v", seq, err)
		}
		got = append(got, string(m.Data))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		tb.Fatalf("stream holds %q, want %q", got, want)
	}
}
