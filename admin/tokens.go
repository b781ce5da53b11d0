package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// TokenHashFile is where the generated admin token's SHA-256 is kept in the data
// dir. The token itself is printed once and stored nowhere.
const TokenHashFile = "admin-token.sha256"

// BucketTokens holds named admin tokens made with `kioskfeed admin token create`,
// as SHA-256 hashes, so every instance accepts them.
const BucketTokens = "kioskfeed_admin_tokens"

// A named admin token reads kfa.<id>.<secret>; the bootstrap token is kfa_<secret>.
const adminTokenPrefix = "kfa."

// Token is a named admin token's record, without its secret.
type Token struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Hash    string    `json:"hash,omitempty"`
}

// tokenStore checks the admin bearer tokens of docs/protocol.md §6 on /api/admin/*: the
// configured (or generated) token and the named tokens in KV (mirrored in memory).
type tokenStore struct {
	hashes [][32]byte
	named  *broker.Mirror[Token]
	log    *slog.Logger
}

func newTokenStore(ctx context.Context, b *broker.Broker, log *slog.Logger, hashes ...[32]byte) (*tokenStore, error) {
	kv, err := b.Bucket(ctx, jetstream.KeyValueConfig{Bucket: BucketTokens, Description: "named admin tokens, hashed", History: 1})
	if err != nil {
		return nil, err
	}
	named, err := broker.NewMirror[Token](kv, log)
	if err != nil {
		return nil, err
	}
	return &tokenStore{hashes: hashes, named: named, log: log}, nil
}

func (s *tokenStore) stop() { s.named.Stop() }

// HashToken is the form in which an admin token is kept and compared.
func HashToken(token string) [32]byte { return sha256.Sum256([]byte(token)) }

var errAdminToken = &httpx.Error{Code: httpx.CodeInvalidToken, Message: "send an admin token: Authorization: Bearer <token>"}

// check reports whether token is an admin token. Hash comparisons keep it
// constant-time whatever the presented token's length.
func (s *tokenStore) check(ctx context.Context, token string) (actor string, ok bool) {
	if token == "" || len(token) > 256 {
		return "", false
	}
	h := HashToken(token)
	match := 0
	for _, want := range s.hashes {
		match |= subtle.ConstantTimeCompare(h[:], want[:])
	}
	if match == 1 {
		return broker.ActorConfigAdmin, true
	}
	rest, found := strings.CutPrefix(token, adminTokenPrefix)
	if !found {
		return "", false
	}
	id, _, found := strings.Cut(rest, ".")
	if !found || !broker.ValidKeyID(id) { // no token has it, and NATS would refuse it as a key
		return "", false
	}
	rec, found := s.named.Lookup(ctx, id)
	hexHash := hex.EncodeToString(h[:])
	if !found || subtle.ConstantTimeCompare([]byte(rec.Hash), []byte(hexHash)) != 1 {
		return "", false
	}
	return broker.AdminTokenActor(id), true
}

func (s *tokenStore) create(ctx context.Context, name string, now time.Time) (Token, string, error) {
	id := broker.NewKeyID()
	token := adminTokenPrefix + id + "." + broker.NewSecret(32)
	h := HashToken(token)
	rec := Token{ID: id, Name: name, Created: now.UTC().Truncate(time.Second), Hash: hex.EncodeToString(h[:])}
	val, _ := json.Marshal(rec)
	if _, err := s.named.KV().Create(ctx, id, val); err != nil {
		return Token{}, "", err
	}
	s.named.Put(id, val)
	rec.Hash = ""
	return rec, token, nil
}

func (s *tokenStore) list() []Token {
	out := s.named.All(nil)
	for i := range out {
		out[i].Hash = ""
	}
	return out
}

func (s *tokenStore) revoke(ctx context.Context, id string) (bool, error) {
	if _, ok := s.named.Lookup(ctx, id); !ok {
		return false, nil
	}
	if err := s.named.KV().Delete(ctx, id); err != nil {
		return false, err
	}
	s.named.Remove(id)
	return true, nil
}

// AuthorizeAdmin accepts r, naming its credential (the actor of the audit log), when it
// carries an admin token, or the dashboard's session cookie on a same-origin request
// without an Authorization header. It makes *Admin a broker.AdminAuthorizer, for the
// producer-key API broker serves. Failed attempts are
// audited (admin_login_fail) and counted against the address's bearer allowance (its
// own: bad tokens do not lock the dashboard login); once that is used up every bearer
// token from the address is answered 429 before it is looked at, so a flood of
// kfa.<unknown id>.x costs no KV lookup.
func (a *Admin) AuthorizeAdmin(r *http.Request) (actor string, err error) {
	if a.sessionGrantsAdmin(r) { // the dashboard's session cookie, same-origin only
		return broker.ActorDashboard, nil
	}
	remote := a.addr.Of(r)
	if blocked, wait := a.bearerFails.Blocked(remote); blocked {
		return "", httpx.RateLimited(wait)
	}
	if actor, ok := a.tokens.check(r.Context(), httpx.Bearer(r)); ok {
		return actor, nil
	}
	a.bearerFails.Allow(remote)
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditAdminLoginFail), RemoteAddr: remote, Detail: "bad or missing admin bearer token"})
	return "", errAdminToken
}

// LoadOrCreateToken returns the hash of the admin token kept in dataDir. On first
// start it makes a token (256 random bits), keeps only its hash, and returns the token
// itself so that the caller can show it this once.
func LoadOrCreateToken(dataDir string) (hash [32]byte, newToken string, err error) {
	path := filepath.Join(dataDir, TokenHashFile)
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
	newToken = "kfa_" + broker.NewSecret(32)
	hash = HashToken(newToken)
	if err := broker.WriteFileAtomic(path, []byte(hex.EncodeToString(hash[:])+"\n"), 0o600); err != nil {
		return hash, "", err
	}
	return hash, newToken, nil
}
