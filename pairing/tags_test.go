package pairing

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// FuzzCheckTags: whatever list of tags an administrator sends (split from one string
// on commas here), CheckTags refuses it as invalid_request with a message, or returns
// at most MaxTags tags, each of the documented form, sorted and without repeats.
func FuzzCheckTags(f *testing.F) {
	for _, s := range []string{"floor-2,reception", " Floor-2 ,FLOOR-2", "a,b,c,d,e,f,g,h,i", "a,b,c,d,e,f,g,h,a,b",
		"-x", "x y", strings.Repeat("a", 32), strings.Repeat("a", 33), "é", "a\x00", "", ",", "a.b_c-d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		in := strings.Split(s, ",")
		out, err := CheckTags("tags", in)
		if err != nil {
			var he *httpx.Error
			if !errors.As(err, &he) || he.Code != httpx.CodeInvalidRequest || he.Message == "" || len(he.Message) > 300 {
				t.Fatalf("CheckTags(%q) = %v, want invalid_request with a short message", in, err)
			}
			return
		}
		if len(out) > MaxTags || !slices.IsSorted(out) || len(slices.Compact(slices.Clone(out))) != len(out) {
			t.Fatalf("CheckTags(%q) = %q: want at most 8, sorted, unique", in, out)
		}
		for _, tag := range out {
			if !ValidTag(tag) || len(tag) > MaxTagLen {
				t.Fatalf("CheckTags(%q) kept %q", in, tag)
			}
		}
		// Folding is all it does: each input, trimmed and lower-cased, is in the output.
		for _, tag := range in {
			if !slices.Contains(out, strings.ToLower(strings.TrimSpace(tag))) {
				t.Fatalf("CheckTags(%q) = %q lost %q", in, out, tag)
			}
		}
	})
}
