package pairing

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/jsonx"
	"github.com/kioskfeed/kioskfeed/pairing/dpop"
)

// This file is the verify path of access tokens: the signature and the claims, by hand.
// It replaced jwx's jwt.Parse on every handshake (issue 15): a profile of a connect
// storm gave token verification a third of the server's CPU, two thirds of it JSON,
// reflection and allocation around an ~80 µs ECDSA check. jwx still signs the tokens
// and publishes the key set. Every check jwx made is kept, in its order (iat, exp, nbf,
// the required exp, aud, iss, then the claims this server needs) and with its reasons;
// token_jwx_test.go keeps the jwx path as an oracle that the tests and a fuzz target
// compare this one with. Two forms jwx takes are refused here, as no issuer of ours
// writes them: a NumericDate written as a string ("exp":"1800000000") or in exponent
// form (1.8e9).

var rawURL = base64.RawURLEncoding.Strict()

// verifySigned checks token's ES256 signature with the key kid names and its claims. A
// kid of none of this issuer's keys verifies nothing: bad signature. The ES256 check
// is the DPoP proofs' own (dpop.VerifyES256). It is skipped for the very bytes of a
// token this issuer signed or has verified before (tokencache.go); the claims are
// checked every time.
func (t *TokenIssuer) verifySigned(token, kid string) (*AccessClaims, error) {
	pub := t.pubs[kid]
	encHeader, rest, _ := strings.Cut(token, ".")
	encPayload, encSig, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(encSig, '.') >= 0 {
		return nil, tokenErr(reasonMalformedToken)
	}
	d := digestToken(token)
	known := t.known.has(d)
	if !known && !dpop.VerifyES256(pub, token[:len(encHeader)+1+len(encPayload)], encSig) {
		return nil, tokenErr(reasonTokenSignature)
	}
	payload, err := rawURL.DecodeString(encPayload)
	if err != nil {
		return nil, tokenErr(reasonMalformedToken)
	}
	claims, err := t.checkClaims(payload)
	if err == nil && !known {
		t.known.add(d, claims.Expires.Add(t.leeway), t.now())
	}
	return claims, err
}

// checkClaims validates a verified token's claims as jwx did with this issuer's options
// (WithValidate, WithAcceptableSkew, WithRequiredClaim(exp), WithAudience, WithIssuer),
// then reads the ones the server needs.
func (t *TokenIssuer) checkClaims(payload []byte) (*AccessClaims, error) {
	r, err := readClaims(payload)
	if err != nil {
		return nil, err
	}
	return t.validClaims(r)
}

// tokenClaims are a token's claims as read, before any is checked against the issuer,
// the clock or what the server needs.
type tokenClaims struct {
	iss, sub, jti, feed, jkt                               string
	aud                                                    []string
	iat, exp, nbf                                          time.Time
	hasIss, hasSub, hasJTI, hasAud, hasIAT, hasExp, hasNbf bool
}

// readClaims reads a token's claims: the registered ones must have their types, or the
// token does not parse; feed and cnf's jkt are empty unless they are strings.
func readClaims(payload []byte) (tokenClaims, error) {
	var m jsonx.Object
	if err := m.Parse(payload); err != nil {
		return tokenClaims{}, tokenErr(reasonMalformedToken)
	}
	var r tokenClaims
	var err error
	if r.iss, r.hasIss, err = stringClaim(&m, "iss"); err != nil {
		return r, err
	}
	if r.sub, r.hasSub, err = stringClaim(&m, "sub"); err != nil {
		return r, err
	}
	if r.jti, r.hasJTI, err = stringClaim(&m, "jti"); err != nil {
		return r, err
	}
	rawAud, _ := m.Get("aud")
	if r.aud, r.hasAud, err = audClaim(rawAud); err != nil {
		return r, err
	}
	if r.iat, r.hasIAT, err = dateClaim(&m, "iat"); err != nil {
		return r, err
	}
	if r.exp, r.hasExp, err = dateClaim(&m, "exp"); err != nil {
		return r, err
	}
	if r.nbf, r.hasNbf, err = dateClaim(&m, "nbf"); err != nil {
		return r, err
	}
	r.feed, _ = m.String("feed")
	rawCnf, _ := m.Get("cnf")
	r.jkt = cnfJKT(rawCnf)
	return r, nil
}

// validClaims checks read claims: jwx's validators, in its order, on times truncated
// to the second, then what this server needs of them.
func (t *TokenIssuer) validClaims(r tokenClaims) (*AccessClaims, error) {
	now := t.now().Truncate(time.Second)
	switch {
	case r.hasIAT && now.Before(r.iat.Truncate(time.Second).Add(-t.leeway)):
		return nil, tokenErr(reasonTokenIATFuture)
	case r.hasExp && !now.Before(r.exp.Truncate(time.Second).Add(t.leeway)):
		return nil, tokenErr(reasonTokenExpired)
	case r.hasNbf && now.Before(r.nbf.Truncate(time.Second).Add(-t.leeway)):
		return nil, tokenErr(reasonTokenNotYetValid)
	case !r.hasExp:
		return nil, tokenErr(reasonMissingClaim)
	case !r.hasAud || !containsString(r.aud, Audience):
		return nil, tokenErr(reasonWrongAudience)
	case !r.hasIss || r.iss != t.issuer:
		return nil, tokenErr(reasonWrongIssuer)
	case !r.hasSub || r.sub == "":
		return nil, tokenErr(reasonMissingSubject)
	case r.feed == "":
		return nil, tokenErr(reasonMissingFeed)
	case r.jkt == "":
		return nil, tokenErr(reasonMissingCnf)
	case !r.hasJTI || r.jti == "":
		return nil, tokenErr(reasonMissingTokenJTI)
	case !r.hasIAT:
		return nil, tokenErr(reasonMissingTokenIAT)
	}
	return &AccessClaims{DeviceID: r.sub, Feed: r.feed, JKT: r.jkt, JTI: r.jti, IssuedAt: r.iat, Expires: r.exp}, nil
}

// stringClaim is the claim name (iss, sub or jti) when it is a JSON string; present but
// of another type, the token is malformed. Null is absent, as for jwx (the other
// registered claims do not parse then).
func stringClaim(m *jsonx.Object, name string) (string, bool, error) {
	raw, ok := m.Get(name)
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	s, ok := jsonx.String(raw)
	if !ok {
		return "", false, tokenErr(reasonMalformedToken)
	}
	return s, true, nil
}

// audClaim is the aud claim: one string or an array of strings.
func audClaim(raw []byte) ([]string, bool, error) {
	if raw == nil {
		return nil, false, nil
	}
	if s, ok := jsonx.String(raw); ok {
		return []string{s}, true, nil
	}
	var list []string
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		return nil, false, tokenErr(reasonMalformedToken)
	}
	return list, true, nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// dateClaim is a NumericDate claim: a JSON number of seconds, with an optional
// fraction (RFC 7519 §2) that is checked and dropped, as jwx drops it; jwx refuses a
// negative one too.
func dateClaim(m *jsonx.Object, name string) (time.Time, bool, error) {
	raw, ok := m.Get(name)
	if !ok {
		return time.Time{}, false, nil
	}
	s := string(raw)
	whole, frac, hasFrac := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || sec < 0 || whole[0] == '-' || (hasFrac && (frac == "" || strings.Trim(frac, "0123456789") != "")) {
		return time.Time{}, false, tokenErr(reasonMalformedToken)
	}
	return time.Unix(sec, 0).UTC(), true, nil
}

// cnfJKT is cnf.jkt when cnf is an object with a string jkt.
func cnfJKT(raw []byte) string {
	var cnf jsonx.Object
	if cnf.Parse(raw) != nil {
		return ""
	}
	jkt, _ := cnf.String("jkt")
	return jkt
}
