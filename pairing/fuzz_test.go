package pairing

import (
	"errors"
	"testing"

	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// FuzzVerifyToken: whatever arrives as an access token, Verify returns a
// TokenError or claims that are complete; it never panics.
func FuzzVerifyToken(f *testing.F) {
	fx := newTokenFixture(f)
	tok, _, err := fx.iss.Issue("dev_1", "lobby", fx.dev.JKT())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add(fx.token(f, fx.k1, nil, nil))
	f.Add(fx.token(f, fx.k2, func(h map[string]any) { h["kid"] = fx.kid2 }, nil))
	f.Add(fx.token(f, fx.k1, func(h map[string]any) { h["alg"] = "none" }, nil))
	f.Add(fx.token(f, fx.k1, nil, func(c map[string]any) { c["exp"] = "soon"; c["aud"] = []any{1, 2} }))
	f.Add(fx.token(f, fx.k1, nil, func(c map[string]any) { c["cnf"] = []string{"jkt"} }))
	f.Add(fx.dev.MustProof(f, pairingtest.ProofParams{Method: "GET", URL: testWSURL}))
	f.Add("")
	f.Add("..")
	f.Add("eyJhbGciOiJFUzI1NiJ9..")

	f.Fuzz(func(t *testing.T, token string) {
		c, err := fx.iss.Verify(token)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error is not a token refusal: %v", err)
			}
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			return
		}
		if c.DeviceID == "" || c.Feed == "" || c.JKT == "" || c.JTI == "" || c.Expires.IsZero() {
			t.Fatalf("accepted with incomplete claims %+v", c)
		}
	})
}
