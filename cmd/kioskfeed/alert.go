package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

const alertUsage = `Usage: kioskfeed alert (--all | --feed F [--feed G ...]) [flags] "MESSAGE"
       kioskfeed alert --list
       kioskfeed alert --clear ID

Raises an emergency override: every tablet of the feeds shows MESSAGE full screen at once,
above its feed, until it is cleared (--clear) or expires (docs/protocol.md §6).

Flags:
  --all          every feed, feeds paired later too
  --feed F       a feed (repeat for several)
  --title T      a heading over MESSAGE (without one, a MESSAGE of at most 120
                 characters is the heading)
  --level L      danger (red, "EMERGENCY"; the default), warning (amber) or info (blue)
  --expires D    how long it shows at most, 1m to 24h (default 1h)
  --list         the active overrides, with how many screens show each
  --clear ID     end an override now
  --url URL      kioskfeed's URL (env KIOSKFEED_PUBLIC_URL, default http://localhost:8080)
  --token T      an admin token (env KIOSKFEED_ADMIN_TOKEN)
  --json         print the raw JSON answer
`

// feedList is a repeatable --feed.
type feedList []string

func (f *feedList) String() string     { return strings.Join(*f, ",") }
func (f *feedList) Set(v string) error { *f = append(*f, v); return nil }

// alertCmd raises, lists and clears emergency overrides over the admin API.
func alertCmd(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kioskfeed alert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, alertUsage) }
	c := newAdminClient(fs, lookupEnv, stdout)
	all := fs.Bool("all", false, "every feed")
	var feeds feedList
	fs.Var(&feeds, "feed", "a feed (repeatable)")
	title := fs.String("title", "", "a heading")
	level := fs.String("level", "", "danger, warning or info")
	expires := fs.String("expires", "", "how long it shows at most (1m to 24h)")
	list := fs.Bool("list", false, "list the active overrides")
	clearID := fs.String("clear", "", "clear the override with this id")
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

	switch {
	case *list:
		if *clearID != "" || len(positional) > 0 || *all || len(feeds) > 0 {
			return usageError{"kioskfeed alert --list takes no message, feed or --clear"}
		}
		return c.listOverrides(ctx)
	case *clearID != "":
		if len(positional) > 0 || *all || len(feeds) > 0 {
			return usageError{"kioskfeed alert --clear ID takes no message or feed"}
		}
		if err := c.call(ctx, "DELETE", "/api/admin/overrides/"+url.PathEscape(*clearID), nil, http.StatusNoContent, nil); err != nil {
			return err
		}
		if !c.json {
			fmt.Fprintf(stdout, "Override %s cleared: its tablets show their feed again.\n", *clearID)
		}
		return nil
	}
	if *all == (len(feeds) > 0) {
		return usageError{"say where: --all, or --feed F (repeatable)"}
	}
	if len(positional) != 1 {
		return usageError{`kioskfeed alert needs exactly one MESSAGE (quote it: "Evacuate via stairwell B")`}
	}
	body := map[string]any{"title": *title, "body": positional[0]}
	if *title == "" && utf8.RuneCountInString(positional[0]) <= 120 && !strings.Contains(positional[0], "\n") {
		body = map[string]any{"title": positional[0], "body": ""}
	}
	body["feeds"] = []string(feeds)
	if *all {
		body["feeds"] = []string{"*"}
	}
	if *level != "" {
		body["level"] = *level
	}
	if *expires != "" {
		body["expires_in"] = *expires
	}
	var ov struct {
		ID        string    `json:"id"`
		Feeds     []string  `json:"feeds"`
		Level     string    `json:"level"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := c.call(ctx, "POST", "/api/admin/overrides", body, http.StatusCreated, &ov); err != nil || c.json {
		return err
	}
	where := "feeds " + escapeCell(strings.Join(ov.Feeds, ", "))
	if len(ov.Feeds) == 1 && ov.Feeds[0] == "*" {
		where = "every feed"
	}
	fmt.Fprintf(stdout, "Override %s (%s) raised on %s until %s.\n", ov.ID, ov.Level, where, ov.ExpiresAt.Local().Format("15:04:05"))
	fmt.Fprintf(stdout, "Clear it with: kioskfeed alert --clear %s\n", ov.ID)
	return nil
}

func (c *adminClient) listOverrides(ctx context.Context) error {
	var ovs []map[string]any
	if err := c.call(ctx, "GET", "/api/admin/overrides", nil, http.StatusOK, &ovs); err != nil || c.json {
		return err
	}
	for _, o := range ovs {
		o["screens"] = fmt.Sprintf("%v/%v", o["shown"], o["devices"])
	}
	return c.table(ovs, "id", "level", "feeds", "title", "expires_at", "screens")
}
