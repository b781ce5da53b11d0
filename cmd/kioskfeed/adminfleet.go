package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// kioskfeed admin's fleet commands (docs/protocol.md #device-tags, #bulk-actions):
// a device's tags and name, the devices list's filters, and the bulk actions on a
// filter, over the admin API like the rest of kioskfeed admin.

const adminFleetUsage = `  edit DEVICE_ID [--tags a,b] [--name N]    set a device's tags (--tags "" removes them) or name
  bulk revoke|move|reload FILTER [--to F] [--dry-run]
                                            act on every device the filter matches, at most
                                            1000: revoke; move to feed F (it keeps its key, its
                                            socket reconnects to F); reload (connected tablets
                                            reload their app). FILTER is any of --feed F,
                                            --tag T, --state S (live, behind, stale, offline,
                                            asleep), --devices id,id; or --all for every
                                            device. --dry-run lists the matches, does nothing
`

// fleetFlags are the flags of the fleet commands, beside admin's own --feed and --name.
type fleetFlags struct {
	tags, tag, state, devices, to *string
	all, dryRun                   *bool
}

func addFleetFlags(fs *flag.FlagSet) fleetFlags {
	return fleetFlags{
		tags:    fs.String("tags", "", "pin, approve, edit: comma-separated tags for the device"),
		tag:     fs.String("tag", "", "devices, bulk: only devices with this tag"),
		state:   fs.String("state", "", "devices, bulk: only devices in this state"),
		devices: fs.String("devices", "", "bulk: only these comma-separated device ids"),
		to:      fs.String("to", "", "bulk move: the feed to move to"),
		all:     fs.Bool("all", false, "bulk: every device (a filter is required otherwise)"),
		dryRun:  fs.Bool("dry-run", false, "bulk: list what would be matched, do nothing"),
	}
}

// given reports whether the flag name was set on the command line.
func given(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// devicesPath is the devices list with its filters.
func devicesPath(feed string, ff fleetFlags) string {
	q := url.Values{}
	for k, v := range map[string]string{"feed": feed, "tag": *ff.tag, "state": *ff.state} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if len(q) == 0 {
		return "/api/admin/devices"
	}
	return "/api/admin/devices?" + q.Encode()
}

// adminFleetCmd runs the fleet commands; handled is false for any other.
func adminFleetCmd(ctx context.Context, c *adminClient, fs *flag.FlagSet, cmd string, positional []string, feed, name string, ff fleetFlags, stdout io.Writer) (handled bool, err error) {
	switch cmd {
	case "edit":
		if len(positional) != 1 {
			return true, usageError{"kioskfeed admin edit needs exactly one device id"}
		}
		body := map[string]any{}
		if given(fs, "tags") {
			body["tags"] = nonNil(splitList(*ff.tags))
		}
		if given(fs, "name") {
			body["name"] = name
		}
		if len(body) == 0 {
			return true, usageError{"kioskfeed admin edit needs --tags, --name or both"}
		}
		var dev map[string]any
		if err := c.call(ctx, "PATCH", "/api/admin/devices/"+url.PathEscape(positional[0]), body, http.StatusOK, &dev); err != nil || c.json {
			return true, err
		}
		return true, c.table([]map[string]any{dev}, "device_id", "feed", "name", "tags")
	case "bulk revoke", "bulk move", "bulk reload":
		if len(positional) != 0 {
			return true, usageError{"kioskfeed admin " + cmd + " takes no arguments: give the filter as flags"}
		}
		action := strings.TrimPrefix(cmd, "bulk ")
		filter := map[string]any{}
		for k, v := range map[string]string{"feed": feed, "tag": *ff.tag, "state": *ff.state} {
			if v != "" {
				filter[k] = v
			}
		}
		if *ff.devices != "" {
			filter["devices"] = splitList(*ff.devices)
		}
		if *ff.all {
			filter["all"] = true
		}
		body := map[string]any{"action": action, "filter": filter, "dry_run": *ff.dryRun}
		switch {
		case action == "move" && *ff.to == "":
			return true, usageError{"kioskfeed admin bulk move needs --to, the feed to move to"}
		case action != "move" && *ff.to != "":
			return true, usageError{"--to is for bulk move only"}
		case action == "move":
			body["feed"] = *ff.to
		}
		var res struct {
			Matched, Done, Failed int
			Results               []map[string]any
		}
		if err := c.call(ctx, "POST", "/api/admin/devices/bulk", body, http.StatusOK, &res); err != nil || c.json {
			return true, err
		}
		if err := c.table(res.Results, "device_id", "name", "feed", "outcome", "error"); err != nil {
			return true, err
		}
		if *ff.dryRun {
			fmt.Fprintf(stdout, "dry run: %s would touch %d devices; nothing was done\n", action, res.Matched)
		} else {
			fmt.Fprintf(stdout, "%s: %d matched, %d done, %d failed\n", action, res.Matched, res.Done, res.Failed)
		}
		return true, nil
	}
	return false, nil
}

// nonNil makes an empty list [] in JSON, not null ("remove every tag").
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
