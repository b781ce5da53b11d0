package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// cliRun runs the CLI with args against s and returns what it printed on stdout, one
// decoded JSON document per line (failing the test on a line that is not one), the
// raw output and the error.
func cliRun(t *testing.T, s *served, args ...string) (docs []any, raw string, err error) {
	t.Helper()
	var out, errOut syncBuffer
	err = run(context.Background(), args, env(map[string]string{"KIOSKFEED_PUBLIC_URL": s.base, "KIOSKFEED_ADMIN_TOKEN": s.token}), &out, &errOut)
	raw = out.String()
	if raw != "" && !strings.HasSuffix(raw, "\n") {
		t.Errorf("%q printed %q: the last line has no newline", args, raw)
	}
	for _, line := range strings.Split(strings.TrimSuffix(raw, "\n"), "\n") {
		if line == "" {
			continue
		}
		var v any
		if jerr := json.Unmarshal([]byte(line), &v); jerr != nil {
			t.Errorf("%q printed a line that is not one JSON document: %q (%v)", args, line, jerr)
		}
		docs = append(docs, v)
	}
	return docs, raw, err
}

// TestJSONOutputForScripts: with --json, admin's commands, alert and publish print the
// API's answer as received, one document a line, and nothing else; a refusal exits
// non-zero with its message for stderr and the API's error document on stdout; a
// command the API answers 204 prints nothing (the exit status is the answer), except
// passwd, which prints the password it chose.
func TestJSONOutputForScripts(t *testing.T) {
	s := startServe(t, t.TempDir())
	ctx := context.Background()
	obj := func(t *testing.T, what string, args ...string) map[string]any {
		t.Helper()
		docs, raw, err := cliRun(t, s, args...)
		if err != nil || len(docs) != 1 {
			t.Fatalf("%s: %v, printed %q; want one JSON document", what, err, raw)
		}
		m, ok := docs[0].(map[string]any)
		if !ok {
			t.Fatalf("%s printed %q, want an object", what, raw)
		}
		return m
	}
	refused := func(t *testing.T, docs []any, raw string, err error, what, code string) {
		t.Helper()
		if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), code) {
			t.Errorf("%s: error %v (exit %d), want a refusal naming %s, exit 1", what, err, exitCode(err), code)
		}
		if len(docs) != 1 {
			t.Fatalf("%s printed %q, want the API's error document", what, raw)
		}
		if m, _ := docs[0].(map[string]any); m["error"] != code || m["message"] == "" || len(m) != 2 {
			t.Errorf("%s printed %q, want {\"error\":%q,\"message\":...}", what, raw, code)
		}
	}
	asReceived := func(t *testing.T, path, raw string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", s.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var want bytes.Buffer
		if err := json.Compact(&want, body); err != nil {
			t.Fatalf("GET %s: %q: %v", path, body, err)
		}
		if got := strings.TrimSuffix(raw, "\n"); got != want.String() {
			t.Errorf("--json printed\n%s\nGET %s answers\n%s", got, path, want.String())
		}
	}

	t.Run("admin", func(t *testing.T) {
		pin := obj(t, "admin pin", "admin", "pin", "--feed", "lobby", "--json")
		if pin["feed"] != "lobby" || pin["pin"] == "" {
			t.Errorf("admin pin --json: %v", pin)
		}
		key := obj(t, "producer-key create", "admin", "producer-key", "create", "--name", "json", "--feeds", "lobby", "--json")
		if !strings.HasPrefix(key["key"].(string), "kfp.") {
			t.Errorf("producer-key create --json: %v", key)
		}
		docs, raw, err := cliRun(t, s, "admin", "producer-key", "list", "--json")
		if err != nil || len(docs) != 1 {
			t.Fatalf("producer-key list: %v %q", err, raw)
		}
		asReceived(t, "/api/admin/producer-keys", raw)
		docs, raw, err = cliRun(t, s, "admin", "devices", "--feed", "lobby", "--json")
		if l, ok := docs[0].([]any); err != nil || !ok || len(l) != 0 {
			t.Errorf("devices --json of a feed with none: %v %q, want []", err, raw)
		}
		tok := obj(t, "token create", "admin", "token", "create", "--name", "script", "--json")
		if docs, raw, err := cliRun(t, s, "admin", "token", "revoke", tok["id"].(string), "--json"); err != nil || len(docs) != 0 || raw != "" {
			t.Errorf("token revoke (204) --json: %v, printed %q; want nothing", err, raw)
		}
		docs, raw, err = cliRun(t, s, "admin", "revoke", "no-such-device", "--json")
		refused(t, docs, raw, err, "revoke an unknown device", "not_found")
		docs, raw, err = cliRun(t, s, "admin", "pin", "--feed", "Not A Feed!", "--json")
		refused(t, docs, raw, err, "pin for a bad feed id", "invalid_request")
		pw := obj(t, "passwd", "admin", "passwd", "--json")
		if p, _ := pw["password"].(string); len(p) < 16 || len(pw) != 1 {
			t.Errorf("passwd --json: %v, want the password it chose", pw)
		}
		if docs, raw, err := cliRun(t, s, "admin", "passwd", "--password", "a-long-enough-password", "--json"); err != nil || len(docs) != 0 {
			t.Errorf("passwd --password --json: %v, printed %q; want nothing", err, raw)
		}
		// Without --json a refusal prints nothing on stdout: the message is for stderr.
		if _, raw, err := cliRun(t, s, "admin", "revoke", "no-such-device"); err == nil || raw != "" {
			t.Errorf("revoke an unknown device without --json: %v, printed %q", err, raw)
		}
		// A failure that is no API answer prints no document either.
		var out syncBuffer
		err = run(ctx, []string{"admin", "devices", "--json", "--url", "http://127.0.0.1:1", "--token", s.token}, env(nil), &out, io.Discard)
		if err == nil || out.String() != "" {
			t.Errorf("admin devices against nothing: %v, printed %q; want an error and no output", err, out.String())
		}
	})

	t.Run("alert", func(t *testing.T) {
		ov := obj(t, "alert", "alert", "--feed", "lobby", "Fire drill at noon", "--json")
		id, _ := ov["id"].(string)
		if id == "" {
			t.Fatalf("alert --json: %v", ov)
		}
		docs, raw, err := cliRun(t, s, "alert", "--list", "--json")
		if l, ok := docs[0].([]any); err != nil || !ok || len(l) != 1 {
			t.Errorf("alert --list --json: %v %q", err, raw)
		}
		if docs, raw, err := cliRun(t, s, "alert", "--clear", id, "--json"); err != nil || len(docs) != 0 {
			t.Errorf("alert --clear --json: %v, printed %q; want nothing", err, raw)
		}
		docs, raw, err = cliRun(t, s, "alert", "--clear", id, "--json")
		refused(t, docs, raw, err, "clear a cleared override", "not_found")
	})

	t.Run("publish", func(t *testing.T) {
		code, key := s.call(t, "POST", "/api/admin/producer-keys", s.token, `{"name":"publish json","feeds":["lobby"]}`)
		if code != 201 {
			t.Fatalf("producer key: %d %v", code, key)
		}
		k := key["key"].(string)
		res := obj(t, "publish", "publish", "--key", k, "--feed", "lobby", "--kind", "item", "--data", `{"text":"json"}`, "--id", "j-1", "--json")
		if res["id"] != "j-1" || res["duplicate"] != false || res["seq"] == nil {
			t.Errorf("publish --json: %v", res)
		}
		again := obj(t, "publish again", "publish", "--key", k, "--feed", "lobby", "--kind", "item", "--data", `{"text":"json"}`, "--id", "j-1", "--json")
		if again["duplicate"] != true || again["seq"] != res["seq"] {
			t.Errorf("publish the same id again --json: %v, want duplicate of seq %v", again, res["seq"])
		}
		docs, raw, err := cliRun(t, s, "publish", "--key", k, "--feed", "lobby", "--kind", "nonsense", "--data", `{}`, "--json")
		refused(t, docs, raw, err, "publish a bad kind", "invalid_request")
		docs, raw, err = cliRun(t, s, "publish", "--key", "kfp.wrong.wrong", "--feed", "lobby", "--kind", "item", "--data", `{}`, "--json")
		refused(t, docs, raw, err, "publish with a wrong key", "invalid_token")
		// Without --json: the fields the CLI knows, as before; a refusal, nothing.
		if docs, raw, err := cliRun(t, s, "publish", "--key", k, "--feed", "lobby", "--kind", "item", "--data", `{}`); err != nil || len(docs) != 1 || !strings.Contains(raw, `"duplicate":false`) {
			t.Errorf("publish: %v %q", err, raw)
		}
		if _, raw, err := cliRun(t, s, "publish", "--key", k, "--feed", "lobby", "--kind", "nonsense", "--data", `{}`); err == nil || raw != "" {
			t.Errorf("publish a bad kind without --json: %v, printed %q", err, raw)
		}
	})
}
