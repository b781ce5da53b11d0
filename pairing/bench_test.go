package pairing

import (
	"testing"
)

func BenchmarkVerifyToken(b *testing.B) {
	f := newTokenFixture(b)
	tok, _, err := f.iss.Issue("dev_1", "lobby", f.dev.JKT())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := f.iss.Verify(tok); err != nil {
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
