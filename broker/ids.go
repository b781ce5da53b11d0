package broker

import "strings"

// Every id a client sends that becomes a KV key or a subject token is checked here,
// before it reaches NATS. NATS refuses keys with '*', '>', spaces or dots in the wrong
// place as an error of the call, which a handler cannot tell from NATS being down: it
// would answer 503 unavailable (and skip the audit and the limits of a refusal) to
// what is only a malformed or hostile id. Checked first, such an id is answered as
// the refusal it is: an unknown device, an unknown key, a request that does not exist.

// crockford is the alphabet of device and pair-request ids (Crockford's base32).
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// ValidDeviceID reports whether id has the form of a device id, dev_ plus 20
// characters of Crockford's base32 (docs/protocol.md §0). Only such an id can name a device.
func ValidDeviceID(id string) bool { return prefixedID(id, "dev_", 20, crockford) }

// ValidPairRequestID reports whether id has the form of a pair request id, pr_ plus 20
// characters of Crockford's base32.
func ValidPairRequestID(id string) bool { return prefixedID(id, "pr_", 20, crockford) }

// ValidKeyID reports whether id has the form of a producer key's or a named admin
// token's id: 13 characters of lower-case base32 (64 random bits), the <id> of
// kfp.<id>.<secret> and kfa.<id>.<secret>.
func ValidKeyID(id string) bool { return prefixedID(id, "", 13, "abcdefghijklmnopqrstuvwxyz234567") }

func prefixedID(id, prefix string, n int, alphabet string) bool {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || len(rest) != n {
		return false
	}
	for i := range len(rest) {
		if strings.IndexByte(alphabet, rest[i]) < 0 {
			return false
		}
	}
	return true
}
