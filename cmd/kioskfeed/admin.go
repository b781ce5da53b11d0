package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kioskfeed/kioskfeed/broker"
)

const adminUsage = `Usage: kioskfeed admin <command> [flags]

Commands (each talks to a running kioskfeed over its HTTP API):
  pin --feed F [--replace] [--ttl 5m] [--tags a,b]
                                            issue a pairing PIN for feed F (its device gets the tags)
  devices [--feed F] [--tag T] [--state S]  list paired devices
  revoke DEVICE_ID                          revoke a device (its socket closes, its tokens stop)
` + adminFleetUsage + adminScheduleUsage + adminTimelineUsage + `  requests                                  tablets waiting for approval, with their codes
  approve CODE --feed F [--name N] [--replace] [--tags a,b]
                                            pair the tablet that shows CODE with feed F
                                            (--replace revokes the feed's other devices)
  deny CODE                                 refuse the tablet that shows CODE
  audit [--type T] [--limit N]              the audit log, newest first; COUNT is how many
                                            repeated refusals a record sums up, ACTOR the
                                            credential that acted
  token create --name N | list | revoke ID  named admin tokens (for people and scripts);
                                            revoking one leaves the tokens and keys it
                                            created working: revoke those on their own
  passwd [--password P]                     set the dashboard password (default: a new random one,
                                            printed once); every dashboard session ends
  producer-key create --name N --feeds a,b-* [--scopes alert] | list | delete ID
                                            (--scopes alert: the key may also raise and
                                            clear emergency overrides for its feeds)

Flags of every command:
  --url URL      kioskfeed's URL (env KIOSKFEED_PUBLIC_URL, default http://localhost:8080)
  --token T      an admin token (env KIOSKFEED_ADMIN_TOKEN)
  --json         print the API's JSON answers as received, one a line, and a
                 refusal's error document too (README: "Output for scripts")
`

// adminCommands are the commands adminUsage lists, a second word after the first
// ("token create"), for the shell completion; TestAdminCommandsMatchUsage keeps the
// two alike.
func adminCommands() []string {
	return []string{"pin", "devices", "revoke", "edit", "bulk revoke", "bulk move", "bulk reload",
		"schedule", "timeline", "requests", "approve", "deny", "audit",
		"token create", "token list", "token revoke", "passwd",
		"producer-key create", "producer-key list", "producer-key delete"}
}

// adminClient calls the admin API with a bearer token.
type adminClient struct {
	base, token string
	json        bool
	stdout      io.Writer
}

func adminCmd(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, adminUsage)
		if len(args) == 0 {
			return usageError{}
		}
		return nil
	}
	cmd, args := args[0], args[1:]
	if cmd == "token" || cmd == "producer-key" || cmd == "bulk" {
		if len(args) == 0 {
			return usageError{fmt.Sprintf("kioskfeed admin %s needs a subcommand: %s", cmd, map[string]string{"token": "create, list or revoke", "producer-key": "create, list or delete", "bulk": "revoke, move or reload"}[cmd])}
		}
		cmd, args = cmd+" "+args[0], args[1:]
	}
	fs := flag.NewFlagSet("kioskfeed admin "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := newAdminClient(fs, lookupEnv, stdout)
	feed := fs.String("feed", "", "feed id")
	replace := fs.Bool("replace", false, "pin, approve: pairing revokes the feed's earlier devices")
	ttl := fs.Duration("ttl", 5*time.Minute, "pin: how long the PIN is valid (at most 1h)")
	name := fs.String("name", "", "token, producer-key, approve: a name for it")
	feeds := fs.String("feeds", "", "producer-key: comma-separated feed ids or globs")
	scopes := fs.String("scopes", "", "producer-key create: more than publishing (alert: raise and clear overrides)")
	typ := fs.String("type", "", "audit: only records of this type")
	password := fs.String("password", "", "passwd: the new password (default: a random one)")
	limit := fs.Int("limit", 50, "audit: how many records")
	setSchedule := fs.String("set", "", "schedule: store the schedule JSON in this file")
	deleteSchedule := fs.Bool("delete", false, "schedule: delete the feed's schedule")
	ff := addFleetFlags(fs) // adminfleet.go
	// Flags may come after the arguments too (approve CODE --feed lobby).
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if c.token == "" {
		return usageError{"an admin token is needed: --token or KIOSKFEED_ADMIN_TOKEN (printed at the server's first start)"}
	}
	c.base = strings.TrimRight(c.base, "/")
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	oneArg := func(what string) (string, error) {
		if len(positional) != 1 {
			return "", usageError{fmt.Sprintf("kioskfeed admin %s needs exactly one %s", cmd, what)}
		}
		return positional[0], nil
	}

	switch cmd {
	case "pin":
		if *feed == "" {
			return usageError{"kioskfeed admin pin needs --feed"}
		}
		var pin struct {
			PIN       string    `json:"pin"`
			Feed      string    `json:"feed"`
			ExpiresAt time.Time `json:"expires_at"`
			Replace   bool      `json:"replace"`
		}
		body := map[string]any{"ttl": ttl.String(), "replace": *replace}
		if *ff.tags != "" {
			body["tags"] = splitList(*ff.tags)
		}
		if err := c.call(ctx, "POST", "/api/admin/feeds/"+url.PathEscape(*feed)+"/pins", body, http.StatusCreated, &pin); err != nil || c.json {
			return err
		}
		fmt.Fprintf(stdout, "PIN %s for feed %q, valid until %s (%s)\n", pin.PIN, pin.Feed, pin.ExpiresAt.Local().Format("15:04:05"), ttl)
		if pin.Replace {
			fmt.Fprintln(stdout, "Pairing with it revokes every other device of this feed.")
		}
		fmt.Fprintln(stdout, "Enter it on the tablet's pairing screen with the feed id. It works once.")
		return nil
	case "schedule":
		f, err := oneArg("feed id")
		if err != nil {
			return err
		}
		return adminSchedule(ctx, c, f, *setSchedule, *deleteSchedule, stdout)
	case "devices":
		var devs []map[string]any
		if err := c.call(ctx, "GET", devicesPath(*feed, ff), nil, http.StatusOK, &devs); err != nil || c.json {
			return err
		}
		return c.table(devs, "device_id", "feed", "name", "tags", "state", "online", "last_seen", "paired_at", "remote_addr")
	case "timeline":
		id, err := oneArg("device id")
		if err != nil {
			return err
		}
		return adminTimeline(ctx, c, id, stdout) // admintimeline.go
	case "revoke":
		id, err := oneArg("device id")
		if err != nil {
			return err
		}
		if err := c.call(ctx, "DELETE", "/api/admin/devices/"+url.PathEscape(id), nil, http.StatusNoContent, nil); err != nil {
			return err
		}
		if !c.json { // a 204 has no document to print
			fmt.Fprintf(stdout, "revoked %s\n", id)
		}
		return nil
	case "requests":
		var reqs []map[string]any
		if err := c.call(ctx, "GET", "/api/admin/pair-requests", nil, http.StatusOK, &reqs); err != nil || c.json {
			return err
		}
		for _, r := range reqs {
			if jkt, ok := r["jkt"].(string); ok && len(jkt) > 8 {
				r["key"] = jkt[:8] // as the dashboard shows it
			}
		}
		return c.table(reqs, "user_code", "name", "remote_addr", "user_agent", "key", "age_s")
	case "approve":
		code, err := oneArg("code (the one the tablet shows, such as WDJB-MJHT)")
		if err != nil {
			return err
		}
		if *feed == "" {
			return usageError{"kioskfeed admin approve needs --feed"}
		}
		var res struct {
			DeviceID string `json:"device_id"`
		}
		body := map[string]any{"feed": *feed, "name": *name, "replace": *replace}
		if *ff.tags != "" {
			body["tags"] = splitList(*ff.tags)
		}
		if err := c.call(ctx, "POST", "/api/admin/pair-requests/"+url.PathEscape(code)+"/approve", body, http.StatusOK, &res); err != nil || c.json {
			return err
		}
		fmt.Fprintf(stdout, "approved: the tablet is paired as %s on feed %q\n", res.DeviceID, *feed)
		if *replace {
			fmt.Fprintln(stdout, "Every other device of this feed was revoked.")
		}
		return nil
	case "deny":
		code, err := oneArg("code (the one the tablet shows, such as WDJB-MJHT)")
		if err != nil {
			return err
		}
		if err := c.call(ctx, "POST", "/api/admin/pair-requests/"+url.PathEscape(code)+"/deny", nil, http.StatusNoContent, nil); err != nil {
			return err
		}
		if !c.json { // a 204 has no document to print
			fmt.Fprintln(stdout, "denied: the tablet shows a new code")
		}
		return nil
	case "audit":
		q := url.Values{"limit": {strconv.Itoa(*limit)}}
		if *typ != "" {
			q.Set("type", *typ)
		}
		var recs []map[string]any
		if err := c.call(ctx, "GET", "/api/admin/audit?"+q.Encode(), nil, http.StatusOK, &recs); err != nil || c.json {
			return err
		}
		// count: how many refusals a summing record stands for ("-" is one); actor: the
		// credential behind an admin or producer action.
		return c.table(recs, "time", "type", "feed", "device_id", "remote_addr", "actor", "count", "detail")
	case "passwd":
		pw := *password
		if pw == "" {
			pw = randomPassword()
		}
		if err := c.call(ctx, "POST", "/api/admin/password", map[string]any{"password": pw}, http.StatusNoContent, nil); err != nil {
			return err
		}
		switch {
		case c.json && *password == "":
			// The API answers 204; the password this command chose is the one thing
			// to print, and a script must get it.
			return json.NewEncoder(stdout).Encode(map[string]string{"password": pw})
		case c.json:
		case *password == "":
			fmt.Fprintf(stdout, "new dashboard password: %s\nIt is shown this once; every dashboard session has ended.\n", pw)
		default:
			fmt.Fprintln(stdout, "dashboard password set; every dashboard session has ended")
		}
		return nil
	case "token create":
		var tok map[string]any
		if err := c.call(ctx, "POST", "/api/admin/tokens", map[string]any{"name": *name}, http.StatusCreated, &tok); err != nil || c.json {
			return err
		}
		fmt.Fprintf(stdout, "admin token %s (%s): %v\nIt is shown this once; only its hash is stored.\n", escapeCell(fmt.Sprint(tok["id"])), escapeCell(fmt.Sprint(tok["name"])), tok["token"])
		return nil
	case "token list":
		var toks []map[string]any
		if err := c.call(ctx, "GET", "/api/admin/tokens", nil, http.StatusOK, &toks); err != nil || c.json {
			return err
		}
		return c.table(toks, "id", "name", "created")
	case "token revoke":
		id, err := oneArg("token id")
		if err != nil {
			return err
		}
		if err := c.call(ctx, "DELETE", "/api/admin/tokens/"+url.PathEscape(id), nil, http.StatusNoContent, nil); err != nil {
			return err
		}
		if !c.json { // a 204 has no document to print
			fmt.Fprintf(stdout, "revoked admin token %s\n", id)
		}
		return nil
	case "producer-key create":
		var key map[string]any
		body := map[string]any{"name": *name, "feeds": splitList(*feeds)}
		if *scopes != "" {
			body["scopes"] = splitList(*scopes)
		}
		if err := c.call(ctx, "POST", "/api/admin/producer-keys", body, http.StatusCreated, &key); err != nil || c.json {
			return err
		}
		fmt.Fprintf(stdout, "producer key %s (%s) for %v: %v\nIt is shown this once; only its hash is stored.\n", escapeCell(fmt.Sprint(key["id"])), escapeCell(fmt.Sprint(key["name"])), key["feeds"], key["key"])
		return nil
	case "producer-key list":
		var keys []map[string]any
		if err := c.call(ctx, "GET", "/api/admin/producer-keys", nil, http.StatusOK, &keys); err != nil || c.json {
			return err
		}
		return c.table(keys, "id", "name", "feeds", "created")
	case "producer-key delete":
		id, err := oneArg("producer key id")
		if err != nil {
			return err
		}
		if err := c.call(ctx, "DELETE", "/api/admin/producer-keys/"+url.PathEscape(id), nil, http.StatusNoContent, nil); err != nil {
			return err
		}
		if !c.json { // a 204 has no document to print
			fmt.Fprintf(stdout, "deleted producer key %s\n", id)
		}
		return nil
	default:
		if handled, err := adminFleetCmd(ctx, c, fs, cmd, positional, *feed, *name, ff, stdout); handled {
			return err
		}
		fmt.Fprint(stderr, adminUsage)
		return usageError{fmt.Sprintf("unknown admin command %q", cmd)}
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// call sends one admin request and decodes the answer into out; with --json it prints
// the answer as it came.
func (c *adminClient) call(ctx context.Context, method, path string, body any, want int, out any) error {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach kioskfeed at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != want {
		var e struct{ Error, Message string }
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			if c.json {
				_ = c.printJSON(raw) // the refusal's document too: a script reads .error
			}
			return fmt.Errorf("refused (%d %s): %s", resp.StatusCode, escapeCell(e.Error), escapeCell(e.Message))
		}
		return fmt.Errorf("refused: HTTP %d", resp.StatusCode)
	}
	if c.json && len(raw) > 0 {
		return c.printJSON(raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("unreadable answer: %w", err)
		}
	}
	return nil
}

// printJSON prints one document of the API as received, one a line (printJSONLine).
func (c *adminClient) printJSON(raw []byte) error { return printJSONLine(c.stdout, raw) }

// table prints rows with the given columns, aligned.
func (c *adminClient) table(rows []map[string]any, cols ...string) error {
	if len(rows) == 0 {
		fmt.Fprintln(c.stdout, "(none)")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(cols, "\t")))
	for _, r := range rows {
		cells := make([]string, len(cols))
		for i, col := range cols {
			switch v := r[col].(type) {
			case nil:
				cells[i] = "-"
			case []any:
				parts := make([]string, len(v))
				for j, p := range v {
					parts[j] = fmt.Sprint(p)
				}
				cells[i] = escapeCell(strings.Join(parts, ","))
			default:
				cells[i] = escapeCell(fmt.Sprint(v))
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// escapeCell makes a value from the server safe to print: names, User-Agents and audit
// details may come from strangers (or from records an older version stored
// unchecked), and a raw control character in them could clear the terminal, move the
// cursor, or, as a newline or tab, forge rows and columns of the table. Every rune
// that is not printable, or that names may not hold (broker.RefusedRune: controls,
// bidi and zero-width characters, U+2028/U+2029), is written as a Go escape such as
// \x1b, \n or \u202e, and every invalid byte as \xNN.
func escapeCell(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !printable(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				fmt.Fprintf(&b, `\x%02x`, s[i])
			} else {
				b.WriteRune(r) // a real U+FFFD, as CleanText leaves for a refused rune
			}
		case printable(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}

func printable(r rune) bool { return r == ' ' || (unicode.IsPrint(r) && !broker.RefusedRune(r)) }

// randomPassword makes a password a person can type: 4 groups of 5 characters from an
// alphabet without look-alikes, about 95 bits.
func randomPassword() string {
	const alphabet = "bcdfghjkmnpqrstvwxz23456789"
	b := make([]byte, 0, 23)
	for i := range 20 {
		if i > 0 && i%5 == 0 {
			b = append(b, '-')
		}
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b = append(b, alphabet[n.Int64()])
	}
	return string(b)
}
