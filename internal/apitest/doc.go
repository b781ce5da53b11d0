// Package apitest checks the HTTP API against its contract in the tests: every request a
// test sends and every answer the server gives is validated against docs/openapi.json
// (kin-openapi's openapi3filter), so an undocumented endpoint, status or field fails
// the test that met it, with the method, the path, the status and the validator's
// reason.
//
// Handler wraps the handler a test harness serves (every client is then covered, raw
// ones too); Transport and Client wrap a client's side for servers a test cannot wrap.
// Answers are always validated. A request the document refuses fails the test only
// when the server accepted it: a test that sends a malformed request on purpose
// expects a refusal, and that refusal must itself be documented (4xx in the error
// format).
//
// The API is /api/*, /.well-known/*, /ws, /healthz, /readyz, /metrics and /admin/live;
// the other paths are the PWA's and the dashboard's HTML pages and forms, which the
// document does not describe, and are passed through unchecked.
//
// It is test support: it imports docs only, and nothing of NATS.
package apitest
