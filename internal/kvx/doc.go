// Package kvx says what a JetStream KV error means, for every package that writes to
// a bucket (broker, and pairing/dpop, which must not depend on broker and through it
// on the embedded NATS server). It holds no state, talks to no server, and
// imports no other kioskfeed package.
package kvx
