package bridge

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// clientMsgCases are where a hand-written reader of the auth message most easily parts
// from encoding/json: case-folded and duplicate names, null, wrong types, escapes,
// numbers a uint64 does not hold, the shown's raw members, input that is not an object.
var clientMsgCases = []string{
	`{"type":"auth","token":"t.t.t","proof":"p.p.p","since":42,"epoch":"e1","feed":"lobby"}`,
	`{"type":"auth","token":"t.t.t","proof":"p.p.p"}`, `{"type":"auth","type":null}`, `{"type":null,"type":"auth"}`,
	`{"Type":"auth"}`, `{"TYPE":"auth","token":"x"}`, "{\"to\u212aen\":\"x\"}", `{"typ\u0065":"auth"}`,
	`{"type":"a\u0075th","token":"\ud800","proof":"\"}"}`, "{\"type\":\"\xff\"}",
	`{"since":-1}`, `{"since":1.5}`, `{"since":1e3}`, `{"since":18446744073709551615}`, `{"since":18446744073709551616}`,
	`{"since":"5"}`, `{"since":null}`, `{"since":0,"since":7}`, `{"since":true}`, `{"type":5}`, `{"token":{}}`, `{"proof":[]}`,
	`{"type":"shown","seq":12}`, `{"type":"shown","seq":null,"override":"o_1"}`, `{"type":"auth","x":1}`, `{}`,
	`null`, `[]`, `"auth"`, `5`, ``, `{"type":"auth"}x`, `{"type":"auth",}`, ` {"type" : "auth" } `,
}

func TestDecodeClientMsgAgreesWithEncodingJSON(t *testing.T) {
	for _, c := range clientMsgCases {
		compareClientMsg(t, []byte(c))
	}
	var m clientMsg
	if err := decodeClientMsg([]byte(clientMsgCases[0]), &m); err != nil || m.Since != 42 || m.Feed != "lobby" {
		t.Fatalf("the full auth decodes to %+v, %v", m, err)
	}
}

func FuzzDecodeClientMsg(f *testing.F) {
	for _, c := range clientMsgCases {
		f.Add([]byte(c))
	}
	f.Add([]byte(`{"type":"auth","token":"` + strings.Repeat("a", 600) + `","proof":"` + strings.Repeat("b", 600) + `"}`))
	f.Fuzz(func(t *testing.T, data []byte) { compareClientMsg(t, data) })
}

// compareClientMsg fails unless decodeClientMsg gives data encoding/json's verdict
// and, when it accepts, its fields.
func compareClientMsg(t *testing.T, data []byte) {
	t.Helper()
	var want, got clientMsg
	wantErr := json.Unmarshal(data, &want)
	gotErr := decodeClientMsg(data, &got)
	if (wantErr == nil) != (gotErr == nil) || wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: decodeClientMsg = %+v, %v; encoding/json = %+v, %v", data, got, gotErr, want, wantErr)
	}
}

// TestDecodeClientMsgAllocations: an auth message costs its three strings (type, token,
// proof) and the message itself (encoding/json's fallback takes its address), not
// encoding/json's reflection.
func TestDecodeClientMsgAllocations(t *testing.T) {
	data := []byte(`{"type":"auth","token":"` + strings.Repeat("a", 600) + `","proof":"` + strings.Repeat("b", 600) + `","since":3}`)
	n := testing.AllocsPerRun(100, func() {
		var m clientMsg
		if err := decodeClientMsg(data, &m); err != nil || m.Type != "auth" {
			t.Fatalf("type %q, %v", m.Type, err) // not m itself: it would escape
		}
	})
	if n > 4 {
		t.Fatalf("decodeClientMsg allocated %v times, want at most 4", n)
	}
}

func BenchmarkDecodeAuthMsg(b *testing.B) {
	data := []byte(`{"type":"auth","token":"` + strings.Repeat("a", 600) + `","proof":"` + strings.Repeat("b", 600) + `","since":3,"epoch":"e1","feed":"lobby"}`)
	for _, c := range []struct {
		name   string
		decode func([]byte, *clientMsg) error
	}{{"jsonx", decodeClientMsg}, {"encoding-json", func(d []byte, m *clientMsg) error { return json.Unmarshal(d, m) }}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var m clientMsg
				if err := c.decode(data, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
