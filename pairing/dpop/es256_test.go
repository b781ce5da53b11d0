package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// jwxThumbprint is the thumbprint as jwx computes it, the oracle of Thumbprint.
func jwxThumbprint(t testing.TB, pub *ecdsa.PublicKey) string {
	k, err := jwk.Import(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(sum)
}

func TestThumbprintMatchesJWX(t *testing.T) {
	for range 64 { // coordinates with leading zero bytes among them, now and then
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Thumbprint(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if want := jwxThumbprint(t, &k.PublicKey); got != want {
			t.Fatalf("Thumbprint = %s, jwx says %s", got, want)
		}
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := Thumbprint(&p384.PublicKey); err == nil {
		t.Fatal("Thumbprint of a P-384 key: no error")
	}
	if _, err := Thumbprint(nil); err == nil {
		t.Fatal("Thumbprint(nil): no error")
	}
}

// signCompact is a compact ES256 JWS of payload by k, through jwx.
func signCompact(t testing.TB, k *ecdsa.PrivateKey, payload string) string {
	out, err := jws.Sign([]byte(payload), jws.WithKey(jwa.ES256(), k))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// agree checks that verifyCompact and jwx's VerifyCompactFast say the same of compact.
func agree(t *testing.T, pub *ecdsa.PublicKey, compact string) bool {
	t.Helper()
	payload, ok := verifyCompact(pub, compact)
	want, err := jws.VerifyCompactFast(pub, []byte(compact), jwa.ES256())
	if ok != (err == nil) || (ok && string(payload) != string(want)) {
		t.Fatalf("%.60q: by hand %v %q, jwx %v %q", compact, ok, payload, err, want)
	}
	return ok
}

func TestVerifyES256MatchesJWX(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := signCompact(t, k, `{"a":1}`)
	if !agree(t, &k.PublicKey, good) {
		t.Fatal("a good signature was refused")
	}
	parts := strings.Split(good, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	// s' = n - s: the other valid signature of the same message (ECDSA is malleable);
	// both paths take it, as neither keys anything on signature bytes.
	n := elliptic.P256().Params().N
	s := new(big.Int).SetBytes(sig[32:])
	high := append(append([]byte(nil), sig[:32]...), new(big.Int).Sub(n, s).FillBytes(make([]byte, 32))...)
	flipped := append([]byte(nil), sig...)
	flipped[10] ^= 1
	zeroS := append(append([]byte(nil), sig[:32]...), make([]byte, 32)...)
	cases := []string{
		parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(high),
		parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(flipped),
		parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(zeroS),
		parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig[:63]),
		parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(append(sig, 0)),
		parts[0] + "." + parts[1] + ".",
		parts[0] + "." + parts[1] + "." + parts[2] + "=",
		parts[0] + ".e30." + parts[2], // another payload under the same signature
		parts[0] + "." + parts[1],
		signCompact(t, other, `{"a":1}`),
	}
	for _, c := range cases {
		agree(t, &k.PublicKey, c)
	}
	if VerifyES256(nil, parts[0]+"."+parts[1], parts[2]) {
		t.Fatal("VerifyES256 with no key said yes")
	}
}

// FuzzVerifyES256MatchesJWX flips the signature, header and payload text of a good
// JWS and compares the two paths on each.
func FuzzVerifyES256MatchesJWX(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := signCompact(f, k, `{"htm":"GET"}`)
	f.Add(good)
	f.Add(good + "A")
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Fuzz(func(t *testing.T, compact string) {
		if len(compact) > 4096 {
			return
		}
		agree(t, &k.PublicKey, compact)
	})
}
