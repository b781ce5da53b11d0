package main

import (
	"context"
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"testing"
)

// TestAlertCLI raises, lists and clears an override with `kioskfeed alert` against a
// served instance, and checks its usage errors.
func TestAlertCLI(t *testing.T) {
	s := startServe(t, t.TempDir())
	alert := func(args ...string) (string, error) {
		var out syncBuffer
		err := run(context.Background(), append([]string{"alert"}, args...), env(map[string]string{
			"KIOSKFEED_PUBLIC_URL": s.base, "KIOSKFEED_ADMIN_TOKEN": s.token,
		}), &out, io.Discard)
		return out.String(), err
	}

	out, err := alert("--all", "Evacuate via stairwell B")
	m := regexp.MustCompile(`Override (ovr_[a-z2-7]{13}) \(danger\) raised on every feed until \d\d:\d\d:\d\d\.`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("alert --all: %v, printed %q", err, out)
	}
	id := m[1]
	out, err = alert("--feed", "lobby", "--feed", "hall", "--title", "Drill", "--level", "info", "--expires", "30m", "The drill starts at 15:00. Stay calm.")
	if err != nil || !strings.Contains(out, "(info) raised on feeds lobby, hall") {
		t.Fatalf("alert --feed --feed: %v, printed %q", err, out)
	}

	out, err = alert("--list")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "Evacuate via stairwell B") || !strings.Contains(out, "0/0") || !strings.Contains(out, "Drill") {
		t.Fatalf("alert --list: %v, printed %q", err, out)
	}
	out, err = alert("--list", "--json")
	var listed []struct {
		ID, Title, Body string
		Feeds           []string
	}
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 2 {
		t.Fatalf("alert --list --json: %v, printed %q", err, out)
	}
	for _, o := range listed {
		if o.ID == id && (o.Title != "Evacuate via stairwell B" || o.Body != "" || o.Feeds[0] != "*") ||
			o.ID != id && (o.Title != "Drill" || o.Body != "The drill starts at 15:00. Stay calm.") {
			t.Fatalf("alert --list --json: %+v", o)
		}
	}

	if out, err = alert("--clear", id); err != nil || !strings.Contains(out, "Override "+id+" cleared") {
		t.Fatalf("alert --clear: %v, printed %q", err, out)
	}
	if _, err = alert("--clear", id); err == nil || !strings.Contains(err.Error(), "404 not_found") {
		t.Fatalf("alert --clear again: %v; want the 404", err)
	}
	if _, err = alert("--all", "--level", "red", "x"); err == nil || !strings.Contains(err.Error(), "400 invalid_request") || !strings.Contains(err.Error(), `"level"`) {
		t.Fatalf("alert --level red: %v; want the server's refusal", err)
	}
	for _, args := range [][]string{
		{"Fire"},                           // where?
		{"--all", "--feed", "x", "Fire"},   // both
		{"--all"},                          // no message
		{"--all", "one", "two"},            // two messages
		{"--list", "--all"},                // list takes nothing
		{"--clear", id, "--feed", "lobby"}, // clear takes nothing
		{"--bogus"},
	} {
		if _, err := alert(args...); exitCode(err) != 2 {
			t.Errorf("alert %q: %v (exit %d); want a usage error", args, err, exitCode(err))
		}
	}
	// A producer key with the alert scope (made with the admin CLI) raises one for its
	// feeds, and not for others.
	var made syncBuffer
	if err := run(context.Background(), []string{"admin", "producer-key", "create", "--name", "fire panel", "--feeds", "floor-*", "--scopes", "alert"},
		env(map[string]string{"KIOSKFEED_PUBLIC_URL": s.base, "KIOSKFEED_ADMIN_TOKEN": s.token}), &made, io.Discard); err != nil {
		t.Fatalf("admin producer-key create --scopes alert: %v", err)
	}
	key := regexp.MustCompile(`kfp\.\S+`).FindString(made.String())
	panel := func(args ...string) (string, error) {
		var out syncBuffer
		err := run(context.Background(), append([]string{"alert", "--url", s.base, "--token", key}, args...), env(nil), &out, io.Discard)
		return out.String(), err
	}
	if out, err := panel("--feed", "floor-2", "Smoke on floor 2"); err != nil || !strings.Contains(out, "raised on feeds floor-2") {
		t.Fatalf("alert with the panel's key: %v, printed %q", err, out)
	}
	if _, err := panel("--all", "Everywhere"); err == nil || !strings.Contains(err.Error(), "403 forbidden") {
		t.Fatalf("alert --all with a floor-* key: %v; want 403", err)
	}
	var noToken syncBuffer
	if err := run(context.Background(), []string{"alert", "--url", s.base, "--all", "x"}, env(nil), &noToken, io.Discard); exitCode(err) != 2 {
		t.Fatalf("alert without a token: %v; want a usage error", err)
	}
}
