package broker_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// logBuf collects a broker's log lines for tests that check what it said.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// clusterBroker starts a kioskfeed broker on the cluster, with R3 streams and buckets.
func clusterBroker(tb testing.TB, c *brokertest.Cluster, mod ...func(*broker.Config)) *broker.Broker {
	tb.Helper()
	cfg := broker.Config{URL: c.URLs(), Replicas: 3, OpTimeout: 2 * time.Second, FeedMaxMsgs: 100000, StartTimeout: 30 * time.Second}
	for _, m := range mod {
		m(&cfg)
	}
	b, err := broker.New(ctx, cfg)
	if err != nil {
		tb.Fatalf("start broker on the cluster: %v", err)
	}
	tb.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

// wantReplicas checks that kioskfeed's streams and its bucket have n replicas, each on
// its own node.
func wantReplicas(tb testing.TB, b *broker.Broker, n int) {
	tb.Helper()
	for _, name := range []string{broker.StreamFeeds, broker.StreamAudit, "KV_" + broker.BucketProducerKeys} {
		var info *jetstream.StreamInfo
		brokertest.Eventually(tb, 20*time.Second, name+" has all its replicas", func() bool {
			s, err := b.JetStream().Stream(ctx, name)
			if err != nil {
				return false
			}
			info, err = s.Info(ctx)
			return err == nil && info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) == n-1
		})
		if info.Config.Replicas != n {
			tb.Errorf("stream %s: %d replicas configured, want %d", name, info.Config.Replicas, n)
		}
		peers := map[string]bool{info.Cluster.Leader: true}
		for _, r := range info.Cluster.Replicas {
			peers[r.Name] = true
		}
		if len(peers) != n {
			tb.Errorf("stream %s on nodes %v, want %d distinct nodes", name, peers, n)
		}
	}
}

// settle waits until every replica of every stream b sees (kioskfeed's streams and
// buckets) is current, so that the cluster stops in a quiet state: nats-server v2.15.2
// can leave a file store goroutine running (goleak sees it) when a node shuts down
// while a new replica is still catching up.
func settle(tb testing.TB, c *brokertest.Cluster, b *broker.Broker) {
	tb.Helper()
	names := b.JetStream().StreamNames(ctx)
	for name := range names.Name() {
		c.WaitStreamLeader(tb, name)
	}
	if err := names.Err(); err != nil {
		tb.Fatalf("list streams: %v", err)
	}
}

// attempt is one publish of the failover test.
type attempt struct {
	id  string
	res broker.PublishResult
	err error
}

// publisher publishes numbered item events with its own id prefix until stopped, the
// way a producer that retries with the same id would, and records every outcome.
type publisher struct {
	b      *broker.Broker
	prefix string

	mu       sync.Mutex
	attempts []attempt
	acked    int
}

func (p *publisher) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
		id := fmt.Sprintf("%s-%04d", p.prefix, i)
		res, err := p.b.Publish(ctx, "lobby", broker.EventInput{ID: id, Kind: broker.KindItem, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
		p.mu.Lock()
		p.attempts = append(p.attempts, attempt{id: id, res: res, err: err})
		if err == nil {
			p.acked++
		}
		p.mu.Unlock()
	}
}

func (p *publisher) ackCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked
}

// TestClusterBrokersThroughStreamLeaderLoss runs two kioskfeed instances on a 3-node
// cluster: their streams and bucket are R3, each reads what the other wrote, and when
// the node leading FEEDS dies while both publish, every acknowledged event is kept
// exactly once, the failed publishes fail as ErrUnavailable, and a live follower
// carries on.
func TestClusterBrokersThroughStreamLeaderLoss(t *testing.T) {
	start := time.Now()
	c := brokertest.StartCluster(t, 3)
	b1 := clusterBroker(t, c)
	b2 := clusterBroker(t, c)
	t.Logf("cluster and two brokers up in %v", time.Since(start).Round(time.Millisecond))
	wantReplicas(t, b1, 3)

	// Each instance reads what the other wrote.
	r1 := publish(t, b1, "lobby", "state", "from-b1", `{"title":"one"}`)
	var (
		h1   []broker.Event
		herr error
	)
	// Polled: on a loaded machine a replica may answer "unavailable", or not hold the
	// event yet, for a moment after the cluster came up.
	deadline := time.Now().Add(10 * time.Second)
	for h1, herr = b2.History(ctx, "lobby", 0); herr != nil || len(h1) != 1 || h1[0].ID != "from-b1"; h1, herr = b2.History(ctx, "lobby", 0) {
		if time.Now().After(deadline) {
			t.Fatalf("b2 history = %+v, %v; want b1's event", h1, herr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r2 := publish(t, b2, "lobby", "state", "from-b2", `{"title":"two"}`)
	if st, err := b1.State(ctx, "lobby"); err != nil || st.Seq != r2.Seq || len(st.Events) != 1 || st.Events[0].ID != "from-b2" {
		t.Fatalf("b1 state = %+v, %v; want b2's state event at %d", st, err, r2.Seq)
	}
	_, key, err := b1.CreateProducerKey(ctx, "shared", []string{"lobby"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b2.AuthenticateProducer(ctx, key); !ok {
		t.Fatal("a producer key made on b1 is refused by b2")
	}

	// A live follower on b2, as the bridge keeps one per feed for its tablets.
	var followMu sync.Mutex
	followed := map[string]int{}
	stopFollow, err := b2.Follow("lobby", r1.Seq, func(ev broker.Event) {
		followMu.Lock()
		followed[ev.ID]++
		followMu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stopFollow()

	pubs := []*publisher{{b: b1, prefix: "b1"}, {b: b2, prefix: "b2"}}
	stop := make(chan struct{})
	var dones []chan struct{}
	for _, p := range pubs {
		done := make(chan struct{})
		dones = append(dones, done)
		go p.run(stop, done)
	}
	stopPublishers := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		for _, d := range dones {
			<-d
		}
	}
	defer stopPublishers()
	acked := func(n int) func() bool {
		return func() bool { return pubs[0].ackCount() >= n && pubs[1].ackCount() >= n }
	}
	brokertest.Eventually(t, 10*time.Second, "both publishers acknowledged", acked(10))

	leader := c.WaitStreamLeader(t, broker.StreamFeeds)
	stopped := time.Now()
	c.Stop(leader)
	before := max(pubs[0].ackCount(), pubs[1].ackCount())
	next := c.WaitStreamLeader(t, broker.StreamFeeds)
	t.Logf("FEEDS leader %s stopped; %s leads after %v", c.Nodes[leader].Name, c.Nodes[next].Name, time.Since(stopped).Round(time.Millisecond))
	brokertest.Eventually(t, 30*time.Second, "both publishers acknowledged again after the leader change", acked(before+20))

	// A third instance starts while a node is down: two of three are a quorum.
	b3 := clusterBroker(t, c)
	stopPublishers()

	// Failed publishes are retried with the same id, as a producer would.
	var failed int
	for _, p := range pubs {
		for i, a := range p.attempts {
			if a.err == nil {
				continue
			}
			failed++
			if !errors.Is(a.err, broker.ErrUnavailable) {
				t.Errorf("publish %s during the election: %v, want ErrUnavailable", a.id, a.err)
			}
			brokertest.Eventually(t, 20*time.Second, "retry of "+a.id+" acknowledged", func() bool {
				res, err := p.b.Publish(ctx, "lobby", broker.EventInput{ID: a.id, Kind: broker.KindItem, Data: json.RawMessage(`{}`)})
				p.attempts[i].res = res
				return err == nil
			})
		}
	}

	// Every id is in the log exactly once, at the seq its acknowledgement named. Read
	// once the log seen through b3 reaches the newest acknowledged seq: right after the
	// election a read may be served by a replica still catching up (direct gets go to
	// any replica), which holds a prefix of the log, not a different one.
	var newest uint64
	for _, p := range pubs {
		for _, a := range p.attempts {
			newest = max(newest, a.res.Seq)
		}
	}
	var h []broker.Event
	brokertest.Eventually(t, 30*time.Second, fmt.Sprintf("b3 reads the log up to seq %d", newest), func() bool {
		var err error
		h, err = b3.History(ctx, "lobby", 0)
		return err == nil && len(h) > 0 && h[len(h)-1].Seq >= newest
	})
	bySeq := map[uint64]string{}
	count := map[string]int{}
	for _, ev := range h {
		bySeq[ev.Seq] = ev.ID
		count[ev.ID]++
	}
	total := 2
	for _, p := range pubs {
		for _, a := range p.attempts {
			total++
			if count[a.id] != 1 {
				t.Errorf("event %s is in the log %d times, want exactly once", a.id, count[a.id])
			}
			if got := bySeq[a.res.Seq]; got != a.id {
				t.Errorf("publish %s acknowledged at seq %d, which holds %q", a.id, a.res.Seq, got)
			}
		}
	}
	if len(h) != total {
		t.Errorf("log holds %d events, want %d (one per id)", len(h), total)
	}
	t.Logf("%d publishes, %d failed during the election and were retried", total-2, failed)

	// The follower on b2 saw all of it, once each, through the leader change.
	brokertest.Eventually(t, 30*time.Second, "the follower saw every event", func() bool {
		followMu.Lock()
		defer followMu.Unlock()
		return len(followed) == total-1 // everything after from-b1
	})
	followMu.Lock()
	for id, n := range followed {
		if n != 1 {
			t.Errorf("follower saw %s %d times, want once", id, n)
		}
	}
	followMu.Unlock()

	c.Restart(leader)
	wantReplicas(t, b1, 3)
	settle(t, c, b1)
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}

// TestClusterScalesR1ToR3 restarts kioskfeed with nats_replicas 3 on a cluster whose
// streams it made R1: the streams and bucket are scaled up in place, with their events
// and their epoch.
func TestClusterScalesR1ToR3(t *testing.T) {
	c := brokertest.StartCluster(t, 3)
	b1, err := broker.New(ctx, broker.Config{URL: c.URLs(), Replicas: 1, OpTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	wantReplicas(t, b1, 1)
	res := publish(t, b1, "lobby", "state", "kept", `{"title":"kept"}`)
	_, key, err := b1.CreateProducerKey(ctx, "kept", []string{"lobby"})
	if err != nil {
		t.Fatal(err)
	}
	epoch := b1.Epoch()
	if err := b1.Close(ctx); err != nil {
		t.Fatal(err)
	}

	b2 := clusterBroker(t, c)
	wantReplicas(t, b2, 3)
	if b2.Epoch() != epoch {
		t.Errorf("epoch changed when scaling up: %q → %q", epoch, b2.Epoch())
	}
	if st, err := b2.State(ctx, "lobby"); err != nil || st.Seq != res.Seq {
		t.Errorf("state after scaling up = %+v, %v; want seq %d", st, err, res.Seq)
	}
	if _, ok := b2.AuthenticateProducer(ctx, key); !ok {
		t.Error("producer key lost when scaling the bucket up")
	}
	settle(t, c, b2)
}

// TestClusterBrokerWaitsForJetStream starts kioskfeed while the whole cluster is down:
// New waits, saying why, through "no server", "no JetStream leader" and "too few nodes
// for R3", and returns once the cluster is whole.
func TestClusterBrokerWaitsForJetStream(t *testing.T) {
	c := brokertest.StartCluster(t, 3)
	for i := range c.Nodes {
		c.Stop(i)
	}
	// No credentials are needed, but any in the URLs must never be logged.
	urls := strings.ReplaceAll(c.URLs(), "nats://", "nats://kf:hunter2@")
	logs := &logBuf{}
	type result struct {
		b   *broker.Broker
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	newCtx, cancelNew := context.WithCancel(ctx)
	go func() {
		b, err := broker.New(newCtx, broker.Config{URL: urls, Replicas: 3, OpTimeout: time.Second, StartTimeout: 40 * time.Second, Logger: logs.logger()})
		done <- result{b, err}
	}()
	// Whatever happens, the broker is closed before the cluster stops.
	var b *broker.Broker
	t.Cleanup(func() {
		cancelNew()
		if b == nil {
			if r := <-done; r.b != nil {
				b = r.b
			}
		}
		if b != nil {
			_ = b.Close(context.Background())
		}
	})
	returned := func() bool {
		select {
		case r := <-done:
			b = r.b
			t.Fatalf("New returned while the cluster cannot serve JetStream: %v", r.err)
		default:
		}
		return false
	}

	waiting := func(reason string) func() bool {
		return func() bool {
			returned()
			for line := range strings.Lines(logs.String()) {
				if strings.Contains(line, "waiting for NATS JetStream at nats://***@127.0.0.1:") && strings.Contains(line, reason) {
					return true
				}
			}
			return false
		}
	}
	brokertest.Eventually(t, 10*time.Second, "a line saying New waits for NATS", waiting("no servers available"))

	c.Restart(0) // one node of three: connected, but JetStream has no leader
	brokertest.Eventually(t, 20*time.Second, "a line saying New waits for JetStream", waiting("set up stream"))
	c.Restart(1) // a quorum: a meta leader, but R3 needs three nodes
	c.Restart(2)

	select {
	case r := <-done:
		b = r.b
		if r.err != nil {
			t.Fatalf("New after the cluster came up: %v", r.err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("New did not return within 40s of the cluster coming up")
	}
	elapsed := time.Since(start)
	wantReplicas(t, b, 3)
	publish(t, b, "lobby", "state", "after-wait", `{}`)

	out := logs.String()
	if strings.Contains(out, "hunter2") {
		t.Errorf("a password from the URL was logged:\n%s", out)
	}
	lines := strings.Count(out, "waiting for NATS JetStream at")
	if most := int(elapsed/(5*time.Second)) + 1; lines > most {
		t.Errorf("%d waiting lines in %v, want at most %d (one per 5s):\n%s", lines, elapsed, most, out)
	}
	if !strings.Contains(out, "connected to NATS JetStream") {
		t.Errorf("no line saying the wait is over:\n%s", out)
	}
	t.Logf("New waited %v, %d waiting lines", elapsed.Round(time.Millisecond), lines)
}

// startServer runs a standalone nats-server with JetStream on a loopback port, with
// whatever auth and TLS opts set, and stops it when the test ends.
func startServer(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.JetStream, opts.StoreDir = true, tb.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	s.Start()
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server not ready")
	}
	return s
}

// failsAtOnce checks that New gives up on cfg at once, well before its StartTimeout,
// with an error containing each of want.
func failsAtOnce(t *testing.T, cfg broker.Config, want ...string) error {
	t.Helper()
	cfg.StartTimeout = time.Minute
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = time.Second
	}
	start := time.Now()
	b, err := broker.New(ctx, cfg)
	if err == nil {
		_ = b.Close(ctx)
		t.Fatal("New succeeded, want an error")
	}
	t.Logf("New: %v", err)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("New failed after %v, want at once (a permanent error must not wait for StartTimeout)", d)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("New error = %q\nwant it to contain %q", err, w)
		}
	}
	return err
}

func TestExternalPermanentErrorsFailAtOnce(t *testing.T) {
	s := startServer(t, &server.Options{Users: []*server.User{
		{Username: "kf", Password: "right"},
		{Username: "nojs", Password: "pw", Permissions: &server.Permissions{Publish: &server.SubjectPermission{Deny: []string{"$JS.API.>"}}}},
	}})
	url := s.ClientURL()
	ok := broker.Config{URL: url, User: "kf", Password: "right", OpTimeout: time.Second}
	b, err := broker.New(ctx, ok)
	if err != nil {
		t.Fatalf("New with the right password: %v", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	badSeed := dir + "/bad.nk"
	if err := os.WriteFile(badSeed, []byte("not a seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("wrong password", func(t *testing.T) {
		cfg := ok
		cfg.Password = "wrong"
		err := failsAtOnce(t, cfg, "nats_user and nats_password")
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("error %v, want nats.ErrAuthorization", err)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Errorf("error %q shows the password", err)
		}
	})
	t.Run("user may not use JetStream", func(t *testing.T) {
		cfg := ok
		cfg.User, cfg.Password = "nojs", "pw"
		err := failsAtOnce(t, cfg, "$JS.API.>")
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("error %v, want nats.ErrPermissionViolation", err)
		}
	})
	t.Run("replicas on a single server", func(t *testing.T) {
		cfg := ok
		cfg.Replicas = 3
		failsAtOnce(t, cfg, "set nats_replicas to 1")
	})
	t.Run("missing creds file", func(t *testing.T) {
		failsAtOnce(t, broker.Config{URL: url, CredsFile: dir + "/missing.creds"}, "nats_creds_file", "missing.creds")
	})
	t.Run("unreadable nkey seed", func(t *testing.T) {
		failsAtOnce(t, broker.Config{URL: url, NKeySeedFile: badSeed}, "nats_nkey_file", "bad.nk")
	})
	t.Run("missing TLS CA", func(t *testing.T) {
		failsAtOnce(t, broker.Config{URL: url, TLSCA: dir + "/missing-ca.pem"}, "nats_tls_ca", "missing-ca.pem")
	})
	t.Run("client cert without key", func(t *testing.T) {
		failsAtOnce(t, broker.Config{URL: url, TLSCert: dir + "/c.pem"}, "nats_tls_cert and nats_tls_key")
	})
	// Last: it leaves a stream that takes kioskfeed's subjects.
	t.Run("another stream holds the subjects", func(t *testing.T) {
		nc, err := nats.Connect(url, nats.UserInfo("kf", "right"), nats.Timeout(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if err := js.DeleteStream(ctx, broker.StreamFeeds); err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"feeds.lobby.state"}}); err != nil {
			t.Fatal(err)
		}
		failsAtOnce(t, ok, "stream FEEDS", "subjects overlap", "remove it")
	})
}

func TestExternalStartTimeoutAndCancel(t *testing.T) {
	// A port nothing listens on.
	ln := listen(t)
	dead := "nats://" + ln.Addr().String()
	ln.Close()

	start := time.Now()
	_, err := broker.New(ctx, broker.Config{URL: dead, StartTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "not available within 1s (nats_start_timeout)") {
		t.Fatalf("New against a dead port = %v, want a timeout naming nats_start_timeout", err)
	}
	if d := time.Since(start); d < time.Second || d > 5*time.Second {
		t.Errorf("New gave up after %v, want about StartTimeout (1s)", d)
	}

	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(300*time.Millisecond, cancel)
	start = time.Now()
	_, err = broker.New(cctx, broker.Config{URL: dead})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("New with a cancelled ctx = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("New returned %v after ctx ended, want at once", d)
	}
}

// pki is a CA with a server certificate for 127.0.0.1 and a client certificate, as PEM
// files.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newPKI(tb testing.TB, name string) pki {
	tb.Helper()
	dir := tb.TempDir()
	write := func(file, typ string, der []byte) string {
		path := dir + "/" + file
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			tb.Fatal(err)
		}
		return path
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, []byte) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			tb.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			tb.Fatal(err)
		}
		return der, kder
	}
	sDER, sKey := leaf(2, "nats", x509.ExtKeyUsageServerAuth)
	cDER, cKey := leaf(3, "kioskfeed", x509.ExtKeyUsageClientAuth)
	return pki{
		ca:         write("ca.pem", "CERTIFICATE", caDER),
		serverCert: write("server.pem", "CERTIFICATE", sDER),
		serverKey:  write("server-key.pem", "EC PRIVATE KEY", sKey),
		clientCert: write("client.pem", "CERTIFICATE", cDER),
		clientKey:  write("client-key.pem", "EC PRIVATE KEY", cKey),
	}
}

// newNKey makes a user nkey and writes its seed to a file.
func newNKey(tb testing.TB) (pub, seedFile string) {
	tb.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		tb.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ = kp.PublicKey()
	seedFile = tb.TempDir() + "/user.nk"
	if err := os.WriteFile(seedFile, append(seed, '\n'), 0o600); err != nil {
		tb.Fatal(err)
	}
	return pub, seedFile
}

// TestExternalTLSAndNKey connects to a NATS that requires TLS with client certificates
// and authenticates users by nkey.
func TestExternalTLSAndNKey(t *testing.T) {
	p := newPKI(t, "nats")
	other := newPKI(t, "other")
	pub, seed := newNKey(t)
	_, otherSeed := newNKey(t)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p.serverCert, KeyFile: p.serverKey, CaFile: p.ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, &server.Options{TLSConfig: tc, TLS: true, TLSVerify: true, TLSTimeout: 2, Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	url := "tls://" + s.Addr().String()

	ok := broker.Config{URL: url, TLSCA: p.ca, TLSCert: p.clientCert, TLSKey: p.clientKey, NKeySeedFile: seed, OpTimeout: time.Second}
	b, err := broker.New(ctx, ok)
	if err != nil {
		t.Fatalf("New with TLS and nkey: %v", err)
	}
	publish(t, b, "lobby", "state", "over-tls", `{}`)
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("nats:// URL with TLS files", func(t *testing.T) {
		cfg := ok
		cfg.URL = "nats://" + s.Addr().String()
		b, err := broker.New(ctx, cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		_ = b.Close(ctx)
	})
	t.Run("server certificate from another CA", func(t *testing.T) {
		cfg := ok
		cfg.TLSCA = other.ca
		failsAtOnce(t, cfg, "nats_tls_ca")
	})
	t.Run("no client certificate", func(t *testing.T) {
		cfg := ok
		cfg.TLSCert, cfg.TLSKey = "", ""
		failsAtOnce(t, cfg, "nats_tls_cert")
	})
	t.Run("client certificate from another CA", func(t *testing.T) {
		cfg := ok
		cfg.TLSCert, cfg.TLSKey = other.clientCert, other.clientKey
		failsAtOnce(t, cfg, "nats_tls_cert")
	})
	t.Run("unknown nkey", func(t *testing.T) {
		cfg := ok
		cfg.NKeySeedFile = otherSeed
		err := failsAtOnce(t, cfg, "nats_nkey_file")
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("error %v, want nats.ErrAuthorization", err)
		}
	})
}
