package dpop

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// FuzzVerifyProof: whatever arrives in a DPoP header, Verify returns a
// ProofError or accepts; it never panics and never fails otherwise.
func FuzzVerifyProof(f *testing.F) {
	clock := newTestClock(time.Unix(1_800_000_000, 0))
	fx := newDPoPFixture(f, &memReplay{}, clock)
	want := ProofWant{Method: "POST", URL: testHTU, AccessToken: testToken, NonceValid: fx.nonces.Valid}
	withATH := func(c map[string]any) { c["ath"] = AccessTokenHash(testToken) }

	f.Add(fx.proof(f, nil, withATH))
	f.Add(fx.proof(f, func(h map[string]any) { h["jku"] = "http://127.0.0.1:1/" }, withATH))
	f.Add(fx.proof(f, func(h map[string]any) { h["alg"] = "none" }, withATH))
	f.Add(fx.proof(f, func(h map[string]any) { h["crit"] = []string{"b64"}; h["b64"] = false }, withATH))
	f.Add(fx.proof(f, nil, func(c map[string]any) { c["iat"] = 1e308 }))
	f.Add(fx.proof(f, nil, func(c map[string]any) { c["jti"] = map[string]any{"x": []any{1, nil}} }))
	f.Add(fx.dev.MustProof(f, pairingtest.ProofParams{Method: "POST", URL: testHTU, Nonce: fx.nonces.Nonce(), AccessToken: testToken, IssuedAt: clock.Now()}))
	f.Add("")
	f.Add("..")
	f.Add("e30.e30.e30")
	f.Add(strings.Repeat("A", 100) + "." + strings.Repeat("B", 100) + "." + strings.Repeat("C", 86))

	f.Fuzz(func(t *testing.T, proof string) {
		jkt, err := fx.v.Verify(context.Background(), proof, want)
		if err != nil {
			if !errors.Is(err, ErrInvalidProof) {
				t.Fatalf("error is not a proof refusal: %v", err)
			}
			if jkt != "" {
				t.Fatal("jkt returned with an error")
			}
			return
		}
		if len(jkt) != 43 {
			t.Fatalf("accepted with jkt %q", jkt)
		}
	})
}
