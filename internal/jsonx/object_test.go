package jsonx

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// objectCases are the inputs where a hand-written reader most easily parts from
// encoding/json: duplicates, escapes in names and values, invalid UTF-8, nesting,
// strings holding braces and quotes, numbers of every form, trailing data, depth.
var objectCases = []string{
	`{}`, ` { } `, `{"a":1}`, `{"a":1,"a":2}`, `{"a":"x","a":null}`, `{"a":{"a":1},"a":[1,{"b":"}"}]}`,
	`{"\u0061lg":"ES256"}`, `{"alg":"ES256","\u0061lg":"none"}`, `{"a\"b":"c"}`, `{"a\\":"\\"}`,
	`{"typ":"dpop\u002bjwt"}`, `{"s":"\ud800"}`, "{\"s\":\"\xff\"}", "{\"\xff\":1}", `{"é":"ü"}`,
	`{"n":-0.5e+10}`, `{"n":1e400}`, `{"n":123456789012345678901234567890}`, `{"n":01}`, `{"n":.5}`,
	`{"t":true,"f":false,"z":null}`, `{"a":[]}`, `{"a":[[[]]]}`, `{"a":"\"}"}`, `{"a":"[{"}`,
	`{"a":1}x`, `{"a":1} `, "{\"a\":1}\n", `{"a":1}{}`, `{"a":1,}`, `{"a"}`, `{a:1}`, `{"a":1`,
	`null`, `[]`, `"x"`, `1`, `true`, ``, ` `, `{"a":"b"`, `{"a":'b'}`, "{\"a\":\"\t\"}",
	" \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } } \t", `{"":""}`, `{"a":"\u0000"}`,
	strings.Repeat(`{"a":`, 10001) + `1` + strings.Repeat(`}`, 10001),
	strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100),
	`{"a1":1,"a2":2,"a3":3,"a4":4,"a5":5,"a6":6,"a7":7,"a8":8,"a9":9,"a10":10,"a11":11,"a12":12,"a13":13,"a1":0}`,
}

func TestObjectAgreesWithStrictObject(t *testing.T) {
	for _, c := range objectCases {
		compareObject(t, []byte(c))
	}
}

func FuzzObject(f *testing.F) {
	for _, c := range objectCases {
		if len(c) < 1000 {
			f.Add([]byte(c))
		}
	}
	f.Add([]byte(`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"AAAA","y":"BBBB"}}`))
	f.Fuzz(func(t *testing.T, data []byte) { compareObject(t, data) })
}

// compareObject fails unless Object reads data exactly as StrictObject and
// StringMember do: the same verdict, the same members, the same raw values and
// strings.
func compareObject(t *testing.T, data []byte) {
	t.Helper()
	var m map[string]json.RawMessage
	wantErr := StrictObject(data, &m)
	var o Object
	gotErr := o.Parse(data)
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("%q: Parse error %v, StrictObject error %v", data, gotErr, wantErr)
	}
	if wantErr != nil {
		return
	}
	names := map[string]bool{}
	o.Each(func(name, _ []byte) bool { names[string(name)] = true; return true })
	if len(names) != len(m) {
		t.Fatalf("%q: %d distinct names, StrictObject has %d", data, len(names), len(m))
	}
	for name, raw := range m {
		got, ok := o.Get(name)
		if !ok || !bytes.Equal(got, raw) {
			t.Fatalf("%q: Get(%q) = %q, %v; StrictObject has %q", data, name, got, ok, raw)
		}
		ws, wok := StringMember(m, name)
		gs, gok := o.String(name)
		if ws != gs || wok != gok {
			t.Fatalf("%q: String(%q) = %q, %v; StringMember = %q, %v", data, name, gs, gok, ws, wok)
		}
	}
	if _, ok := o.Get("\x00absent"); ok && m["\x00absent"] == nil {
		t.Fatalf("%q: Get found a member StrictObject does not have", data)
	}
}

// TestObjectParseAllocations: the point of Object is that reading a proof's header
// does not allocate (issue 15); this keeps it so.
func TestObjectParseAllocations(t *testing.T) {
	data := []byte(`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}`)
	var o Object
	n := testing.AllocsPerRun(100, func() {
		if err := o.Parse(data); err != nil {
			t.Fatal(err)
		}
		var jwk Object
		raw, _ := o.Get("jwk")
		if err := jwk.Parse(raw); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("Parse allocated %v times a run, want 0", n)
	}
}
