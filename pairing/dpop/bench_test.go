package dpop

import (
	"context"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// BenchmarkVerifyProof measures one proof check without the replay store
// (a process-local cache), i.e. the CPU a handshake spends on the proof.
func BenchmarkVerifyProof(b *testing.B) {
	clock := newTestClock(time.Unix(1_800_000_000, 0))
	f := newDPoPFixture(b, &memReplay{}, clock)
	want := f.want()
	proofs := make([]string, b.N)
	for i := range proofs {
		proofs[i] = f.dev.MustProof(b, pairingtest.ProofParams{Method: "POST", URL: testHTU, Nonce: f.nonces.Nonce(), IssuedAt: clock.Now()})
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := f.v.Verify(ctx, proofs[i], want); err != nil {
			b.Fatal(err)
		}
	}
}
