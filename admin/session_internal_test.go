package admin

import "testing"

// TestSafeNext: after login only dashboard paths on this site are followed.
func TestSafeNext(t *testing.T) {
	kept := []string{
		"/admin", "/admin/audit?type=pair_ok", "/admin/approve?code=WDJBMJHT",
		"/admin/approve?next=//evil.example", // a query stays on this site
	}
	for _, next := range kept {
		if got := safeNext(next); got != next {
			t.Errorf("safeNext(%q) = %q, want it kept", next, got)
		}
	}
	refused := []string{
		"//evil.example", `/\evil.example`, "https:evil.example", "https://evil.example/admin",
		"/%2F%2Fevil.example", "/%2f%2fevil.example", "/admin/%2F%2Fevil.example", "/%5Cevil.example",
		"/admin/%5C%5Cevil.example", "/\t/evil.example", "///evil.example", "/admin//evil.example",
		"/admin/../../evil.example", "/admin@evil.example", "/adminx", "/", "", "evil.example",
		"javascript:alert(1)",
	}
	for _, next := range refused {
		if got := safeNext(next); got != "/admin" {
			t.Errorf("safeNext(%q) = %q, want /admin", next, got)
		}
	}
}
