package admin

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// The dashboard password: made at first start, set with `kioskfeed admin passwd`
// (POST /api/admin/password), kept as a bcrypt hash in the admin bucket.

// passwordAlphabet has no vowels that make words nor look-alikes (0/o, 1/l/i).
const passwordAlphabet = "bcdfghjkmnpqrstvwxz23456789"

// EnsurePassword makes sure the dashboard has a password. When none is set yet it
// makes one (20 characters from a 27-letter alphabet, about 95 bits, in groups of five),
// stores only its bcrypt hash, and returns it for the caller to show this once; when one
// is set (by this or another instance, or by `kioskfeed admin passwd`) it returns "".
func (a *Admin) EnsurePassword(ctx context.Context) (newPassword string, err error) {
	kv := a.kv
	if _, err := kv.Get(ctx, passwordKey); err == nil {
		return "", nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("read dashboard password: %w", err)
	}
	pw := newAdminPassword()
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), passwordCost)
	if err != nil {
		return "", fmt.Errorf("hash admin password: %w", err)
	}
	if _, err := kv.Create(ctx, passwordKey, hash); err != nil {
		if broker.IsKVConflict(err) {
			return "", nil // another instance made one a moment ago and shows it
		}
		return "", fmt.Errorf("store dashboard password: %w", err)
	}
	a.log.Info("dashboard password created")
	return pw, nil
}

// newAdminPassword returns xxxxx-xxxxx-xxxxx-xxxxx from passwordAlphabet, without
// modulo bias.
func newAdminPassword() string {
	const n = len(passwordAlphabet)
	limit := byte(256 - 256%n)
	var out strings.Builder
	var buf [64]byte
	count := 0
	for count < 20 {
		_, _ = rand.Read(buf[:])
		for _, c := range buf {
			if c >= limit || count == 20 {
				continue
			}
			if count > 0 && count%5 == 0 {
				out.WriteByte('-')
			}
			out.WriteByte(passwordAlphabet[int(c)%n])
			count++
		}
	}
	return out.String()
}

// checkNewPassword says what is wrong with a password an admin wants to set.
func checkNewPassword(pw string) error {
	switch {
	case !utf8.ValidString(pw) || strings.ContainsFunc(pw, unicode.IsControl):
		return httpx.Errorf(httpx.CodeInvalidRequest, `"password" must be printable text`)
	case utf8.RuneCountInString(pw) < MinPasswordLength:
		return httpx.Errorf(httpx.CodeInvalidRequest, fmt.Sprintf(`"password" must be at least %d characters`, MinPasswordLength))
	case len(pw) > maxPasswordBytes:
		return httpx.Errorf(httpx.CodeInvalidRequest, fmt.Sprintf(`"password" must be at most %d bytes (bcrypt reads no more)`, maxPasswordBytes))
	}
	return nil
}

// handleSetPassword is POST /api/admin/password {"password"}: it sets the dashboard
// password (for `kioskfeed admin passwd`) and signs every dashboard session out.
func (a *Admin) handleSetPassword(w http.ResponseWriter, r *http.Request) error {
	body, err := httpx.ReadJSONBody(w, r, maxBody)
	if err != nil {
		return err
	}
	var req struct {
		Password string `json:"password"`
	}
	if err := httpx.StrictJSON(body, &req); err != nil {
		return err
	}
	if err := checkNewPassword(req.Password); err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(req.Password), passwordCost)
	if err != nil {
		a.log.Error("hash admin password", slog.String("error", err.Error()))
		return err
	}
	ctx := r.Context()
	kv := a.kv
	if _, err := kv.Put(ctx, passwordKey, hash); err != nil {
		return a.unavailable("store admin password", err)
	}
	// Whoever knew the old password is signed out with it.
	n, err := endAllSessions(ctx, kv)
	if err != nil {
		return a.unavailable("end sessions", err)
	}
	remote := a.addr.Of(r)
	a.audit(ctx, broker.AuditRecord{Type: string(broker.AuditAdminPasswordSet), RemoteAddr: remote, Detail: fmt.Sprintf("dashboard password changed; %d sessions signed out", n)})
	a.log.Info("dashboard password changed", slog.String("remote_addr", remote), slog.Int("sessions_ended", n))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// endAllSessions deletes every dashboard session and says how many there were.
func endAllSessions(ctx context.Context, kv jetstream.KeyValue) (int, error) {
	lister, err := kv.ListKeysFiltered(ctx, sessionPrefix+"*")
	if err != nil {
		return 0, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if err := kv.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, err
		}
	}
	return len(keys), nil
}
