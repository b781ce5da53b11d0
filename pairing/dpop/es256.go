package dpop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
)

// This file holds the JOSE pieces every handshake runs, by hand (issue 15): the ES256
// check of a compact JWS and the RFC 7638 thumbprint of a P-256 key. Through jwx they
// cost a key import, reflection and a dozen allocations around the ECDSA math each;
// their tests compare them with jwx, which still signs and publishes keys.

var rawURL = base64.RawURLEncoding.Strict()

// VerifyES256 reports whether encSig (base64url, the 64-byte R||S of RFC 7518 §3.4)
// is pub's ES256 signature of signingInput (the compact JWS's header.payload).
func VerifyES256(pub *ecdsa.PublicKey, signingInput, encSig string) bool {
	var sig [64]byte
	if pub == nil || rawURL.DecodedLen(len(encSig)) != len(sig) {
		return false
	}
	if n, err := rawURL.Decode(sig[:], []byte(encSig)); err != nil || n != len(sig) {
		return false
	}
	digest := sha256.Sum256([]byte(signingInput))
	// ecdsa.Verify(r, s) would make two big.Ints and DER-encode them on the heap for
	// VerifyASN1; the DER is built here, on the stack, refusing a zero r or s as it does.
	var der [72]byte
	b, ok := appendDERSignature(der[:0], sig[:32], sig[32:])
	return ok && ecdsa.VerifyASN1(pub, digest[:], b)
}

// appendDERSignature appends the ASN.1 DER SEQUENCE { INTEGER r, INTEGER s } of two
// 32-byte big-endian unsigned integers; ok is false when either is zero.
func appendDERSignature(b, r, s []byte) ([]byte, bool) {
	r, s = trimZeros(r), trimZeros(s)
	if len(r) == 0 || len(s) == 0 {
		return nil, false
	}
	body := derIntLen(r) + derIntLen(s)
	b = append(b, 0x30, byte(body)) // at most 70 bytes: the short length form
	b = appendDERInt(b, r)
	return appendDERInt(b, s), true
}

func trimZeros(v []byte) []byte {
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	return v
}

// derIntLen is the encoded size of the INTEGER of v (no leading zeros, not empty).
func derIntLen(v []byte) int {
	if v[0]&0x80 != 0 {
		return 3 + len(v) // tag, length, a 0x00 that keeps it positive
	}
	return 2 + len(v)
}

func appendDERInt(b, v []byte) []byte {
	if v[0]&0x80 != 0 {
		b = append(b, 0x02, byte(len(v)+1), 0)
		return append(b, v...)
	}
	b = append(b, 0x02, byte(len(v)))
	return append(b, v...)
}

// verifyCompact checks compact's ES256 signature with pub and returns its decoded
// payload; ok is false for a bad signature or a payload that is not base64url.
func verifyCompact(pub *ecdsa.PublicKey, compact string) (payload []byte, ok bool) {
	encHeader, rest, _ := strings.Cut(compact, ".")
	encPayload, encSig, found := strings.Cut(rest, ".")
	if !found || !VerifyES256(pub, compact[:len(encHeader)+1+len(encPayload)], encSig) {
		return nil, false
	}
	payload, err := rawURL.DecodeString(encPayload)
	return payload, err == nil
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of pub, base64url: a device's
// identity (jkt) and a signing key's kid. Only P-256 keys have one here.
func Thumbprint(pub *ecdsa.PublicKey) (string, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return "", errors.New("thumbprint: not a P-256 key")
	}
	point, err := pub.Bytes() // 0x04 || X || Y, 32 bytes each
	if err != nil {
		return "", errors.New("thumbprint: " + err.Error())
	}
	return thumbprintXY(point[1:33], point[33:65]), nil
}

// thumbprintXY is the thumbprint of the P-256 key with coordinates x and y (32 bytes
// each): the SHA-256 of its required members in lexical order, no whitespace (RFC 7638 §3.2).
func thumbprintXY(x, y []byte) string {
	var buf [128]byte
	b := append(buf[:0], `{"crv":"P-256","kty":"EC","x":"`...)
	b = base64.RawURLEncoding.AppendEncode(b, x)
	b = append(b, `","y":"`...)
	b = base64.RawURLEncoding.AppendEncode(b, y)
	b = append(b, `"}`...)
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
