package dpop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"math/big"
	"testing"
)

// VerifyES256 builds the DER signature itself rather than through ecdsa.Verify's
// big.Ints (issue 15). These compare the two on signatures whose r and s have leading
// zero bytes, a high bit set, are zero, are the group order or above, or are random.

const derInput = "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJ4In0"

func TestVerifyES256AgreesWithBigIntVerify(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n := elliptic.P256().Params().N.FillBytes(make([]byte, 32))
	var sigs [][64]byte
	var highBit, leadingZero bool
	for i := 0; i < 2000 && !(highBit && leadingZero); i++ {
		var sig [64]byte
		digest := sha256.Sum256([]byte(derInput))
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		if sig[0]&0x80 != 0 && !highBit || sig[0] == 0 && !leadingZero || i < 4 {
			highBit, leadingZero = highBit || sig[0]&0x80 != 0, leadingZero || sig[0] == 0
			sigs = append(sigs, sig)
		}
	}
	if !highBit || !leadingZero {
		t.Fatal("no signature with a high bit and one with a leading zero in 2000")
	}
	good := sigs[0]
	var zeroR, zeroS, orderR, ffS [64]byte = good, good, good, good
	clear(zeroR[:32])
	clear(zeroS[32:])
	copy(orderR[:32], n)
	for i := 32; i < 64; i++ {
		ffS[i] = 0xff
	}
	sigs = append(sigs, zeroR, zeroS, orderR, ffS, [64]byte{31: 1, 63: 1})
	accepted := 0
	for _, sig := range sigs {
		if compareDER(t, &k.PublicKey, sig) {
			accepted++
		}
	}
	if accepted < 4 {
		t.Fatalf("%d good signatures accepted, want at least 4", accepted)
	}
}

func FuzzVerifyES256AgreesWithBigIntVerify(f *testing.F) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	digest := sha256.Sum256([]byte(derInput))
	r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
	if err != nil {
		f.Fatal(err)
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	f.Add(sig[:])
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 64 {
			return
		}
		compareDER(t, &k.PublicKey, [64]byte(b))
	})
}

// compareDER fails unless VerifyES256 and ecdsa.Verify give sig the same verdict, and
// returns it.
func compareDER(t *testing.T, pub *ecdsa.PublicKey, sig [64]byte) bool {
	t.Helper()
	digest := sha256.Sum256([]byte(derInput))
	want := ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	if got := VerifyES256(pub, derInput, rawURL.EncodeToString(sig[:])); got != want {
		t.Fatalf("signature %x: VerifyES256 = %v, ecdsa.Verify = %v", sig, got, want)
	}
	return want
}
