package broker_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kioskfeed/kioskfeed/broker"
)

func TestCheckName(t *testing.T) {
	for in, want := range map[string]string{ // want: "" passes, else part of the message
		"  Lobby left  ":        "",
		"Empfang Süd":           "",
		"Lobby 😀 受付":            "",
		"a\ufffdb":              "", // a real replacement character is text
		"a\tb":                  "U+0009: it is a control character",
		"a\u0085b":              "U+0085: it is a control character",
		"a\u202eb":              "U+202E: it is an invisible formatting character",
		"a\u200db":              "U+200D: it is an invisible formatting character",
		"a\u2028b":              "U+2028: it is a line or paragraph separator",
		"a\xffb":                "not valid UTF-8",
		strings.Repeat("é", 65): "at most 64 characters",
	} {
		got, err := broker.CheckName("name", in, 64)
		switch {
		case want == "" && (err != nil || got != strings.TrimSpace(in)):
			t.Errorf("CheckName(%q) = %q, %v; want it accepted", in, got, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("CheckName(%q) error = %v, want one saying %q", in, err, want)
		}
	}
}

func TestCleanText(t *testing.T) {
	for in, want := range map[string]string{
		"Mozilla/5.0 (X11)":   "Mozilla/5.0 (X11)",
		"a\x1bb\nc":           "a\ufffdb\ufffdc",
		"a\u202eb\u2029c\xff": "a\ufffdb\ufffdc\ufffd",
	} {
		if got := broker.CleanText(in, 256); got != want {
			t.Errorf("CleanText(%q) = %q, want %q", in, got, want)
		}
	}
	long := strings.Repeat("é", 200) // 400 bytes
	if got := broker.CleanText(long, 255); len(got) > 255 || !utf8.ValidString(got) || len(got) != 254 {
		t.Errorf("CleanText cut to %d bytes (valid %v), want 254 on a character boundary", len(got), utf8.ValidString(got))
	}
}
