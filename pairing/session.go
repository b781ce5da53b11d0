package pairing

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// BucketAdmin holds the dashboard's password (key "password", a bcrypt hash) and its
// login sessions (session.<sha256 hex of the session id>, expiring by per-key TTL), so
// that every instance accepts the same password and the same sessions, and a logout on
// one instance counts on all of them at once.
const BucketAdmin = "kioskfeed_admin"

const (
	passwordKey   = "password"
	sessionPrefix = "session."
	// SessionTTL is how long a dashboard login lasts. It is absolute, not sliding: an
	// admin logs in again each working day.
	SessionTTL = 12 * time.Hour
	// MinPasswordLength is the shortest dashboard password `kioskfeed admin passwd`
	// may set; bcrypt reads at most 72 bytes, so that is the longest.
	MinPasswordLength = 12
	maxPasswordBytes  = 72
	// passwordCost is bcrypt's work factor: about 60 ms a hash on one core, paid once
	// per login attempt (rate-limited per address and by loginSlots).
	passwordCost = bcrypt.DefaultCost
	// loginSlots bounds how many bcrypt comparisons run at once, so that a flood of
	// logins from many addresses cannot take every core.
	loginSlots = 2
	// sessionIDLen is the length of a session id as sent in the cookie: 32 random
	// bytes in unpadded base64url.
	sessionIDLen = 43
)

// passwordAlphabet has no vowels that make words nor look-alikes (0/o, 1/l/i).
const passwordAlphabet = "bcdfghjkmnpqrstvwxz23456789"

// AdminBucketConfig is the admin bucket's configuration; every opener uses this one, so
// that no instance changes what another set up. Per-key TTLs need LimitMarkerTTL.
func AdminBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         BucketAdmin,
		Description:    "dashboard password (bcrypt) and login sessions (hashed ids)",
		History:        1,
		LimitMarkerTTL: time.Second,
	}
}

// EnsureAdminPassword makes sure the dashboard has a password. When none is set yet it
// makes one (20 characters from a 27-letter alphabet, about 95 bits, in groups of five),
// stores only its bcrypt hash, and returns it for the caller to show this once; when one
// is set (by this or another instance, or by `kioskfeed admin passwd`) it returns "".
func (a *Authority) EnsureAdminPassword(ctx context.Context) (newPassword string, err error) {
	kv := a.adminKV
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
func (a *Authority) handleSetPassword(w http.ResponseWriter, r *http.Request) {
	body, err := httpx.ReadJSONBody(w, r, 4<<10)
	if err != nil {
		httpx.WriteError(w, err)
		return
	}
	var req struct {
		Password string `json:"password"`
	}
	if err := httpx.StrictJSON(body, &req); err != nil {
		httpx.WriteError(w, err)
		return
	}
	if err := checkNewPassword(req.Password); err != nil {
		httpx.WriteError(w, err)
		return
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(req.Password), passwordCost)
	if err != nil {
		a.log.Error("hash admin password", slog.String("error", err.Error()))
		httpx.WriteError(w, err)
		return
	}
	ctx := r.Context()
	kv := a.adminKV
	if _, err := kv.Put(ctx, passwordKey, hash); err != nil {
		httpx.WriteError(w, a.unavailable("store admin password", err))
		return
	}
	// Whoever knew the old password is signed out with it.
	n, err := endAllSessions(ctx, kv)
	if err != nil {
		httpx.WriteError(w, a.unavailable("end sessions", err))
		return
	}
	remote := a.addr.Of(r)
	a.auditCtx(r.Context(), "admin_password_set", "", "", remote, fmt.Sprintf("dashboard password changed; %d sessions signed out", n))
	a.log.Info("dashboard password changed", slog.String("remote_addr", remote), slog.Int("sessions_ended", n))
	w.WriteHeader(http.StatusNoContent)
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

// session is a dashboard login as kept in the admin bucket. The id itself is only in
// the admin's cookie; the bucket knows its SHA-256.
type session struct {
	id         string
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
	RemoteAddr string    `json:"remote_addr"`
	UserAgent  string    `json:"user_agent"`
}

func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return sessionPrefix + hex.EncodeToString(sum[:])
}

// validSessionID checks a cookie's shape before any store is asked about it.
func validSessionID(id string) bool {
	if len(id) != sessionIDLen {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil && len(raw) == 32
}

// sessionStore keeps dashboard sessions and reads the password hash, in the admin
// bucket the Authority opened at start, like every other bucket.
type sessionStore struct {
	a *Authority
}

func (s *sessionStore) bucket(context.Context) (jetstream.KeyValue, error) {
	return s.a.adminKV, nil
}

// passwordHash returns the stored bcrypt hash, or nil when no password is set.
func (s *sessionStore) passwordHash(ctx context.Context) ([]byte, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, passwordKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

// create starts a session for a logged-in admin.
func (s *sessionStore) create(ctx context.Context, now time.Time, remote, userAgent string) (session, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return session{}, err
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	sess := session{
		id:      base64.RawURLEncoding.EncodeToString(raw[:]),
		Created: now.UTC().Truncate(time.Second), Expires: now.Add(SessionTTL).UTC().Truncate(time.Second),
		RemoteAddr: remote, UserAgent: broker.CleanText(userAgent, maxUserAgentBytes),
	}
	val, _ := json.Marshal(sess)
	if _, err := kv.Create(ctx, sessionKey(sess.id), val, jetstream.KeyTTL(SessionTTL)); err != nil {
		return session{}, err
	}
	return sess, nil
}

// get returns the live session with this id; false when there is none (never was,
// logged out, expired).
func (s *sessionStore) get(ctx context.Context, id string, now time.Time) (session, bool, error) {
	if !validSessionID(id) {
		return session{}, false, nil
	}
	kv, err := s.bucket(ctx)
	if err != nil {
		return session{}, false, err
	}
	return lookupSession(ctx, kv, id, now)
}

func lookupSession(ctx context.Context, kv jetstream.KeyValue, id string, now time.Time) (session, bool, error) {
	e, err := kv.Get(ctx, sessionKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return session{}, false, nil
	}
	if err != nil {
		return session{}, false, err
	}
	var sess session
	if err := json.Unmarshal(e.Value(), &sess); err != nil || !now.Before(sess.Expires) {
		return session{}, false, nil
	}
	sess.id = id
	return sess, true, nil
}

// end deletes a session (logout).
func (s *sessionStore) end(ctx context.Context, id string) error {
	if !validSessionID(id) {
		return nil
	}
	kv, err := s.bucket(ctx)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, sessionKey(id)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return nil
}

// secureCookies reports whether the dashboard is reached over TLS, from the configured
// public URL (never from request headers a proxy may or may not set).
func (a *Authority) secureCookies() bool {
	return strings.HasPrefix(strings.ToLower(a.cfg.PublicURL), "https://")
}

// sessionCookieName is __Host-kf_admin under TLS (the prefix makes browsers insist on
// Secure, Path=/ and no Domain, so a sibling subdomain cannot plant one), else kf_admin.
func (a *Authority) sessionCookieName() string {
	if a.secureCookies() {
		return "__Host-kf_admin"
	}
	return "kf_admin"
}

func (a *Authority) sessionCookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: a.sessionCookieName(), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: a.secureCookies(), SameSite: http.SameSiteStrictMode,
	}
}

// csrfToken is the per-session token every dashboard form carries: an HMAC of the
// session id, so it needs no storage and is the same on every instance.
func csrfToken(key []byte, sessionID string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("csrf\x00" + sessionID))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// validCSRF compares a form's token with the session's in constant time.
func validCSRF(key []byte, sessionID, got string) bool {
	raw, err := base64.RawURLEncoding.DecodeString(got)
	if err != nil {
		return false
	}
	want, _ := base64.RawURLEncoding.DecodeString(csrfToken(key, sessionID))
	return hmac.Equal(raw, want)
}

// sameOriginRequest tells whether a browser sent r from our own pages: Sec-Fetch-Site
// says same-origin or none (typed in, bookmark), or, from a browser too old to send
// it, a GET without an Origin header. A cookie alone must not grant admin rights to a
// request another site made the browser send.
func sameOriginRequest(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
		return (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.Header.Get("Origin") == ""
	}
	return false
}

// sessionGrantsAdmin is AuthorizeAdmin's hook for the dashboard: a request without an
// Authorization header that carries a live session cookie and comes from our own
// pages has admin rights. A request with a bearer token is left to the token check
// alone. The session is read from the bucket, so a logout anywhere counts at once.
func (a *Authority) sessionGrantsAdmin(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return false
	}
	c, err := r.Cookie(a.sessionCookieName())
	if err != nil || !validSessionID(c.Value) || !sameOriginRequest(r) {
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	_, ok, err := lookupSession(ctx, a.adminKV, c.Value, a.cfg.Now())
	if err != nil {
		a.log.Warn("admin session lookup", slog.String("error", err.Error()))
		return false
	}
	return ok
}

// safeNext returns where to go after login: next when it is a dashboard path on this
// site, else /admin. "//host" and "/\host" are other sites to a browser, browsers drop
// tabs and newlines from URLs (so "/\t/host" is too), and a path that only decodes to
// one ("/%2F%2Fhost", "/%5Chost") may be cleaned into one by whatever serves it next; none
// of them pass, and neither does anything outside /admin.
func safeNext(next string) string {
	const home = "/admin"
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || len(next) > 2048 {
		return home
	}
	if strings.ContainsFunc(next, func(r rune) bool { return r == '\\' || r < 0x20 || r == 0x7f }) {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return home
	}
	if u.Path != home && !strings.HasPrefix(u.Path, home+"/") {
		return home
	}
	if strings.Contains(u.Path, "//") || strings.ContainsFunc(u.Path, func(r rune) bool { return r == '\\' || r < 0x20 || r == 0x7f }) ||
		path.Clean(u.Path) != u.Path {
		return home
	}
	return next
}
