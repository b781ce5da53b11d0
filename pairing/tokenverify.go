package pairing

import (
	"bytes"
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
// is the DPoP proofs' own (dpop.VerifyES256).
func (t *TokenIssuer) verifySigned(token, kid string) (*AccessClaims, error) {
	pub := t.pubs[kid]
	encHeader, rest, _ := strings.Cut(token, ".")
	encPayload, encSig, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(encSig, '.') >= 0 {
		return nil, tokenErr(reasonMalformedToken)
	}
	if !dpop.VerifyES256(pub, token[:len(encHeader)+1+len(encPayload)], encSig) {
		return nil, tokenErr(reasonTokenSignature)
	}
	payload, err := rawURL.DecodeString(encPayload)
	if err != nil {
		return nil, tokenErr(reasonMalformedToken)
	}
	return t.checkClaims(payload)
}

// checkClaims validates a verified token's claims as jwx did with this issuer's options
// (WithValidate, WithAcceptableSkew, WithRequiredClaim(exp), WithAudience, WithIssuer),
// then reads the ones the server needs.
func (t *TokenIssuer) checkClaims(payload []byte) (*AccessClaims, error) {
	var m map[string]json.RawMessage
	if err := jsonx.StrictObject(payload, &m); err != nil {
		return nil, tokenErr(reasonMalformedToken)
	}
	for name, raw := range m { // null iss, sub or jti is absent, as for jwx
		if nullAbsent[name] && string(bytes.TrimSpace(raw)) == "null" {
			delete(m, name)
		}
	}
	// The registered claims must have their types, or the token does not parse.
	var c AccessClaims
	var iss string
	var hasIss, hasSub, hasJTI bool
	var err error
	if iss, hasIss, err = stringClaim(m, "iss"); err != nil {
		return nil, err
	}
	if c.DeviceID, hasSub, err = stringClaim(m, "sub"); err != nil {
		return nil, err
	}
	if c.JTI, hasJTI, err = stringClaim(m, "jti"); err != nil {
		return nil, err
	}
	aud, hasAud, err := audClaim(m["aud"])
	if err != nil {
		return nil, err
	}
	iat, hasIAT, err := dateClaim(m, "iat")
	if err != nil {
		return nil, err
	}
	exp, hasExp, err := dateClaim(m, "exp")
	if err != nil {
		return nil, err
	}
	nbf, hasNbf, err := dateClaim(m, "nbf")
	if err != nil {
		return nil, err
	}
	// jwx's validators, in its order, on times truncated to the second.
	now := t.now().Truncate(time.Second)
	switch {
	case hasIAT && now.Before(iat.Truncate(time.Second).Add(-t.leeway)):
		return nil, tokenErr(reasonTokenIATFuture)
	case hasExp && !now.Before(exp.Truncate(time.Second).Add(t.leeway)):
		return nil, tokenErr(reasonTokenExpired)
	case hasNbf && now.Before(nbf.Truncate(time.Second).Add(-t.leeway)):
		return nil, tokenErr(reasonTokenNotYetValid)
	case !hasExp:
		return nil, tokenErr(reasonMissingClaim)
	case !hasAud || !containsString(aud, Audience):
		return nil, tokenErr(reasonWrongAudience)
	case !hasIss || iss != t.issuer:
		return nil, tokenErr(reasonWrongIssuer)
	}
	// What this server needs of them.
	if !hasSub || c.DeviceID == "" {
		return nil, tokenErr(reasonMissingSubject)
	}
	if feed, ok := jsonx.StringMember(m, "feed"); ok && feed != "" {
		c.Feed = feed
	} else {
		return nil, tokenErr(reasonMissingFeed)
	}
	if c.JKT = cnfJKT(m["cnf"]); c.JKT == "" {
		return nil, tokenErr(reasonMissingCnf)
	}
	if !hasJTI || c.JTI == "" {
		return nil, tokenErr(reasonMissingTokenJTI)
	}
	if !hasIAT {
		return nil, tokenErr(reasonMissingTokenIAT)
	}
	c.IssuedAt, c.Expires = iat, exp
	return &c, nil
}

// nullAbsent are the claims that jwx takes as absent when null (the other registered ones
// do not parse then).
var nullAbsent = map[string]bool{"iss": true, "sub": true, "jti": true}

// stringClaim is m[name] when it is a JSON string; present but of another type, the
// token is malformed.
func stringClaim(m map[string]json.RawMessage, name string) (string, bool, error) {
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
func audClaim(raw json.RawMessage) ([]string, bool, error) {
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
func dateClaim(m map[string]json.RawMessage, name string) (time.Time, bool, error) {
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
func cnfJKT(raw json.RawMessage) string {
	var cnf map[string]json.RawMessage
	if raw == nil || jsonx.StrictObject(raw, &cnf) != nil {
		return ""
	}
	jkt, _ := jsonx.StringMember(cnf, "jkt")
	return jkt
}
