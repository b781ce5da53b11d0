package bridge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// call is one admin API call on this instance with the admin token.
func (s *stack) call(t testing.TB, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// raise raises an override through the admin API and returns its id.
func (s *stack) raise(t testing.TB, body string) string {
	t.Helper()
	status, raw := s.call(t, "POST", "/api/admin/overrides", body)
	var ov struct{ ID string }
	if status != http.StatusCreated || json.Unmarshal(raw, &ov) != nil || !broker.ValidOverrideID(ov.ID) {
		t.Fatalf("raise override: %d %s", status, raw)
	}
	return ov.ID
}

// listed is GET /api/admin/overrides.
func (s *stack) listed(t testing.TB) []map[string]any {
	t.Helper()
	status, raw := s.call(t, "GET", "/api/admin/overrides", "")
	var l []map[string]any
	if status != http.StatusOK || json.Unmarshal(raw, &l) != nil {
		t.Fatalf("list overrides: %d %s", status, raw)
	}
	return l
}

// welcomedOverrides is the welcome's "overrides".
func welcomedOverrides(t testing.TB, w bridgetest.Msg) []string {
	t.Helper()
	l, ok := w.Fields["overrides"].([]any)
	if !ok {
		t.Fatalf("welcome %s has no overrides list", w.Raw)
	}
	out := make([]string, 0, len(l))
	for _, v := range l {
		out = append(out, v.(string))
	}
	slices.Sort(out)
	return out
}

// TestOverrideDelivery: a connected tablet gets an override at once; one of another
// feed does not (it gets the next one, for every feed, first); a tablet that connects
// later gets both after synced and names them in its welcome; its acknowledgement is
// counted by the API; a clear reaches every tablet as override_clear.
func TestOverrideDelivery(t *testing.T) {
	s := startStack(t, stackOpts{})
	lobby, hall := s.pair(t, "lobby"), s.pair(t, "hall")
	s.publish(t, "lobby", "state", `{"title":"Welcome"}`)

	c, w := s.connect(t, lobby, 0, "")
	if got := welcomedOverrides(t, w); len(got) != 0 {
		t.Fatalf("welcome names overrides %v before any was raised", got)
	}
	p := startPump(c)
	p.expect(t, "synced")
	hc, _ := s.connect(t, hall, 0, "")
	hp := startPump(hc)
	hp.expect(t, "synced")

	fire := s.raise(t, `{"feeds":["lobby"],"title":"Fire alarm","body":"Evacuate via stairwell B","expires_in":"30m"}`)
	m := p.expect(t, "override")
	if m.Str("id") != fire || m.Str("title") != "Fire alarm" || m.Str("body") != "Evacuate via stairwell B" || m.Str("level") != "danger" ||
		m.Str("created_at") == "" || m.Str("expires_at") == "" || strings.Contains(string(m.Raw), "actor") {
		t.Fatalf("override = %s; want the raised one, level danger, times, no actor", m.Raw)
	}
	all := s.raise(t, `{"feeds":["*"],"title":"Drill at 3pm","level":"info"}`)
	if m := hp.expect(t, "override"); m.Str("id") != all {
		t.Fatalf("the hall tablet's first override is %s; want only the one for every feed (%s)", m.Raw, all)
	}
	if m := p.expect(t, "override"); m.Str("id") != all || m.Str("level") != "info" {
		t.Fatalf("second override on the lobby tablet = %s; want %s", m.Raw, all)
	}

	// A tablet that connects later: named in the welcome, sent after synced.
	late := s.pair(t, "lobby")
	lc, lw := s.connect(t, late, 0, "")
	if got, want := welcomedOverrides(t, lw), []string{all, fire}; !slices.Equal(got, sortedCopy(want)) {
		t.Fatalf("welcome names %v; want %v", got, sortedCopy(want))
	}
	events, _, _, err := lc.Collect(wait)
	if err != nil || len(events) != 1 {
		t.Fatalf("late catch-up: %d events, %v", len(events), err)
	}
	lp := startPump(lc)
	got := []string{lp.expect(t, "override").Str("id"), lp.expect(t, "override").Str("id")}
	if slices.Sort(got); !slices.Equal(got, sortedCopy([]string{all, fire})) {
		t.Fatalf("after synced the late tablet got %v; want both overrides", got)
	}

	// The late tablet acknowledges the fire alarm: counted once, of the lobby's two.
	for range 3 {
		if err := lc.Send(map[string]string{"type": "shown", "override": fire}); err != nil {
			t.Fatal(err)
		}
	}
	if err := hc.Send(map[string]string{"type": "shown", "override": fire}); err != nil { // not its feed's: ignored
		t.Fatal(err)
	}
	brokertest.Eventually(t, 10*time.Second, "the API counts the late tablet's ack", func() bool {
		for _, o := range s.listed(t) {
			if o["id"] == fire {
				return o["shown"] == float64(1) && o["devices"] == float64(2)
			}
		}
		return false
	})
	for _, o := range s.listed(t) {
		if o["id"] != fire {
			continue
		}
		for _, sc := range o["screens"].([]any) {
			sc := sc.(map[string]any)
			if (sc["device_id"] == late.DeviceID) != (sc["shown_at"] != nil) {
				t.Fatalf("screen %v: only the late tablet has shown it", sc)
			}
		}
	}

	// Cleared: every lobby tablet hears it; the hall tablet, whose feed it was not for,
	// hears the clear of the one for every feed only.
	if status, raw := s.call(t, "DELETE", "/api/admin/overrides/"+fire, ""); status != http.StatusNoContent {
		t.Fatalf("clear: %d %s", status, raw)
	}
	for _, pp := range []*pump{p, lp} {
		if m := pp.expect(t, "override_clear"); m.Str("id") != fire {
			t.Fatalf("override_clear = %s; want %s", m.Raw, fire)
		}
	}
	if status, _ := s.call(t, "DELETE", "/api/admin/overrides/"+fire, ""); status != http.StatusNotFound {
		t.Fatalf("second clear: %d; want 404", status)
	}
	if status, _ := s.call(t, "DELETE", "/api/admin/overrides/"+all, ""); status != http.StatusNoContent {
		t.Fatal("clear the second override")
	}
	if m := hp.expect(t, "override_clear"); m.Str("id") != all {
		t.Fatalf("the hall tablet's first clear = %s; want only %s", m.Raw, all)
	}
	if l := s.listed(t); len(l) != 0 {
		t.Fatalf("listed after both clears: %v", l)
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// TestOverrideExpiresOnTablets: an override's end by the clock reaches the tablet as
// override_clear, and a tablet that reconnects is not sent it again.
func TestOverrideExpiresOnTablets(t *testing.T) {
	var skew atomic.Int64
	b := brokertest.New(t, func(c *broker.Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	s := startStack(t, stackOpts{broker: b})
	tab := s.pair(t, "lobby")
	c, _ := s.connect(t, tab, 0, "")
	p := startPump(c)
	p.expect(t, "synced")
	short := s.raise(t, `{"feeds":["lobby"],"title":"Short","expires_in":"1m"}`)
	if m := p.expect(t, "override"); m.Str("id") != short {
		t.Fatalf("override = %s", m.Raw)
	}
	skew.Store(int64(61 * time.Second))
	if m := p.expect(t, "override_clear"); m.Str("id") != short {
		t.Fatalf("override_clear = %s; want %s", m.Raw, short)
	}
	p.close(t)
	c2, w := s.connect(t, tab, 0, "")
	if got := welcomedOverrides(t, w); len(got) != 0 {
		t.Fatalf("welcome after the expiry names %v", got)
	}
	// Something could have come after synced: a live override does; the expired one
	// never does.
	p2 := startPump(c2)
	p2.expect(t, "synced")
	next := s.raise(t, `{"feeds":["lobby"],"title":"Next"}`)
	if m := p2.expect(t, "override"); m.Str("id") != next {
		t.Fatalf("first override after reconnecting = %s; want only the live one %s", m.Raw, next)
	}
}

// TestOverrideSurvivesServerRestart: the override is in the log on disk; after a
// restart of the whole instance a tablet that comes back gets it after synced.
func TestOverrideSurvivesServerRestart(t *testing.T) {
	dir := t.TempDir()
	const public = "http://kioskfeed.test"
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k := []*ecdsa.PrivateKey{key}
	b1 := brokertest.New(t, func(c *broker.Config) { c.DataDir = dir; c.SyncAlways = true })
	s1 := startStack(t, stackOpts{broker: b1, public: public, keys: k})
	tab := s1.pair(t, "lobby")
	id := s1.raise(t, `{"feeds":["*"],"title":"Evacuate via stairwell B","expires_in":"2h"}`)
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := s1.br.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s1.Close()
	if err := b1.Close(ctx); err != nil {
		t.Fatal(err)
	}

	b2 := brokertest.New(t, func(c *broker.Config) { c.DataDir = dir; c.SyncAlways = true })
	s2 := startStack(t, stackOpts{broker: b2, public: public, keys: k})
	s2.route(tab)
	if err := tab.Refresh(bg); err != nil {
		t.Fatalf("token after the restart: %v", err)
	}
	c, w := s2.connect(t, tab, 0, "")
	if got := welcomedOverrides(t, w); !slices.Equal(got, []string{id}) {
		t.Fatalf("welcome after the restart names %v; want [%s]", got, id)
	}
	p := startPump(c)
	p.expect(t, "synced")
	if m := p.expect(t, "override"); m.Str("id") != id || m.Str("title") != "Evacuate via stairwell B" {
		t.Fatalf("override after the restart = %s", m.Raw)
	}
}

// TestOverrideAcrossInstances: raised and cleared through one instance, an override
// reaches a tablet on another at once, and the first counts the tablet's ack.
func TestOverrideAcrossInstances(t *testing.T) {
	b := brokertest.New(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const public = "http://kioskfeed.test"
	s1 := startStack(t, stackOpts{broker: b, public: public, keys: []*ecdsa.PrivateKey{key}})
	s2 := startStack(t, stackOpts{broker: b, public: public, keys: []*ecdsa.PrivateKey{key}})
	tab := s1.pair(t, "lobby")
	s2.route(tab)
	c, _ := s2.connect(t, tab, 0, "")
	p := startPump(c)
	p.expect(t, "synced")

	id := s1.raise(t, `{"feeds":["lobby"],"title":"Gas leak","body":"Leave the building"}`)
	if m := p.expect(t, "override"); m.Str("id") != id {
		t.Fatalf("override on the other instance = %s; want %s", m.Raw, id)
	}
	if err := c.Send(map[string]string{"type": "shown", "override": id}); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, 10*time.Second, "the raising instance counts the ack made on the other", func() bool {
		l := s1.listed(t)
		return len(l) == 1 && l[0]["shown"] == float64(1)
	})
	if status, raw := s1.call(t, "DELETE", "/api/admin/overrides/"+id, ""); status != http.StatusNoContent {
		t.Fatalf("clear: %d %s", status, raw)
	}
	if m := p.expect(t, "override_clear"); m.Str("id") != id {
		t.Fatalf("override_clear on the other instance = %s", m.Raw)
	}
}
