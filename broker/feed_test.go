package broker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/internal/schematest"
)

var ctx = context.Background()

func publish(t *testing.T, b *broker.Broker, feed, kind, id, data string) broker.PublishResult {
	t.Helper()
	res, err := b.Publish(ctx, feed, broker.EventInput{ID: id, Kind: kind, Data: json.RawMessage(data)})
	if err != nil {
		t.Fatalf("publish %s %s: %v", feed, kind, err)
	}
	return res
}

func seqs(evs []broker.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func TestPublishDeduplicatesPerFeed(t *testing.T) {
	b := brokertest.New(t)
	first := publish(t, b, "lobby", "item", "order-1", `{"n":1}`)
	if first.Duplicate || first.Seq == 0 || first.ID != "order-1" {
		t.Fatalf("first publish = %+v, want a new event with id order-1", first)
	}
	again := publish(t, b, "lobby", "item", "order-1", `{"n":2}`)
	if !again.Duplicate || again.Seq != first.Seq {
		t.Fatalf("repeat = %+v, want duplicate of seq %d", again, first.Seq)
	}
	// The same id on another feed is another event: dedup is scoped to the feed so one
	// feed's producer cannot suppress another's events.
	other := publish(t, b, "floor-2", "item", "order-1", `{"n":3}`)
	if other.Duplicate || other.Seq == first.Seq {
		t.Fatalf("same id on another feed = %+v, want a new event", other)
	}
	// No id: the server makes one, and every such event is new.
	a := publish(t, b, "lobby", "item", "", `{}`)
	c := publish(t, b, "lobby", "item", "", `{}`)
	if a.ID == "" || a.ID == c.ID || c.Duplicate {
		t.Fatalf("server-made ids %q and %q (dup %v), want two distinct new events", a.ID, c.ID, c.Duplicate)
	}
	if !broker.ValidEventID(a.ID) {
		t.Fatalf("server-made id %q is not a valid event id", a.ID)
	}
	hist, err := b.History(ctx, "lobby", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(hist); got != 3 {
		t.Fatalf("lobby holds %d events, want 3 (the duplicate stored nothing)", got)
	}
	if string(hist[0].Data) != `{"n":1}` {
		t.Fatalf("first event data = %s, want the first publish's", hist[0].Data)
	}
}

func TestStateIsNewestStateOrClearPlusItems(t *testing.T) {
	b := brokertest.New(t, func(c *broker.Config) { c.ReplayLimit = 2 })
	if st, err := b.State(ctx, "lobby"); err != nil || st.Seq != 0 || len(st.Events) != 0 {
		t.Fatalf("empty feed state = %+v, %v; want seq 0, no events", st, err)
	}
	publish(t, b, "lobby", "item", "", `{"text":"before any state"}`)
	s1 := publish(t, b, "lobby", "state", "", `{"title":"one"}`)
	i1 := publish(t, b, "lobby", "item", "", `{"text":"a"}`)
	publish(t, b, "other", "state", "", `{"title":"not ours"}`)

	st, err := b.State(ctx, "lobby")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(seqs(st.Events)), fmt.Sprint([]uint64{s1.Seq, i1.Seq}); got != want {
		t.Fatalf("state seqs = %s, want %s", got, want)
	}
	if st.Seq != i1.Seq {
		t.Fatalf("state seq = %d, want newest %d", st.Seq, i1.Seq)
	}

	i2 := publish(t, b, "lobby", "item", "", `{"text":"b"}`)
	i3 := publish(t, b, "lobby", "item", "", `{"text":"c"}`)
	st, _ = b.State(ctx, "lobby")
	if got, want := fmt.Sprint(seqs(st.Events)), fmt.Sprint([]uint64{s1.Seq, i2.Seq, i3.Seq}); got != want {
		t.Fatalf("with replay_limit 2, state seqs = %s, want %s (the newest items)", got, want)
	}

	cl := publish(t, b, "lobby", "clear", "", ``)
	st, _ = b.State(ctx, "lobby")
	if len(st.Events) != 1 || st.Events[0].Seq != cl.Seq || st.Events[0].Kind != "clear" || string(st.Events[0].Data) != "{}" {
		t.Fatalf("after clear, state = %+v, want only the clear event with data {}", st.Events)
	}
}

func TestHistoryAfterSince(t *testing.T) {
	b := brokertest.New(t)
	var all []uint64
	for i := range 5 {
		all = append(all, publish(t, b, "lobby", "item", fmt.Sprintf("e%d", i), `{}`).Seq)
		publish(t, b, "elsewhere", "item", "", `{}`)
	}
	tests := []struct {
		name  string
		since uint64
		want  []uint64
	}{
		{"from the start", 0, all},
		{"after the second", all[1], all[2:]},
		{"after a seq of another feed", all[1] + 1, all[2:]},
		{"up to date", all[4], []uint64{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.History(ctx, "lobby", tc.since)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(seqs(got)) != fmt.Sprint(tc.want) {
				t.Fatalf("History(since %d) = %v, want %v", tc.since, seqs(got), tc.want)
			}
		})
	}
	t.Run("a seq beyond the log is another life of it", func(t *testing.T) {
		if _, err := b.History(ctx, "lobby", all[4]+1000); !errors.Is(err, broker.ErrGap) {
			t.Fatalf("err = %v, want ErrGap", err)
		}
	})
}

func TestHistoryDetectsEvictedEvents(t *testing.T) {
	b := brokertest.New(t, func(c *broker.Config) { c.FeedMaxMsgs = 3; c.ReplayLimit = 3 })
	var items []uint64
	for range 5 {
		items = append(items, publish(t, b, "lobby", "item", "", `{}`).Seq)
	}
	// Only the newest three items are kept: asking after the first one would silently
	// skip the second, so it must be a gap.
	if _, err := b.History(ctx, "lobby", items[0]); !errors.Is(err, broker.ErrGap) {
		t.Fatalf("History after an evicted range: err = %v, want ErrGap", err)
	}
	got, err := b.History(ctx, "lobby", items[1])
	if err != nil {
		t.Fatalf("History after the last evicted event: %v", err)
	}
	if fmt.Sprint(seqs(got)) != fmt.Sprint(items[2:]) {
		t.Fatalf("History = %v, want %v", seqs(got), items[2:])
	}
	// A feed's state survives any number of other feeds' events.
	s := publish(t, b, "quiet", "state", "", `{"title":"kept"}`)
	for range 10 {
		publish(t, b, "busy", "item", "", `{}`)
	}
	st, err := b.State(ctx, "quiet")
	if err != nil || len(st.Events) != 1 || st.Events[0].Seq != s.Seq {
		t.Fatalf("quiet feed state = %+v, %v; want its one state event", st, err)
	}
}

func TestNATSProducers(t *testing.T) {
	b := brokertest.New(t, func(c *broker.Config) { c.Listen = "127.0.0.1:0" })
	user, pw := b.ProducerCredentials()
	if pw == "" || b.NATSAddr() == "" {
		t.Fatalf("embedded listener %q with password set %v, want both", b.NATSAddr(), pw != "")
	}
	nc, err := nats.Connect("nats://"+b.NATSAddr(), nats.UserInfo(user, pw), nats.Timeout(10*time.Second), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatalf("producer connect: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	// valid says whether the test means the body for a tablet: then it is valid
	// against the contract's schema (docs/schemas/producer-event.json); a body the
	// server stores but never shows is not.
	pub := func(subject, id, body string, valid bool) (*jetstream.PubAck, error) {
		if err := schematest.Producer(subject, []byte(body)); (err == nil) != valid {
			t.Errorf("schema verdict on %s %s: %v; the test means it valid: %v", subject, body, err, valid)
		}
		m := &nats.Msg{Subject: subject, Data: []byte(body), Header: nats.Header{}}
		if id != "" {
			m.Header.Set("Nats-Msg-Id", id)
		}
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return js.PublishMsg(c, m)
	}
	good, err := pub("feeds.lobby.state", "lobby/welcome", `{"kind":"state","data":{"title":"hi"}}`, true)
	if err != nil {
		t.Fatalf("producer publish: %v", err)
	}
	dup, err := pub("feeds.lobby.state", "lobby/welcome", `{"kind":"state","data":{"title":"again"}}`, true)
	if err != nil || !dup.Duplicate || dup.Sequence != good.Sequence {
		t.Fatalf("repeat over NATS = %+v, %v; want duplicate of %d", dup, err, good.Sequence)
	}
	// Shapes a tablet cannot use are stored by JetStream but never shown.
	for _, body := range []string{`not json`, `{"kind":"item","data":{}}`, `{"data":[1,2]}`} {
		if _, err := pub("feeds.lobby.state", "", body, false); err != nil {
			t.Fatalf("publish %q: %v", body, err)
		}
	}
	// A subject outside the three kinds is not captured at all.
	if _, err := pub("feeds.lobby.bogus", "", `{"data":{}}`, false); err == nil {
		t.Fatal("publish to feeds.lobby.bogus was acknowledged, want no stream to take it")
	}
	hist, err := b.History(ctx, "lobby", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].ID != "welcome" || string(hist[0].Data) != `{"title":"hi"}` {
		t.Fatalf("history = %+v, want the one valid event with id welcome", hist)
	}
	// Producers may publish, not read: no subscription to the feeds or KV.
	sub, err := nc.SubscribeSync("feeds.>")
	if err == nil {
		_ = nc.Flush()
		if _, err := sub.NextMsg(500 * time.Millisecond); err == nil {
			t.Fatal("producer could read feeds.>")
		}
	}
	kvCtx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := js.KeyValue(kvCtx, broker.BucketProducerKeys); err == nil {
		t.Fatal("producer could open the producer keys bucket")
	}
}

func TestAuditNewestFirst(t *testing.T) {
	b := brokertest.New(t)
	for i := range 5 {
		b.Audit(broker.AuditRecord{Type: "pair_ok", Feed: fmt.Sprintf("f%d", i)})
		// One address each: repeats from one address are summed up into one record.
		b.Audit(broker.AuditRecord{Type: "auth_fail", Feed: fmt.Sprintf("f%d", i), Detail: "bad proof", RemoteAddr: fmt.Sprintf("192.0.2.%d", i)})
	}
	b.Audit(broker.AuditRecord{Type: "Bad Type!"}) // dropped, not stored
	var recs []broker.AuditRecord
	brokertest.Eventually(t, 5*time.Second, "ten audit records", func() bool {
		var err error
		recs, err = b.AuditList(ctx, "", 100)
		return err == nil && len(recs) == 10
	})
	if recs[0].Type != "auth_fail" || recs[0].Feed != "f4" || recs[9].Feed != "f0" {
		t.Fatalf("audit order: first %+v last %+v, want newest first", recs[0], recs[9])
	}
	only, err := b.AuditList(ctx, "pair_ok", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(only) != 3 || only[0].Feed != "f4" || only[2].Feed != "f2" {
		t.Fatalf("pair_ok limit 3 = %+v, want f4 f3 f2", only)
	}
	for _, r := range only {
		if r.Type != "pair_ok" || r.Time.IsZero() {
			t.Fatalf("record %+v, want type pair_ok with a time", r)
		}
	}
}

// A producer's CONNECT is checked against a bcrypt hash, which on a loaded machine can take
// longer than nats-server's short first PING (2 s after the CONNECT arrives). A PING that
// comes before the PONG of the client's own connect PING breaks nats.go ("expected 'PONG',
// got 'PING'", seen in CI) and other client libraries alike, so the embedded server must not
// PING a client that is still connecting. The test plays the slow exchange: it sends
// CONNECT, and its PING only after the short first PING's latest time (2 s + 20 %).
func TestSlowProducerConnectGetsItsPongFirst(t *testing.T) {
	b := brokertest.New(t, func(c *broker.Config) { c.Listen = "127.0.0.1:0" })
	user, pw := b.ProducerCredentials()
	c, err := net.DialTimeout("tcp", b.NATSAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	info, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(info, "INFO ") {
		t.Fatalf("first line %q, %v; want INFO", info, err)
	}
	connect, _ := json.Marshal(map[string]any{"verbose": false, "pedantic": false, "user": user, "pass": pw, "protocol": 1})
	if _, err := fmt.Fprintf(c, "CONNECT %s\r\n", connect); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2600 * time.Millisecond) // the slow exchange itself, not a wait for the server
	if _, err := fmt.Fprint(c, "PING\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := r.ReadString('\n')
	if err != nil || line != "PONG\r\n" {
		t.Fatalf("after a slow CONNECT the server sent %q (%v), want the PONG first", line, err)
	}
}
