package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// auditTotal sums the records of typ: how many events they stand for.
func auditTotal(recs []broker.AuditRecord) int {
	n := 0
	for _, r := range recs {
		n += max(r.Count, 1)
	}
	return n
}

// A flood of refusals from one address is a couple of records with a count, not one
// record each: the first at once, the rest summed up when the window ends.
func TestAuditAggregatesRepeatedFailures(t *testing.T) {
	b := brokertest.New(t, func(c *broker.Config) { c.AuditAggregateWindow = 3 * time.Second })
	const attempts = 200
	for i := range attempts {
		b.Audit(broker.AuditRecord{Type: "auth_fail", RemoteAddr: "198.51.100.7", Feed: "lobby", Detail: fmt.Sprintf("bad proof %d", i)})
	}
	// The first is written at once, before the window ends.
	brokertest.Eventually(t, 5*time.Second, "the first auth_fail record", func() bool {
		recs, err := b.AuditList(ctx, "auth_fail", 1000)
		return err == nil && len(recs) >= 1
	})
	var recs []broker.AuditRecord
	brokertest.Eventually(t, 20*time.Second, "records standing for all 200 refusals", func() bool {
		var err error
		recs, err = b.AuditList(ctx, "auth_fail", 1000)
		return err == nil && auditTotal(recs) >= attempts
	})
	if len(recs) > 2 || auditTotal(recs) != attempts {
		t.Fatalf("%d records standing for %d refusals, want at most 2 standing for %d: %+v", len(recs), auditTotal(recs), attempts, recs)
	}
	first, sum := recs[len(recs)-1], recs[0]
	if first.Count > 1 || first.Detail != "bad proof 0" {
		t.Fatalf("first record %+v, want the first refusal itself", first)
	}
	if sum.Count != attempts-1 || sum.RemoteAddr != "198.51.100.7" || sum.Feed != "lobby" || sum.Type != "auth_fail" {
		t.Fatalf("summing record %+v, want count %d from 198.51.100.7 for lobby", sum, attempts-1)
	}
}

// Successes and admin actions are never summed up, and each address has a window of
// its own.
func TestAuditAggregatesOnlyFailuresPerAddress(t *testing.T) {
	b := brokertest.New(t, func(c *broker.Config) { c.AuditAggregateWindow = time.Hour })
	for range 5 {
		b.Audit(broker.AuditRecord{Type: "pair_ok", RemoteAddr: "198.51.100.7"})
		b.Audit(broker.AuditRecord{Type: "pin_issued", RemoteAddr: "198.51.100.7", Actor: broker.ActorDashboard})
	}
	for i := range 3 {
		b.Audit(broker.AuditRecord{Type: "token_refused", RemoteAddr: fmt.Sprintf("198.51.100.%d", i)})
	}
	brokertest.Eventually(t, 5*time.Second, "13 records", func() bool {
		recs, err := b.AuditList(ctx, "", 1000)
		return err == nil && len(recs) == 13
	})
	recs, err := b.AuditList(ctx, "pin_issued", 10)
	if err != nil || len(recs) != 5 || recs[0].Actor != broker.ActorDashboard {
		t.Fatalf("pin_issued = %+v, %v; want 5 records with actor dashboard", recs, err)
	}
}

// Close writes the counts of windows still open, so that a restart loses none.
func TestAuditAggregateFlushedOnClose(t *testing.T) {
	dir := t.TempDir()
	b, err := broker.New(context.Background(), broker.Config{DataDir: dir, AuditAggregateWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		b.Audit(broker.AuditRecord{Type: "pair_fail", RemoteAddr: "2001:db8::1"})
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b2 := brokertest.New(t, func(c *broker.Config) { c.DataDir = dir })
	var recs []broker.AuditRecord
	brokertest.Eventually(t, 5*time.Second, "two pair_fail records after the restart", func() bool {
		recs, err = b2.AuditList(ctx, "pair_fail", 100)
		return err == nil && len(recs) == 2
	})
	if auditTotal(recs) != 10 {
		t.Fatalf("records %+v stand for %d refusals, want 10", recs, auditTotal(recs))
	}
}

// The table of followed addresses is bounded: past it, the repeats of other addresses
// are counted under no address, and nothing is lost.
func TestAuditAggregateBounded(t *testing.T) {
	dir := t.TempDir()
	b, err := broker.New(context.Background(), broker.Config{DataDir: dir, AuditAggregateWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const addrs = 5000 // more than the table holds (4096)
	for round := range 2 {
		for i := range addrs {
			b.Audit(broker.AuditRecord{Type: "admin_login_fail", RemoteAddr: fmt.Sprintf("10.%d.%d.%d", round, i/256, i%256)})
		}
	}
	if err := b.Close(context.Background()); err != nil { // writes the overflow count
		t.Fatal(err)
	}
	// 4096 followed addresses write their first record, and so does the first address
	// past the bound, which opens the overflow window; the other 903 of round 0 and
	// all 5000 new addresses of round 1 are counted in it.
	b2 := brokertest.New(t, func(c *broker.Config) { c.DataDir = dir })
	const want = 4096 + 1 + 1
	var recs []broker.AuditRecord
	brokertest.Eventually(t, 20*time.Second, fmt.Sprintf("%d records", want), func() bool {
		recs, err = b2.AuditList(ctx, "admin_login_fail", 10000)
		return err == nil && len(recs) >= want
	})
	if len(recs) != want || auditTotal(recs) != 2*addrs {
		t.Fatalf("%d records standing for %d refusals, want %d for %d", len(recs), auditTotal(recs), want, 2*addrs)
	}
	if over := recs[0]; over.RemoteAddr != "" || over.Count != 903+addrs {
		t.Fatalf("overflow record %+v, want no address and count %d", over, 903+addrs)
	}
}

// The AUDIT stream is bounded by bytes as well as age: a flood of records drops the
// oldest instead of filling the disk.
func TestAuditStreamBoundedByBytes(t *testing.T) {
	def := brokertest.New(t)
	info, err := def.JetStream().Stream(ctx, broker.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.MaxBytes; got != broker.DefaultAuditMaxBytes {
		t.Fatalf("default AUDIT MaxBytes = %d, want %d", got, broker.DefaultAuditMaxBytes)
	}

	const bound = 64 << 10
	b := brokertest.New(t, func(c *broker.Config) { c.AuditMaxBytes = bound })
	for i := range 1000 { // about 300 KB of records, not aggregated
		b.Audit(broker.AuditRecord{Type: "pair_ok", RemoteAddr: "198.51.100.7", Detail: fmt.Sprintf("paired %d %0200d", i, 0)})
	}
	var newest []broker.AuditRecord
	brokertest.Eventually(t, 10*time.Second, "the last record stored", func() bool {
		newest, err = b.AuditList(ctx, "pair_ok", 1)
		return err == nil && len(newest) == 1 && newest[0].Detail[:10] == "paired 999"
	})
	st, err := b.JetStream().Stream(ctx, broker.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	si, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if si.Config.MaxBytes != bound || si.State.Bytes > bound || si.State.FirstSeq <= 1 || si.State.LastSeq != 1000 {
		t.Fatalf("AUDIT MaxBytes %d, state %d bytes, seq %d..%d; want at most %d bytes, the oldest dropped", si.Config.MaxBytes, si.State.Bytes, si.State.FirstSeq, si.State.LastSeq, bound)
	}
}

// An IPv6 client draws addresses from a whole /64: its refusals are summed up per
// prefix, as the limiters count them, and the summing record names the prefix.
func TestAuditAggregatesIPv6PerPrefix(t *testing.T) {
	b := brokertest.New(t, func(c *broker.Config) { c.AuditAggregateWindow = time.Second })
	for i := range 50 {
		b.Audit(broker.AuditRecord{Type: "auth_fail", RemoteAddr: fmt.Sprintf("2001:db8:1:2::%x", i+1), Detail: "bad proof"})
	}
	var recs []broker.AuditRecord
	brokertest.Eventually(t, 20*time.Second, "records standing for all 50 refusals", func() bool {
		var err error
		recs, err = b.AuditList(ctx, "auth_fail", 100)
		return err == nil && auditTotal(recs) >= 50
	})
	if len(recs) != 2 || recs[1].RemoteAddr != "2001:db8:1:2::1" || recs[0].RemoteAddr != "2001:db8:1:2::/64" || recs[0].Count != 49 {
		t.Fatalf("records %+v, want the first from 2001:db8:1:2::1 and 49 more from 2001:db8:1:2::/64", recs)
	}
}
