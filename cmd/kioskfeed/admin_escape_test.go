package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// hostile holds what a terminal must never receive raw: an escape sequence that clears
// the screen, a newline and a tab that would forge a table row, a right-to-left
// override, a line separator, a C1 CSI and a zero-width space.
const hostile = "Lobby\x1b[2J\x1b[31m\nFORGED\tROW\u202eevil\u2028x\u009b2J\u200b"

// TestAdminCLIEscapesStoredText runs the real CLI against a served instance whose
// store holds hostile text, as records an older version stored unchecked would: the
// tables show it escaped, so no control reaches the terminal and no row is forged.
func TestAdminCLIEscapesStoredText(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir)
	s := startServe(t, dir)
	admin := func(args ...string) string {
		var out syncBuffer
		err := run(context.Background(), append([]string{"admin"}, args...), env(map[string]string{
			"KIOSKFEED_PUBLIC_URL": s.base, "KIOSKFEED_ADMIN_TOKEN": s.token,
		}), &out, io.Discard)
		if err != nil {
			t.Fatalf("admin %v: %v", args, err)
		}
		return out.String()
	}
	for _, cmd := range [][]string{{"audit", "--type", "admin_token_created"}, {"devices"}, {"requests"}} {
		out := admin(cmd...)
		if strings.ContainsAny(out, "\x1b\t\u202e\u2028\u009b\u200b") {
			t.Errorf("admin %v printed a raw control: %q", cmd, out)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 2 || strings.HasPrefix(lines[1], "FORGED") {
			t.Errorf("admin %v printed %d lines, want a header and one row:\n%s", cmd, len(lines), out)
		}
		if !strings.Contains(out, `Lobby\x1b[2J\x1b[31m\nFORGED\tROW\u202eevil\u2028x\u009b2J\u200b`) {
			t.Errorf("admin %v does not show the text escaped:\n%s", cmd, out)
		}
	}
}

// seed stores hostile text in the data dir's audit log and device registry, with a
// broker of its own that is closed before the server starts.
func seed(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	b, err := broker.New(ctx, broker.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close(ctx) }()
	b.Audit(broker.AuditRecord{Type: "admin_token_created", RemoteAddr: "127.0.0.1", Detail: "token x (" + hostile + ")"})
	kv, err := b.Bucket(ctx, jetstream.KeyValueConfig{Bucket: pairing.BucketDevices, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	// An open pair request, as the reverse flow keeps it, with a hostile name and agent.
	reqs, err := b.Bucket(ctx, pairing.PairRequestBucketConfig())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	pr, _ := json.Marshal(map[string]any{
		"request_id": "pr_0123456789ABCDEFGHJK", "user_code": "BCDFGHJK", "jkt": "0123456789abcdef",
		"name": hostile, "remote_addr": "192.0.2.7", "user_agent": hostile, "status": "pending",
		"created_at": now, "expires_at": now.Add(10 * time.Minute), "interval": 5,
	})
	if _, err := reqs.Put(ctx, "req.pr_0123456789ABCDEFGHJK", pr); err != nil {
		t.Fatal(err)
	}
	d := pairing.Device{ID: "dev_0123456789ABCDEFGHJK", Feed: "lobby", Name: hostile, JKT: "x", PairedAt: time.Now().UTC(), UserAgent: hostile}
	val, _ := json.Marshal(d)
	if _, err := kv.Put(ctx, d.ID, val); err != nil {
		t.Fatal(err)
	}
}

func TestEscapeCell(t *testing.T) {
	for in, want := range map[string]string{
		"Empfang Süd 受付 😀": "Empfang Süd 受付 😀",
		"a\nb":             `a\nb`,
		"a\x1b[2J":         `a\x1b[2J`,
		"\u202eabc":        `\u202eabc`,
		"x\u2029y":         `x\u2029y`,
		"bad\xffbyte":      `bad\xffbyte`,
		"keep \ufffd":      "keep \ufffd",
		"nbsp\u00a0":       `nbsp\u00a0`,
	} {
		if got := escapeCell(in); got != want {
			t.Errorf("escapeCell(%q) = %q, want %q", in, got, want)
		}
	}
}
