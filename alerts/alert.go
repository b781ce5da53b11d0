package alerts

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The alert types (docs/protocol.md §12, #alert-types). A type is the last token of its
// subject, kioskfeed.alerts.<type>.
const (
	// TypeDeviceOffline: a device seen online at least once has had no live connection
	// for longer than alert_offline_after.
	TypeDeviceOffline = "device_offline"
	// TypeDeviceOnline: a device with an open device_offline alert is back; it resolves
	// that alert (Alert.Resolves).
	TypeDeviceOnline = "device_online"
	// TypeDeviceBehind: a connected device has been behind (events not shown past
	// behind_events or behind_after) or stale (nothing confirmed) for longer than
	// BehindFor; raised only when the Fleet is a Display.
	TypeDeviceBehind = "device_behind"
	// TypeDeviceCaughtUp: a device with an open device_behind shows the feed live
	// again; it resolves that alert.
	TypeDeviceCaughtUp = "device_caught_up"
	// TypeDuplicateRefused: a second live connection for a device was refused (a
	// duplicate_refused audit record): its credentials may be in two places.
	TypeDuplicateRefused = "duplicate_refused"
	// TypeAuthFailBurst: at least alert_auth_fail_burst refused socket auths for one
	// device or from one address within alert_burst_window.
	TypeAuthFailBurst = "auth_fail_burst"
	// TypePairApproveFailBurst: at least alert_pair_approve_fail_burst approve or deny
	// attempts naming no open request from one address within alert_burst_window.
	TypePairApproveFailBurst = "pair_approve_fail_burst"
	// TypeDeviceRevoked: a device was revoked.
	TypeDeviceRevoked = "device_revoked"
)

// Types is every alert type, in the order of docs/protocol.md §12.
func Types() []string {
	return []string{TypeDeviceOffline, TypeDeviceOnline, TypeDeviceBehind, TypeDeviceCaughtUp,
		TypeDuplicateRefused, TypeAuthFailBurst, TypePairApproveFailBurst, TypeDeviceRevoked}
}

func knownType(t string) bool {
	for _, k := range Types() {
		if k == t {
			return true
		}
	}
	return false
}

// Names of the streams this package keeps, and the subject prefix of alerts.
const (
	StreamAlerts  = "ALERTS"
	StreamTasks   = "WEBHOOK_TASKS"
	SubjectPrefix = "kioskfeed.alerts."
	taskPrefix    = "kioskfeed.webhook.tasks."
)

// Bounds of the streams (docs/protocol.md §10).
const (
	// DuplicateWindow is the ALERTS stream's duplicate window: it must cover the skew
	// between instances evaluating the same rule, and the replay of the audit log at
	// start (auditReplay), so that no alert is stored twice.
	DuplicateWindow = 10 * time.Minute
	// AlertsMaxAge and AlertsMaxBytes bound the ALERTS stream: the oldest alerts are
	// dropped first.
	AlertsMaxAge   = 7 * 24 * time.Hour
	AlertsMaxBytes = 64 << 20
	// maxAlertBytes bounds one alert (its detail is short and its strings bounded).
	maxAlertBytes = 8 << 10
	// TasksMaxAge and TasksMaxMsgs bound the queue of webhook deliveries not yet done.
	TasksMaxAge  = 24 * time.Hour
	TasksMaxMsgs = 100000
)

// Alert is the body of an alert message and of a webhook delivery (docs/protocol.md
// §12, #alert-body). It never holds a token, key, PIN or secret.
type Alert struct {
	// ID is the same on every instance that raises this alert: a hash of its
	// Nats-Msg-Id.
	ID       string    `json:"id"`
	Type     string    `json:"type"`
	Time     time.Time `json:"time"`
	Feed     string    `json:"feed"`
	DeviceID string    `json:"device_id"`
	Detail   string    `json:"detail"`
	// RemoteAddr is the client address of a tamper signal, when it has one.
	RemoteAddr string `json:"remote_addr,omitempty"`
	// Since is when a device went offline (device_offline, device_online).
	Since *time.Time `json:"since,omitempty"`
	// Count is how many refusals a burst alert stands for.
	Count int `json:"count,omitempty"`
	// Resolves is the id of the alert this one clears (device_online).
	Resolves string `json:"resolves,omitempty"`
}

// alertID is the alert id of a Nats-Msg-Id: "al_" and 20 characters of Crockford's
// base32 of its SHA-256 (100 bits), so every instance names one alert alike.
func alertID(msgID string) string {
	sum := sha256.Sum256([]byte(msgID))
	return "al_" + broker.CrockfordEncoding.EncodeToString(sum[:])[:20]
}

// setupAlertStream creates (or updates) the ALERTS stream.
func setupAlertStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamAlerts,
		Description: "kioskfeed alerts: tamper, offline and revoked devices",
		Subjects:    []string{SubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      AlertsMaxAge,
		MaxBytes:    AlertsMaxBytes,
		MaxMsgSize:  maxAlertBytes,
		Duplicates:  DuplicateWindow,
		Replicas:    replicas,
	})
	if err != nil {
		return fmt.Errorf("set up stream %s: %w", StreamAlerts, err)
	}
	return nil
}

// publish stores a (made by the rule that raises it, with every instance computing the
// same msgID) and reports whether it was new: false is a duplicate JetStream dropped.
func (s *Service) publish(ctx context.Context, msgID string, a Alert) (bool, error) {
	a.ID = alertID(msgID)
	if a.Time.IsZero() {
		a.Time = s.cfg.Now()
	}
	a.Time = a.Time.UTC()
	data, err := json.Marshal(a)
	if err != nil {
		return false, err
	}
	msg := nats.NewMsg(SubjectPrefix + a.Type)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	ack, err := s.js.PublishMsg(ctx, msg)
	if err != nil {
		return false, err
	}
	if !ack.Duplicate {
		s.log.Info("alert raised", slog.String("type", a.Type), slog.String("id", a.ID),
			slog.String("device_id", a.DeviceID), slog.String("feed", a.Feed))
	}
	return !ack.Duplicate, nil
}
