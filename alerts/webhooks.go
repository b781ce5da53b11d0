package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// Buckets of the webhook registry and of each webhook's recent deliveries.
const (
	BucketWebhooks   = "kioskfeed_webhooks"
	BucketDeliveries = "kioskfeed_webhook_deliveries"
)

// Bounds of the registry (docs/protocol.md §10).
const (
	// MaxWebhooks is the most webhooks at once. Creates are checked against this
	// instance's view of the registry, so creates racing on several instances may pass
	// it by one each.
	MaxWebhooks = 32
	// MaxDeliveries is how many recent attempts each webhook's record keeps.
	MaxDeliveries = 50
	// minSecret and maxSecret bound a secret an administrator chooses.
	minSecret, maxSecret = 16, 256
)

// Webhook is a receiver of alerts as the admin API shows it: never its secret.
type Webhook struct {
	ID      string    `json:"id"`
	URL     string    `json:"url"`
	Types   []string  `json:"types"`
	Created time.Time `json:"created"`
}

// stored is a webhook's record in BucketWebhooks: the secret is kept as given, since
// each delivery is signed with it (the bucket is readable only by the server's NATS
// user).
type stored struct {
	Webhook
	Secret string `json:"secret"`
}

// Delivery is one attempt to deliver an alert to a webhook.
type Delivery struct {
	Time time.Time `json:"time"`
	// DeliveryID is the X-Kioskfeed-Delivery header: the same on every attempt.
	DeliveryID string `json:"delivery_id"`
	AlertID    string `json:"alert_id"`
	AlertType  string `json:"type"`
	Attempt    int    `json:"attempt"`
	// Status is the receiver's HTTP status, 0 when none came.
	Status int `json:"status"`
	// Error says why the attempt failed ("" on success). It never holds the URL (which
	// may carry the receiver's token).
	Error string `json:"error,omitempty"`
	// Outcome is "delivered", "retrying" (another attempt is due) or "failed" (the
	// last attempt, or the webhook is gone).
	Outcome string `json:"outcome"`
}

// WebhookRequest is what an administrator sends to make a webhook.
type WebhookRequest struct {
	URL    string   `json:"url"`
	Types  []string `json:"types"`
	Secret string   `json:"secret"`
}

type registry struct {
	s          *Service
	m          *broker.Mirror[stored]
	deliveries jetstream.KeyValue
}

func newRegistry(ctx context.Context, s *Service) (*registry, error) {
	kv, err := s.b.Bucket(ctx, jetstream.KeyValueConfig{Bucket: BucketWebhooks, Description: "kioskfeed webhooks", History: 1})
	if err != nil {
		return nil, err
	}
	del, err := s.b.Bucket(ctx, jetstream.KeyValueConfig{Bucket: BucketDeliveries, Description: "kioskfeed webhook deliveries, the newest of each webhook", History: 1})
	if err != nil {
		return nil, err
	}
	m, err := broker.NewMirror[stored](kv, s.log)
	if err != nil {
		return nil, err
	}
	return &registry{s: s, m: m, deliveries: del}, nil
}

func (r *registry) stop() { r.m.Stop() }

func (r *registry) get(id string) (stored, bool) { return r.m.Get(id) }

// matching is every webhook that wants alerts of type typ.
func (r *registry) matching(typ string) []stored {
	return r.m.All(func(w stored) bool { return len(w.Types) == 0 || slices.Contains(w.Types, typ) })
}

// ValidWebhookID reports whether id has the form of a webhook id: wh_ and 20
// characters of Crockford's base32.
func ValidWebhookID(id string) bool {
	rest, ok := strings.CutPrefix(id, "wh_")
	if !ok || len(rest) != 20 {
		return false
	}
	for i := range len(rest) {
		if !strings.ContainsRune("0123456789ABCDEFGHJKMNPQRSTVWXYZ", rune(rest[i])) {
			return false
		}
	}
	return true
}

func newWebhookID() string { return broker.NewID("wh_") }

func invalid(msg string) error { return httpx.Errorf(httpx.CodeInvalidRequest, msg) }

// CreateWebhook checks req and stores a webhook. It returns the webhook and, when req
// had no secret, the one it made (to show once); a mistake is a 400 invalid_request
// that says what to fix.
func (s *Service) CreateWebhook(ctx context.Context, req WebhookRequest) (Webhook, string, error) {
	u, problem := checkURL(ctx, strings.TrimSpace(req.URL), s.cfg.AllowPrivate)
	if problem != "" {
		return Webhook{}, "", invalid(problem)
	}
	types := []string{}
	for _, t := range req.Types {
		if t == "*" {
			types = []string{}
			break
		}
		if !knownType(t) {
			return Webhook{}, "", invalid(fmt.Sprintf(`"types": unknown alert type %q; want some of %s, or none for all`, truncate(t, 40), strings.Join(Types(), ", ")))
		}
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	secret, made := req.Secret, ""
	switch {
	case secret == "":
		secret = "whsec_" + broker.NewSecret(32)
		made = secret
	case len(secret) < minSecret || len(secret) > maxSecret:
		return Webhook{}, "", invalid(fmt.Sprintf(`"secret" must be %d to %d characters, or left out to have one made`, minSecret, maxSecret))
	case strings.IndexFunc(secret, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0:
		return Webhook{}, "", invalid(`"secret" must be printable ASCII without spaces`)
	}
	if len(s.hooks.m.All(nil)) >= MaxWebhooks {
		return Webhook{}, "", invalid(fmt.Sprintf("there are %d webhooks already, the most there may be: delete one first", MaxWebhooks))
	}
	w := stored{Webhook: Webhook{ID: newWebhookID(), URL: u.String(), Types: types, Created: s.cfg.Now().UTC()}, Secret: secret}
	val, _ := json.Marshal(w)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	if _, err := s.hooks.m.KV().Create(ctx, w.ID, val); err != nil {
		return Webhook{}, "", s.unavailable("create webhook", err)
	}
	s.hooks.m.Put(w.ID, val)
	return w.Webhook, made, nil
}

// Webhooks lists the webhooks, oldest first.
func (s *Service) Webhooks() []Webhook {
	all := s.hooks.m.All(nil)
	out := make([]Webhook, len(all))
	for i, w := range all {
		out[i] = w.Webhook
	}
	slices.SortFunc(out, func(x, y Webhook) int { return x.Created.Compare(y.Created) })
	return out
}

// Webhook returns one webhook.
func (s *Service) Webhook(id string) (Webhook, bool) {
	w, ok := s.hooks.get(id)
	return w.Webhook, ok
}

// DeleteWebhook removes a webhook and its deliveries; false when there was none.
// Deliveries queued for it are dropped as they come up.
func (s *Service) DeleteWebhook(ctx context.Context, id string) (bool, error) {
	if !ValidWebhookID(id) {
		return false, nil
	}
	if _, ok := s.hooks.m.Lookup(ctx, id); !ok {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	if err := s.hooks.m.KV().Delete(ctx, id); err != nil {
		return false, s.unavailable("delete webhook", err)
	}
	s.hooks.m.Remove(id)
	_ = s.hooks.deliveries.Delete(ctx, id)
	return true, nil
}

// Deliveries is a webhook's recent attempts, newest first (at most MaxDeliveries); false
// when there is no such webhook.
func (s *Service) Deliveries(ctx context.Context, id string) ([]Delivery, bool, error) {
	if !ValidWebhookID(id) {
		return nil, false, nil
	}
	if _, ok := s.hooks.m.Lookup(ctx, id); !ok {
		return nil, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	list, _, err := s.hooks.readDeliveries(ctx, id)
	if err != nil {
		return nil, true, s.unavailable("read deliveries", err)
	}
	slices.Reverse(list)
	return list, true, nil
}

// readDeliveries is a webhook's record of attempts, oldest first, with its revision (0
// when there is none yet).
func (r *registry) readDeliveries(ctx context.Context, id string) ([]Delivery, uint64, error) {
	e, err := r.deliveries.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return []Delivery{}, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var list []Delivery
	if err := json.Unmarshal(e.Value(), &list); err != nil {
		return []Delivery{}, e.Revision(), nil
	}
	return list, e.Revision(), nil
}

// record appends an attempt to a webhook's record, keeping the newest MaxDeliveries.
// Attempts run on several instances at once, so it writes by compare-and-set, a few
// tries; an attempt that loses them all is logged, not recorded.
func (r *registry) record(ctx context.Context, id string, d Delivery) {
	if _, ok := r.get(id); !ok {
		return // deleted meanwhile: its record is gone with it
	}
	for range 4 {
		list, rev, err := r.readDeliveries(ctx, id)
		if err != nil {
			break
		}
		list = append(list, d)
		if len(list) > MaxDeliveries {
			list = list[len(list)-MaxDeliveries:]
		}
		val, _ := json.Marshal(list)
		if rev == 0 {
			_, err = r.deliveries.Create(ctx, id, val)
		} else {
			_, err = r.deliveries.Update(ctx, id, val, rev)
		}
		if err == nil || !broker.IsKVConflict(err) {
			if err == nil {
				return
			}
			break
		}
	}
	r.s.log.Warn("webhook delivery not recorded", slog.String("webhook", id), slog.String("delivery_id", d.DeliveryID))
}

func (s *Service) unavailable(op string, err error) error {
	s.log.Warn("alerts store unreachable", slog.String("op", op), slog.String("error", err.Error()))
	return broker.ErrUnavailable
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
