package main

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// TestAdminCLIFleet: tags set with a PIN and edited, the devices list's filters, and
// the bulk actions (a dry run, a refused empty filter, a move, a reload, a revoke),
// all with the CLI against a served instance.
func TestAdminCLIFleet(t *testing.T) {
	const public = "http://kioskfeed.test"
	s := startServe(t, t.TempDir(), "--public-url", public)
	admin := func(args ...string) (string, error) {
		var out syncBuffer
		err := run(context.Background(), append([]string{"admin"}, args...), env(map[string]string{
			"KIOSKFEED_PUBLIC_URL": s.base, "KIOSKFEED_ADMIN_TOKEN": s.token,
		}), &out, io.Discard)
		return out.String(), err
	}
	pair := func(feed string, pinArgs ...string) *pairingtest.Tablet {
		t.Helper()
		out, err := admin(append([]string{"pin", "--feed", feed}, pinArgs...)...)
		m := regexp.MustCompile(`PIN ([A-Z]{4}-[A-Z]{4})`).FindStringSubmatch(out)
		if err != nil || m == nil {
			t.Fatalf("admin pin: %v, printed %q", err, out)
		}
		tab := s.routedTablet(t, public)
		if err := tab.Pair(context.Background(), feed, m[1], "screen"); err != nil {
			t.Fatal(err)
		}
		return tab
	}
	tagged := pair("lobby", "--tags", "floor-2,Reception")
	plain := pair("lobby")

	out, err := admin("devices", "--tag", "floor-2")
	if err != nil || !strings.Contains(out, tagged.DeviceID) || strings.Contains(out, plain.DeviceID) || !strings.Contains(out, "floor-2,reception") {
		t.Fatalf("devices --tag floor-2: %v, printed %q", err, out)
	}
	if out, err = admin("edit", plain.DeviceID, "--tags", "floor-2", "--name", "Lobby right"); err != nil || !strings.Contains(out, "Lobby right") {
		t.Fatalf("edit: %v, printed %q", err, out)
	}
	if out, err = admin("edit", plain.DeviceID, "--tags", "no spaces allowed"); err == nil || !strings.Contains(err.Error(), "invalid_request") {
		t.Fatalf("edit with a bad tag: %v, printed %q; want a refusal", err, out)
	}
	if _, err = admin("bulk", "revoke"); err == nil || !strings.Contains(err.Error(), "filter is empty") {
		t.Fatalf("bulk revoke without a filter: %v, want the empty filter refused", err)
	}
	if _, err = admin("bulk", "move", "--tag", "floor-2"); err == nil || !strings.Contains(err.Error(), "--to") {
		t.Fatalf("bulk move without --to: %v", err)
	}
	out, err = admin("bulk", "move", "--tag", "floor-2", "--to", "hall", "--dry-run")
	if err != nil || !strings.Contains(out, "would touch 2 devices") || !strings.Contains(out, "matched") {
		t.Fatalf("bulk move --dry-run: %v, printed %q", err, out)
	}
	if out, _ = admin("devices", "--feed", "hall"); !strings.Contains(out, "(none)") {
		t.Fatalf("hall after a dry run: %q, want no devices", out)
	}
	out, err = admin("bulk", "move", "--tag", "floor-2", "--to", "hall")
	if err != nil || !strings.Contains(out, "move: 2 matched, 2 done, 0 failed") {
		t.Fatalf("bulk move: %v, printed %q", err, out)
	}
	if out, _ = admin("devices", "--feed", "hall"); !strings.Contains(out, tagged.DeviceID) || !strings.Contains(out, plain.DeviceID) {
		t.Fatalf("hall after the move: %q", out)
	}
	// Nobody is connected: a reload tells nobody and says so.
	out, err = admin("bulk", "reload", "--all")
	if err != nil || strings.Count(out, "not_connected") != 2 || !strings.Contains(out, "0 done") {
		t.Fatalf("bulk reload --all: %v, printed %q", err, out)
	}
	out, err = admin("bulk", "revoke", "--devices", tagged.DeviceID)
	if err != nil || !strings.Contains(out, "revoke: 1 matched, 1 done") {
		t.Fatalf("bulk revoke: %v, printed %q", err, out)
	}
	if out, _ = admin("devices"); strings.Contains(out, tagged.DeviceID) || !strings.Contains(out, plain.DeviceID) {
		t.Fatalf("devices after the revoke: %q", out)
	}
	if out, _ = admin("audit", "--type", "device_moved"); strings.Count(out, "device_moved") != 2 {
		t.Fatalf("audit of the moves: %q, want two device_moved records", out)
	}
}
