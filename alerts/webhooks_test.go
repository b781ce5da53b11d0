package alerts_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kioskfeed/kioskfeed/alerts"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

func wantInvalid(t *testing.T, err error, about string) {
	t.Helper()
	var e *httpx.Error
	if !errors.As(err, &e) || e.Code != httpx.CodeInvalidRequest || !strings.Contains(e.Message, about) {
		t.Errorf("got %v, want invalid_request about %q", err, about)
	}
}

// TestCreateWebhookRefusals: what an administrator may not make, each refused with a
// message that says why, and the bound on how many there are.
func TestCreateWebhookRefusals(t *testing.T) {
	b := brokertest.New(t)
	strict := startService(t, b, newFleet(), alerts.Config{})
	ctx := context.Background()
	for url, about := range map[string]string{
		"http://127.0.0.1/":         "loopback",
		"http://169.254.169.254/":   "metadata",
		"http://localhost:8080/x":   "loopback",
		"http://[::ffff:10.0.0.1]/": "private",
	} {
		_, _, err := strict.CreateWebhook(ctx, alerts.WebhookRequest{URL: url})
		wantInvalid(t, err, about)
	}
	_, _, err := strict.CreateWebhook(ctx, alerts.WebhookRequest{URL: "https://93.184.215.14/", Types: []string{"device_offline", "nope"}})
	wantInvalid(t, err, `"nope"`)
	_, _, err = strict.CreateWebhook(ctx, alerts.WebhookRequest{URL: "https://93.184.215.14/", Secret: "short"})
	wantInvalid(t, err, "16 to 256")
	_, _, err = strict.CreateWebhook(ctx, alerts.WebhookRequest{URL: "https://93.184.215.14/", Secret: "sixteen chars with spaces"})
	wantInvalid(t, err, "printable ASCII")
	if n := len(strict.Webhooks()); n != 0 {
		t.Fatalf("%d webhooks stored after refusals", n)
	}

	for i := range alerts.MaxWebhooks {
		w, secret, err := strict.CreateWebhook(ctx, alerts.WebhookRequest{URL: "https://93.184.215.14/" + strings.Repeat("x", i), Secret: "0123456789abcdef", Types: []string{"device_offline", "device_offline"}})
		if err != nil {
			t.Fatalf("webhook %d: %v", i+1, err)
		}
		if secret != "" || len(w.Types) != 1 {
			t.Fatalf("webhook %d: echoed secret %q or kept a repeated type: %+v", i+1, secret, w)
		}
	}
	_, _, err = strict.CreateWebhook(ctx, alerts.WebhookRequest{URL: "https://93.184.215.14/"})
	wantInvalid(t, err, "delete one first")
}
