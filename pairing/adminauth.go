package pairing

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/kioskfeed/kioskfeed/broker"
)

// AdminTokenHashFile is where the generated admin token's SHA-256 is kept in the data
// dir. The token itself is printed once and stored nowhere.
const AdminTokenHashFile = "admin-token.sha256"

// AdminAuth checks the admin bearer token of PROTOCOL.md §6 on /api/admin/*. It
// satisfies broker.AdminAuthorizer. Tokens made by `kioskfeed admin token create` and
// the dashboard's session cookie will be accepted here too.
type AdminAuth struct {
	hashes [][32]byte
}

// NewAdminAuth accepts the tokens whose SHA-256 hashes are given. Comparing hashes keeps
// the comparison constant-time whatever the presented token's length.
func NewAdminAuth(hashes ...[32]byte) *AdminAuth {
	return &AdminAuth{hashes: hashes}
}

// HashToken is the form in which an admin token is kept and compared.
func HashToken(token string) [32]byte { return sha256.Sum256([]byte(token)) }

var errAdminToken = &broker.Error{Code: broker.CodeInvalidToken, Message: "send an admin token: Authorization: Bearer <token>"}

// AuthorizeAdmin returns nil when r carries an admin token.
func (a *AdminAuth) AuthorizeAdmin(r *http.Request) error {
	presented := broker.Bearer(r)
	if presented == "" {
		return errAdminToken
	}
	h := HashToken(presented)
	ok := 0
	for _, want := range a.hashes {
		ok |= subtle.ConstantTimeCompare(h[:], want[:])
	}
	if ok != 1 {
		return errAdminToken
	}
	return nil
}

// LoadOrCreateAdminToken returns the hash of the admin token kept in dataDir. On first
// start it makes a token (256 random bits), keeps only its hash, and returns the token
// itself so that the caller can show it this once.
func LoadOrCreateAdminToken(dataDir string) (hash [32]byte, newToken string, err error) {
	path := filepath.Join(dataDir, AdminTokenHashFile)
	b, err := os.ReadFile(path)
	if err == nil {
		raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(raw) != len(hash) {
			return hash, "", fmt.Errorf("%s is damaged: delete it to have a new admin token made", path)
		}
		copy(hash[:], raw)
		return hash, "", nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return hash, "", fmt.Errorf("read admin token hash: %w", err)
	}
	var tok [32]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return hash, "", fmt.Errorf("random: %w", err)
	}
	newToken = "kfa_" + base64.RawURLEncoding.EncodeToString(tok[:])
	hash = HashToken(newToken)
	if err := broker.WriteFileAtomic(path, []byte(hex.EncodeToString(hash[:])+"\n"), 0o600); err != nil {
		return hash, "", err
	}
	return hash, newToken, nil
}
