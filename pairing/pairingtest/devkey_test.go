package pairingtest

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"
)

// TestProofShape checks the bytes against what the PWA sends: header
// members typ, alg, jwk with kty, crv, x, y only; a 64-byte r||s signature
// that verifies over the signing input.
func TestProofShape(t *testing.T) {
	k := MustDeviceKey(t)
	iat := time.Unix(1_800_000_000, 0)
	proof := k.MustProof(t, ProofParams{Method: "GET", URL: "wss://kiosk.example/ws", Nonce: "n0", AccessToken: "tok", IssuedAt: iat, JTI: "jti-0123456789abcdef"})
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}
	dec := base64.RawURLEncoding
	var hdr map[string]json.RawMessage
	raw, _ := dec.DecodeString(parts[0])
	if err := json.Unmarshal(raw, &hdr); err != nil {
		t.Fatal(err)
	}
	if len(hdr) != 3 || string(hdr["typ"]) != `"dpop+jwt"` || string(hdr["alg"]) != `"ES256"` {
		t.Errorf("header = %s", raw)
	}
	var jwk map[string]string
	if err := json.Unmarshal(hdr["jwk"], &jwk); err != nil || len(jwk) != 4 || jwk["kty"] != "EC" || jwk["crv"] != "P-256" {
		t.Errorf("jwk = %s", hdr["jwk"])
	}
	var c Claims
	raw, _ = dec.DecodeString(parts[1])
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	want := Claims{JTI: "jti-0123456789abcdef", HTM: "GET", HTU: "wss://kiosk.example/ws", IAT: iat.Unix(), Nonce: "n0", ATH: ATH("tok")}
	if c != want {
		t.Errorf("claims = %+v, want %+v", c, want)
	}
	sig, err := dec.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature is %d bytes (%v), want 64", len(sig), err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(&k.PrivateKey().PublicKey, digest[:], r, s) {
		t.Error("signature does not verify")
	}
	if len(k.JKT()) != 43 {
		t.Errorf("jkt %q is not a base64url SHA-256", k.JKT())
	}
}
