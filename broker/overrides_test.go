package broker_test

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// changes records what an Overrides subscriber is told.
type changes struct {
	mu  sync.Mutex
	got []string // "+id" raised, "-id" cleared or expired
}

func (c *changes) fn(o broker.Override, cleared bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cleared {
		c.got = append(c.got, "-"+o.ID)
	} else {
		c.got = append(c.got, "+"+o.ID)
	}
}

func (c *changes) has(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.got {
		if g == s {
			return true
		}
	}
	return false
}

func newOverrides(t *testing.T, b *broker.Broker) *broker.Overrides {
	t.Helper()
	o, err := broker.NewOverrides(ctx, b)
	if err != nil {
		t.Fatalf("NewOverrides: %v", err)
	}
	t.Cleanup(o.Stop)
	return o
}

const testDevice = "dev_0123456789ABCDEFGHJK"

// TestOverridesReachEveryInstance: an override raised through one Overrides is seen by
// another on the same NATS (as two kioskfeed instances), by one started later, and its
// clear and its acknowledgements likewise.
func TestOverridesReachEveryInstance(t *testing.T) {
	b := brokertest.New(t)
	o1, o2 := newOverrides(t, b), newOverrides(t, b)
	var seen changes
	o2.Subscribe(seen.fn)

	ov, err := o1.Raise(ctx, broker.OverrideInput{Feeds: []string{"lobby", "hall", "lobby"}, Title: " Fire ", Body: "Leave\nnow", ExpiresIn: "30m"}, "admin_token:config")
	if err != nil {
		t.Fatalf("raise: %v", err)
	}
	if !broker.ValidOverrideID(ov.ID) || ov.Level != "danger" || ov.Title != "Fire" || ov.Body != "Leave\nnow" ||
		strings.Join(ov.Feeds, ",") != "lobby,hall" || ov.ExpiresAt.Sub(ov.CreatedAt) != 30*time.Minute || ov.Actor != "admin_token:config" {
		t.Fatalf("raised %+v; want an ovr_ id, level danger, trimmed title, feeds lobby,hall once each, 30m", ov)
	}
	if !ov.Covers("lobby") || ov.Covers("kitchen") {
		t.Fatalf("%v covers lobby %v, kitchen %v; want true, false", ov.Feeds, ov.Covers("lobby"), ov.Covers("kitchen"))
	}
	brokertest.Eventually(t, 5*time.Second, "the other instance sees the override", func() bool { return seen.has("+" + ov.ID) })
	if got, ok := o2.Get(ov.ID); !ok || got.Title != "Fire" {
		t.Fatalf("other instance Get = %+v, %v", got, ok)
	}
	// Started after the raise: loaded from the log.
	if act := newOverrides(t, b).Active(); len(act) != 1 || act[0].ID != ov.ID {
		t.Fatalf("a later instance loads %+v; want the one override", act)
	}

	// Acknowledged on one instance, counted on the other; repeats write nothing new.
	if o1.Ack("ovr_aaaaaaaaaaaaa", testDevice) || o1.Ack(ov.ID, "not-a-device") {
		t.Fatal("an ack of an unknown override or of a malformed device id was taken")
	}
	for range 3 {
		if !o1.Ack(ov.ID, testDevice) {
			t.Fatal("ack of an active override refused")
		}
	}
	brokertest.Eventually(t, 5*time.Second, "the ack is readable from the other instance", func() bool {
		shown, err := o2.Shown(ctx, ov.ID)
		return err == nil && len(shown) == 1 && !shown[testDevice].IsZero()
	})

	got, ok, err := o2.Clear(ctx, ov.ID)
	if err != nil || !ok || got.ID != ov.ID {
		t.Fatalf("clear = %+v, %v, %v", got, ok, err)
	}
	brokertest.Eventually(t, 5*time.Second, "the raising instance sees the clear", func() bool { return len(o1.Active()) == 0 })
	if _, ok, err := o1.Clear(ctx, ov.ID); ok || err != nil {
		t.Fatalf("second clear = %v, %v; want not found", ok, err)
	}
	if _, ok, err := o1.Clear(ctx, "../../x"); ok || err != nil {
		t.Fatalf("clear of a malformed id = %v, %v; want not found", ok, err)
	}
	if act := newOverrides(t, b).Active(); len(act) != 0 {
		t.Fatalf("a later instance loads %+v after the clear; want none", act)
	}
}

// TestOverrideInputChecked: every bound of docs/protocol.md §6 is refused as
// invalid_request, naming the field; nothing is stored.
func TestOverrideInputChecked(t *testing.T) {
	b := brokertest.New(t)
	o := newOverrides(t, b)
	ok := broker.OverrideInput{Feeds: []string{"*"}, Title: "t"}
	with := func(f func(*broker.OverrideInput)) broker.OverrideInput { in := ok; f(&in); return in }
	for name, tc := range map[string]struct {
		in   broker.OverrideInput
		want string
	}{
		"no feeds":       {with(func(in *broker.OverrideInput) { in.Feeds = nil }), `"feeds"`},
		"bad feed":       {with(func(in *broker.OverrideInput) { in.Feeds = []string{"Lobby!"} }), `"feeds"`},
		"glob":           {with(func(in *broker.OverrideInput) { in.Feeds = []string{"floor-*"} }), `"feeds"`},
		"too many feeds": {with(func(in *broker.OverrideInput) { in.Feeds = make([]string, 101) }), `"feeds"`},
		"long title":     {with(func(in *broker.OverrideInput) { in.Title = strings.Repeat("é", 121) }), `"title"`},
		"control title":  {with(func(in *broker.OverrideInput) { in.Title = "a\x1b[2Jb" }), `"title"`},
		"long body":      {with(func(in *broker.OverrideInput) { in.Body = strings.Repeat("x", 2001) }), `"body"`},
		"bidi body":      {with(func(in *broker.OverrideInput) { in.Body = "exit \u202e left" }), `"body"`},
		"empty":          {with(func(in *broker.OverrideInput) { in.Title = "  " }), `"title" or a "body"`},
		"level":          {with(func(in *broker.OverrideInput) { in.Level = "critical" }), `"level"`},
		"short expiry":   {with(func(in *broker.OverrideInput) { in.ExpiresIn = "59s" }), `"expires_in"`},
		"long expiry":    {with(func(in *broker.OverrideInput) { in.ExpiresIn = "24h1s" }), `"expires_in"`},
		"bad expiry":     {with(func(in *broker.OverrideInput) { in.ExpiresIn = "soon" }), `"expires_in"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := o.Raise(ctx, tc.in, "")
			var e *httpx.Error
			if !errors.As(err, &e) || e.Code != httpx.CodeInvalidRequest || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("err = %v; want invalid_request naming %s", err, tc.want)
			}
		})
	}
	if n := len(o.Active()); n != 0 {
		t.Fatalf("%d overrides stored by refused raises", n)
	}
	// The edges themselves are accepted: 120 characters, 2,000, 1m and 24h.
	for _, in := range []broker.OverrideInput{
		with(func(in *broker.OverrideInput) { in.Title = strings.Repeat("é", 120); in.ExpiresIn = "1m" }),
		with(func(in *broker.OverrideInput) {
			in.Title = ""
			in.Body = strings.Repeat("x", 2000)
			in.ExpiresIn = "24h"
		}),
	} {
		if _, err := o.Raise(ctx, in, ""); err != nil {
			t.Fatalf("raise at the bounds: %v", err)
		}
	}
	// At most MaxOverrides active.
	for i := len(o.Active()); i < broker.MaxOverrides; i++ {
		if _, err := o.Raise(ctx, ok, ""); err != nil {
			t.Fatalf("raise %d: %v", i+1, err)
		}
	}
	if _, err := o.Raise(ctx, ok, ""); !errors.Is(err, broker.ErrTooManyOverrides) {
		t.Fatalf("raise %d: %v; want ErrTooManyOverrides", broker.MaxOverrides+1, err)
	}
}

// TestOverrideExpires: an override ends by the cluster's clock, with no write: the
// subscribers hear it, and an instance started later does not load it.
func TestOverrideExpires(t *testing.T) {
	var skew atomic.Int64
	b := brokertest.New(t, func(c *broker.Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	o := newOverrides(t, b)
	var seen changes
	o.Subscribe(seen.fn)
	ov, err := o.Raise(ctx, broker.OverrideInput{Feeds: []string{"lobby"}, Title: "Drill", ExpiresIn: "1m"}, "")
	if err != nil {
		t.Fatal(err)
	}
	long, err := o.Raise(ctx, broker.OverrideInput{Feeds: []string{"lobby"}, Title: "Stays", ExpiresIn: "2h"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if !seen.has("+"+ov.ID) || seen.has("-"+ov.ID) {
		t.Fatalf("changes %v; want the raise and no end yet", seen.got)
	}
	skew.Store(int64(61 * time.Second))
	brokertest.Eventually(t, 5*time.Second, "the override expires", func() bool { return seen.has("-" + ov.ID) })
	if act := o.Active(); len(act) != 1 || act[0].ID != long.ID {
		t.Fatalf("active after expiry: %+v; want only the 2h one", act)
	}
	if _, ok := o.Get(ov.ID); ok || o.Ack(ov.ID, testDevice) {
		t.Fatal("an expired override is still found, or acknowledged")
	}
	if act := newOverrides(t, b).Active(); len(act) != 1 || act[0].ID != long.ID {
		t.Fatalf("a later instance loads %+v; want only the 2h one", act)
	}
}

// TestOverrideSurvivesRestart: the override is in the log on disk.
func TestOverrideSurvivesRestart(t *testing.T) {
	cfg := broker.Config{DataDir: t.TempDir(), SyncAlways: true}
	b1, err := broker.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	o1, err := broker.NewOverrides(ctx, b1)
	if err != nil {
		t.Fatal(err)
	}
	ov, err := o1.Raise(ctx, broker.OverrideInput{Feeds: []string{"*"}, Body: "Evacuate via stairwell B"}, "")
	if err != nil {
		t.Fatal(err)
	}
	o1.Ack(ov.ID, testDevice)
	o1.Stop() // writes the queued ack
	if err := b1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b2, err := broker.New(ctx, cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer b2.Close(ctx)
	o2, err := broker.NewOverrides(ctx, b2)
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Stop()
	act := o2.Active()
	if len(act) != 1 || act[0].ID != ov.ID || act[0].Body != "Evacuate via stairwell B" || !act[0].Covers("any-feed") {
		t.Fatalf("after a restart: %+v; want the override for every feed", act)
	}
	if shown, err := o2.Shown(ctx, ov.ID); err != nil || shown[testDevice].IsZero() {
		t.Fatalf("acks after a restart: %v, %v; want the device's", shown, err)
	}
}

// FuzzOverrideInput: whatever an administrator (or a producer key with the alert scope)
// sends, the check either refuses it as invalid_request or accepts an override inside
// every bound of docs/protocol.md §6 and §10; it never panics.
func FuzzOverrideInput(f *testing.F) {
	b := brokertest.New(f)
	o, err := broker.NewOverrides(ctx, b)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(o.Stop)
	f.Add("lobby", "Fire", "Evacuate\nnow", "danger", "30m")
	f.Add("*", "", "x", "", "")
	f.Add("Lobby!", "\x1b[2J", "\u202e", "red", "-1h")
	f.Add("a,b,a", strings.Repeat("é", 121), strings.Repeat("x", 2001), "info", "24h0m1s")
	f.Fuzz(func(t *testing.T, feeds, title, body, level, expires string) {
		in := broker.OverrideInput{Feeds: strings.Split(feeds, ","), Title: title, Body: body, Level: level, ExpiresIn: expires}
		ov, err := o.CheckOverride(in)
		if err != nil {
			var e *httpx.Error
			if !errors.As(err, &e) || e.Code != httpx.CodeInvalidRequest || e.Message == "" {
				t.Fatalf("refusal %v; want invalid_request with a message", err)
			}
			return
		}
		ttl := ov.ExpiresAt.Sub(ov.CreatedAt)
		if len(ov.Feeds) == 0 || len(ov.Feeds) > broker.MaxOverrideFeeds || (ov.Title == "" && ov.Body == "") ||
			utf8.RuneCountInString(ov.Title) > broker.MaxOverrideTitle || utf8.RuneCountInString(ov.Body) > broker.MaxOverrideBody ||
			!utf8.ValidString(ov.Title+ov.Body) || ttl < broker.MinOverrideExpiry || ttl > broker.MaxOverrideExpiry ||
			(ov.Level != "info" && ov.Level != "warning" && ov.Level != "danger") {
			t.Fatalf("accepted %+v outside the bounds", ov)
		}
		for _, f := range ov.Feeds {
			if f != broker.AllFeeds && !broker.ValidFeedID(f) {
				t.Fatalf("accepted feed %q", f)
			}
		}
		for _, r := range ov.Title + ov.Body {
			if r != '\n' && broker.RefusedRune(r) {
				t.Fatalf("accepted %U in the text", r)
			}
		}
	})
}
