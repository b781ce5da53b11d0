package admin_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// Device-side helpers of the tests that follow a tablet through the reverse flow the
// admin side decides (pairing's own tests have the same ones: the two test packages
// cannot share unexported helpers).

// maxErrorBody bounds a refusal's JSON body: a code and a fixed sentence.
const maxErrorBody = 512

// wsURLOf is the URL a bridge in front of s checks WebSocket proofs against.
func wsURLOf(s *service) string { return "ws" + strings.TrimPrefix(s.URL, "http") + "/ws" }

// postDPoP posts body to path on s with exactly the given DPoP header lines.
func postDPoP(t *testing.T, s *service, path string, proofs []string, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return readAnswer(t, resp)
}

// wantAnswer checks an answer's status and error code ("" for a success), that a
// refusal's message names reason, and that the body is small.
func wantAnswer(t *testing.T, a answer, status int, code, reason string) {
	t.Helper()
	if code == "" {
		if a.status != status {
			t.Fatalf("got %d %s, want %d", a.status, a.raw, status)
		}
		return
	}
	if a.status != status || a.body["error"] != code {
		t.Fatalf("got %d %.300s, want %d %q", a.status, a.raw, status, code)
	}
	msg, _ := a.body["message"].(string)
	if msg == "" || !strings.Contains(msg, reason) {
		t.Fatalf("message %q, want one that names %q", msg, reason)
	}
	if len(a.raw) > maxErrorBody {
		t.Fatalf("refusal body is %d bytes, want at most %d", len(a.raw), maxErrorBody)
	}
}

// signProof signs a DPoP proof by k: htm, htu, iat, a fresh jti, nonce when not empty
// and ath when token is not empty.
func signProof(t *testing.T, k *pairingtest.DeviceKey, method, htu, nonce, token string, iat time.Time) string {
	t.Helper()
	j := k.JWK()
	h := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": map[string]any{"kty": j.Kty, "crv": j.Crv, "x": j.X, "y": j.Y}}
	c := map[string]any{"jti": pairingtest.NewJTI(), "htm": method, "htu": htu, "iat": iat.Unix()}
	if nonce != "" {
		c["nonce"] = nonce
	}
	if token != "" {
		c["ath"] = pairingtest.ATH(token)
	}
	p, err := k.Sign(h, c)
	if err != nil {
		t.Fatalf("sign proof: %v", err)
	}
	return p
}

// nonceOf is a DPoP-Nonce s sends, as a tablet learns it: from an answer.
func nonceOf(t *testing.T, s *service) string {
	t.Helper()
	n := postDPoP(t, s, "/api/token", nil, []byte(`{"device_id":"dev_unpaired"}`)).header.Get("DPoP-Nonce")
	if n == "" {
		t.Fatal("no DPoP-Nonce in /api/token's answer")
	}
	return n
}

// authenticate asks s, as its bridge would, with a fresh challenge and a proof by key
// for the WebSocket URL ws.
func authenticate(t *testing.T, s *service, key *pairingtest.DeviceKey, token, ws string) (broker.Identity, error) {
	t.Helper()
	c := challenge()
	return s.a.Authenticate(bg, token, signProof(t, key, "GET", ws, c, token, s.clock.Now()), c, ws)
}
