package alerts_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/alerts"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/schematest"
)

// fleet stands in for the bridge's presence and pairing's registry, which the rules
// read through alerts.Fleet: the tests set who is paired and online.
type fleet struct {
	mu       sync.Mutex
	devs     []alerts.Device
	online   map[string]bool
	lastSeen map[string]time.Time
	display  map[string]string // the proof-of-display state; "" for none
}

func newFleet(devs ...alerts.Device) *fleet {
	return &fleet{devs: devs, online: map[string]bool{}, lastSeen: map[string]time.Time{}, display: map[string]string{}}
}

func (f *fleet) AppendDevices(dst []alerts.Device) []alerts.Device {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append(dst, f.devs...)
}

func (f *fleet) Presence(id string) (bool, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.online[id] {
		return true, time.Now()
	}
	return false, f.lastSeen[id]
}

func (f *fleet) DisplayState(id, _ string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.display[id]
}

func (f *fleet) show(id, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.display[id] = state
}

func (f *fleet) set(id string, online bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.online[id] && !online {
		f.lastSeen[id] = time.Now()
	}
	f.online[id] = online
}

// startService starts a Service on b for the test's length.
func startService(t *testing.T, b *broker.Broker, fl alerts.Fleet, cfg alerts.Config) *alerts.Service {
	t.Helper()
	s, err := alerts.New(context.Background(), cfg, b, fl)
	if err != nil {
		t.Fatalf("alerts.New: %v", err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s
}

// stateBucket is the rules' BucketState on b, which the service has made.
func stateBucket(t *testing.T, b *broker.Broker) jetstream.KeyValue {
	t.Helper()
	kv, err := b.JetStream().KeyValue(context.Background(), alerts.BucketState)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// storedAlerts is every alert in the ALERTS stream, oldest first.
func storedAlerts(t *testing.T, b *broker.Broker) []alerts.Alert {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := b.JetStream().Stream(ctx, alerts.StreamAlerts)
	if err != nil {
		t.Fatalf("alerts stream: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []alerts.Alert
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var a alerts.Alert
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Fatalf("alert %d is not JSON: %v", seq, err)
		}
		if err := schematest.Alert(m.Subject, m.Data); err != nil { // the contract's body, on its type's subject
			t.Errorf("alert %d: %v", seq, err)
		}
		out = append(out, a)
	}
	return out
}

func ofType(as []alerts.Alert, typ, device string) []alerts.Alert {
	var out []alerts.Alert
	for _, a := range as {
		if a.Type == typ && (device == "" || a.DeviceID == device) {
			out = append(out, a)
		}
	}
	return out
}

// waitFor polls cond every 20 ms until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// receiver is a real HTTP webhook receiver on loopback: it records every request and
// answers the statuses queued in answers, then 200.
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	hits    []hit
	answers []int
}

type hit struct {
	delivery, signature string
	body                []byte
	alert               alerts.Alert
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	t.Helper()
	r := &receiver{answers: answers}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		h := hit{delivery: req.Header.Get(alerts.HeaderDelivery), signature: req.Header.Get(alerts.HeaderSignature), body: body}
		_ = json.Unmarshal(body, &h.alert)
		schematest.Record(schematest.Alert("", body)) // a delivery's body is the alert's; TestMain reports a failure
		r.mu.Lock()
		r.hits = append(r.hits, h)
		status := http.StatusOK
		if len(r.answers) > 0 {
			status, r.answers = r.answers[0], r.answers[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() []hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hit(nil), r.hits...)
}

// signedBy reports whether h's signature is "sha256=" and the hex HMAC-SHA256 of its
// raw body under secret, computed here as a receiver would, and compared in constant
// time.
func signedBy(h hit, secret string) bool {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(h.body)
	return hmac.Equal([]byte(h.signature), []byte("sha256="+hex.EncodeToString(m.Sum(nil))))
}
