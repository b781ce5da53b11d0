package config_test

import (
	"strings"
	"testing"
)

// The catch-up keys (issue 12 §3): catchup_limit bounds a replay, and queue_frames
// must hold a whole catch-up (a reset's state of replay_limit items, or catchup_limit
// events) with room to spare, so a catch-up can never close a tablet 1013. Left at 0
// it is derived from the two, so raising them alone is never a contradiction.
func TestValidateCatchupKeys(t *testing.T) {
	kv := func(pairs ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(pairs); i += 2 {
			m[pairs[i]] = pairs[i+1]
		}
		return m
	}
	tests := []struct {
		name string
		in   input
		want string // "" for valid
	}{
		{name: "defaults", in: input{}},
		{name: "catchup_limit raised, the queue with it", in: input{env: kv("KIOSKFEED_CATCHUP_LIMIT", "10000")}},
		{name: "replay_limit raised, the queue with it", in: input{env: kv("KIOSKFEED_REPLAY_LIMIT", "10000", "KIOSKFEED_FEED_MAX_MSGS", "10000")}},
		{name: "queue at its bound", in: input{env: kv("KIOSKFEED_CATCHUP_LIMIT", "240", "KIOSKFEED_QUEUE_FRAMES", "256")}},
		{name: "catchup_limit zero", in: input{env: kv("KIOSKFEED_CATCHUP_LIMIT", "0")},
			want: `KIOSKFEED_CATCHUP_LIMIT "0": want between 1 and 10000`},
		{name: "catchup_limit too big", in: input{env: kv("KIOSKFEED_CATCHUP_LIMIT", "10001", "KIOSKFEED_QUEUE_FRAMES", "20000")},
			want: `KIOSKFEED_CATCHUP_LIMIT "10001": want between 1 and 10000`},
		{name: "queue below a catch-up", in: input{env: kv("KIOSKFEED_CATCHUP_LIMIT", "241", "KIOSKFEED_QUEUE_FRAMES", "256")},
			want: `KIOSKFEED_QUEUE_FRAMES "256": want 0 (derived) or between max(replay_limit, catchup_limit) + 16 (257)`},
		{name: "queue below a reset's state", in: input{file: "replay_limit: 1000\nfeed_max_msgs: 1000\nqueue_frames: 1000\n"},
			want: `want 0 (derived) or between max(replay_limit, catchup_limit) + 16 (1016)`},
		{name: "queue raised with the limits", in: input{args: []string{"--replay-limit=1000", "--catchup-limit=2000", "--queue-frames=2016"}}},
		{name: "queue too big", in: input{env: kv("KIOSKFEED_QUEUE_FRAMES", "100001")},
			want: `KIOSKFEED_QUEUE_FRAMES "100001": want 0 (derived) or between`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := mustLoad(t, tt.in)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want == "":
			case err == nil:
				t.Fatalf("Validate() = nil, want %q", tt.want)
			case !strings.Contains(err.Error(), tt.want) || strings.Count(err.Error(), "\n") != 0:
				t.Fatalf("Validate() = %q\nwant one problem containing %q", err, tt.want)
			}
		})
	}
	c, _ := mustLoad(t, input{})
	if c.CatchupLimit != 200 || c.QueueFrames != 0 {
		t.Fatalf("defaults catchup_limit %d queue_frames %d, want 200 and 0 (derived)", c.CatchupLimit, c.QueueFrames)
	}
}
