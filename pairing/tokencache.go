package pairing

import (
	"crypto/sha256"
	"sync"
	"time"
)

// This file remembers which access tokens are known to carry a good signature, so that a
// token's ES256 check is made once, not on every handshake (issue 15: the two P-256
// verifications were most of a handshake's CPU). A token is known when this issuer
// signed it (Issue) or verified its signature once (Verify). A later Verify of the same
// bytes skips only the signature check: the size, the header (alg, typ, crit, a kid of
// this issuer's keys) and every claim, times included, are checked again each time, and
// the caller still checks the DPoP proof (its own ES256 verification, every handshake)
// and the device's record.
//
// The key is a digest of the whole token: a token that differs in any byte, its
// signature included, is not known, and finding other bytes with a known digest is a
// second preimage of SHA-256 cut to 128 bits. Only tokens with a good signature enter,
// which an outsider cannot make, so the size is bounded by what this instance issues and
// sees (about two live tokens per tablet, each one's TTL) and capped at maxKnownTokens.

// maxKnownTokens caps the tokens remembered (docs/protocol.md §10): some 32 bytes
// each, 4 MiB at the cap. At the cap, expired ones are dropped first, then any (that
// token's next handshake verifies its signature again).
const maxKnownTokens = 1 << 17

type tokenDigest [16]byte

func digestToken(token string) tokenDigest {
	sum := sha256.Sum256([]byte(token))
	return tokenDigest(sum[:16])
}

// knownTokens maps a token's digest to the second its checks stop passing (exp plus
// the leeway, Unix seconds).
type knownTokens struct {
	mu    sync.Mutex
	m     map[tokenDigest]int64
	max   int
	swept time.Time // when expired entries were last dropped
}

// knownSweepEvery is how often add drops the expired entries, so that a quiet building
// does not keep a day of refreshed tokens until the cap.
const knownSweepEvery = time.Minute

func newKnownTokens() *knownTokens {
	return &knownTokens{m: make(map[tokenDigest]int64), max: maxKnownTokens}
}

// has reports whether the token with digest d is known.
func (k *knownTokens) has(d tokenDigest) bool {
	k.mu.Lock()
	_, ok := k.m[d]
	k.mu.Unlock()
	return ok
}

// add remembers d until its token's checks stop passing (until). Once a minute, and at
// the cap, it first drops what has expired by now; at the cap it then drops any entries
// down to seven eighths of it: one sweep pays for many adds.
func (k *knownTokens) add(d tokenDigest, until, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.m[d]
	full := !ok && len(k.m) >= k.max
	if full || now.Sub(k.swept) >= knownSweepEvery {
		k.swept = now
		n := now.Unix()
		for key, u := range k.m {
			if u < n {
				delete(k.m, key)
			}
		}
	}
	if full {
		for key := range k.m {
			if len(k.m) < k.max-k.max/8 {
				break
			}
			delete(k.m, key)
		}
	}
	k.m[d] = until.Unix()
}

func (k *knownTokens) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}
