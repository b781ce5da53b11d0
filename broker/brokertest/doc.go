// Package brokertest starts real brokers and NATS servers for tests: an embedded
// nats-server with JetStream whose file store lives in the test's temp dir. Nothing is
// mocked; every test that uses it talks to a real server. Only tests may import it:
// it takes a testing.TB, and the binary must not link package testing (checked by
// cmd/kioskfeed's TestBinaryDoesNotLinkTesting).
package brokertest
