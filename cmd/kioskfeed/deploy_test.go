package main

import (
	"flag"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kioskfeed/kioskfeed/config"
)

// TestDeployExamplesParse keeps deploy/ honest: the NATS cluster configs load in
// nats-server's own parser as a 3-node JetStream cluster, and the kioskfeed cluster config
// loads and validates.
func TestDeployExamplesParse(t *testing.T) {
	files, _ := filepath.Glob("../../deploy/nats/nats-*.conf")
	if len(files) != 3 {
		t.Fatalf("deploy/nats has %d node configs, want 3", len(files))
	}
	for _, f := range files {
		opts, err := server.ProcessConfigFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !opts.JetStream || len(opts.Routes) != 3 || opts.Cluster.Name != "kioskfeed" || len(opts.Users) != 2 {
			t.Fatalf("%s: jetstream %v, %d routes, cluster %q, %d users; want a 3-node JetStream cluster with 2 users",
				f, opts.JetStream, len(opts.Routes), opts.Cluster.Name, len(opts.Users))
		}
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg, err := config.Load(fs, []string{"--config", "../../deploy/kioskfeed.yaml"}, env(nil))
	if err != nil {
		t.Fatalf("deploy/kioskfeed.yaml: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("deploy/kioskfeed.yaml: %v", err)
	}
	if cfg.Embedded() || cfg.NATSReplicas != 3 || cfg.SigningKeyFile == "" {
		t.Fatalf("deploy/kioskfeed.yaml: embedded %v, replicas %d, signing key %q; want cluster mode, R3, a shared key",
			cfg.Embedded(), cfg.NATSReplicas, cfg.SigningKeyFile)
	}
}
