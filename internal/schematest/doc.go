// Package schematest checks socket frames and NATS bodies against the JSON Schemas of
// package docs (docs/schemas/, draft 2020-12), for tests: the bridge's (through
// bridge/bridgetest and its own harness), the client's (through a test-only hook) and
// the broker's. A frame that fails is an error naming its direction, its type, the
// schema and the validator's reason, with the frame cut short and any token or proof
// in it shortened to its first characters.
//
// It imports docs of ours and the validator (santhosh-tekuri/jsonschema/v6), and is a
// test helper: it must not be linked into the binary (cmd/kioskfeed/deps_test.go).
package schematest
