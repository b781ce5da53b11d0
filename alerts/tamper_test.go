package alerts_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/alerts"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestTamperAlertsFromTheAuditLog writes audit records as the bridge and pairing do and
// finds the alerts they raise: a burst for the device that crossed the limit and none
// for the one below it, a burst per address, and one alert per duplicate_refused and
// device_revoked record.
func TestTamperAlertsFromTheAuditLog(t *testing.T) {
	b := brokertest.New(t, func(c *broker.Config) { c.AuditAggregateWindow = -1 })
	startService(t, b, newFleet(), alerts.Config{AuthFailBurst: 3, PairApproveFailBurst: 2, BurstWindow: time.Minute})
	const below, over = "dev_DDDDDDDDDDDDDDDDDDDD", "dev_EEEEEEEEEEEEEEEEEEEE"
	authFail := func(device, addr string, count int) {
		b.Audit(broker.AuditRecord{Type: string(broker.AuditAuthFail), Feed: "lobby", DeviceID: device, RemoteAddr: addr, Detail: "bad proof", Count: count})
	}
	for i := range 2 {
		authFail(below, fmt.Sprintf("192.0.2.%d", 10+i), 0)
	}
	// Over the limit with a summed record (count 2) and one more; then a fourth within
	// the window, which raises nothing new.
	authFail(over, "192.0.2.20", 2)
	authFail(over, "192.0.2.21", 0)
	authFail(over, "192.0.2.22", 0)
	// Three from one address, no device.
	for range 3 {
		authFail("", "198.51.100.1", 0)
	}
	for range 2 {
		b.Audit(broker.AuditRecord{Type: string(broker.AuditPairApproveFail), RemoteAddr: "198.51.100.2", Detail: "no open request"})
	}
	b.Audit(broker.AuditRecord{Type: string(broker.AuditDuplicateRefused), Feed: "lobby", DeviceID: below, RemoteAddr: "192.0.2.30", Detail: "lease held"})
	b.Audit(broker.AuditRecord{Type: string(broker.AuditDeviceRevoked), Feed: "lobby", DeviceID: over, Detail: "revoked by an administrator"})

	var all []alerts.Alert
	waitFor(t, 10*time.Second, "the tamper alerts", func() bool {
		all = storedAlerts(t, b)
		return len(ofType(all, alerts.TypeDeviceRevoked, over)) == 1 && len(ofType(all, alerts.TypePairApproveFailBurst, "")) == 1 &&
			len(ofType(all, alerts.TypeDuplicateRefused, below)) == 1
	})
	// The records are read in order: what came before the last one has been looked at.
	if got := ofType(all, alerts.TypeAuthFailBurst, over); len(got) != 1 || got[0].Count != 3 || got[0].Feed != "lobby" {
		t.Errorf("auth_fail_burst for the device over the limit: %+v, want one with count 3", got)
	}
	if got := ofType(all, alerts.TypeAuthFailBurst, below); len(got) != 0 {
		t.Errorf("auth_fail_burst for the device below the limit: %+v, want none", got)
	}
	var byAddr []alerts.Alert
	for _, a := range ofType(all, alerts.TypeAuthFailBurst, "") {
		if a.RemoteAddr == "198.51.100.1" {
			byAddr = append(byAddr, a)
		}
	}
	if len(byAddr) != 1 || byAddr[0].Count != 3 {
		t.Errorf("auth_fail_burst from the address: %+v, want one with count 3", byAddr)
	}
	if got := ofType(all, alerts.TypePairApproveFailBurst, ""); got[0].RemoteAddr != "198.51.100.2" || got[0].Count != 2 {
		t.Errorf("pair_approve_fail_burst: %+v", got[0])
	}
	if got := ofType(all, alerts.TypeDuplicateRefused, below)[0]; got.RemoteAddr != "192.0.2.30" || got.Feed != "lobby" {
		t.Errorf("duplicate_refused: %+v", got)
	}
}

// TestTamperAlertsSurviveARestart: a second Service started on the same log reads the
// records again and raises nothing twice.
func TestTamperAlertsSurviveARestart(t *testing.T) {
	b := brokertest.New(t, func(c *broker.Config) { c.AuditAggregateWindow = -1 })
	s := startService(t, b, newFleet(), alerts.Config{})
	b.Audit(broker.AuditRecord{Type: string(broker.AuditDeviceRevoked), Feed: "lobby", DeviceID: revokedDevice, Detail: "revoked"})
	waitFor(t, 10*time.Second, "device_revoked", func() bool { return len(storedAlerts(t, b)) == 1 })
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	startService(t, b, newFleet(), alerts.Config{})
	b.Audit(broker.AuditRecord{Type: string(broker.AuditDeviceRevoked), Feed: "lobby", DeviceID: "dev_FFFFFFFFFFFFFFFFFFFF", Detail: "revoked"})
	waitFor(t, 10*time.Second, "the second device_revoked", func() bool { return len(storedAlerts(t, b)) >= 2 })
	if all := storedAlerts(t, b); len(all) != 2 {
		t.Errorf("after a restart the log holds %d alerts, want 2 (the first not repeated): %+v", len(all), all)
	}
}
