package brokertest

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ClusterWait bounds each of the cluster's waits (for a meta leader, a stream leader, a
// node to rejoin). Elections take 4–9 s by nats-server's timers, more under -race on a
// busy machine; the waits poll and return as soon as the cluster is ready, so the bound
// costs nothing when things work.
const ClusterWait = 45 * time.Second

// Cluster is a real JetStream cluster of nats-server nodes running in the test process
// on loopback ports, for tests of kioskfeed against an external NATS cluster: R3
// streams and buckets, several kioskfeed instances, and nodes that crash and come back.
// Clients connect without credentials, to the global account.
//
// A Cluster is not safe for concurrent use: call its methods from the goroutine of the
// test that started it (Restart fails that test when the node does not rejoin).
// Clients of the cluster (brokers) may of course run anywhere.
type Cluster struct {
	// Nodes are the cluster's nodes, in the order of their names (kf-1, kf-2, ...).
	Nodes []*ClusterNode
	// Name is the cluster's name, unique per test.
	Name string

	tb     testing.TB
	routes []*url.URL
}

// ClusterNode is one nats-server of a Cluster. Its name, ports and store stay the same
// across Stop and Restart, so a restarted node rejoins as the same peer with its data.
type ClusterNode struct {
	// Name is the server name, unique in the cluster.
	Name string
	// StoreDir is the node's JetStream store, in the test's temp dir.
	StoreDir string
	// ClientPort is where clients connect (picked by the OS at the first start).
	ClientPort int
	// ClusterPort is where the other nodes route to (picked before the first start,
	// since every node's route list names it).
	ClusterPort int
	// Srv is the running server, nil while the node is stopped.
	Srv *server.Server
}

// URL is the node's client URL.
func (n *ClusterNode) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(n.ClientPort) }

// StartCluster starts an n-node JetStream cluster and returns once it has a meta leader
// that every node knows, so the first JetStream request does not stall on an election.
// Every node is stopped when the test ends. n is at least 2 (a single node is not a
// cluster: StartNATS is that); 3 is what R3 streams need.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if n < 2 {
		tb.Fatalf("StartCluster(%d): want at least 2 nodes (StartNATS runs a single server)", n)
	}
	c := &Cluster{tb: tb, Name: clusterName(tb)}
	for i, port := range freePorts(tb, n) {
		c.routes = append(c.routes, &url.URL{Scheme: "nats-route", Host: "127.0.0.1:" + strconv.Itoa(port)})
		c.Nodes = append(c.Nodes, &ClusterNode{
			Name:        fmt.Sprintf("kf-%d", i+1),
			StoreDir:    tb.TempDir(),
			ClientPort:  server.RANDOM_PORT,
			ClusterPort: port,
		})
	}
	// Cleanups run last-registered first: registered after the first TempDir, this one
	// stops the servers before their stores are removed.
	tb.Cleanup(c.stopAll)
	for i := range c.Nodes {
		c.start(i)
	}
	c.waitMeta(tb)
	return c
}

// URLs is every node's client URL, comma-separated, as KIOSKFEED_NATS_URL takes them.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// Stop shuts node i down at once, as a crash would look to its peers and clients: no
// lame-duck mode, no leadership handed over. It is a no-op on a stopped node.
func (c *Cluster) Stop(i int) {
	n := c.Nodes[i]
	if n.Srv == nil {
		return
	}
	n.Srv.Shutdown()
	n.Srv.WaitForShutdown()
	n.Srv = nil
}

// Restart starts the stopped node i again with the same name, ports and store. When a
// majority of the nodes is then running it waits until the node has rejoined: a meta
// leader exists, counts every running node as a peer, and every running node (this one
// included) follows it. With fewer nodes running there can be no leader to wait for, so
// it returns once the node accepts connections.
func (c *Cluster) Restart(i int) {
	c.tb.Helper()
	if c.Nodes[i].Srv != nil {
		c.tb.Fatalf("restart node %s: it is running", c.Nodes[i].Name)
	}
	c.start(i)
	if c.running() > len(c.Nodes)/2 {
		c.waitMeta(c.tb)
	}
}

// MetaLeader is the index of the node that leads the JetStream meta group, or -1 when
// no running node does.
func (c *Cluster) MetaLeader() int {
	for i, n := range c.Nodes {
		if n.Srv != nil && n.Srv.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

// StreamLeader is the index of the node that leads stream (in the global account, where
// the cluster's clients land), or -1 when no running node does, such as during an
// election.
func (c *Cluster) StreamLeader(stream string) int {
	for i, n := range c.Nodes {
		if n.Srv != nil && n.Srv.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// KVLeader is the index of the node that leads the stream behind KV bucket, or -1.
func (c *Cluster) KVLeader(bucket string) int { return c.StreamLeader("KV_" + bucket) }

// WaitStreamLeader waits until stream has a leader and every running node that holds a
// replica of it is current with that leader, and returns the leader's index. After it,
// stopping the leader loses nothing acknowledged: the followers have it all.
func (c *Cluster) WaitStreamLeader(tb testing.TB, stream string) int {
	tb.Helper()
	leader := -1
	waitFor(tb, ClusterWait, func() string {
		if leader = c.StreamLeader(stream); leader < 0 {
			return "no leader for stream " + stream
		}
		for _, n := range c.Nodes {
			if n.Srv != nil && n.Srv.JetStreamIsStreamAssigned(server.DEFAULT_GLOBAL_ACCOUNT, stream) &&
				!n.Srv.JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
				return fmt.Sprintf("replica of stream %s on %s is not current", stream, n.Name)
			}
		}
		return ""
	})
	return leader
}

// start runs node i's server and waits until it accepts connections.
func (c *Cluster) start(i int) {
	c.tb.Helper()
	n := c.Nodes[i]
	opts := &server.Options{
		ServerName: n.Name,
		Host:       "127.0.0.1",
		Port:       n.ClientPort,
		JetStream:  true,
		StoreDir:   n.StoreDir,
		Cluster: server.ClusterOpts{
			Name: c.Name,
			Host: "127.0.0.1",
			Port: n.ClusterPort,
		},
		Routes: c.routes,
		NoLog:  true,
		NoSigs: true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		c.tb.Fatalf("cluster node %s: %v", n.Name, err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		c.tb.Fatalf("cluster node %s did not accept connections within 10s (client port %d, cluster port %d taken?)", n.Name, n.ClientPort, n.ClusterPort)
	}
	n.Srv = s
	n.ClientPort = s.Addr().(*net.TCPAddr).Port
}

// waitMeta waits until a meta leader exists, counts every running node as a peer, and
// every running node knows it and is current with it.
func (c *Cluster) waitMeta(tb testing.TB) {
	tb.Helper()
	waitFor(tb, ClusterWait, func() string {
		li := c.MetaLeader()
		if li < 0 {
			return "no JetStream meta leader; " + c.metaState()
		}
		leader := c.Nodes[li]
		if peers, running := len(leader.Srv.JetStreamClusterPeers()), c.running(); peers != running {
			return fmt.Sprintf("meta leader %s sees %d peers, want %d", leader.Name, peers, running)
		}
		for _, n := range c.Nodes {
			if n.Srv == nil {
				continue
			}
			jsz, err := n.Srv.Jsz(nil)
			if err != nil {
				return fmt.Sprintf("jsz of %s: %v", n.Name, err)
			}
			if jsz.Meta == nil || jsz.Meta.Leader != leader.Name {
				return fmt.Sprintf("%s does not know meta leader %s yet", n.Name, leader.Name)
			}
			// Every node must know (and so have stored) the whole peer set: a node that
			// stopped while it knew only part of it comes back with a smaller quorum
			// and may never agree on a leader with the others.
			if jsz.Meta.Size != len(c.Nodes) {
				return fmt.Sprintf("%s knows a meta group of %d, want %d", n.Name, jsz.Meta.Size, len(c.Nodes))
			}
			if !n.Srv.JetStreamIsCurrent() {
				return fmt.Sprintf("%s is not current with meta leader %s", n.Name, leader.Name)
			}
		}
		return ""
	})
}

// metaState says what each node knows of the meta group, for a failure message.
func (c *Cluster) metaState() string {
	var parts []string
	for _, n := range c.Nodes {
		switch jsz, err := jszOf(n); {
		case n.Srv == nil:
			parts = append(parts, n.Name+": stopped")
		case err != nil:
			parts = append(parts, fmt.Sprintf("%s: %v", n.Name, err))
		case jsz.Meta == nil:
			parts = append(parts, n.Name+": no meta group")
		default:
			parts = append(parts, fmt.Sprintf("%s: leader %q, cluster size %d, routes %d", n.Name, jsz.Meta.Leader, jsz.Meta.Size, n.Srv.NumRoutes()))
		}
	}
	return strings.Join(parts, "; ")
}

func jszOf(n *ClusterNode) (*server.JSInfo, error) {
	if n.Srv == nil {
		return nil, nil
	}
	return n.Srv.Jsz(nil)
}

func (c *Cluster) running() int {
	k := 0
	for _, n := range c.Nodes {
		if n.Srv != nil {
			k++
		}
	}
	return k
}

func (c *Cluster) stopAll() {
	for i := range c.Nodes {
		c.Stop(i)
	}
}

// waitFor polls cond, which says what it still waits for ("" when done), until it is
// done or d passes, then fails naming the last thing it waited for.
func waitFor(tb testing.TB, d time.Duration, cond func() string) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		missing := cond()
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("cluster not ready within %v: %s", d, missing)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago: all n are
// held open together, so none is returned twice.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("pick a free port: %v", err)
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// clusterName is unique per test, so that two clusters (of parallel tests or packages)
// that somehow reached each other's ports would refuse to merge.
func clusterName(tb testing.TB) string {
	var b strings.Builder
	for _, r := range tb.Name() {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return fmt.Sprintf("kf-%s-%d", b.String(), time.Now().UnixNano()%1e6)
}
