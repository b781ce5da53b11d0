package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
)

// runDemo publishes a small lobby feed so that a fresh install shows something: a
// schedule as the state, and a "now serving" ticket as an item every tick. Every event
// has an id derived from the tick, so a restart within the dedup window repeats none.
func runDemo(ctx context.Context, b *broker.Broker, every time.Duration, log *slog.Logger) error {
	rooms := []string{"Aurora", "Borealis", "Cirrus", "Delta"}
	tick := time.NewTicker(every)
	defer tick.Stop()
	first := true
	for n := time.Now().UnixNano() / int64(every); ; n++ {
		events := []broker.EventInput{{
			ID:   fmt.Sprintf("demo-ticket-%d", n),
			Kind: broker.KindItem,
			Data: mustJSON(map[string]any{"text": fmt.Sprintf("Now serving %03d at desk %d", n%1000, n%4+1)}),
		}}
		if first || n%12 == 0 {
			first = false
			events = append([]broker.EventInput{{
				ID:   fmt.Sprintf("demo-state-%d", n),
				Kind: broker.KindState,
				Data: mustJSON(map[string]any{
					"title": "Welcome to the demo lobby",
					"body":  "Rooms today",
					"rows": [][]string{
						{"09:00", rooms[n%4], "Team stand-up"},
						{"11:00", rooms[(n+1)%4], "Design review"},
						{"14:00", rooms[(n+2)%4], "All hands"},
					},
				}),
			}}, events...)
		}
		for _, ev := range events {
			if _, err := b.Publish(ctx, "demo", ev); err != nil && ctx.Err() == nil {
				log.Warn("demo publish failed", slog.String("error", err.Error()))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only fixed, known-good values are passed
	}
	return b
}
