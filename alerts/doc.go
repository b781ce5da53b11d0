// Package alerts owns what makes the system notice trouble instead of the people in the
// building (docs/protocol.md §12): the alert rules, the ALERTS stream their alerts are
// published to (kioskfeed.alerts.<type>, so any NATS consumer can take them), the
// webhook registry, and the delivery of alerts to webhooks.
//
//   - Rules (offline.go, tamper.go): a paired device whose lease has been gone longer
//     than alert_offline_after raises device_offline, and device_online when it comes
//     back; tamper signals are read from the AUDIT stream (any duplicate_refused, bursts
//     of auth_fail per device or address and of pair_approve_fail per address, and
//     device_revoked). Every instance evaluates every rule; each alert is published with
//     a Nats-Msg-Id that every instance derives alike, so the stream's duplicate window
//     (DuplicateWindow) keeps one. A Fleet that is also a [Quiet] keeps quiet hours: no
//     offline or behind alert for a device whose feed is scheduled asleep (quiet.go).
//   - Webhooks (webhooks.go): a KV registry of at most MaxWebhooks receivers, each with
//     the alert types it wants and the secret its deliveries are signed with.
//   - Delivery (deliver.go): a durable consumer shared by every instance fans each alert
//     out into one task per matching webhook (the WEBHOOK_TASKS work queue), and a second
//     shared durable consumer POSTs each task, signed (HMAC-SHA256), with retries and
//     backoff, through an HTTP client whose dialer refuses this server's own networks
//     after DNS resolution (guard.go).
//
// It learns about devices through [Fleet], an interface it declares (cmd/kioskfeed
// satisfies it with pairing's device registry and the bridge's presence): it must not
// import bridge or pairing. It imports broker only. The admin API and dashboard for
// webhooks live in package admin, which calls this package's Go API.
package alerts
