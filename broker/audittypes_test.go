package broker

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docSpan is the text of docs/protocol.md between the first from and the next to after it.
func docSpan(t *testing.T, doc, from, to string) string {
	t.Helper()
	i := strings.Index(doc, from)
	if i < 0 {
		t.Fatalf("docs/protocol.md has no %q", from)
	}
	rest := doc[i+len(from):]
	j := strings.Index(rest, to)
	if j < 0 {
		t.Fatalf("docs/protocol.md has no %q after %q", to, from)
	}
	return rest[:j]
}

// backticked is every `name` in s, in order.
func backticked(s string) []AuditType {
	var out []AuditType
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(s, -1) {
		out = append(out, AuditType(m[1]))
	}
	return out
}

// TestAuditTypesMatchTheContract checks the code's list against docs/protocol.md §6: the
// types it names are exactly the constants, in the same order, and the types it says are
// summed are exactly aggregatedTypes.
func TestAuditTypesMatchTheContract(t *testing.T) {
	raw, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)

	got := AuditTypes()
	if len(got) == 0 {
		t.Fatal("AuditTypes is empty")
	}
	seen := map[AuditType]bool{}
	for _, typ := range got {
		if !ValidAuditType(string(typ)) {
			t.Errorf("audit type %q is not well formed", typ)
		}
		if seen[typ] {
			t.Errorf("audit type %q listed twice", typ)
		}
		seen[typ] = true
	}

	documented := backticked(docSpan(t, doc, `<a id="audit"></a>**Audit records.** Types:`, "No record holds"))
	if !slices.Equal(documented, got) {
		t.Errorf("docs/protocol.md §6 lists the audit types\n%v\nthe code writes\n%v", documented, got)
	}

	summed := backticked(docSpan(t, doc, `<a id="audit-count"></a>`+"`count`"+` (absent means 1). The refusal types`, "are summed"))
	if len(summed) != len(aggregatedTypes) {
		t.Errorf("docs/protocol.md §6 sums %v; the code sums %d types", summed, len(aggregatedTypes))
	}
	for _, typ := range summed {
		if !aggregatedTypes[typ] {
			t.Errorf("docs/protocol.md §6 says %q is summed; the code does not sum it", typ)
		}
	}
	for typ := range aggregatedTypes {
		if !seen[typ] {
			t.Errorf("summed type %q is not in AuditTypes", typ)
		}
	}

	// The caller owns the slice it gets.
	got[0] = "changed"
	if AuditTypes()[0] == "changed" {
		t.Error("AuditTypes hands out its own array")
	}
}

// TestValidAuditType pins the shape of a type: the one check Audit, AuditList and the
// admin filter share.
func TestValidAuditType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"auth_fail", true},
		{"a", true},
		{"x_", true},
		{strings.Repeat("a", 40), true},
		{"not_listed_but_well_formed", true},
		{"", false},
		{strings.Repeat("a", 41), false},
		{"_auth", false},
		{"Auth_fail", false},
		{"auth-fail", false},
		{"auth.fail", false},
		{"auth_fail\n", false},
		{"auth fail", false},
		{"p1n", false},
		{"audit.>", false},
		{"é", false},
	} {
		if got := ValidAuditType(tc.in); got != tc.want {
			t.Errorf("ValidAuditType(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
