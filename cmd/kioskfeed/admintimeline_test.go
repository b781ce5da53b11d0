package main

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// TestAdminCLITimeline: kioskfeed admin timeline prints a served device's last hour,
// not known until its tablet connected and online since, and refuses an unknown device
// with the API's not_found.
func TestAdminCLITimeline(t *testing.T) {
	sys := startSystem(t, t.TempDir(), freeAddr(t))
	s := sys.served
	admin := func(args ...string) (string, error) {
		var out syncBuffer
		err := run(context.Background(), append([]string{"admin"}, args...), env(map[string]string{
			"KIOSKFEED_PUBLIC_URL": s.base, "KIOSKFEED_ADMIN_TOKEN": s.token,
		}), &out, io.Discard)
		return out.String(), err
	}
	pin := adminAPI(t, sys, "POST", "/api/admin/feeds/lobby/pins", `{"ttl":"5m"}`)["pin"].(string)
	tab, err := pairingtest.NewTablet(s.base)
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Pair(context.Background(), "lobby", pin, "Lobby left"); err != nil {
		t.Fatal(err)
	}
	if out, err := admin("timeline", tab.DeviceID); err != nil || !regexp.MustCompile(`(?m)^  \d\d:\d\d:\d\d–\d\d:\d\d:\d\d  unknown  1h0m0s$`).MatchString(out) {
		t.Fatalf("timeline before the tablet connected: %v, printed %q", err, out)
	}
	wsURL := "ws" + strings.TrimPrefix(s.base, "http") + "/ws"
	c, err := bridgetest.Dial(context.Background(), wsURL, s.base, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Abort() })
	if _, err := c.Handshake(tab, wsURL, 0, "", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := admin("timeline", tab.DeviceID)
		if err == nil && strings.HasPrefix(out, tab.DeviceID+", ") && strings.Contains(out, "  unknown  ") && strings.Contains(out, "  online   ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("timeline after the tablet connected: %v, printed %q", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := admin("timeline", "dev_00000000000000000000"); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("timeline of an unknown device: %v, printed %q; want not_found", err, out)
	}
}
