package broker_test

import (
	"encoding/base64"
	"testing"

	"github.com/kioskfeed/kioskfeed/broker"
)

// TestNewIDsHaveTheirForms: every id maker gives what its validator (and the protocol
// document's §0) accepts, and no two of a thousand are alike.
func TestNewIDsHaveTheirForms(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		dev, pr, key, secret := broker.NewID("dev_"), broker.NewID("pr_"), broker.NewKeyID(), broker.NewSecret(32)
		if !broker.ValidDeviceID(dev) || !broker.ValidPairRequestID(pr) || !broker.ValidKeyID(key) {
			t.Fatalf("NewID/NewKeyID made %q, %q, %q: not of their forms", dev, pr, key)
		}
		if raw, err := base64.RawURLEncoding.Strict().DecodeString(secret); err != nil || len(raw) != 32 {
			t.Fatalf("NewSecret(32) = %q: %d bytes, %v", secret, len(raw), err)
		}
		for _, id := range []string{dev, pr, key, secret} {
			if seen[id] {
				t.Fatalf("%q made twice", id)
			}
			seen[id] = true
		}
	}
}
