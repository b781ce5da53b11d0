package dpop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/kioskfeed/kioskfeed/internal/jsonx"
)

// The proof's header and claims were read through encoding/json into maps until issue
// 15 moved them to jsonx.Object. These are those readers, kept as the oracle the new ones
// must agree with on every input: the same verdict, reason, key, thumbprint and claims.

func mapProofKey(encHeader string) (*ecdsa.PublicKey, string, error) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(encHeader)
	if err != nil {
		return nil, "", proofErr(reasonMalformedProof)
	}
	// A map keeps member names case-sensitive, as JOSE requires (a struct
	// would let "ALG" fill Alg).
	var hdr map[string]json.RawMessage
	if err := jsonx.StrictObject(raw, &hdr); err != nil {
		return nil, "", proofErr(reasonMalformedProof)
	}
	if typ, ok := jsonx.StringMember(hdr, "typ"); !ok || typ != dpopType {
		return nil, "", proofErr(reasonWrongTyp)
	}
	if alg, ok := jsonx.StringMember(hdr, "alg"); !ok || alg != "ES256" {
		return nil, "", proofErr(reasonUnsupportedAlg)
	}
	// jku, x5u, x5c and kid are ignored: the key is the jwk. crit and b64
	// change how the JWS is read, and nothing here understands them.
	if _, ok := hdr["crit"]; ok {
		return nil, "", proofErr(reasonUnsupportedHdr)
	}
	if _, ok := hdr["b64"]; ok {
		return nil, "", proofErr(reasonUnsupportedHdr)
	}
	rawJWK, ok := hdr["jwk"]
	if !ok {
		return nil, "", proofErr(reasonMissingJWK)
	}
	var key map[string]json.RawMessage
	if err := jsonx.StrictObject(rawJWK, &key); err != nil {
		return nil, "", proofErr(reasonMissingJWK)
	}
	if _, ok := key["d"]; ok {
		return nil, "", proofErr(reasonPrivateJWK)
	}
	if kty, ok := jsonx.StringMember(key, "kty"); !ok || kty != "EC" {
		return nil, "", proofErr(reasonUnsupportedKty)
	}
	if crv, ok := jsonx.StringMember(key, "crv"); !ok || crv != "P-256" {
		return nil, "", proofErr(reasonUnsupportedCrv)
	}
	x, okX := mapCoordinate(key, "x")
	y, okY := mapCoordinate(key, "y")
	if !okX || !okY {
		return nil, "", proofErr(reasonInvalidJWK)
	}
	point := make([]byte, 0, 65)
	point = append(point, 4)
	point = append(point, x...)
	point = append(point, y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil { // not on the curve
		return nil, "", proofErr(reasonInvalidJWK)
	}
	return pub, thumbprintXY(x, y), nil
}

// coordinate decodes a P-256 coordinate member: base64url of exactly 32
// bytes (RFC 7518 §6.2.1.2 forbids shortened coordinates).
func mapCoordinate(m map[string]json.RawMessage, name string) ([]byte, bool) {
	s, ok := jsonx.StringMember(m, name)
	if !ok {
		return nil, false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, false
	}
	return b, true
}

// parseProofClaims reads the claims this package checks from a verified
// payload. Members of the wrong JSON type are refused rather than ignored.
func mapParseProofClaims(payload []byte) (proofClaims, error) {
	var m map[string]json.RawMessage
	if err := jsonx.StrictObject(payload, &m); err != nil {
		return proofClaims{}, proofErr(reasonMalformedClaims)
	}
	var c proofClaims
	for _, f := range c.stringClaims() {
		raw, ok := m[f.name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(raw, f.dst); err != nil || raw[0] != '"' {
			return proofClaims{}, proofErr(reasonMalformedClaims)
		}
		if f.has != nil {
			*f.has = true
		}
	}
	if raw, ok := m["iat"]; ok {
		iat, ok := iatClaim(raw)
		if !ok {
			return proofClaims{}, proofErr(reasonMalformedClaims)
		}
		c.iat, c.hasIAT = iat, true
	}
	return c, nil
}

func TestProofParsersAgreeWithMaps(t *testing.T) {
	for _, c := range parserCases {
		compareProofKey(t, []byte(c))
		compareProofClaims(t, []byte(c))
	}
	// The comparison is not of refusals alone.
	if _, _, err := proofKey(base64.RawURLEncoding.EncodeToString([]byte(parserCases[0]))); err != nil {
		t.Fatalf("the good header is refused: %v", err)
	}
}

func FuzzProofKeyAgreesWithMaps(f *testing.F) {
	for _, c := range parserCases {
		f.Add([]byte(c))
	}
	f.Fuzz(compareProofKey)
}

func FuzzProofClaimsAgreeWithMaps(f *testing.F) {
	for _, c := range parserCases {
		f.Add([]byte(c))
	}
	f.Fuzz(compareProofClaims)
}

const (
	testX = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
	testY = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
)

var parserCases = []string{
	`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"` + testX + `","y":"` + testY + `"}}`,
	`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"` + testX + `","y":"` + testY + `","d":"x"}}`,
	`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"` + testX + `","y":"` + testY + `"},"crit":["b64"]}`,
	`{"typ":"dpop+jwt","alg":"ES256","alg":"none","jwk":{"kty":"EC","crv":"P-256","x":"` + testX + `","y":"` + testY + `"}}`,
	`{"typ":"dpop\u002bjwt","\u0061lg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"` + testX + `","y":"` + testY + `"}}`,
	`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"` + testX[:20] + `\n` + testX[20:] + `","y":"` + testY + `"}}`,
	`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"` + testY + `","y":"` + testX + `"}}`,
	`{"typ":"dpop+jwt","alg":"ES256","jwk":null}`, `{"typ":"dpop+jwt","alg":"ES256","jwk":[]}`,
	`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":1,"y":"` + testY + `"}}`,
	`{"jti":"0123456789abcdefgh","htm":"GET","htu":"ws://127.0.0.1/ws","iat":1800000000,"nonce":"n","ath":"a"}`,
	`{"jti":null,"htm":"GET","iat":"1800000000"}`, `{"iat":-1.5e3}`, `{"iat":1e999}`, `{"iat":true}`,
	`{"jti":"\u00e9\ud800","jti":"x","ath":null}`, "{\"nonce\":\"\xff\"}", `{"iat":[1]}`, `{}`, `null`, `[]`, ``, `{"a":1}x`,
}

func compareProofKey(t *testing.T, raw []byte) {
	enc := base64.RawURLEncoding.EncodeToString(raw)
	pub, jkt, err := proofKey(enc)
	wantPub, wantJKT, wantErr := mapProofKey(enc)
	if errString(err) != errString(wantErr) || jkt != wantJKT || (pub == nil) != (wantPub == nil) || (pub != nil && !pub.Equal(wantPub)) {
		t.Fatalf("%q: proofKey = %v, %q, %v; the map reader says %v, %q, %v", raw, pub, jkt, err, wantPub, wantJKT, wantErr)
	}
}

func compareProofClaims(t *testing.T, raw []byte) {
	c, err := parseProofClaims(raw)
	want, wantErr := mapParseProofClaims(raw)
	if errString(err) != errString(wantErr) || c != want {
		t.Fatalf("%q: parseProofClaims = %+v, %v; the map reader says %+v, %v", raw, c, err, want, wantErr)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
