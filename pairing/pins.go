package pairing

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// BucketPINs holds open pairing PINs (pin.<feed>.<hmac>, expiring by per-key TTL) and the
// per-feed count of wrong guesses (fail.<feed>), so every instance redeems and counts the
// same way.
const BucketPINs = "kioskfeed_pins"

// FailCountTTL is the PIN bucket's TTL: a wrong-guess count (fail.<feed>) is dropped
// this long after its last guess. Anyone may guess for any feed id, so without it the
// counts of made-up feeds would pile up for ever; a count lives as long as any PIN it
// protects (MaxPINTTL, renewed by each guess) and a minute of clock skew more. Every
// PIN has a shorter per-key TTL of its own. (A bucket TTL, not a per-key one: the
// count is renewed with kv.Update, which would drop a per-key TTL.) With the pairing
// rate limit, one address can make at most about 600 counts an hour.
const FailCountTTL = MaxPINTTL + time.Minute

// pinBucketConfig is the PIN bucket's configuration; failTTL is FailCountTTL except in
// tests.
func pinBucketConfig(failTTL time.Duration) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         BucketPINs,
		Description:    "open pairing PINs (as HMACs) and wrong-guess counts",
		History:        1,
		TTL:            failTTL,
		LimitMarkerTTL: time.Second,
	}
}

// pinAlphabet is RFC 8628's: no vowels (no words), no look-alikes. 8 characters from 20
// give about 34.5 bits.
const pinAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// Limits of docs/protocol.md §3 and the pairing issue.
const (
	pinLength       = 8
	DefaultPINTTL   = 5 * time.Minute
	MaxPINTTL       = time.Hour
	maxWrongGuesses = 5
)

// errInvalidPIN is the one answer for a wrong, expired, used or other-feed PIN.
var errInvalidPIN = &httpx.Error{Code: httpx.CodeInvalidPIN, Message: "that PIN is not valid for this feed: ask an administrator for a new one"}

// PIN is an issued PIN as the admin sees it.
type PIN struct {
	PIN       string    `json:"pin"`
	Feed      string    `json:"feed"`
	ExpiresAt time.Time `json:"expires_at"`
	Replace   bool      `json:"replace"`
	// Tags are given to the device that pairs with the PIN (tags.go).
	Tags []string `json:"tags,omitempty"`
}

type pinRecord struct {
	Feed      string    `json:"feed"`
	Replace   bool      `json:"replace"`
	ExpiresAt time.Time `json:"expires_at"`
	Tags      []string  `json:"tags,omitempty"`
}

type failCount struct {
	N int `json:"n"`
}

// pinStore keeps PINs only as HMACs under a key derived from the signing key: a PIN has
// 34.5 bits, so a plain hash in a leaked bucket could be searched exhaustively.
type pinStore struct {
	kv  jetstream.KeyValue
	key []byte
	now func() time.Time
}

func newPINStore(ctx context.Context, b *broker.Broker, key []byte, now func() time.Time) (*pinStore, error) {
	kv, err := b.Bucket(ctx, pinBucketConfig(FailCountTTL))
	if err != nil {
		return nil, err
	}
	return &pinStore{kv: kv, key: key, now: now}, nil
}

// NormalizePIN drops spaces and hyphens and upper-cases, as docs/protocol.md §3 compares.
func NormalizePIN(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == ' ' || r == '-' || r == '\t':
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// FormatPIN shows a PIN as XXXX-XXXX.
func FormatPIN(p string) string { return p[:4] + "-" + p[4:] }

func randomPIN() string {
	var out [pinLength]byte
	var buf [32]byte
	for n := 0; n < pinLength; {
		_, _ = rand.Read(buf[:])
		for _, c := range buf {
			// 240 is the largest multiple of 20 below 256: no modulo bias.
			if c < 240 && n < pinLength {
				out[n] = pinAlphabet[c%20]
				n++
			}
		}
	}
	return string(out[:])
}

func (s *pinStore) kvKey(feed, pin string) string {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(feed + "\x00" + pin))
	return "pin." + feed + "." + hex.EncodeToString(mac.Sum(nil))
}

// issue makes a new PIN for feed. A new PIN also clears the feed's wrong-guess count.
func (s *pinStore) issue(ctx context.Context, feed string, ttl time.Duration, replace bool, tags []string) (PIN, error) {
	ttl = ttl.Round(time.Second)
	exp := s.now().Add(ttl).UTC().Truncate(time.Second)
	val, _ := json.Marshal(pinRecord{Feed: feed, Replace: replace, ExpiresAt: exp, Tags: tags})
	for range 3 { // a collision among open PINs is rare; try another
		pin := randomPIN()
		_, err := s.kv.Create(ctx, s.kvKey(feed, pin), val, jetstream.KeyTTL(ttl))
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			return PIN{}, err
		}
		if err := s.kv.Purge(ctx, "fail."+feed); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return PIN{}, err
		}
		return PIN{PIN: FormatPIN(pin), Feed: feed, ExpiresAt: exp, Replace: replace, Tags: tags}, nil
	}
	return PIN{}, errors.New("could not make a unique PIN")
}

// redeem uses up pin for feed. Any failure is errInvalidPIN (and counts as a wrong
// guess); other errors mean the store could not be reached.
func (s *pinStore) redeem(ctx context.Context, feed, pin string) (pinRecord, error) {
	pin = NormalizePIN(pin)
	if len(pin) != pinLength || strings.Trim(pin, pinAlphabet) != "" {
		return pinRecord{}, s.wrongGuess(ctx, feed)
	}
	key := s.kvKey(feed, pin)
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return pinRecord{}, s.wrongGuess(ctx, feed)
	}
	if err != nil {
		return pinRecord{}, err
	}
	var rec pinRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.Feed != feed || !s.now().Before(rec.ExpiresAt) {
		return pinRecord{}, s.wrongGuess(ctx, feed)
	}
	// Single use: of two redeemers racing, only one deletes this revision.
	if err := s.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
		return pinRecord{}, errInvalidPIN
	}
	return rec, nil
}

// wrongGuess counts a failure for feed, cluster-wide, and voids every open PIN of the
// feed at the fifth. It returns errInvalidPIN, or the error that kept it from counting.
func (s *pinStore) wrongGuess(ctx context.Context, feed string) error {
	key := "fail." + feed
	for range 10 { // compare-and-set against concurrent guesses on other instances
		var n failCount
		var err error
		e, gerr := s.kv.Get(ctx, key)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			n.N = 1
			val, _ := json.Marshal(n)
			_, err = s.kv.Create(ctx, key, val)
		case gerr != nil:
			return gerr
		default:
			_ = json.Unmarshal(e.Value(), &n)
			n.N++
			val, _ := json.Marshal(n)
			_, err = s.kv.Update(ctx, key, val, e.Revision())
		}
		if err != nil {
			if broker.IsKVConflict(err) {
				continue
			}
			return err
		}
		if n.N >= maxWrongGuesses {
			if err := s.voidFeed(ctx, feed); err != nil {
				return err
			}
		}
		return errInvalidPIN
	}
	return errors.New("wrong-guess counter too contended")
}

// voidFeed deletes every open PIN of feed and starts the count again.
func (s *pinStore) voidFeed(ctx context.Context, feed string) error {
	lister, err := s.kv.ListKeysFiltered(ctx, "pin."+feed+".*")
	if err != nil {
		return err
	}
	for k := range lister.Keys() {
		if err := s.kv.Purge(ctx, k); err != nil {
			return fmt.Errorf("void PIN: %w", err)
		}
	}
	if err := s.kv.Purge(ctx, "fail."+feed); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return nil
}

// IssuePIN makes a PIN for feed, valid for ttl (from 1 s to MaxPINTTL; the caller
// checks the bounds and audits the issue under its own actor). With replace, pairing
// with it revokes the feed's other devices. A store failure is broker.ErrUnavailable.
func (a *Authority) IssuePIN(ctx context.Context, feed string, ttl time.Duration, replace bool) (PIN, error) {
	return a.IssueTaggedPIN(ctx, feed, ttl, replace, nil)
}

// IssueTaggedPIN is IssuePIN whose device gets tags (checked with CheckTags here too).
func (a *Authority) IssueTaggedPIN(ctx context.Context, feed string, ttl time.Duration, replace bool, tags []string) (PIN, error) {
	tags, err := CheckTags("tags", tags)
	if err != nil {
		return PIN{}, err
	}
	pin, err := a.pins.issue(ctx, feed, ttl, replace, tags)
	if err != nil {
		return PIN{}, a.unavailable("issue pin", err)
	}
	return pin, nil
}
