// Package admin owns the administrator's side of kioskfeed: who the administrator is
// and what they may do through the browser and the API.
//
//   - Credentials: the admin bearer tokens of docs/protocol.md §6 (the configured or
//     generated one, kept only as a SHA-256 hash, and named tokens in a KV bucket) and
//     the dashboard password (bcrypt, in the admin bucket) with its login sessions
//     (adminSession: hashed ids with a per-key TTL, so a logout anywhere counts
//     everywhere). [Admin.AuthorizeAdmin] is the one check, and makes *Admin the
//     broker.AdminAuthorizer of the producer-key API broker serves.
//   - The admin API under /api/admin/* (PINs, devices, pair requests, audit, admin
//     tokens, the dashboard password, emergency overrides: overrides.go, the devices'
//     last hour: timeline.go) and the dashboard under /admin: server-rendered
//     pages from web/ (embedded, hashed asset URLs, a strict CSP), CSRF tokens and Go's
//     CrossOriginProtection on every form, per-address failure allowances for bad
//     passwords and bad tokens. Every action is audited with the credential behind it
//     (broker.WithActor).
//
// What it decides about devices it asks package pairing to do, through pairing's small
// Go API (IssuePIN, RevokeDevice, LookupPairRequest, ApprovePairRequest,
// DenyPairRequest, OpenPairRequests, Devices): admin holds no device secret, no PIN
// key and no signing key, and never issues or checks a tablet's token itself. It
// learns who is online through [Presence], and what each tablet has shown through
// [Delivery] (also GET /api/feeds/{feed}/delivery, delivery.go), interfaces it declares
// and the bridge satisfies; it must not import bridge. It imports pairing, broker and
// schedule (the screen schedules' form); pairing never
// imports it.
package admin
