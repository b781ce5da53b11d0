package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/schedule"
)

// adminScheduleUsage is kioskfeed admin schedule's line of the admin usage.
const adminScheduleUsage = `  schedule FEED [--set FILE | --delete]     a feed's screen schedule: show it, store the JSON
                                            in FILE (docs/protocol.md #schedule-format), or
                                            delete it (the feed's tablets stay awake)
`

// scheduleAnswer is the admin API's answer for a schedule.
type scheduleAnswer struct {
	Feed       string        `json:"feed"`
	Schedule   schedule.Spec `json:"schedule"`
	UpdatedAt  time.Time     `json:"updated_at"`
	Actor      string        `json:"actor"`
	Awake      bool          `json:"awake"`
	NextChange *time.Time    `json:"next_change"`
}

// adminSchedule runs kioskfeed admin schedule FEED: GET, PUT from setFile, or DELETE.
func adminSchedule(ctx context.Context, c *adminClient, feed, setFile string, del bool, stdout io.Writer) error {
	path := "/api/admin/feeds/" + url.PathEscape(feed) + "/schedule"
	switch {
	case del && setFile != "":
		return usageError{"kioskfeed admin schedule takes --set or --delete, not both"}
	case del:
		if err := c.call(ctx, "DELETE", path, nil, http.StatusNoContent, nil); err != nil {
			return err
		}
		if !c.json { // a 204 has no document to print
			fmt.Fprintf(stdout, "deleted the schedule of feed %q: its tablets stay awake\n", feed)
		}
		return nil
	}
	var ans scheduleAnswer
	if setFile != "" {
		raw, err := os.ReadFile(setFile)
		if err != nil {
			return fmt.Errorf("--set: %w", err)
		}
		var body json.RawMessage
		if err := json.Unmarshal(raw, &body); err != nil {
			return fmt.Errorf("--set: %s is not JSON: %w", setFile, err)
		}
		if err := c.call(ctx, "PUT", path, body, http.StatusOK, &ans); err != nil || c.json {
			return err
		}
	} else if err := c.call(ctx, "GET", path, nil, http.StatusOK, &ans); err != nil || c.json {
		return err
	}
	state := "awake"
	if !ans.Awake {
		state = "asleep"
	}
	until := "no change within a week"
	if ans.NextChange != nil {
		until = "until " + ans.NextChange.UTC().Format("2006-01-02 15:04 UTC")
	}
	sp := ans.Schedule
	fmt.Fprintf(stdout, "feed %s: %s now, %s (time zone %s, asleep view %s)\n", ans.Feed, state, until, sp.TimeZone, sp.AsleepView)
	for _, day := range schedule.Days {
		r := strings.Join(sp.Week[day], ", ")
		if r == "" {
			r = "asleep"
		}
		fmt.Fprintf(stdout, "  %s  %s\n", day, r)
	}
	for date, ranges := range sp.Exceptions {
		r := strings.Join(ranges, ", ")
		if r == "" {
			r = "asleep"
		}
		fmt.Fprintf(stdout, "  %s  %s\n", date, r)
	}
	return nil
}
