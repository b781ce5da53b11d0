package dpop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"
)

// NonceKeySize is the length of the secret a [NonceSource] is keyed with.
const NonceKeySize = 32

// nonceStep is the lifetime granularity of a server nonce: a nonce made in
// step s is accepted during s and s+1, so it lives between 5 and 10 minutes.
const nonceStep = 5 * time.Minute

const (
	nonceStepBytes = 8
	nonceMACBytes  = 16
	nonceRawBytes  = nonceStepBytes + nonceMACBytes
)

// nonceLen is the length of an encoded nonce; anything else is refused
// before decoding.
var nonceLen = base64.RawURLEncoding.EncodedLen(nonceRawBytes)

var nonceLabel = []byte("dpop-nonce")

// NonceConfig configures a [NonceSource].
type NonceConfig struct {
	// Key is the HMAC key, exactly NonceKeySize bytes. Every instance that
	// must accept the others' nonces uses the same key (pairing derives
	// it from the signing key with pairing.DeriveKey). Required.
	Key []byte
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// NonceSource makes and checks DPoP server nonces (RFC 9449 §8) without
// shared state: a nonce is the time step it was made in plus a MAC over that
// step, so any instance holding the same key can check any other's nonces,
// and nothing has to be stored or replicated. Nonces are not single use;
// replay of a whole proof is stopped by the jti cache, and the nonce only
// bounds how far in advance a proof can be made. Safe for concurrent use.
type NonceSource struct {
	key []byte
	now func() time.Time
}

// NewNonceSource checks cfg and returns a source ready to use.
func NewNonceSource(cfg NonceConfig) (*NonceSource, error) {
	if len(cfg.Key) != NonceKeySize {
		return nil, fmt.Errorf("nonce key: got %d bytes, want %d", len(cfg.Key), NonceKeySize)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &NonceSource{key: append([]byte(nil), cfg.Key...), now: now}, nil
}

// Nonce returns the nonce for the current time step, for the DPoP-Nonce
// response header. Every call within one step returns the same value.
func (s *NonceSource) Nonce() string {
	var raw [nonceRawBytes]byte
	s.encode(raw[:], s.step())
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// Valid reports whether n is a nonce made with this key in the current or
// the previous time step. It never panics, whatever n is.
func (s *NonceSource) Valid(n string) bool {
	if len(n) != nonceLen {
		return false
	}
	var got [nonceRawBytes]byte
	if k, err := base64.RawURLEncoding.Strict().Decode(got[:], []byte(n)); err != nil || k != nonceRawBytes {
		return false
	}
	step := binary.BigEndian.Uint64(got[:nonceStepBytes])
	cur := s.step()
	if step != cur && step != cur-1 {
		return false
	}
	var want [nonceRawBytes]byte
	s.encode(want[:], step)
	return hmac.Equal(got[nonceStepBytes:], want[nonceStepBytes:])
}

func (s *NonceSource) step() uint64 {
	t := s.now().Unix()
	step := t / int64(nonceStep/time.Second)
	if t < 0 && t%int64(nonceStep/time.Second) != 0 {
		step-- // floor, should a clock ever be set before 1970
	}
	return uint64(step)
}

// encode writes step || HMAC-SHA256(key, label || step)[:16] into dst.
func (s *NonceSource) encode(dst []byte, step uint64) {
	binary.BigEndian.PutUint64(dst[:nonceStepBytes], step)
	mac := hmac.New(sha256.New, s.key)
	mac.Write(nonceLabel)
	mac.Write(dst[:nonceStepBytes])
	var sum [sha256.Size]byte
	copy(dst[nonceStepBytes:], mac.Sum(sum[:0])[:nonceMACBytes])
}
