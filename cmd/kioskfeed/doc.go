// Command kioskfeed is the whole system in one binary: `kioskfeed serve` runs the
// event broker (embedded NATS JetStream by default), the producer API, pairing, the
// admin API and dashboard, the tablet bridge (GET /ws), the PWA, and the health and
// metrics endpoints. The other subcommands publish, administer, show a feed in a
// terminal (display) and load-test. This package only wires packages together; the
// logic lives in them, and it must not grow any: a rule of the wire belongs to the
// package that owns that part of docs/protocol.md. layout_test.go holds the table of
// which package may import which.
package main
