// Package broker is the foundation of kioskfeed: it owns the NATS connection (an
// embedded nats-server with JetStream, or an external cluster), the streams and KV
// buckets every other part stores its state in, the event model, publishing with
// de-duplication, reading a feed's history and current state, producer keys and the
// producer HTTP API, the audit writer, the shared rate limiter, and the emergency
// overrides' store (overrides.go: raised, cleared, expired, acknowledged), and the
// devices' timelines (timeline.go: the TIMELINE stream and an index of it in memory). The
// JSON error format and the other HTTP plumbing are internal/httpx's.
//
// It must not know about WebSockets or access tokens: the bridge and pairing packages
// build on it, never the other way round.
package broker
