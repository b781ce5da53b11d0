package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// kioskfeed admin timeline: a device's last hour (docs/protocol.md
// #http-get-api-admin-devices-id-timeline), over the admin API like the rest of
// kioskfeed admin.

const adminTimelineUsage = `  timeline DEVICE_ID                        the device's last hour: online, behind, offline,
                                            asleep or unknown, and since when
`

// adminTimeline prints the device's spans, oldest first.
func adminTimeline(ctx context.Context, c *adminClient, id string, stdout io.Writer) error {
	var tl struct {
		DeviceID string    `json:"device_id"`
		From     time.Time `json:"from"`
		To       time.Time `json:"to"`
		Spans    []struct {
			State string    `json:"state"`
			From  time.Time `json:"from"`
			To    time.Time `json:"to"`
			Flaps int       `json:"flaps"`
		} `json:"spans"`
	}
	if err := c.call(ctx, "GET", "/api/admin/devices/"+url.PathEscape(id)+"/timeline", nil, http.StatusOK, &tl); err != nil || c.json {
		return err
	}
	fmt.Fprintf(stdout, "%s, %s to %s UTC:\n", tl.DeviceID, tl.From.UTC().Format("15:04:05"), tl.To.UTC().Format("15:04:05"))
	for _, s := range tl.Spans {
		d := s.To.Sub(s.From).Round(time.Second)
		line := fmt.Sprintf("  %s–%s  %-8s %s", s.From.UTC().Format("15:04:05"), s.To.UTC().Format("15:04:05"), s.State, d)
		if s.Flaps > 0 {
			line += fmt.Sprintf(" (%d short changes)", s.Flaps)
		}
		fmt.Fprintln(stdout, line)
	}
	return nil
}
