package client_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
)

func TestLoadOrCreateKeyKeepsTheKeyPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "device.key")
	k1, err := client.LoadOrCreateKey(path)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	k2, err := client.LoadOrCreateKey(path)
	if err != nil || k2.Thumbprint() != k1.Thumbprint() {
		t.Fatalf("reload: %v, thumbprint %q, want %q", err, k2.Thumbprint(), k1.Thumbprint())
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := client.LoadOrCreateKey(path); !errors.Is(err, client.ErrKeyFileMode) || !strings.Contains(err.Error(), path) {
			t.Fatalf("key file with mode %v: %v, want ErrKeyFileMode naming the file", mode, err)
		}
	}
	// Not a key: a clear error, and the file is not replaced.
	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := client.LoadOrCreateKey(bad); err == nil {
		t.Fatal("a file that holds no key was accepted")
	}
	if data, _ := os.ReadFile(bad); string(data) != "hello" {
		t.Fatalf("the unreadable key file was overwritten: %q", data)
	}
}

func TestKeyFromECDSA(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := client.KeyFromECDSA(p384); !errors.Is(err, client.ErrNotP256) {
		t.Fatalf("P-384 key: %v, want ErrNotP256", err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k, err := client.KeyFromECDSA(p256)
	if err != nil || k.ECDSA() != p256 {
		t.Fatalf("P-256 key: %v", err)
	}
}

// The proof's bytes, checked against RFC 9449 and RFC 7638 from their text: the
// server's acceptance is checked by every pairing test.
func TestProofShape(t *testing.T) {
	k := mustKey(t)
	iat := time.Unix(1700000000, 0)
	proof, err := k.Proof("GET", "ws://example.test/ws", "the-nonce", "the-token", iat)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		t.Fatalf("proof has %d parts", len(parts))
	}
	dec := func(s string, v any) {
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		if v != nil {
			if err := json.Unmarshal(raw, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	var h struct {
		Typ, Alg string
		JWK      map[string]string
	}
	var c struct {
		JTI, HTM, HTU, Nonce, ATH string
		IAT                       int64
	}
	dec(parts[0], &h)
	dec(parts[1], &c)
	if h.Typ != "dpop+jwt" || h.Alg != "ES256" || len(h.JWK) != 4 || h.JWK["kty"] != "EC" || h.JWK["crv"] != "P-256" {
		t.Fatalf("header %+v", h)
	}
	canon := `{"crv":"P-256","kty":"EC","x":"` + h.JWK["x"] + `","y":"` + h.JWK["y"] + `"}`
	sum := sha256.Sum256([]byte(canon))
	if k.Thumbprint() != base64.RawURLEncoding.EncodeToString(sum[:]) {
		t.Fatal("thumbprint is not RFC 7638's")
	}
	ath := sha256.Sum256([]byte("the-token"))
	if c.HTM != "GET" || c.HTU != "ws://example.test/ws" || c.Nonce != "the-nonce" || c.IAT != iat.Unix() ||
		c.ATH != base64.RawURLEncoding.EncodeToString(ath[:]) || len(c.JTI) < 16 {
		t.Fatalf("claims %+v", c)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if len(sig) != 64 || !ecdsa.Verify(&k.ECDSA().PublicKey, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatal("signature is not a raw r‖s ES256 signature of the key")
	}
	again, _ := k.Proof("GET", "ws://example.test/ws", "the-nonce", "the-token", iat)
	if again == proof {
		t.Fatal("two proofs are identical: the jti must be fresh")
	}
}
