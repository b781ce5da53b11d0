package jsonx

import (
	"encoding/json"
	"strings"
	"testing"
)

// valid is json.Valid by validValue.
func valid(data []byte) bool {
	end, ok := validValue(data, skipSpace(data, 0), 1)
	return ok && skipSpace(data, end) == len(data)
}

var validCases = []string{
	`0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e`, `1e+`, `1e+5`, `1E-05`, `-1.5e10`, `1x`, `2 `, ` 3`,
	`"\u00e9"`, `"\u00eg"`, `"\u00e"`, `"\x"`, `"\/"`, `"\b\f\n\r\t\"\\"`, "\"\t\"", "\"\x7f\"", "\"\xff\"", `"`, `"\`,
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `[]`, `[1,]`, `[,1]`, `[1 2]`, `[[[]]]`, `{}`, `{"a"}`, `{"a":}`,
	`{"a":1,}`, `{,}`, `{"a":1 "b":2}`, `{1:2}`, `[{"a":[{"b":null}]}]`, ` `, ``, "\v1", "1\u00a0",
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000), strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 9999) + `[]` + strings.Repeat("}", 9999), strings.Repeat(`{"a":`, 10000) + `[]` + strings.Repeat("}", 10000),
}

func TestValidAgreesWithEncodingJSON(t *testing.T) {
	for _, c := range validCases {
		if got, want := valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("%.40q: valid = %v, json.Valid = %v", c, got, want)
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, c := range validCases {
		if len(c) < 1000 {
			f.Add([]byte(c))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := valid(data), json.Valid(data); got != want {
			t.Fatalf("%q: valid = %v, json.Valid = %v", data, got, want)
		}
	})
}
