package pairing

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func pemKey(tb testing.TB, key any) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func assertMode0600(tb testing.TB, path string) {
	tb.Helper()
	st, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		tb.Errorf("%s mode = %v, want 0600", path, got)
	}
}

func assertNoTempFiles(tb testing.TB, dir string) {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		if e.Name()[0] == '.' {
			tb.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestLoadOrCreateSigningKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "signing.pem")

	created, err := LoadOrCreateSigningKeys(path)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if len(created) != 1 || created[0].Curve != elliptic.P256() {
		t.Fatalf("created %d keys, want one P-256 key", len(created))
	}
	assertMode0600(t, path)
	assertNoTempFiles(t, dir)

	loaded, err := LoadOrCreateSigningKeys(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if len(loaded) != 1 || !loaded[0].Equal(created[0]) {
		t.Error("loading the file again gave another key")
	}

	// A rotated file: new key first, old key after it.
	newKey := mustKey(t, elliptic.P256())
	rotated := append(pemKey(t, newKey), pemKey(t, created[0])...)
	if err := os.WriteFile(path, rotated, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err = LoadOrCreateSigningKeys(path)
	if err != nil {
		t.Fatalf("load rotated: %v", err)
	}
	if len(loaded) != 2 || !loaded[0].Equal(newKey) || !loaded[1].Equal(created[0]) {
		t.Error("rotated file: keys missing or out of order")
	}
	if _, err := NewTokenIssuer(TokenConfig{Keys: loaded, Issuer: testIssuer}); err != nil {
		t.Errorf("the loaded keys do not make an issuer: %v", err)
	}
}

func TestLoadOrCreateSigningKeysConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "signing.pem")
	const n = 8
	got := make([][]*ecdsa.PrivateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = LoadOrCreateSigningKeys(path) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("creator %d: %v", i, errs[i])
		}
		if len(got[i]) != 1 || !got[i][0].Equal(got[0][0]) {
			t.Errorf("creator %d ended up with another key than creator 0", i)
		}
	}
	assertNoTempFiles(t, dir)
}

func TestLoadSigningKeysRefuses(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p256 := pemKey(t, mustKey(t, elliptic.P256()))
	sec1, _ := x509.MarshalECPrivateKey(mustKey(t, elliptic.P256()))
	tests := map[string][]byte{
		"empty":                {},
		"not PEM":              []byte("hello"),
		"RSA key":              pemKey(t, rsaKey),
		"P-384 key":            pemKey(t, mustKey(t, elliptic.P384())),
		"SEC1 EC PRIVATE KEY":  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		"garbage DER":          pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
		"good key, then a bad": append(bytes.Clone(p256), pemKey(t, rsaKey)...),
		"good key, then text":  append(bytes.Clone(p256), "trailing"...),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "signing.pem")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadOrCreateSigningKeys(path); err == nil {
				t.Error("accepted")
			}
			if now, _ := os.ReadFile(path); !bytes.Equal(now, data) {
				t.Error("the file was changed")
			}
		})
	}
	if _, err := LoadOrCreateSigningKeys(filepath.Join(t.TempDir(), "missing-dir", "signing.pem")); err == nil {
		t.Error("created a key in a directory that does not exist")
	}
}
