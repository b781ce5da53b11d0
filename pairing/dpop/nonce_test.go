package dpop

import (
	"bytes"
	"encoding/base64"
	"testing"
	"time"
)

func mustNonceSource(tb testing.TB, key []byte, now func() time.Time) *NonceSource {
	tb.Helper()
	ns, err := NewNonceSource(NonceConfig{Key: key, Now: now})
	if err != nil {
		tb.Fatalf("NewNonceSource: %v", err)
	}
	return ns
}

func TestNonceLifetime(t *testing.T) {
	// A step boundary, so offsets below land where the names say.
	t0 := time.Unix(1_800_000_000-1_800_000_000%300, 0)
	clock := newTestClock(t0)
	key := bytes.Repeat([]byte{7}, NonceKeySize)
	ns := mustNonceSource(t, key, clock.Now)

	tests := []struct {
		name    string
		madeAt  time.Duration // offset from t0 when the nonce is made
		checkAt time.Duration // offset from t0 when it is checked
		want    bool
	}{
		{"same instant", 0, 0, true},
		{"end of its own step", 0, 5*time.Minute - time.Second, true},
		{"previous step, start", 0, 5 * time.Minute, true},
		{"previous step, end", 0, 10*time.Minute - time.Second, true},
		{"two steps ago", 0, 10 * time.Minute, false},
		{"made late in its step, checked 5m later", 5*time.Minute - time.Second, 10*time.Minute - time.Second, true},
		{"made late in its step, two steps later", 5*time.Minute - time.Second, 10 * time.Minute, false},
		{"from the next step (a clock ahead)", 5 * time.Minute, 0, false},
		{"long ago", 0, 24 * time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Set(t0.Add(tt.madeAt))
			n := ns.Nonce()
			clock.Set(t0.Add(tt.checkAt))
			if got := ns.Valid(n); got != tt.want {
				t.Errorf("Valid = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNonceKeys(t *testing.T) {
	clock := newTestClock(time.Unix(1_800_000_000, 0))
	keyA := bytes.Repeat([]byte{1}, NonceKeySize)
	keyB := bytes.Repeat([]byte{2}, NonceKeySize)
	a1 := mustNonceSource(t, keyA, clock.Now)
	a2 := mustNonceSource(t, keyA, clock.Now) // another instance, same key
	b := mustNonceSource(t, keyB, clock.Now)

	if n := a1.Nonce(); !a2.Valid(n) {
		t.Error("an instance with the same key refused the nonce")
	}
	if n := b.Nonce(); a1.Valid(n) {
		t.Error("a nonce made with another key was accepted")
	}
	if a1.Nonce() != a2.Nonce() {
		t.Error("two instances with the same key made different nonces in one step")
	}
}

func TestNonceGarbage(t *testing.T) {
	clock := newTestClock(time.Unix(1_800_000_000, 0))
	ns := mustNonceSource(t, bytes.Repeat([]byte{3}, NonceKeySize), clock.Now)
	good := ns.Nonce()
	raw, err := base64.RawURLEncoding.DecodeString(good)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		b := bytes.Clone(raw)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	tests := []struct {
		name  string
		nonce string
	}{
		{"empty", ""},
		{"short", good[:len(good)-1]},
		{"long", good + "A"},
		{"padding in place of data", good[:len(good)-2] + "=="},
		{"standard alphabet", "+/" + good[2:]},
		{"not base64", "!!!!" + good[4:]},
		{"mac bit flipped", flip(len(raw) - 1)},
		{"step bit flipped", flip(7)},
		{"a 32-byte value, the shape of the bridge's challenges", base64.RawURLEncoding.EncodeToString(make([]byte, 32))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ns.Valid(tt.nonce) {
				t.Errorf("Valid(%q) = true, want false", tt.nonce)
			}
		})
	}
	if !ns.Valid(good) {
		t.Error("the untouched nonce is refused")
	}
}

func TestNewNonceSourceKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := NewNonceSource(NonceConfig{Key: make([]byte, n)}); err == nil {
			t.Errorf("key of %d bytes accepted", n)
		}
	}
}
