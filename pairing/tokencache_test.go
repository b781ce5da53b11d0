package pairing

import (
	"crypto/ecdsa"
	"strings"
	"testing"
	"time"
)

// flipSignature returns tok with one bit of its signature changed: the same header and
// claims, a signature that does not verify.
func flipSignature(tb testing.TB, tok string) string {
	tb.Helper()
	i := strings.LastIndexByte(tok, '.') + 3
	c := tok[i]
	r := byte('A')
	if c == 'A' {
		r = 'B'
	}
	return tok[:i] + string(r) + tok[i+1:]
}

// A token this issuer signed is known from the start, one verified once is known after,
// and a known token's claims are still checked on every use.
func TestKnownTokensSkipOnlyTheSignature(t *testing.T) {
	f := newTokenFixture(t)
	tok, exp, err := f.iss.Issue("dev_1", "lobby", f.dev.JKT())
	if err != nil {
		t.Fatal(err)
	}
	if !f.iss.known.has(digestToken(tok)) {
		t.Fatal("a token the issuer signed is not known")
	}

	// Another instance's token (same keys, another issuer object): verified once, then known.
	other := mustIssuer(t, []*ecdsa.PrivateKey{f.k1, f.k2}, f.clock.Now)
	otherTok, _, err := other.Issue("dev_2", "lobby", f.dev.JKT())
	if err != nil {
		t.Fatal(err)
	}
	if f.iss.known.has(digestToken(otherTok)) {
		t.Fatal("another instance's token is known before it was verified")
	}
	if _, err := f.iss.Verify(otherTok); err != nil {
		t.Fatalf("another instance's token: %v", err)
	}
	if !f.iss.known.has(digestToken(otherTok)) {
		t.Fatal("a verified token is not known after its first check")
	}

	// A bad signature is refused every time and never becomes known.
	forged := flipSignature(t, otherTok)
	for range 2 {
		_, err := f.iss.Verify(forged)
		assertTokenError(t, err, "bad signature")
	}
	if f.iss.known.has(digestToken(forged)) {
		t.Fatal("a token with a bad signature became known")
	}

	// Known is only the signature: the claims still expire.
	f.clock.Set(exp.Add(DefaultTokenLeeway + time.Second))
	_, err = f.iss.Verify(tok)
	assertTokenError(t, err, "token expired")
}

// The lookup is what skips the ES256 check: a digest put in by hand makes a token with a
// bad signature pass, which shows the check is not made twice for known bytes (and why
// only tokens with a good signature may enter).
func TestKnownDigestSkipsTheES256Check(t *testing.T) {
	f := newTokenFixture(t)
	tok, exp, err := f.iss.Issue("dev_1", "lobby", f.dev.JKT())
	if err != nil {
		t.Fatal(err)
	}
	forged := flipSignature(t, tok)
	_, err = f.iss.Verify(forged)
	assertTokenError(t, err, "bad signature")
	f.iss.known.add(digestToken(forged), exp, f.clock.Now())
	if _, err := f.iss.Verify(forged); err != nil {
		t.Fatalf("a known digest still had its signature checked: %v", err)
	}
}

// The tokens known are capped: at the cap the expired go first, then any, down to seven
// eighths; an entry whose token expired is dropped within knownSweepEvery.
func TestKnownTokensAreBounded(t *testing.T) {
	k := newKnownTokens()
	k.max = 64
	now := time.Unix(1_800_000_000, 0)
	k.swept = now
	d := func(i int) tokenDigest {
		return digestToken("token-" + string(rune('a'+i%26)) + strings.Repeat("x", i))
	}
	for i := range 200 {
		k.add(d(i), now.Add(time.Hour), now)
		if n := k.len(); n > k.max {
			t.Fatalf("after %d adds, %d known, want at most %d", i+1, n, k.max)
		}
	}
	if n := k.len(); n < k.max-k.max/8 {
		t.Fatalf("%d known after the adds, want at least %d (a cut to 7/8, not a flush)", n, k.max-k.max/8)
	}

	k = newKnownTokens()
	k.swept = now
	k.add(d(1), now.Add(10*time.Second), now) // expires soon
	k.add(d(2), now.Add(time.Hour), now)
	k.add(d(3), now.Add(time.Hour), now.Add(knownSweepEvery)) // a minute later: sweeps
	if k.has(d(1)) || !k.has(d(2)) || !k.has(d(3)) {
		t.Fatalf("after the sweep: expired kept %v, live kept %v/%v; want only the live ones", k.has(d(1)), k.has(d(2)), k.has(d(3)))
	}
}
