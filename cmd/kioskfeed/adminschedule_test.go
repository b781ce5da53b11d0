package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminCLISchedule: kioskfeed admin schedule stores a feed's schedule from a file,
// shows it, refuses a bad one with the server's reason, and deletes it.
func TestAdminCLISchedule(t *testing.T) {
	s := startServe(t, t.TempDir())
	admin := func(args ...string) (string, error) {
		var out syncBuffer
		err := run(context.Background(), append([]string{"admin"}, args...), env(map[string]string{
			"KIOSKFEED_PUBLIC_URL": s.base, "KIOSKFEED_ADMIN_TOKEN": s.token,
		}), &out, io.Discard)
		return out.String(), err
	}
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.json"), filepath.Join(dir, "bad.json")
	_ = os.WriteFile(good, []byte(`{"time_zone":"Europe/Berlin","week":{"mon":["07:00-19:00"]},"exceptions":{"2026-12-25":[]}}`), 0o600)
	_ = os.WriteFile(bad, []byte(`{"time_zone":"Europe/Berlin","week":{"mon":["7-19"]}}`), 0o600)

	out, err := admin("schedule", "lobby", "--set", good)
	if err != nil || !strings.Contains(out, "feed lobby:") || !strings.Contains(out, "Europe/Berlin") || !strings.Contains(out, "mon  07:00-19:00") ||
		!strings.Contains(out, "2026-12-25  asleep") {
		t.Fatalf("schedule --set: %v, printed %q", err, out)
	}
	if out, err := admin("schedule", "lobby"); err != nil || !strings.Contains(out, "tue  asleep") {
		t.Fatalf("schedule: %v, printed %q", err, out)
	}
	if _, err := admin("schedule", "lobby", "--set", bad); err == nil || !strings.Contains(err.Error(), "invalid_request") || !strings.Contains(err.Error(), "HH:MM-HH:MM") {
		t.Fatalf("a bad schedule: %v; want the server's invalid_request", err)
	}
	if out, err := admin("schedule", "lobby", "--delete"); err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("schedule --delete: %v, printed %q", err, out)
	}
	if _, err := admin("schedule", "lobby"); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("after the delete: %v; want not_found", err)
	}
}
