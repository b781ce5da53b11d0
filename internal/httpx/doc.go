// Package httpx owns the HTTP plumbing every package of kioskfeed answers with: the
// JSON error format and its code→status table (docs/protocol.md §1), JSON bodies read
// with a size cap and decoded strictly, the Authorization: Bearer credential, the
// client's address behind trusted proxies, the per-route latency histogram,
// [HandlerFunc], the adapter that lets a handler return its error, and [Lane], the
// listener that reads the tablets' upgrade requests before net/http does.
//
// It must stay a leaf: it imports no other kioskfeed package and nothing of NATS, so
// that pwa, pairing, admin and bridge can answer a 404 without linking the broker.
package httpx
