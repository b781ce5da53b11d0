// Package docs holds the machine-readable contracts beside docs/protocol.md, embedded so
// that the server can serve them and tests can check every request, response and frame
// against them: the OpenAPI document of the HTTP API, and the JSON Schemas and AsyncAPI
// document of the socket's messages and the NATS subjects.
//
// It holds files only: it imports nothing of ours, and nothing of NATS.
package docs
