package broker

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"strings"
)

// Every id a client sends that becomes a KV key or a subject token is checked here,
// before it reaches NATS. NATS refuses keys with '*', '>', spaces or dots in the wrong
// place as an error of the call, which a handler cannot tell from NATS being down: it
// would answer 503 unavailable (and skip the audit and the limits of a refusal) to
// what is only a malformed or hostile id. Checked first, such an id is answered as
// the refusal it is: an unknown device, an unknown key, a request that does not exist.

// crockford is the alphabet of device and pair-request ids (Crockford's base32): no
// I, L, O or U, so an id read aloud or copied by hand survives.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// keyAlphabet is the alphabet of key ids, override ids and event ids the server makes:
// lower-case base32.
const keyAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

var (
	// CrockfordEncoding is Crockford's base32 without padding (ids read by people;
	// alerts derive theirs from a hash with it).
	CrockfordEncoding = base32.NewEncoding(crockford).WithPadding(base32.NoPadding)
	idEncoding        = base32.NewEncoding(keyAlphabet).WithPadding(base32.NoPadding)
)

// Every random id and secret the server makes comes from here, each from the CSPRNG
// (crypto/rand.Read never fails: it crashes the program instead).

// NewID is prefix plus 20 characters of Crockford's base32, 100 random bits: device
// (dev_), pair-request (pr_) and webhook (wh_) ids (docs/protocol.md §0).
func NewID(prefix string) string {
	var b [13]byte
	_, _ = rand.Read(b[:])
	return prefix + CrockfordEncoding.EncodeToString(b[:])[:20]
}

// NewKeyID is 13 characters of lower-case base32, 64 random bits: the <id> of producer
// keys (kfp.<id>.<secret>) and named admin tokens, and of overrides (ovr_<id>).
func NewKeyID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}

// NewSecret is n random bytes, base64url without padding.
func NewSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ValidDeviceID reports whether id has the form of a device id, dev_ plus 20
// characters of Crockford's base32 (docs/protocol.md §0). Only such an id can name a device.
func ValidDeviceID(id string) bool { return prefixedID(id, "dev_", 20, crockford) }

// ValidPairRequestID reports whether id has the form of a pair request id, pr_ plus 20
// characters of Crockford's base32.
func ValidPairRequestID(id string) bool { return prefixedID(id, "pr_", 20, crockford) }

// ValidKeyID reports whether id has the form of a producer key's or a named admin
// token's id: 13 characters of lower-case base32 (64 random bits), the <id> of
// kfp.<id>.<secret> and kfa.<id>.<secret>.
func ValidKeyID(id string) bool { return prefixedID(id, "", 13, keyAlphabet) }

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
