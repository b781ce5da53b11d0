package broker

// This file owns the names of the audit log: every type of record the system writes is
// one constant below, listed in AuditTypes, so a newcomer finds who writes what in one
// place, and docs/protocol.md §6 (#audit) lists the same names (a test checks both).

// AuditType is the type of an audit record: the last token of its subject (audit.<type>)
// and the "type" member of its JSON. AuditRecord.Type stays a plain string, so the JSON
// and the callers that pass a type through a string parameter are unchanged; write it
// as string(AuditPairOK).
type AuditType string

// The audit types, grouped by who writes them. The refusals an outsider can repeat at
// will are summed per address (aggregatedTypes, Broker.Audit).
const (
	// Pairing (pairing/): a tablet becomes a device.

	// AuditPairOK: a tablet paired with a valid PIN (POST /api/pair).
	AuditPairOK AuditType = "pair_ok"
	// AuditPairFail: a wrong, expired or used PIN, or a pairing request polled with
	// another key than the one that opened it. Summed.
	AuditPairFail AuditType = "pair_fail"
	// AuditPairRequest: a tablet opened a pairing request by code (RFC 8628).
	AuditPairRequest AuditType = "pair_request"
	// AuditPairApproved: an administrator approved a pairing request; the device exists.
	AuditPairApproved AuditType = "pair_approved"
	// AuditPairDenied: an administrator denied a pairing request.
	AuditPairDenied AuditType = "pair_denied"
	// AuditPairApproveFail: an administrator's approve or deny named no open request.
	// Summed.
	AuditPairApproveFail AuditType = "pair_approve_fail"
	// AuditTokenRefused: POST /api/token refused (malformed or unknown device, or a proof
	// key that is not the device's). Summed.
	AuditTokenRefused AuditType = "token_refused"
	// AuditDeviceRevoked: a device was revoked, by an administrator (API or dashboard)
	// or because its feed was re-paired with a replacing PIN.
	AuditDeviceRevoked AuditType = "device_revoked"

	// The tablet socket (bridge/, the close-reason table in closes.go).

	// AuditAuthFail: a socket's auth or re-auth refused (bad token or proof, revoked or
	// unknown device, a re-auth with no newer token). Summed.
	AuditAuthFail AuditType = "auth_fail"
	// AuditDuplicateRefused: a second live connection for one device refused (its lease
	// is held elsewhere). Summed.
	AuditDuplicateRefused AuditType = "duplicate_refused"

	// Administration (admin/: the admin API and dashboard, broker's producer-key API).

	// AuditAdminLogin: a dashboard login.
	AuditAdminLogin AuditType = "admin_login"
	// AuditAdminLoginFail: a wrong dashboard password or a bad admin bearer token.
	// Summed.
	AuditAdminLoginFail AuditType = "admin_login_fail"
	// AuditAdminLogout: a dashboard logout.
	AuditAdminLogout AuditType = "admin_logout"
	// AuditAdminPasswordSet: the dashboard password was changed (every session ends).
	AuditAdminPasswordSet AuditType = "admin_password_set"
	// AuditAdminTokenCreated: a named admin token was made.
	AuditAdminTokenCreated AuditType = "admin_token_created"
	// AuditAdminTokenRevoked: a named admin token was revoked.
	AuditAdminTokenRevoked AuditType = "admin_token_revoked"
	// AuditPinIssued: an administrator issued a pairing PIN.
	AuditPinIssued AuditType = "pin_issued"
	// AuditProducerKeyCreated: a producer key was made (API or dashboard).
	AuditProducerKeyCreated AuditType = "producer_key_created"
	// AuditProducerKeyDeleted: a producer key was deleted (API or dashboard).
	AuditProducerKeyDeleted AuditType = "producer_key_deleted"
	// AuditTestEventSent: an administrator published a test event from the dashboard.
	AuditTestEventSent AuditType = "test_event_sent"
	// AuditOverrideRaised: an emergency override was raised (API, CLI or dashboard).
	AuditOverrideRaised AuditType = "override_raised"
	// AuditOverrideCleared: an emergency override was cleared before it expired.
	AuditOverrideCleared AuditType = "override_cleared"
	// AuditWebhookCreated: an alert webhook was made (API or dashboard).
	AuditWebhookCreated AuditType = "webhook_created"
	// AuditWebhookDeleted: an alert webhook was deleted (API or dashboard).
	AuditWebhookDeleted AuditType = "webhook_deleted"
	// AuditDeviceUpdated: an administrator changed a device's name or tags (API, CLI
	// or dashboard).
	AuditDeviceUpdated AuditType = "device_updated"
	// AuditDeviceMoved: an administrator moved a device to another feed (bulk action).
	AuditDeviceMoved AuditType = "device_moved"
	// AuditDeviceReload: an administrator told a connected tablet to reload its app
	// (bulk action).
	AuditDeviceReload AuditType = "device_reload"
	// AuditScheduleSet: a feed's screen schedule was stored or replaced.
	AuditScheduleSet AuditType = "schedule_set"
	// AuditScheduleDeleted: a feed's screen schedule was deleted.
	AuditScheduleDeleted AuditType = "schedule_deleted"

	// Producers (broker/api.go).

	// AuditProducerRefused: a producer key used on a feed outside its scope. Summed.
	AuditProducerRefused AuditType = "producer_refused"
)

// auditTypes is every type above, in the order of docs/protocol.md §6.
var auditTypes = [...]AuditType{
	AuditPairOK, AuditPairFail, AuditTokenRefused, AuditAuthFail, AuditDuplicateRefused,
	AuditDeviceRevoked, AuditAdminLogin, AuditAdminLoginFail, AuditAdminLogout,
	AuditAdminPasswordSet, AuditAdminTokenCreated, AuditAdminTokenRevoked, AuditPinIssued,
	AuditProducerKeyCreated, AuditProducerKeyDeleted, AuditProducerRefused, AuditTestEventSent,
	AuditPairRequest, AuditPairApproved, AuditPairDenied, AuditPairApproveFail,
	AuditOverrideRaised, AuditOverrideCleared, AuditWebhookCreated, AuditWebhookDeleted,
	AuditDeviceUpdated, AuditDeviceMoved, AuditDeviceReload,
	AuditScheduleSet, AuditScheduleDeleted,
}

// AuditTypes is every type the system writes, for the admin audit filter's choices. The
// slice is the caller's.
func AuditTypes() []AuditType { return append([]AuditType(nil), auditTypes[:]...) }

// maxAuditTypeLen bounds a type's length: it is a subject token and a filter input.
const maxAuditTypeLen = 40

// ValidAuditType reports whether s is well formed as an audit type: a lower-case letter,
// then lower-case letters and underscores, at most 40 in all. It is the one check of a
// type, used by Broker.Audit (a record of another shape is dropped), Broker.AuditList and
// the admin audit filter. A well-formed type outside AuditTypes is accepted: it names no
// record, so filtering by it finds none.
func ValidAuditType(s string) bool {
	if len(s) == 0 || len(s) > maxAuditTypeLen || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}
