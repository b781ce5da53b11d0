package client

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

var b64 = base64.RawURLEncoding

// ErrKeyFileMode refuses a key file that its group or others may read or write: the
// device key is the device's only long-lived credential (docs/protocol.md §4 has no
// refresh token), so a copy readable by another account is a copy of the device.
var ErrKeyFileMode = errors.New("client: key file is accessible by group or others (chmod 600 it)")

// ErrNotP256 refuses a key of another curve or type: the protocol signs with ES256 only.
var ErrNotP256 = errors.New("client: key is not an ECDSA P-256 key")

// pemType is the PEM block of a PKCS#8 private key file.
const pemType = "PRIVATE KEY"

// Key is a device's P-256 key pair (docs/protocol.md §2). Its thumbprint is the device's
// identity on the server, so whoever holds the private key is the device.
type Key struct {
	priv *ecdsa.PrivateKey
	jwk  string // the proof header's jwk member: kty, crv, x, y, in the PWA's order
	jkt  string
}

// NewKey makes a fresh key, held only in memory: a device whose key is lost must pair
// again, which is what a display without storage wants.
func NewKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("client: generate key: %w", err)
	}
	return KeyFromECDSA(priv)
}

// KeyFromECDSA wraps a key the caller keeps itself (in a TPM-backed store, a secrets
// manager, a test).
func KeyFromECDSA(priv *ecdsa.PrivateKey) (*Key, error) {
	if priv == nil || priv.Curve != elliptic.P256() {
		return nil, ErrNotP256
	}
	raw, err := priv.PublicKey.Bytes() // 0x04 || x || y, 32 bytes each
	if err != nil {
		return nil, fmt.Errorf("client: public key: %w", err)
	}
	x, y := b64.EncodeToString(raw[1:33]), b64.EncodeToString(raw[33:65])
	// RFC 7638: the required members in lexicographic order, no whitespace.
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	return &Key{
		priv: priv,
		jwk:  `{"kty":"EC","crv":"P-256","x":"` + x + `","y":"` + y + `"}`,
		jkt:  b64.EncodeToString(sum[:]),
	}, nil
}

// LoadOrCreateKey reads the PKCS#8 PEM key at path, or makes one there with mode 0600 if
// there is none, so a display keeps its identity across restarts. A file that group or
// others may access is refused with ErrKeyFileMode rather than used: the fix (chmod, or
// a fresh pairing if it leaked) is the owner's decision.
func LoadOrCreateKey(path string) (*Key, error) {
	k, err := loadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = NewKey()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return nil, fmt.Errorf("client: encode key: %w", err)
	}
	if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der})); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process made it first: use that one
			return loadKey(path)
		}
		return nil, fmt.Errorf("client: write key file: %w", err)
	}
	return k, nil
}

func loadKey(path string) (*Key, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v", ErrKeyFileMode, path, st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("client: read key file: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemType {
		return nil, fmt.Errorf("client: %s holds no %q PEM block", path, pemType)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("client: parse key file %s: %w", path, err)
	}
	priv, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return nil, ErrNotP256
	}
	return KeyFromECDSA(priv)
}

// writeNew writes data to a file that did not exist, mode 0600, so that no reader ever
// sees it half written: a temporary file in the same directory, linked into place (which
// fails with fs.ErrExist if path appeared meanwhile).
func writeNew(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a rename or link in dir durable: a display whose power is cut right
// after saving its key or state finds the new file, not the old one or none.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeTemp writes data to a fresh 0600 file next to path, synced, and returns its name.
func writeTemp(path string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	if err := f.Chmod(0o600); err == nil {
		if _, err = f.Write(data); err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			return name, nil
		}
	} else {
		_ = f.Close()
	}
	_ = os.Remove(name)
	return "", err
}

// Thumbprint is the key's RFC 7638 SHA-256 JWK thumbprint, base64url: the jkt the server
// binds the device and its tokens to.
func (k *Key) Thumbprint() string { return k.jkt }

// JWK is the public key as a proof's jwk header carries it (kty, crv, x, y).
func (k *Key) JWK() string { return k.jwk }

// ECDSA is the private key, for callers that sign something this package does not
// (tests of malformed proofs).
func (k *Key) ECDSA() *ecdsa.PrivateKey { return k.priv }
