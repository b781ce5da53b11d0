package client

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"
)

// proofClaims are a DPoP proof's claims (RFC 9449 §4.2), in the PWA's order.
type proofClaims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	Nonce string `json:"nonce,omitempty"`
	ATH   string `json:"ath,omitempty"`
}

// Proof signs a DPoP proof (docs/protocol.md §2, RFC 9449): header typ dpop+jwt, alg
// ES256 and the public jwk; claims a fresh jti (128 random bits), htm method, htu url
// (the target without query or fragment, built from the server's public URL), iat, the
// server nonce or socket challenge when nonce is not empty, and the ath of accessToken
// when it is not empty. A zero iat means now.
func (k *Key) Proof(method, url, nonce, accessToken string, iat time.Time) (string, error) {
	if iat.IsZero() {
		iat = time.Now()
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	c := proofClaims{JTI: b64.EncodeToString(jti[:]), HTM: method, HTU: url, IAT: iat.Unix(), Nonce: nonce}
	if accessToken != "" {
		c.ATH = ATH(accessToken)
	}
	claims, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("client: encode proof: %w", err)
	}
	return SignES256(k.priv, []byte(`{"typ":"dpop+jwt","alg":"ES256","jwk":`+k.jwk+`}`), claims)
}

// SignES256 signs header and claims (JSON, used as given) as a compact JWS with the raw
// 64-byte r‖s signature of JWS ES256, which is also what WebCrypto's sign returns.
func SignES256(priv *ecdsa.PrivateKey, header, claims []byte) (string, error) {
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(claims)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, priv, digest[:])
	if err != nil {
		return "", fmt.Errorf("client: sign: %w", err)
	}
	size := (priv.Curve.Params().BitSize + 7) / 8
	sig := make([]byte, 2*size)
	r.FillBytes(sig[:size])
	s.FillBytes(sig[size:])
	return input + "." + b64.EncodeToString(sig), nil
}

// ATH is a proof's ath claim for an access token: base64url SHA-256 of it.
func ATH(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return b64.EncodeToString(sum[:])
}
