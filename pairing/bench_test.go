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
