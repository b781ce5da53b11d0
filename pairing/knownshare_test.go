package pairing

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// Two instances on one NATS: a token either signs is known to the other without its
// signature being checked there, whether it was signed before the other started (read
// from the bucket, as after a restart) or after (the watcher). Malformed or expired
// entries are not taken.
func TestKnownTokensAreSharedBetweenInstances(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := brokertest.New(t)
	key := mustKey(t, elliptic.P256())
	cfg := Config{PublicURL: "https://kiosk.example", SigningKeys: []*ecdsa.PrivateKey{key}}
	newInstance := func() *Authority {
		t.Helper()
		a, err := New(ctx, cfg, b)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		return a
	}
	jkt := pairingtest.MustDeviceKey(t).JKT()
	knownBy := func(a *Authority, tok string) bool { return a.tokens.known.has(digestToken(tok)) }
	waitKnown := func(a *Authority, tok, what string) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); !knownBy(a, tok); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%s: not known within 10s", what)
			}
		}
	}

	a := newInstance()
	before, _, err := a.tokens.Issue("dev_1", "lobby", jkt)
	if err != nil {
		t.Fatal(err)
	}
	// Written asynchronously: wait until the bucket has it before the second instance starts.
	d := digestToken(before)
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := a.known.kv.Get(ctx, hex.EncodeToString(d[:])); err == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the issued token's digest did not reach the bucket")
		}
	}

	bInst := newInstance()
	waitKnown(bInst, before, "a token signed before the instance started")
	after, _, err := a.tokens.Issue("dev_2", "lobby", jkt)
	if err != nil {
		t.Fatal(err)
	}
	waitKnown(bInst, after, "a token signed on another instance while it runs")
	if c, err := bInst.tokens.Verify(after); err != nil || c.DeviceID != "dev_2" {
		t.Fatalf("the other instance's token: %+v, %v", c, err)
	}

	// Entries that are not a digest and a future second are ignored.
	n := bInst.tokens.known.len()
	past := strconv.FormatInt(time.Now().Add(-time.Minute).Unix(), 10)
	future := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	for k, v := range map[string]string{
		"abcd": future, // too short
		"zz" + hex.EncodeToString(make([]byte, 15)):    future, // not hex
		hex.EncodeToString([]byte("0123456789abcdef")): past,   // expired
		hex.EncodeToString([]byte("fedcba9876543210")): "soon", // not a second
	} {
		if _, err := a.known.kv.Put(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	good := tokenDigest([]byte("a good one, 16 b"))
	if _, err := a.known.kv.Put(ctx, hex.EncodeToString(good[:]), []byte(future)); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); !bInst.tokens.known.has(good); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("a well-formed entry written by hand was not taken")
		}
	}
	if got := bInst.tokens.known.len(); got != n+1 {
		t.Fatalf("known tokens went from %d to %d, want only the well-formed entry added", n, got)
	}
}
