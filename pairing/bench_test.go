package pairing

import (
	"testing"
)

func BenchmarkVerifyToken(b *testing.B) {
	benchVerify(b, func(t *TokenIssuer, tok string) error { _, err := t.Verify(tok); return err })
}

// BenchmarkVerifyTokenJWX is BenchmarkVerifyToken through the jwx path the server had
// (token_jwx_test.go), for the comparison in BENCHMARKS.md: run both in one go.
func BenchmarkVerifyTokenJWX(b *testing.B) {
	benchVerify(b, func(t *TokenIssuer, tok string) error { _, err := t.jwxVerify(tok); return err })
}

func benchVerify(b *testing.B, verify func(*TokenIssuer, string) error) {
	f := newTokenFixture(b)
	tok, _, err := f.iss.Issue("dev_1", "lobby", f.dev.JKT())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := verify(f.iss, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssueToken(b *testing.B) {
	f := newTokenFixture(b)
	for b.Loop() {
		if _, _, err := f.iss.Issue("dev_1", "lobby", f.dev.JKT()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyTokenUnknown is BenchmarkVerifyToken for a token the issuer has not
// signed or seen (another instance's, or after a restart): the ES256 check every time.
// BenchmarkVerifyToken's token is known after its first check (tokencache.go).
func BenchmarkVerifyTokenUnknown(b *testing.B) {
	f := newTokenFixture(b)
	tok, _, err := f.iss.Issue("dev_1", "lobby", f.dev.JKT())
	if err != nil {
		b.Fatal(err)
	}
	d := digestToken(tok)
	b.ReportAllocs()
	for b.Loop() {
		f.iss.known.mu.Lock()
		delete(f.iss.known.m, d)
		f.iss.known.mu.Unlock()
		if _, err := f.iss.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
