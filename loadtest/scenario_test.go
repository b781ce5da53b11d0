package loadtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestOutageScenario runs a Wi-Fi outage with the real binary at small N: 40 tablets
// over two workers, 20 of them dead at once. The dead tablets must really be dead (the
// server drops them, which it does only for tablets that stop answering), the healthy
// ones must get every event and keep their sockets, and the figures must be there under
// their JSON keys. How fast anything was is not asserted. Against a server whose
// heartbeat waits on each dead socket (before issue 12's fix) the run fails: the dead
// links outlive the wait and the healthy tablets are dropped.
func TestOutageScenario(t *testing.T) {
	exe := kioskfeedBinary(t)
	dir := t.TempDir()
	var progress bytes.Buffer
	logOnFailure(t, dir, &progress)
	res, err := Run(t.Context(), Options{
		Exe:       exe,
		Scenario:  ScenarioOutage,
		Tablets:   40,
		PerWorker: 20,
		Share:     0.5,
		Heartbeat: 2 * time.Second,
		Events:    5,
		Rate:      10,
		Timeout:   3 * time.Minute,
		Dir:       dir,
		Progress:  &progress,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	o := res.Outage
	if o == nil {
		t.Fatalf("no outage result: %+v", res)
	}
	counts := []struct {
		name      string
		got, want int
	}{
		{"Tablets", o.Tablets, 40},
		{"Dead", o.Dead, 20},
		{"Healthy", o.Healthy, 20},
		{"DeadDropped", o.DeadDropped, 20},
		{"HealthyDropped", o.HealthyDropped, 0},
		{"HealthyMissing", o.HealthyMissing, 0},
		{"HealthyDuplicates", o.HealthyDuplicates, 0},
	}
	for _, c := range counts {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if o.DeadDroppedS <= 0 {
		t.Errorf("DeadDroppedS = %g: the server never dropped the dead tablets (were they dead?)", o.DeadDroppedS)
	}
	if o.Events < 1 || o.HeartbeatS != 2 || o.OutageS <= 0 {
		t.Errorf("Events %d, HeartbeatS %g, OutageS %g: want events published over an outage at a 2 s heartbeat", o.Events, o.HeartbeatS, o.OutageS)
	}
	if !(0 < o.HeartbeatGapP99Ms && o.HeartbeatGapP99Ms <= o.HeartbeatGapMaxMs) || !(0 < o.HeartbeatGapBeforeP99Ms && o.HeartbeatGapBeforeP99Ms <= o.HeartbeatGapBeforeMaxMs) {
		t.Errorf("heartbeat gaps p99 %g max %g, before p99 %g max %g: want gaps recorded, p99 <= max", o.HeartbeatGapP99Ms, o.HeartbeatGapMaxMs, o.HeartbeatGapBeforeP99Ms, o.HeartbeatGapBeforeMaxMs)
	}
	checkOrdered(t, "before the outage", o.FanoutBeforeP50Ms, o.FanoutBeforeP99Ms, o.FanoutBeforeP99Ms, o.FanoutBeforeMaxMs)
	checkOrdered(t, "during the outage", o.FanoutP50Ms, o.FanoutP99Ms, o.FanoutP99Ms, o.FanoutMaxMs)
	if o.ServerRSSBeforeBytes <= 0 || o.ServerRSSPeakBytes <= 0 {
		t.Errorf("server RSS before %d, peak %d: want both read", o.ServerRSSBeforeBytes, o.ServerRSSPeakBytes)
	}
	checkKeys(t, res, "outage", "tablets", "dead", "healthy", "heartbeat_s", "outage_s", "events", "healthy_dropped", "healthy_missing",
		"heartbeat_gap_p99_ms", "heartbeat_gap_max_ms", "heartbeat_gap_before_p99_ms", "heartbeat_gap_before_max_ms",
		"fanout_before_p50_ms", "fanout_before_p99_ms", "fanout_p50_ms", "fanout_p99_ms", "fanout_max_ms",
		"dead_dropped_s", "dead_dropped", "server_rss_before_bytes", "server_rss_peak_bytes", "server_cpu_pct")
}

// TestStormScenario runs far-behind reconnect storms with the real binary at small N:
// 20 tablets over two workers, half of them leaving and coming back at once. Thirty
// events behind, the server replays them; 600 behind with only 100 kept per feed and
// kind, it can only reset. Either way every returning socket must keep the contract, the
// healthy tablets lose nothing, and the figures are there under their JSON keys.
func TestStormScenario(t *testing.T) {
	exe := kioskfeedBinary(t)
	for _, tt := range []struct {
		name   string
		behind int
		env    []string
		replay bool // every socket caught up by a replay (else by a reset)
	}{
		{name: "replay", behind: 30, replay: true},
		{name: "reset", behind: 600, env: []string{"KIOSKFEED_FEED_MAX_MSGS=100"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var progress bytes.Buffer
			logOnFailure(t, dir, &progress)
			res, err := Run(t.Context(), Options{
				Exe:       exe,
				Scenario:  ScenarioStorm,
				Tablets:   20,
				PerWorker: 10,
				Share:     0.5,
				Behind:    tt.behind,
				Events:    3,
				Rate:      10,
				Settle:    200 * time.Millisecond,
				ServerEnv: tt.env,
				Timeout:   3 * time.Minute,
				Dir:       dir,
				Progress:  &progress,
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			s := res.Storm
			if s == nil {
				t.Fatalf("no storm result: %+v", res)
			}
			counts := []struct {
				name      string
				got, want int
			}{
				{"Returning", s.Returning, 10},
				{"Healthy", s.Healthy, 10},
				{"Behind", s.Behind, tt.behind},
				{"Unsynced", s.Unsynced, 0},
				{"Violations", s.Violations, 0},
				{"Replays+Resets", s.Replays + s.Resets, s.Sockets},
				{"HealthyDropped", s.HealthyDropped, 0},
				{"HealthyMissing", s.HealthyMissing, 0},
				{"HealthyDuplicates", s.HealthyDuplicates, 0},
			}
			if tt.replay {
				counts = append(counts, struct {
					name      string
					got, want int
				}{"Replays", s.Replays, s.Sockets})
			} else {
				counts = append(counts, struct {
					name      string
					got, want int
				}{"Resets", s.Resets, s.Sockets})
			}
			for _, c := range counts {
				if c.got != c.want {
					t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
				}
			}
			if s.Sockets < s.Returning {
				t.Errorf("Sockets = %d: fewer than the %d returning tablets were checked", s.Sockets, s.Returning)
			}
			if s.Events < 1 || s.SyncedAllS <= 0 {
				t.Errorf("Events %d, SyncedAllS %g: want live events during a storm that ended synced", s.Events, s.SyncedAllS)
			}
			if len(s.ServerReplays) == 0 {
				t.Error("ServerReplays empty: the server's catch-ups were not read from /metrics")
			}
			if s.ServerRSSBeforeBytes <= 0 || s.ServerRSSPeakBytes <= 0 || s.ServerHWMBytes <= 0 {
				t.Errorf("server RSS before %d, peak %d, HWM %d: want all read", s.ServerRSSBeforeBytes, s.ServerRSSPeakBytes, s.ServerHWMBytes)
			}
			checkOrdered(t, "healthy, during the storm", s.FanoutP50Ms, s.FanoutP99Ms, s.FanoutP99Ms, s.FanoutMaxMs)
			checkKeys(t, res, "storm", "tablets", "returning", "healthy", "behind", "events", "synced_all_s", "unsynced", "sockets", "replays", "resets",
				"violations", "server_replays", "server_queue_drops", "healthy_dropped", "healthy_missing", "fanout_before_p50_ms", "fanout_before_p99_ms",
				"fanout_p50_ms", "fanout_p99_ms", "fanout_max_ms", "server_rss_before_bytes", "server_rss_peak_bytes", "server_hwm_bytes")
		})
	}
}

// checkKeys fails t unless res, as JSON, has object key under which every key is.
func checkKeys(t *testing.T, res *Result, key string, keys ...string) {
	t.Helper()
	raw, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	if got := string(top["scenario"]); got != `"`+key+`"` {
		t.Errorf("scenario = %s, want %q", got, key)
	}
	var obj map[string]any
	if err := json.Unmarshal(top[key], &obj); err != nil {
		t.Fatalf("key %q: %v in %s", key, err, raw)
	}
	for _, k := range keys {
		if _, ok := obj[k]; !ok {
			t.Errorf("%s.%s missing in %s", key, k, top[key])
		}
	}
}

// TestSeqCheck feeds the catch-up check the sequences the contract allows and some it
// does not.
func TestSeqCheck(t *testing.T) {
	t.Parallel()
	type msg struct {
		typ string // welcome (seq: the since sent), reset, event, synced
		seq uint64
	}
	tests := []struct {
		name               string
		msgs               []msg
		replays, resets    int
		violations         int
		firstHas           string
		sockets            int
		checkBeforeWelcome bool
	}{
		{name: "replay then live", msgs: []msg{{"welcome", 5}, {"event", 6}, {"event", 7}, {"synced", 7}, {"event", 8}}, replays: 1, sockets: 1},
		{name: "nothing missed", msgs: []msg{{"welcome", 7}, {"synced", 7}, {"event", 8}}, replays: 1, sockets: 1},
		{name: "reset, state, live", msgs: []msg{{"welcome", 5}, {"reset", 0}, {"event", 90}, {"event", 40}, {"synced", 99}, {"event", 100}, {"event", 101}}, resets: 1, sockets: 1},
		{name: "gap in the replay", msgs: []msg{{"welcome", 5}, {"event", 6}, {"event", 8}, {"synced", 8}}, replays: 1, violations: 1, firstHas: "event 8 where 7 was due", sockets: 1},
		{name: "replay that skips to live", msgs: []msg{{"welcome", 5}, {"event", 6}, {"synced", 6}, {"event", 9}}, replays: 1, violations: 1, firstHas: "event 9 where 7 was due", sockets: 1},
		{name: "synced past the replay", msgs: []msg{{"welcome", 5}, {"event", 6}, {"synced", 9}}, replays: 1, violations: 1, firstHas: "synced at 9 after a replay up to 6", sockets: 1},
		{name: "repeat after reset", msgs: []msg{{"welcome", 5}, {"reset", 0}, {"synced", 99}, {"event", 99}}, resets: 1, violations: 1, firstHas: "event 99 where 100 was due", sockets: 1},
		{name: "second socket", msgs: []msg{{"welcome", 5}, {"event", 6}, {"welcome", 6}, {"event", 7}, {"synced", 7}}, replays: 1, sockets: 2},
		{name: "off until a welcome", msgs: []msg{{"event", 3}, {"synced", 3}, {"welcome", 3}, {"synced", 3}}, replays: 1, sockets: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c seqCheck
			c.startCheck()
			for _, m := range tt.msgs {
				switch m.typ {
				case "welcome":
					c.checkWelcome(m.seq)
				case "reset":
					c.checkReset()
				case "event":
					c.checkEvent(m.seq)
				case "synced":
					c.checkSynced(m.seq)
				}
			}
			sockets, replays, resets, bad, first := c.checked()
			if sockets != tt.sockets || replays != tt.replays || resets != tt.resets || bad != tt.violations {
				t.Errorf("sockets %d replays %d resets %d violations %d, want %d %d %d %d", sockets, replays, resets, bad, tt.sockets, tt.replays, tt.resets, tt.violations)
			}
			if !strings.Contains(first, tt.firstHas) || (tt.firstHas == "") != (first == "") {
				t.Errorf("first violation %q, want one with %q", first, tt.firstHas)
			}
		})
	}
	var off seqCheck // never started: sees nothing
	off.checkWelcome(1)
	off.checkEvent(9)
	if sockets, _, _, bad, _ := off.checked(); sockets != 0 || bad != 0 {
		t.Errorf("a check never started counted %d sockets, %d violations", sockets, bad)
	}
}

// TestVerdicts checks that a scenario fails exactly when its tablets fared badly.
func TestVerdicts(t *testing.T) {
	t.Parallel()
	good := OutageResult{Dead: 3, DeadDropped: 3, DeadDroppedS: 7}
	if err := good.verdict(); err != nil {
		t.Errorf("clean outage: %v", err)
	}
	for name, o := range map[string]OutageResult{
		"healthy dropped":   {Dead: 3, DeadDropped: 3, DeadDroppedS: 7, HealthyDropped: 1},
		"event missed":      {Dead: 3, DeadDropped: 3, DeadDroppedS: 7, HealthyMissing: 2},
		"dead link kept":    {Dead: 3, DeadDropped: 2, DeadDroppedS: -1},
		"event repeated":    {Dead: 3, DeadDropped: 3, DeadDroppedS: 7, HealthyDuplicates: 1},
		"all of it at once": {Dead: 3, DeadDroppedS: -1, HealthyDropped: 4, HealthyMissing: 1},
	} {
		if err := o.verdict(); !errors.Is(err, errScenario) {
			t.Errorf("outage with %s: verdict %v, want errScenario", name, err)
		}
	}
	if err := (&StormResult{Returning: 5, Sockets: 5, Replays: 5}).verdict(); err != nil {
		t.Errorf("clean storm: %v", err)
	}
	for name, s := range map[string]StormResult{
		"violation":       {Returning: 5, Violations: 1, FirstViolation: "socket 1: event 9 where 7 was due"},
		"never synced":    {Returning: 5, Unsynced: 1},
		"healthy dropped": {Returning: 5, HealthyDropped: 1},
		"event missed":    {Returning: 5, HealthyMissing: 1},
	} {
		if err := s.verdict(); !errors.Is(err, errScenario) {
			t.Errorf("storm with %s: verdict %v, want errScenario", name, err)
		}
	}
}
