package alerts_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/alerts"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

const revokedDevice = "dev_CCCCCCCCCCCCCCCCCCCC"

// revoke writes the audit record a revocation writes, which raises device_revoked.
func revoke(b *broker.Broker, device string) {
	b.Audit(broker.AuditRecord{Type: string(broker.AuditDeviceRevoked), Feed: "lobby", DeviceID: device, Detail: "revoked by an administrator"})
}

// TestRetriesKeepTheDeliveryID has a real receiver answer 500 twice, then 200: the
// alert arrives three times, signed each time, with one X-Kioskfeed-Delivery, and the
// deliveries record says so.
func TestRetriesKeepTheDeliveryID(t *testing.T) {
	b := brokertest.New(t)
	s := startService(t, b, newFleet(), alerts.Config{AllowPrivate: true, RetryBase: 50 * time.Millisecond})
	recv := newReceiver(t, 500, 500)
	ctx := context.Background()
	hook, secret, err := s.CreateWebhook(ctx, alerts.WebhookRequest{URL: recv.srv.URL + "/hook?token=abc", Types: []string{alerts.TypeDeviceRevoked}})
	if err != nil {
		t.Fatalf("create webhook: %v", err)
	}
	if !strings.HasPrefix(secret, "whsec_") || !alerts.ValidWebhookID(hook.ID) {
		t.Fatalf("created %+v with secret %q, want a wh_ id and a made whsec_ secret", hook, secret)
	}
	if raw, _ := json.Marshal(s.Webhooks()); strings.Contains(string(raw), secret) {
		t.Fatal("the webhook list shows the secret")
	}

	revoke(b, revokedDevice)
	waitFor(t, 15*time.Second, "three attempts", func() bool { return len(recv.got()) >= 3 })
	hits := recv.got()
	if len(hits) != 3 {
		t.Fatalf("receiver got %d requests, want 3 (two 500s, then the 200)", len(hits))
	}
	for i, h := range hits {
		if h.delivery == "" || h.delivery != hits[0].delivery {
			t.Errorf("attempt %d has X-Kioskfeed-Delivery %q, want %q on every attempt", i+1, h.delivery, hits[0].delivery)
		}
		if !signedBy(h, secret) {
			t.Errorf("attempt %d signature %q does not verify", i+1, h.signature)
		}
		if h.alert.Type != alerts.TypeDeviceRevoked || h.alert.DeviceID != revokedDevice || h.alert.Feed != "lobby" || h.alert.ID == "" || h.alert.Time.IsZero() {
			t.Errorf("attempt %d body %s, want the device_revoked alert", i+1, h.body)
		}
	}
	if want := hits[0].alert.ID + "." + hook.ID; hits[0].delivery != want {
		t.Errorf("delivery id %q, want %q", hits[0].delivery, want)
	}
	if signedBy(hits[0], secret+"x") {
		t.Error("the signature verifies under another secret")
	}

	var list []alerts.Delivery
	waitFor(t, 5*time.Second, "three recorded attempts", func() bool {
		list, _, err = s.Deliveries(ctx, hook.ID)
		return err == nil && len(list) == 3
	})
	for i, want := range []struct {
		outcome string
		status  int
		attempt int
	}{{"delivered", 200, 3}, {"retrying", 500, 2}, {"retrying", 500, 1}} {
		d := list[i]
		if d.Outcome != want.outcome || d.Status != want.status || d.Attempt != want.attempt || d.DeliveryID != hits[0].delivery {
			t.Errorf("deliveries[%d] = %+v, want %s, status %d, attempt %d", i, d, want.outcome, want.status, want.attempt)
		}
		if strings.Contains(d.Error, "token=abc") || strings.Contains(d.Error, recv.srv.URL) {
			t.Errorf("deliveries[%d] error %q shows the URL", i, d.Error)
		}
	}
}

// TestDeliveryGivesUp has the receiver fail every attempt: after MaxAttempts the
// delivery is recorded failed.
func TestDeliveryGivesUp(t *testing.T) {
	b := brokertest.New(t)
	s := startService(t, b, newFleet(), alerts.Config{AllowPrivate: true, RetryBase: 20 * time.Millisecond, MaxAttempts: 3})
	recv := newReceiver(t, 503, 503, 503, 503, 503, 503)
	ctx := context.Background()
	hook, _, err := s.CreateWebhook(ctx, alerts.WebhookRequest{URL: recv.srv.URL, Secret: "a-secret-of-16-chars"})
	if err != nil {
		t.Fatal(err)
	}
	revoke(b, revokedDevice)
	var list []alerts.Delivery
	waitFor(t, 15*time.Second, "a failed delivery", func() bool {
		list, _, _ = s.Deliveries(ctx, hook.ID)
		return len(list) > 0 && list[0].Outcome == "failed"
	})
	if list[0].Attempt != 3 || list[0].Status != 503 || !strings.Contains(list[0].Error, "503") {
		t.Errorf("last attempt %+v, want the third, failed with 503", list[0])
	}
	if n := len(recv.got()); n != 3 {
		t.Errorf("receiver got %d attempts, want 3", n)
	}
}

// TestWebhookTypesAndDelete: a webhook gets only the types it asked for, and a deleted
// one gets nothing more.
func TestWebhookTypesAndDelete(t *testing.T) {
	b := brokertest.New(t, func(c *broker.Config) { c.AuditAggregateWindow = -1 })
	s := startService(t, b, newFleet(), alerts.Config{AllowPrivate: true})
	all, dup := newReceiver(t), newReceiver(t)
	ctx := context.Background()
	if _, _, err := s.CreateWebhook(ctx, alerts.WebhookRequest{URL: all.srv.URL, Types: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	dupHook, _, err := s.CreateWebhook(ctx, alerts.WebhookRequest{URL: dup.srv.URL, Types: []string{alerts.TypeDuplicateRefused}})
	if err != nil {
		t.Fatal(err)
	}
	revoke(b, revokedDevice)
	b.Audit(broker.AuditRecord{Type: string(broker.AuditDuplicateRefused), Feed: "lobby", DeviceID: revokedDevice, RemoteAddr: "192.0.2.7", Detail: "lease held"})
	waitFor(t, 10*time.Second, "both alerts at the catch-all webhook", func() bool { return len(all.got()) == 2 })
	waitFor(t, 10*time.Second, "duplicate_refused at its webhook", func() bool { return len(dup.got()) == 1 })
	if h := dup.got()[0]; h.alert.Type != alerts.TypeDuplicateRefused || h.alert.RemoteAddr != "192.0.2.7" {
		t.Errorf("the duplicate_refused webhook got %s", h.body)
	}
	if ok, err := s.DeleteWebhook(ctx, dupHook.ID); !ok || err != nil {
		t.Fatalf("delete = %v, %v", ok, err)
	}
	if ok, _ := s.DeleteWebhook(ctx, dupHook.ID); ok {
		t.Error("deleting twice found the webhook again")
	}
	if _, ok, _ := s.Deliveries(ctx, dupHook.ID); ok {
		t.Error("a deleted webhook still has deliveries")
	}
	b.Audit(broker.AuditRecord{Type: string(broker.AuditDuplicateRefused), Feed: "lobby", DeviceID: revokedDevice, RemoteAddr: "192.0.2.8", Detail: "lease held"})
	waitFor(t, 10*time.Second, "the third alert at the catch-all webhook", func() bool { return len(all.got()) == 3 })
	if n := len(dup.got()); n != 1 {
		t.Errorf("the deleted webhook got %d deliveries, want still 1", n)
	}
}
