// Package loadtest is the load tool behind "kioskfeed loadtest": it measures a real
// kioskfeed server from outside, as tablets would, and the same fan-out through
// nats-server's own WebSocket listener, on one machine, over loopback only.
//
// One run (Run) is a set of processes, so that the figures are the server's alone and
// no process runs out of files (one may hold 20,000 here):
//   - the server: "kioskfeed serve" on a fresh data directory, read from outside through
//     /proc/<pid> (memory, CPU) and /metrics (goroutines);
//   - workers ("kioskfeed loadtest worker"), each holding a share of the tablets, driven
//     by JSON lines on stdin and stdout (worker.go, workertablets.go). A tablet
//     (tablet.go) is the public client's display: its key, PIN + DPoP pairing, token
//     refresh and proofs are package client's, and it reconnects with the client's
//     (the PWA's) policy and close-code reactions (reconnect.go). Its socket is a lean
//     frame loop of its own, not client.Conn, which costs more memory and CPU per tablet
//     than 10,000 of them on the server's cores can spare. It keeps one socket and
//     records each event's publish→delivery latency from the send time the event
//     carries;
//   - for the comparison, a plain nats-server with its WebSocket listener
//     ("kioskfeed loadtest nats-server"), and raw NATS-over-WebSocket subscribers
//     (natsclient.go) in the same workers.
//
// The phases: pair N tablets; restart the server so the measurements start from a fresh
// process; connect them all; idle (memory and CPU); fan out E events at a set rate;
// restart the server under the tablets (the reconnect storm); then the same fan-out
// through nats-server. Every loop is bounded in count and time, and the run fails when
// a tablet missed or repeated an event. BENCHMARKS.md has the figures.
//
// Options.Scenario runs one of issue 12's scenarios instead (scenario.go, outage.go,
// storm.go): a Wi-Fi outage (a share of the tablets go dead at once, sockets open) or a
// far-behind reconnect storm (a share leave, fall hundreds of events behind, and come
// back at once), each measured on the healthy tablets and the server's memory.
//
// Options.Instances and Options.NATSCluster make it a cluster run instead (cluster.go
// and the other cluster*.go files): several instances on a real NATS cluster of child
// processes ("kioskfeed loadtest nats-node"), the tablets spread over the instances as
// behind a load balancer, and one instance killed with SIGKILL under its tablets.
//
// Plot ("kioskfeed loadtest plot", plot.go, plotdraw.go) draws the results of several
// runs as one PNG: fan-out p99 and RSS per tablet against N for the three peers, with
// the standard library's image packages and golang.org/x/image's bitmap font.
//
// It is linked into the production binary, so it must not import package testing nor
// any test helper (pairing/pairingtest, bridge/bridgetest, broker/brokertest:
// cmd/kioskfeed/deps_test.go checks it), and of ours it imports only client: it
// measures the server from outside, through the wire, as a display would.
package loadtest
