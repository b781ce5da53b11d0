package pairing_test

import (
	"net/http"
	"testing"

	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// TestTokenCallsOfALobbyAreNotThrottled (issue 12 §4): hundreds of tablets behind one
// NAT address that all need a new token at once (back after an outage longer than
// token_ttl) must all get one: valid token calls from one address have a large
// allowance. The old limit (a burst of 120) refused the 121st.
func TestTokenCallsOfALobbyAreNotThrottled(t *testing.T) {
	s := startService(t, nil, nil)
	tab := s.paired(t, "lobby")
	for i := range 300 {
		if err := tab.Refresh(bg); err != nil {
			t.Fatalf("token call %d of 300 from one address: %v", i+1, err)
		}
	}
}

// TestRefusedTokenCallsAreLimitedStrictly (issue 12 §4): a script trying device ids
// from one address is refused 429 after a small burst of refusals, before any proof
// is checked or device looked up; the lobby's allowance for good calls is untouched
// by it until then.
func TestRefusedTokenCallsAreLimitedStrictly(t *testing.T) {
	s := startService(t, nil, nil)
	good := s.paired(t, "lobby")
	stranger := s.tablet(t)
	stranger.DeviceID = "dev_0000000000000000000A" // well formed, no such device
	var err error
	refusals := 0
	for refusals < 100 {
		if err = stranger.Refresh(bg); err == nil {
			t.Fatal("an unknown device got a token")
		}
		if apiErr, ok := err.(*pairingtest.APIError); ok && apiErr.Status == http.StatusTooManyRequests {
			break
		}
		wantAPIError(t, err, http.StatusUnauthorized, "invalid_token")
		refusals++
		if refusals == 10 { // halfway through the allowance a good tablet still gets its token
			if err := good.Refresh(bg); err != nil {
				t.Fatalf("a paired tablet after %d refusals from its address: %v", refusals, err)
			}
		}
	}
	wantAPIError(t, err, http.StatusTooManyRequests, "rate_limited")
	if refusals < 10 || refusals > 30 {
		t.Fatalf("429 after %d refusals, want after the failure burst (20)", refusals)
	}
}
