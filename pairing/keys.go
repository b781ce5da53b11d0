package pairing

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

const pemPrivateKey = "PRIVATE KEY"

// LoadOrCreateSigningKeys reads the token signing keys from path, a PEM file
// of one or more PKCS#8 "PRIVATE KEY" blocks holding P-256 keys, the first
// being the one that signs. When the file does not exist it is created with
// one new key (mode 0600, written atomically; the directory must exist). If
// several processes race to create it, one file wins and every process
// loads that one.
func LoadOrCreateSigningKeys(path string) ([]*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate signing key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("encode signing key: %w", err)
		}
		data = pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der})
		if data, err = createOnce(path, data); err != nil {
			return nil, fmt.Errorf("create signing key file: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read signing key file: %w", err)
	}
	keys, err := parseSigningKeys(data)
	if err != nil {
		return nil, fmt.Errorf("signing key file %s: %w", path, err)
	}
	return keys, nil
}

func parseSigningKeys(data []byte) ([]*ecdsa.PrivateKey, error) {
	var keys []*ecdsa.PrivateKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != pemPrivateKey {
			return nil, fmt.Errorf("block %d: type %q, want %q", n, block.Type, pemPrivateKey)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", n, err)
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, fmt.Errorf("block %d: not a P-256 ECDSA key", n)
		}
		keys = append(keys, ec)
	}
	if len(bytes.TrimSpace(data)) != 0 {
		return nil, errors.New("text after the last PEM block")
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM private key")
	}
	return keys, nil
}

// createOnce writes data to a temporary file next to path, syncs it, and
// links it into place only if path does not exist yet, so a reader never
// sees a partial file and a concurrent creator never overwrites the winner.
// It returns what path holds afterwards: data, or the winner's content.
func createOnce(path string, data []byte) ([]byte, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	// Link, unlike Rename, fails when the target exists. Where the file
	// system has no hard links, fall back to Rename (last writer wins).
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return os.ReadFile(path)
		}
		if err := os.Rename(tmpName, path); err != nil {
			return nil, err
		}
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the new name durable; best effort
		d.Close()
	}
	return data, nil
}
