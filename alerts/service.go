package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
)

// Device is what the rules need of a paired device.
type Device struct {
	ID, Feed string
}

// Fleet is what the alert rules read of the tablets: the paired devices and whether each
// has a live connection. It is declared here, where it is used; cmd/kioskfeed satisfies
// it with pairing's device registry and the bridge's presence, so that this package
// imports neither.
type Fleet interface {
	// AppendDevices appends every paired device to dst and returns it. A tick passes
	// the slice of the last one, so that it allocates nothing for the list: a copy of
	// the whole registry every few seconds was most of an idle instance's garbage.
	AppendDevices(dst []Device) []Device
	// Presence tells whether a device has a live connection now, and when this
	// instance last saw it online (zero when it has not).
	Presence(deviceID string) (online bool, lastSeen time.Time)
}

// Display is what the behind rule reads of proof of display. A Fleet that also
// implements it gets device_behind and device_caught_up alerts.
type Display interface {
	// DisplayState is a device's display state: "live", "behind", "stale" or
	// "offline" (docs/protocol.md §6, #device-state).
	DisplayState(deviceID, feed string) string
}

// Config configures the Service. cmd/kioskfeed fills it from config.Config; every zero
// field gets the default its comment names.
type Config struct {
	// OfflineAfter is how long a device's lease must be gone before device_offline is
	// raised. Default 2m.
	OfflineAfter time.Duration
	// AuthFailBurst refused socket auths for one device or from one address within
	// BurstWindow raise auth_fail_burst. Default 10.
	AuthFailBurst int
	// PairApproveFailBurst approve or deny attempts naming no open request from one
	// address within BurstWindow raise pair_approve_fail_burst. Default 5.
	PairApproveFailBurst int
	// BurstWindow is the sliding window of the burst rules. Default 5m.
	BurstWindow time.Duration
	// BehindFor is how long a device must stay behind or stale before device_behind is
	// raised, so that a burst of events the tablet shows a second later raises
	// nothing. Default 30s.
	BehindFor time.Duration
	// AllowPrivate lets webhooks target private, loopback and shared (CGNAT) addresses,
	// for on-premises receivers and tests; link-local, metadata, unspecified, multicast
	// and reserved addresses stay refused. Default false.
	AllowPrivate bool
	// Replicas of the streams. Default 1 (the buckets take the broker's own).
	Replicas int
	// Every is how often the offline rule looks at every device. Default OfflineAfter/4,
	// at most 5s and at least 200ms.
	Every time.Duration
	// RetryBase is the first retry delay of a failed delivery; each retry doubles it,
	// up to RetryMax. Defaults 1s and 5m.
	RetryBase, RetryMax time.Duration
	// MaxAttempts bounds the attempts of one delivery; after the last it is recorded as
	// failed and dropped. Default 8.
	MaxAttempts int
	// DeliveryTimeout bounds one delivery attempt (connect, TLS, request, answer).
	// Default 10s.
	DeliveryTimeout time.Duration
	// OpTimeout bounds each JetStream call. Default 5s.
	OpTimeout time.Duration
	// Logger takes the service's logs. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.OfflineAfter == 0 {
		c.OfflineAfter = 2 * time.Minute
	}
	if c.AuthFailBurst == 0 {
		c.AuthFailBurst = 10
	}
	if c.PairApproveFailBurst == 0 {
		c.PairApproveFailBurst = 5
	}
	if c.BurstWindow == 0 {
		c.BurstWindow = 5 * time.Minute
	}
	if c.BehindFor == 0 {
		c.BehindFor = 30 * time.Second
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Every == 0 {
		c.Every = min(max(c.OfflineAfter/4, 200*time.Millisecond), 5*time.Second)
	}
	if c.RetryBase == 0 {
		c.RetryBase = time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Minute
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 8
	}
	if c.DeliveryTimeout == 0 {
		c.DeliveryTimeout = 10 * time.Second
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Service runs the alert rules and the webhook deliveries of one instance. It is safe
// for concurrent use; Shutdown stops it.
type Service struct {
	cfg   Config
	b     *broker.Broker
	js    jetstream.JetStream
	fleet Fleet
	log   *slog.Logger

	hooks   *registry
	offline *offlineRule
	tamper  *tamperRule
	deliver *deliverer

	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// New sets up the ALERTS and WEBHOOK_TASKS streams and the alert and webhook buckets,
// and starts the rules and the delivery consumers.
func New(ctx context.Context, cfg Config, b *broker.Broker, fleet Fleet) (*Service, error) {
	cfg.setDefaults()
	if fleet == nil {
		return nil, errors.New("alerts: a Fleet is required")
	}
	s := &Service{cfg: cfg, b: b, js: b.JetStream(), fleet: fleet, log: cfg.Logger, stop: make(chan struct{})}
	opCtx, cancel := context.WithTimeout(ctx, 4*cfg.OpTimeout)
	defer cancel()
	if err := setupAlertStream(opCtx, s.js, cfg.Replicas); err != nil {
		return nil, err
	}
	var err error
	if s.hooks, err = newRegistry(opCtx, s); err != nil {
		return nil, err
	}
	if s.deliver, err = newDeliverer(opCtx, s); err != nil {
		s.hooks.stop()
		return nil, err
	}
	if s.offline, err = newOfflineRule(opCtx, s); err != nil {
		s.deliver.stop()
		s.hooks.stop()
		return nil, err
	}
	s.tamper = newTamperRule(s)
	if err := s.tamper.start(opCtx); err != nil {
		s.offline.states.Stop()
		s.deliver.stop()
		s.hooks.stop()
		return nil, fmt.Errorf("alerts: read the audit log: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.offline.run(s.stop)
	}()
	return s, nil
}

// Shutdown stops the rules and the deliveries (an attempt in flight is cut off, and
// redelivered by JetStream later, with the same delivery id). Idempotent; ctx bounds
// the wait.
func (s *Service) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		close(s.stop)
		s.tamper.shutdown()
		s.deliver.stop()
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
		s.offline.states.Stop()
		s.hooks.stop()
	})
	return nil
}

// Types is the alert types a webhook may ask for, for the dashboard's form.
func (s *Service) Types() []string { return Types() }
