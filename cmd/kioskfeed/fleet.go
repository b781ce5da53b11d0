package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/kioskfeed/kioskfeed/alerts"
	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/config"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// alertFleet is what the alert rules read of the tablets: pairing's devices and the
// bridge's presence. It lives here, where the three packages meet, so that alerts
// imports neither pairing nor bridge.
type alertFleet struct {
	devices  *pairing.Registry
	presence *bridge.Bridge
}

var (
	_ alerts.Fleet   = alertFleet{}
	_ alerts.Display = alertFleet{}
	_ alerts.Quiet   = alertFleet{}
)

func (f alertFleet) AppendDevices(dst []alerts.Device) []alerts.Device {
	f.devices.Each(func(d pairing.Device) { dst = append(dst, alerts.Device{ID: d.ID, Feed: d.Feed}) })
	return dst
}

func (f alertFleet) Presence(deviceID string) (bool, time.Time) { return f.presence.Presence(deviceID) }

// DisplayState is the device's proof-of-display state, for the behind rule.
func (f alertFleet) DisplayState(deviceID, feed string) string {
	_, _, _, state := f.presence.DeviceShown(deviceID, feed)
	return state
}

// Asleep is whether the feed is scheduled asleep, for the quiet hours.
func (f alertFleet) Asleep(feed string) bool { return f.presence.Asleep(feed) }

// startAlerts starts the alert rules and the webhook deliveries (docs/protocol.md §12).
func startAlerts(ctx context.Context, cfg config.Config, b *broker.Broker, auth *pairing.Authority, br *bridge.Bridge, log *slog.Logger) (*alerts.Service, error) {
	return alerts.New(ctx, alerts.Config{
		OfflineAfter:         cfg.AlertOfflineAfter,
		AuthFailBurst:        cfg.AlertAuthFailBurst,
		PairApproveFailBurst: cfg.AlertPairApproveFailBurst,
		BurstWindow:          cfg.AlertBurstWindow,
		AllowPrivate:         cfg.WebhookAllowPrivate,
		Replicas:             cfg.NATSReplicas,
		Now:                  b.Now,
		Logger:               log.With(slog.String("component", "alerts")),
	}, b, alertFleet{devices: auth.Devices(), presence: br})
}

// stopAlerts stops the rules and the deliveries. It runs before the tablets are
// drained, so that the drain's closes are not taken for tablets going offline; it is
// idempotent, so the deferred call after it does nothing.
func stopAlerts(al *alerts.Service) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	_ = al.Shutdown(ctx)
}
