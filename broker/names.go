package broker

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// Names that strangers choose (a tablet's suggested name) or that are shown next to
// theirs (device, admin-token and producer-key names) end up in the dashboard, in
// `kioskfeed admin` tables and in log lines. A control character there can clear an
// administrator's terminal or forge a table row; an invisible formatting character
// (U+202E RIGHT-TO-LEFT OVERRIDE, zero-width characters) can make one name look like
// another. They are refused on input (CheckName); text we do not choose, the
// User-Agent, is stored with them replaced (CleanText).

// refusedClass says why r may not appear in a name, "" when it may.
func refusedClass(r rune) string {
	switch {
	case unicode.Is(unicode.Cc, r):
		return "a control character (C0 or C1: newlines, tabs, terminal escapes)"
	case r == '\u2028' || r == '\u2029':
		return "a line or paragraph separator (U+2028, U+2029)"
	case unicode.Is(unicode.Cf, r):
		return "an invisible formatting character (Unicode Cf: bidi controls such as U+202E, zero-width characters such as U+200B)"
	}
	return ""
}

// RefusedRune reports whether r may not appear in a name: C0 and C1 controls (Cc),
// formatting characters (Cf: bidi controls, zero-width characters, soft hyphens), the
// line and paragraph separators U+2028 and U+2029.
func RefusedRune(r rune) bool { return refusedClass(r) != "" }

// CheckName trims s and checks it as a name of at most maxRunes characters: it returns
// the trimmed name, or an invalid_request error naming field and saying which
// character class (and code point) was refused. An empty name passes; callers that
// need one say so.
func CheckName(field, s string, maxRunes int) (string, error) {
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > maxRunes {
		return s, httpx.Errorf(httpx.CodeInvalidRequest, fmt.Sprintf("%q must be at most %d characters", field, maxRunes))
	}
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				return s, httpx.Errorf(httpx.CodeInvalidRequest, fmt.Sprintf("%q is not valid UTF-8", field))
			}
			continue // a real U+FFFD is allowed
		}
		if class := refusedClass(r); class != "" {
			return s, httpx.Errorf(httpx.CodeInvalidRequest, fmt.Sprintf("%q may not contain %U: it is %s", field, r, class))
		}
	}
	return s, nil
}

// CleanText makes text we do not choose (a User-Agent) safe to store and show: every
// refused rune (see RefusedRune) and every invalid byte becomes U+FFFD, and the result
// is cut to at most maxBytes on a character boundary.
func CleanText(s string, maxBytes int) string {
	var b strings.Builder
	for _, r := range s {
		if RefusedRune(r) { // an invalid byte is a RuneError already
			r = utf8.RuneError
		}
		if b.Len()+utf8.RuneLen(r) > maxBytes {
			break
		}
		b.WriteRune(r)
		if b.Len() >= maxBytes {
			break
		}
	}
	return b.String()
}
