package bridge

import (
	"bytes"
	"testing"

	"github.com/gobwas/ws"
)

// maskFrame is a final, masked frame of op with payload, as a tablet writes it.
func maskFrame(op ws.OpCode, payload []byte) []byte {
	f := ws.MaskFrame(ws.NewFrame(op, true, bytes.Clone(payload)))
	return ws.MustCompileFrame(f)
}

// FuzzInlineFrame: the poller's goroutine reads a frame itself exactly when it is one
// whole final, masked ping, pong or plain shown without RSV bits or an extended length,
// as gobwas/ws reads its header and ws.Cipher unmasks it (not inlineFrame's own bit
// tests); anything else goes to a reader goroutine.
func FuzzInlineFrame(f *testing.F) {
	for _, seed := range [][]byte{
		maskFrame(ws.OpPing, nil), maskFrame(ws.OpPong, []byte("hb")),
		maskFrame(ws.OpText, []byte(`{"type":"shown","seq":42}`)),
		maskFrame(ws.OpText, []byte(`{"type":"shown","seq":0}`)),
		maskFrame(ws.OpText, []byte(`{"type":"shown","override":"ovr_1"}`)),
		maskFrame(ws.OpText, []byte(`{"type":"auth"}`)),
		maskFrame(ws.OpBinary, []byte(`{"type":"shown","seq":1}`)),
		maskFrame(ws.OpClose, nil),
		append(maskFrame(ws.OpPong, nil), maskFrame(ws.OpPing, nil)...),          // two frames
		maskFrame(ws.OpText, []byte(`{"type":"shown","seq":1}`))[:10],            // a part
		ws.MustCompileFrame(ws.NewTextFrame([]byte(`{"type":"shown","seq":1}`))), // unmasked
		{0x81, 0xfe, 0x00, 0x05, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e'},            // extended length
		{0x01, 0x80, 1, 2, 3, 4}, {0xc1, 0x80, 1, 2, 3, 4}, {0x8a}, nil,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if got, want := inlineFrame(in), wantInline(in); got != want {
			t.Fatalf("inlineFrame(% x) = %v, want %v", in, got, want)
		}
	})
}

func wantInline(in []byte) bool {
	r := bytes.NewReader(in)
	hdr, err := ws.ReadHeader(r)
	if err != nil || len(in) < 2 || in[1]&0x7f > 125 || !hdr.Fin || hdr.Rsv != 0 || !hdr.Masked {
		return false
	}
	if int64(r.Len()) != hdr.Length {
		return false // not exactly one whole frame
	}
	payload := bytes.Clone(in[len(in)-r.Len():])
	ws.Cipher(payload, hdr.Mask, 0)
	switch hdr.OpCode {
	case ws.OpPing, ws.OpPong:
		return true
	case ws.OpText:
		_, ok := plainShown(payload)
		return ok
	}
	return false
}

// TestInlineFrameLeavesPayload: the check unmasks a copy; the frame stays as the tablet
// sent it, for the reader to unmask once.
func TestInlineFrameLeavesPayload(t *testing.T) {
	in := maskFrame(ws.OpText, []byte(`{"type":"shown","seq":7}`))
	before := bytes.Clone(in)
	if !inlineFrame(in) {
		t.Fatal("a plain shown is not read inline")
	}
	if !bytes.Equal(in, before) {
		t.Fatalf("inlineFrame changed the frame: % x, was % x", in, before)
	}
}

// TestWholeEarly: a frame is whole in early when its header (with the mask, if masked)
// and its payload are there; an extended length is never taken for whole.
func TestWholeEarly(t *testing.T) {
	shown := maskFrame(ws.OpText, []byte(`{"type":"shown","seq":7}`))
	for _, c := range []struct {
		in   []byte
		want bool
	}{
		{shown, true},
		{append(bytes.Clone(shown), 0x8a), true}, // and the start of the next
		{shown[:len(shown)-1], false},
		{shown[:5], false},
		{ws.MustCompileFrame(ws.NewPongFrame([]byte("ab"))), true}, // unmasked: 2 + 2 bytes
		{[]byte{0x8a, 0x80, 1, 2, 3}, false},
		{[]byte{0x81, 0x7e, 0, 5, 'a', 'b', 'c', 'd', 'e'}, false}, // extended length
		{[]byte{0x81}, false}, {nil, false},
	} {
		if got := wholeEarly(c.in); got != c.want {
			t.Errorf("wholeEarly(% x) = %v, want %v", c.in, got, c.want)
		}
	}
}
