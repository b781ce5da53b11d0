package bridge

import "testing"

// TestPlainShown: the decode-free path takes exactly the canonical spelling with a valid
// seq; everything else goes to the JSON path (which closes 4400 for what is malformed).
func TestPlainShown(t *testing.T) {
	for in, want := range map[string]uint64{
		`{"type":"shown","seq":1}`:                    1,
		`{"type":"shown","seq":18446744073709551615}`: 18446744073709551615,
	} {
		if got, ok := plainShown([]byte(in)); !ok || got != want {
			t.Errorf("plainShown(%s) = %d, %v; want %d, true", in, got, ok, want)
		}
	}
	for _, in := range []string{
		`{"type":"shown","seq":0}`, `{"type":"shown","seq":01}`, `{"type":"shown","seq":-1}`,
		`{"type":"shown","seq":1e3}`, `{"type":"shown","seq":1.0}`, `{"type":"shown","seq":}`,
		`{"type":"shown","seq":18446744073709551616}`, `{"type":"shown","seq":1,"x":2}`,
		`{"type":"shown","seq":"1"}`, `{"type":"shown", "seq":1}`, `{"type":"shown","seq":1 }`,
		`{"type":"shown","seq":1`, `{"type":"shown","override":"ovr_a"}`, ``,
	} {
		if got, ok := plainShown([]byte(in)); ok {
			t.Errorf("plainShown(%s) = %d, true; want false", in, got)
		}
	}
}
