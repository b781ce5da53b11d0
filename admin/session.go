package admin

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/kioskfeed/kioskfeed/broker"
)

// Bucket holds the dashboard's password (key "password", a bcrypt hash) and its
// login sessions (session.<sha256 hex of the session id>, expiring by per-key TTL), so
// that every instance accepts the same password and the same sessions, and a logout on
// one instance counts on all of them at once.
const Bucket = "kioskfeed_admin"

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
	// maxUserAgentBytes bounds the User-Agent kept with a session: it is shown to
	// tell logins apart, not kept as evidence.
	maxUserAgentBytes = 256
	// sessionIDLen is the length of a session id as sent in the cookie: 32 random
	// bytes in unpadded base64url.
	sessionIDLen = 43
)

// BucketConfig is the admin bucket's configuration; every opener uses this one, so
// that no instance changes what another set up. Per-key TTLs need LimitMarkerTTL.
func BucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         Bucket,
		Description:    "dashboard password (bcrypt) and login sessions (hashed ids)",
		History:        1,
		LimitMarkerTTL: time.Second,
	}
}

// adminSession is a dashboard login as kept in the admin bucket (not a tablet's socket,
// which the bridge calls a session). The id itself is only in the admin's cookie; the
// bucket knows its SHA-256.
type adminSession struct {
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
// bucket New opened at start, like every other bucket.
type sessionStore struct {
	a *Admin
}

func (s *sessionStore) bucket(context.Context) (jetstream.KeyValue, error) {
	return s.a.kv, nil
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
func (s *sessionStore) create(ctx context.Context, now time.Time, remote, userAgent string) (adminSession, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return adminSession{}, err
	}
	sess := adminSession{
		id:      broker.NewSecret(32),
		Created: now.UTC().Truncate(time.Second), Expires: now.Add(SessionTTL).UTC().Truncate(time.Second),
		RemoteAddr: remote, UserAgent: broker.CleanText(userAgent, maxUserAgentBytes),
	}
	val, _ := json.Marshal(sess)
	if _, err := kv.Create(ctx, sessionKey(sess.id), val, jetstream.KeyTTL(SessionTTL)); err != nil {
		return adminSession{}, err
	}
	return sess, nil
}

// get returns the live session with this id; false when there is none (never was,
// logged out, expired).
func (s *sessionStore) get(ctx context.Context, id string, now time.Time) (adminSession, bool, error) {
	if !validSessionID(id) {
		return adminSession{}, false, nil
	}
	kv, err := s.bucket(ctx)
	if err != nil {
		return adminSession{}, false, err
	}
	return lookupSession(ctx, kv, id, now)
}

func lookupSession(ctx context.Context, kv jetstream.KeyValue, id string, now time.Time) (adminSession, bool, error) {
	e, err := kv.Get(ctx, sessionKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return adminSession{}, false, nil
	}
	if err != nil {
		return adminSession{}, false, err
	}
	var sess adminSession
	if err := json.Unmarshal(e.Value(), &sess); err != nil || !now.Before(sess.Expires) {
		return adminSession{}, false, nil
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
func (a *Admin) secureCookies() bool {
	return strings.HasPrefix(strings.ToLower(a.cfg.PublicURL), "https://")
}

// sessionCookieName is __Host-kf_admin under TLS (the prefix makes browsers insist on
// Secure, Path=/ and no Domain, so a sibling subdomain cannot plant one), else kf_admin.
func (a *Admin) sessionCookieName() string {
	if a.secureCookies() {
		return "__Host-kf_admin"
	}
	return "kf_admin"
}

func (a *Admin) sessionCookie(value string, maxAge int) *http.Cookie {
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
func (a *Admin) sessionGrantsAdmin(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return false
	}
	c, err := r.Cookie(a.sessionCookieName())
	if err != nil || !validSessionID(c.Value) || !sameOriginRequest(r) {
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	_, ok, err := lookupSession(ctx, a.kv, c.Value, a.cfg.Now())
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
