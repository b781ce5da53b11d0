package pairing

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/jsonx"
)

// The token's header and claims were read through encoding/json into maps until issue
// 15 moved them to jsonx.Object. These are those readers, kept as the oracle the new
// ones must agree with on every input: the same verdict, reason and claims. (The jwx
// oracle of token_jwx_test.go checks the claims too, through signed tokens.)

func (t *TokenIssuer) mapCheckHeader(encHeader string) (string, error) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(encHeader)
	if err != nil {
		return "", tokenErr(reasonMalformedToken)
	}
	var hdr map[string]json.RawMessage
	if err := jsonx.StrictObject(raw, &hdr); err != nil {
		return "", tokenErr(reasonMalformedToken)
	}
	if alg, ok := jsonx.StringMember(hdr, "alg"); !ok || alg != "ES256" {
		return "", tokenErr(reasonTokenAlg)
	}
	if typ, ok := jsonx.StringMember(hdr, "typ"); !ok || typ != accessTokenType {
		return "", tokenErr(reasonTokenWrongTyp)
	}
	if _, ok := hdr["crit"]; ok {
		return "", tokenErr(reasonTokenHeader)
	}
	if _, ok := hdr["b64"]; ok {
		return "", tokenErr(reasonTokenHeader)
	}
	kid, ok := jsonx.StringMember(hdr, "kid")
	if !ok || kid == "" {
		return "", tokenErr(reasonMissingKid)
	}
	if !t.kids[kid] {
		return "", tokenErr(reasonUnknownKid)
	}
	return kid, nil
}

func (t *TokenIssuer) mapCheckClaims(payload []byte) (*AccessClaims, error) {
	r, err := mapReadClaims(payload)
	if err != nil {
		return nil, err
	}
	return t.validClaims(r) // the checks are the same code: the readers are what differ
}

func mapReadClaims(payload []byte) (tokenClaims, error) {
	var m map[string]json.RawMessage
	if err := jsonx.StrictObject(payload, &m); err != nil {
		return tokenClaims{}, tokenErr(reasonMalformedToken)
	}
	for name, raw := range m { // null iss, sub or jti is absent, as for jwx
		if mapNullAbsent[name] && string(bytes.TrimSpace(raw)) == "null" {
			delete(m, name)
		}
	}
	var r tokenClaims
	var err error
	if r.iss, r.hasIss, err = mapStringClaim(m, "iss"); err != nil {
		return r, err
	}
	if r.sub, r.hasSub, err = mapStringClaim(m, "sub"); err != nil {
		return r, err
	}
	if r.jti, r.hasJTI, err = mapStringClaim(m, "jti"); err != nil {
		return r, err
	}
	if r.aud, r.hasAud, err = mapAudClaim(m["aud"]); err != nil {
		return r, err
	}
	if r.iat, r.hasIAT, err = mapDateClaim(m, "iat"); err != nil {
		return r, err
	}
	if r.exp, r.hasExp, err = mapDateClaim(m, "exp"); err != nil {
		return r, err
	}
	if r.nbf, r.hasNbf, err = mapDateClaim(m, "nbf"); err != nil {
		return r, err
	}
	r.feed, _ = jsonx.StringMember(m, "feed")
	r.jkt = mapCnfJKT(m["cnf"])
	return r, nil
}

// mapNullAbsent are the claims that jwx takes as absent when null (the other registered ones
// do not parse then).
var mapNullAbsent = map[string]bool{"iss": true, "sub": true, "jti": true}

// stringClaim is m[name] when it is a JSON string; present but of another type, the
// token is malformed.
func mapStringClaim(m map[string]json.RawMessage, name string) (string, bool, error) {
	raw, ok := m[name]
	if !ok {
		return "", false, nil
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false, tokenErr(reasonMalformedToken)
	}
	return s, true, nil
}

// audClaim is the aud claim: one string or an array of strings.
func mapAudClaim(raw json.RawMessage) ([]string, bool, error) {
	if raw == nil {
		return nil, false, nil
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, false, tokenErr(reasonMalformedToken)
		}
		return []string{s}, true, nil
	}
	var list []string
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		return nil, false, tokenErr(reasonMalformedToken)
	}
	return list, true, nil
}

// dateClaim is a NumericDate claim: a JSON number of seconds, with an optional
// fraction (RFC 7519 §2) that is checked and dropped, as jwx drops it; jwx refuses a
// negative one too.
func mapDateClaim(m map[string]json.RawMessage, name string) (time.Time, bool, error) {
	raw, ok := m[name]
	if !ok {
		return time.Time{}, false, nil
	}
	s := string(bytes.TrimSpace(raw))
	whole, frac, hasFrac := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || sec < 0 || whole[0] == '-' || (hasFrac && (frac == "" || strings.Trim(frac, "0123456789") != "")) {
		return time.Time{}, false, tokenErr(reasonMalformedToken)
	}
	return time.Unix(sec, 0).UTC(), true, nil
}

// cnfJKT is cnf.jkt when cnf is an object with a non-empty string jkt.
func mapCnfJKT(raw json.RawMessage) string {
	var cnf map[string]json.RawMessage
	if raw == nil || jsonx.StrictObject(raw, &cnf) != nil {
		return ""
	}
	jkt, _ := jsonx.StringMember(cnf, "jkt")
	return jkt
}

func TestTokenParsersAgreeWithMaps(t *testing.T) {
	fx := newTokenFixture(t)
	for _, c := range tokenParserCases {
		compareTokenParsers(t, fx, []byte(c))
	}
	// The comparison is not of refusals alone.
	if _, err := fx.iss.checkHeader(base64.RawURLEncoding.EncodeToString([]byte(strings.ReplaceAll(tokenParserCases[0], "KID", fx.kid1)))); err != nil {
		t.Fatalf("the good header is refused: %v", err)
	}
	if _, err := fx.iss.checkClaims([]byte(strings.ReplaceAll(tokenParserCases[6], "ISS", testIssuer))); err != nil {
		t.Fatalf("the good claims are refused: %v", err)
	}
}

func FuzzTokenParsersAgreeWithMaps(f *testing.F) {
	fx := newTokenFixture(f)
	for _, c := range tokenParserCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) { compareTokenParsers(t, fx, data) })
}

var tokenParserCases = []string{
	`{"alg":"ES256","typ":"at+jwt","kid":"KID"}`, `{"alg":"ES256","typ":"at+jwt","kid":"KID","crit":[]}`,
	`{"alg":"ES256","typ":"at+jwt","kid":"K\u0049D"}`, `{"alg":"ES256","typ":"at+jwt","kid":"KID","kid":""}`,
	`{"alg":"ES256","typ":"at+jwt","kid":null}`, `{"alg":"ES256","typ":"at+jwt","b64":false,"kid":"KID"}`,
	`{"iss":"ISS","aud":"kioskfeed","sub":"dev_1","feed":"lobby","cnf":{"jkt":"J"},"jti":"j","iat":1800000000,"exp":1800000600}`,
	`{"iss":null,"aud":["x","kioskfeed"],"sub":"dev_1","feed":"lobby","cnf":{"jkt":"J","jkt":""},"jti":"j","iat":1800000000.5,"exp":1800000600}`,
	`{"iss":"ISS","aud":["kioskfeed",null],"sub":"dev_1","feed":"lobby","cnf":{"jkt":"J"},"jti":"j","iat":1800000000,"exp":1e9}`,
	`{"iss":"ISS","aud":"kioskfeed","sub":"dev_1","feed":"lobby","cnf":[],"jti":"j","iat":1800000000,"exp":1800000600,"nbf":-1}`,
	`{"iss":"ISS","aud":"kioskfeed","sub":"\u00e9","feed":"l\u006fbby","cnf":{"jkt":"J"},"jti":"j","iat":1800000000,"exp":"1800000600"}`,
	`{"exp":18000006000000000000000}`, `{"exp":1800000600.}`, `{"exp":1800000600.12}`, `{"exp":null}`, `{"aud":1}`, `{"sub":1}`,
	`{}`, `null`, `[]`, ``, `{"a":1}x`,
}

// compareTokenParsers reads data as a token header (KID standing for the issuer's
// kid) and as claims (ISS for its iss), both ways.
func compareTokenParsers(t *testing.T, fx *tokenFixture, data []byte) {
	f := fx.iss
	enc := base64.RawURLEncoding.EncodeToString(bytes.ReplaceAll(data, []byte("KID"), []byte(fx.kid1)))
	kid, err := f.checkHeader(enc)
	wantKid, wantErr := f.mapCheckHeader(enc)
	if kid != wantKid || fmtErr(err) != fmtErr(wantErr) {
		t.Fatalf("%q: checkHeader = %q, %v; the map reader says %q, %v", data, kid, err, wantKid, wantErr)
	}
	data = bytes.ReplaceAll(data, []byte("ISS"), []byte(testIssuer))
	r, err := readClaims(data)
	wantR, wantErr := mapReadClaims(data)
	if fmtErr(err) != fmtErr(wantErr) || fmt.Sprintf("%+v", r) != fmt.Sprintf("%+v", wantR) {
		t.Fatalf("%q: readClaims = %+v, %v; the map reader says %+v, %v", data, r, err, wantR, wantErr)
	}
	c, err := f.checkClaims(data)
	want, wantErr := f.mapCheckClaims(data)
	if fmtErr(err) != fmtErr(wantErr) || (c == nil) != (want == nil) || (c != nil && *c != *want) {
		t.Fatalf("%q: checkClaims = %+v, %v; the map reader says %+v, %v", data, c, err, want, wantErr)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
