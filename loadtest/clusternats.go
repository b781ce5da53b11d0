package loadtest

// This file holds the NATS side of a cluster run: the body of one node of the real
// JetStream cluster the instances share ("kioskfeed loadtest nats-node", RunNATSNode),
// and the run's start of the nodes and its wait for a JetStream meta leader.

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSNodeOptions is one node of the cluster a cluster run starts.
type NATSNodeOptions struct {
	Name        string   // server name, unique in the cluster
	Port        int      // client port on 127.0.0.1
	ClusterPort int      // route port on 127.0.0.1
	Routes      []string // every node's route URL (nats-route://127.0.0.1:port), this one's too
	StoreDir    string   // its JetStream file store
}

// clusterName is the NATS cluster's name in a cluster run.
const clusterName = "kioskfeed-loadtest"

// RunNATSNode is the body of a cluster run's NATS node ("kioskfeed loadtest
// nats-node"): a nats-server with JetStream (file store) and routes to its peers, on
// loopback, without auth or TLS, until ctx ends. It is the same library version
// kioskfeed embeds, configured as deploy/nats is apart from auth.
func RunNATSNode(ctx context.Context, o NATSNodeOptions) error {
	var routes []*url.URL
	for _, r := range o.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "nats-route" || !strings.HasPrefix(u.Host, "127.0.0.1:") {
			return fmt.Errorf("nats-node: route %q: want nats-route://127.0.0.1:port", r)
		}
		routes = append(routes, u)
	}
	switch {
	case o.Name == "" || o.StoreDir == "":
		return errors.New("nats-node: a name and a store directory are needed")
	case o.Port < 1 || o.Port > 65535 || o.ClusterPort < 1 || o.ClusterPort > 65535:
		return fmt.Errorf("nats-node: ports must be 1 to 65535, not %d and %d", o.Port, o.ClusterPort)
	}
	opts := &server.Options{
		ServerName: o.Name,
		Host:       "127.0.0.1",
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		Cluster:    server.ClusterOpts{Name: clusterName, Host: "127.0.0.1", Port: o.ClusterPort},
		Routes:     routes,
		NoSigs:     true,
		NoLog:      true,
		MaxConn:    1 << 16,
	}
	if len(routes) < 2 {
		// One node is not a cluster: a clustered JetStream of one would wait for peers
		// that never come, and no meta leader would be elected.
		opts.Cluster, opts.Routes = server.ClusterOpts{}, nil
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("nats-node: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("nats-node %s: not ready within 30s", o.Name)
	}
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

// natsNode is a running node of the run's cluster.
type natsNode struct {
	name string
	port int
	c    *child
}

// startNATSCluster starts n nodes and waits until JetStream answers through them (a
// meta leader is elected), so that the first instance's stream creation does not stall.
// It returns the client URLs, comma-separated, as KIOSKFEED_NATS_URL takes them.
func (r *clusterRun) startNATSCluster(ctx context.Context, n int) (string, error) {
	ports := make([]int, n)
	routePorts := make([]int, n)
	var routes []string
	for i := range n {
		var err1, err2 error
		ports[i], err1 = freePort()
		routePorts[i], err2 = freePort()
		if err := errors.Join(err1, err2); err != nil {
			return "", err
		}
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(routePorts[i]))
	}
	var urls []string
	for i := range n {
		name := fmt.Sprintf("nats-%d", i+1)
		args := []string{"loadtest", "nats-node", "--name", name, "--port", strconv.Itoa(ports[i]),
			"--cluster-port", strconv.Itoa(routePorts[i]), "--routes", strings.Join(routes, ","),
			"--store", filepath.Join(r.dir, name)}
		c, err := startChild(name, r.opts.Exe, args, nil, filepath.Join(r.dir, name+".log"), nil)
		if err != nil {
			return "", err
		}
		r.track(c)
		r.nats = append(r.nats, &natsNode{name: name, port: ports[i], c: c})
		urls = append(urls, "nats://127.0.0.1:"+strconv.Itoa(ports[i]))
	}
	all := strings.Join(urls, ",")
	start := time.Now()
	if err := r.waitJetStream(ctx, all); err != nil {
		return "", err
	}
	r.logf("NATS cluster of %d nodes ready in %.1fs (%s)", n, time.Since(start).Seconds(), all)
	return all, nil
}

// waitJetStream polls the cluster's JetStream account info until it answers, a node
// exits, or two minutes pass (elections take 4–9 s by nats-server's timers).
func (r *clusterRun) waitJetStream(ctx context.Context, urls string) error {
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var last error
	for {
		for _, n := range r.nats {
			if err := n.c.exited(); err != nil {
				return err
			}
		}
		nc, err := nats.Connect(urls, nats.Name("loadtest-probe"), nats.Timeout(2*time.Second))
		if err == nil {
			js, jerr := jetstream.New(nc)
			if jerr == nil {
				actx, acancel := context.WithTimeout(wctx, 3*time.Second)
				_, jerr = js.AccountInfo(actx)
				acancel()
			}
			nc.Close()
			if jerr == nil {
				return nil
			}
			err = jerr
		}
		last = err
		select {
		case <-wctx.Done():
			return fmt.Errorf("NATS cluster: JetStream not ready within 2 minutes: %v", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
