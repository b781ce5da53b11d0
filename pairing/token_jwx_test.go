package pairing

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/kioskfeed/kioskfeed/internal/jsonx"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// parseVerified is the signature and claims check proper (tokenverify.go) without
// Verify's header checks: the kid is read from the header if it can be. Tests call it
// to show that the signature check alone refuses forged algorithms and keys.
func (t *TokenIssuer) parseVerified(token string) (*AccessClaims, error) {
	encHeader, _, _ := strings.Cut(token, ".")
	var kid string
	if raw, err := rawURL.DecodeString(encHeader); err == nil {
		var hdr map[string]json.RawMessage
		if jsonx.StrictObject(raw, &hdr) == nil {
			kid, _ = jsonx.StringMember(hdr, "kid")
		}
	}
	return t.verifySigned(token, kid)
}

// jwxVerify is the verify path the server had before tokenverify.go: jwx's jwt.Parse
// with the issuer's key set and the options it was configured with, then the same
// claims read out. It stays as the oracle the hand-written path is compared with.
func (t *TokenIssuer) jwxVerify(token string) (*AccessClaims, error) {
	tok, err := jwt.Parse([]byte(token),
		// Keys are picked by kid and each key's alg (ES256) is the only
		// algorithm tried: alg none and HMAC never reach a verifier.
		jwt.WithKeySet(t.set),
		jwt.WithValidate(true),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return t.now() })),
		jwt.WithAcceptableSkew(t.leeway),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithAudience(Audience),
		jwt.WithIssuer(t.issuer),
	)
	if err != nil {
		return nil, tokenErr(classifyJWTError(err))
	}
	c := &AccessClaims{}
	var ok bool
	if c.DeviceID, ok = tok.Subject(); !ok || c.DeviceID == "" {
		return nil, tokenErr(reasonMissingSubject)
	}
	if err := tok.Get("feed", &c.Feed); err != nil || c.Feed == "" {
		return nil, tokenErr(reasonMissingFeed)
	}
	var cnf map[string]any
	if err := tok.Get("cnf", &cnf); err != nil {
		return nil, tokenErr(reasonMissingCnf)
	}
	if c.JKT, ok = cnf["jkt"].(string); !ok || c.JKT == "" {
		return nil, tokenErr(reasonMissingCnf)
	}
	if c.JTI, ok = tok.JwtID(); !ok || c.JTI == "" {
		return nil, tokenErr(reasonMissingTokenJTI)
	}
	if c.IssuedAt, ok = tok.IssuedAt(); !ok {
		return nil, tokenErr(reasonMissingTokenIAT)
	}
	if c.Expires, ok = tok.Expiration(); !ok {
		return nil, tokenErr(reasonMissingExpiration) // WithRequiredClaim makes this unreachable
	}
	return c, nil
}

// classifyJWTError maps a jwx parse/validation error to a fixed reason.
func classifyJWTError(err error) string {
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return reasonTokenExpired
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return reasonTokenNotYetValid
	case errors.Is(err, jwt.InvalidIssuedAtError()):
		return reasonTokenIATFuture
	case errors.Is(err, jwt.InvalidAudienceError()):
		return reasonWrongAudience
	case errors.Is(err, jwt.InvalidIssuerError()):
		return reasonWrongIssuer
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return reasonMissingClaim
	case errors.Is(err, jwt.ValidateError()):
		return reasonInvalidClaims
	case errors.Is(err, jws.VerifyError()):
		return reasonTokenSignature
	default:
		return reasonMalformedToken
	}
}

// stricterForm reports whether claims use a form the hand-written path refuses and jwx
// took (tokenverify.go): a NumericDate that is not a plain JSON number.
func stricterForm(claims []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(claims, &m) != nil {
		return false
	}
	for _, name := range []string{"iat", "exp", "nbf"} {
		raw, ok := m[name]
		if !ok {
			continue
		}
		s := strings.TrimSpace(string(raw))
		if s == "" || s[0] == '"' || strings.ContainsAny(s, "eE") {
			return true
		}
	}
	return false
}

// checkAgrees verifies a token signed over claims with both paths: the hand-written one
// never accepts what jwx refused, answers every refusal with jwx's reason, and reads
// the same claims; it may refuse what jwx took only in a stricterForm.
func checkAgrees(t *testing.T, f *tokenFixture, claims []byte) {
	t.Helper()
	h, _ := json.Marshal(f.header())
	tok, err := pairingtest.SignES256(f.k1, h, claims)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) > MaxTokenBytes {
		return
	}
	got, herr := f.iss.Verify(tok)
	want, jerr := f.iss.jwxVerify(tok)
	switch {
	case herr == nil && jerr != nil:
		t.Fatalf("claims %s: accepted by hand, refused by jwx (%v)", claims, jerr)
	case herr != nil && jerr == nil:
		if !stricterForm(claims) {
			t.Fatalf("claims %s: refused by hand (%v), accepted by jwx", claims, herr)
		}
	case herr != nil:
		var he, je *TokenError
		if !errors.As(herr, &he) || !errors.As(jerr, &je) {
			t.Fatalf("claims %s: errors %v / %v, want *TokenError", claims, herr, jerr)
		}
		var obj map[string]json.RawMessage
		notObject := jsonx.StrictObject(claims, &obj) != nil // jwx's reason for those varies
		if he.Reason != je.Reason && !stricterForm(claims) && !notObject {
			t.Fatalf("claims %s: refused by hand for %q, by jwx for %q", claims, he.Reason, je.Reason)
		}
	case *got != *want:
		t.Fatalf("claims %s: hand read %+v, jwx %+v", claims, *got, *want)
	}
}

// TestVerifyAgreesWithJWX compares the two paths on the claims of the table test and
// on edge cases of each claim's type and time.
func TestVerifyAgreesWithJWX(t *testing.T) {
	f := newTokenFixture(t)
	now := f.clock.Now().Unix()
	leeway := int64(DefaultTokenLeeway / time.Second)
	base := f.claims()
	edits := []func(map[string]any){
		nil,
		func(c map[string]any) { c["exp"] = now - leeway },
		func(c map[string]any) { c["exp"] = now - leeway + 1 },
		func(c map[string]any) { c["exp"] = float64(now-leeway) + 0.999 },
		func(c map[string]any) { c["exp"] = json.Number(fmt.Sprintf("%d.5", now+60)) },
		func(c map[string]any) { c["iat"] = now + leeway },
		func(c map[string]any) { c["iat"] = now + leeway + 1 },
		func(c map[string]any) { c["nbf"] = now + leeway },
		func(c map[string]any) { c["nbf"] = now + leeway + 1 },
		func(c map[string]any) { c["nbf"] = -5 },
		func(c map[string]any) { c["exp"] = "1900000000" },
		func(c map[string]any) { c["exp"] = json.Number("1.9e9") },
		func(c map[string]any) { c["exp"] = nil },
		func(c map[string]any) { c["exp"] = true },
		func(c map[string]any) { c["aud"] = []any{Audience, 3} },
		func(c map[string]any) { c["aud"] = []string{} },
		func(c map[string]any) { c["aud"] = "" },
		func(c map[string]any) { c["aud"] = nil },
		func(c map[string]any) { c["aud"] = map[string]any{"a": Audience} },
		func(c map[string]any) { c["iss"] = 5 },
		func(c map[string]any) { c["iss"] = nil },
		func(c map[string]any) { c["sub"] = 5 },
		func(c map[string]any) { c["sub"] = "" },
		func(c map[string]any) { c["jti"] = []string{"a"} },
		func(c map[string]any) { c["jti"] = "" },
		func(c map[string]any) { c["feed"] = nil },
		func(c map[string]any) { c["feed"] = "" },
		func(c map[string]any) { c["cnf"] = map[string]any{"jkt": 5} },
		func(c map[string]any) { c["cnf"] = nil },
		func(c map[string]any) { c["EXP"] = now - 1000 },
		func(c map[string]any) { delete(c, "exp"); c["iat"] = now + leeway + 10 },
	}
	for _, edit := range edits {
		c := maps.Clone(base)
		if edit != nil {
			edit(c)
		}
		raw, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		checkAgrees(t, f, raw)
	}
	for _, raw := range []string{`{}`, `[]`, `null`, `{"exp":1900000000}`, `{"aud":"kioskfeed","aud":"other"}`} {
		checkAgrees(t, f, []byte(raw))
	}
}

// FuzzVerifyAgreesWithJWX signs arbitrary claims with the server's key and compares the
// two verify paths (checkAgrees).
func FuzzVerifyAgreesWithJWX(f *testing.F) {
	fx := newTokenFixture(f)
	seed, _ := json.Marshal(fx.claims())
	f.Add(seed)
	f.Add([]byte(`{"iss":"` + testIssuer + `","aud":["x","kioskfeed"],"exp":1800000100.25,"iat":1799999990,"sub":"d","feed":"f","jti":"j","cnf":{"jkt":"k"}}`))
	f.Add([]byte(`{"exp":"1800000100"}`))
	f.Fuzz(func(t *testing.T, claims []byte) {
		checkAgrees(t, fx, claims)
	})
}
