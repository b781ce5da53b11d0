package pairingtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Tablet is a Go client that pairs and refreshes exactly as the tablet PWA does: one
// device key, DPoP proofs with the server's nonce (retrying once on use_dpop_nonce), and
// no secret but the key. The bridge's tests use it (the load tool has its own, in
// internal/devkey, so the binary links no testing code).
type Tablet struct {
	// BaseURL is the server's public URL (what the proofs' htu are built from).
	BaseURL string
	// Key is the device key; NewTablet makes one.
	Key *DeviceKey
	// HTTP is the client used; default http.DefaultClient.
	HTTP *http.Client
	// Clock dates the proofs (iat); default time.Now. Tests whose server runs on a
	// moved clock move the tablet's with it, as a tablet's clock agrees with the server.
	Clock func() time.Time

	mu       sync.Mutex
	nonce    string
	DeviceID string
	Feed     string
	Token    string
	Expires  time.Time
}

// NewTablet makes a tablet with a fresh key, not yet paired.
func NewTablet(baseURL string) (*Tablet, error) {
	k, err := NewDeviceKey()
	if err != nil {
		return nil, err
	}
	return &Tablet{BaseURL: strings.TrimRight(baseURL, "/"), Key: k, HTTP: http.DefaultClient}, nil
}

// APIError is a refusal in the JSON error format of docs/protocol.md §1.
type APIError struct {
	Status     int
	Code       string `json:"error"`
	Message    string `json:"message"`
	RetryAfter string
}

func (e *APIError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

type tokenResponse struct {
	DeviceID    string `json:"device_id"`
	Feed        string `json:"feed"`
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

// Pair redeems a PIN for feed and keeps the device id and first token.
func (t *Tablet) Pair(ctx context.Context, feed, pin, name string) error {
	body := map[string]string{"feed": feed, "pin": pin}
	if name != "" {
		body["name"] = name
	}
	return t.tokenCall(ctx, "/api/pair", body, http.StatusCreated)
}

// Refresh gets a fresh access token for the paired device.
func (t *Tablet) Refresh(ctx context.Context) error {
	return t.tokenCall(ctx, "/api/token", map[string]string{"device_id": t.DeviceID}, http.StatusOK)
}

func (t *Tablet) tokenCall(ctx context.Context, path string, body any, want int) error {
	data, err := t.call(ctx, path, body, want)
	if err != nil {
		return err
	}
	return t.keepToken(path, data)
}

// keepToken keeps the device id and token of a token answer (docs/protocol.md §3, §4).
func (t *Tablet) keepToken(path string, data []byte) error {
	var tr tokenResponse
	if err := json.Unmarshal(data, &tr); err != nil {
		return fmt.Errorf("%s: unreadable answer: %w", path, err)
	}
	if tr.TokenType != "DPoP" || tr.AccessToken == "" {
		return fmt.Errorf("%s: answer %s is not a DPoP token", path, data)
	}
	t.mu.Lock()
	t.DeviceID, t.Feed, t.Token = tr.DeviceID, tr.Feed, tr.AccessToken
	t.Expires = time.Now().Add(time.Duration(tr.ExpiresIn) * time.Second)
	t.mu.Unlock()
	return nil
}

// call posts body (JSON) to path and returns the answer's body when its status is want,
// else the *APIError. A use_dpop_nonce refusal is retried once with the nonce it
// brought, as RFC 9449 §8 says.
func (t *Tablet) call(ctx context.Context, path string, body any, want int) ([]byte, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		resp, err := t.Post(ctx, path, raw)
		if err != nil {
			return nil, err
		}
		apiErr, data := readAnswer(resp, want)
		if apiErr == nil {
			return data, nil
		}
		if apiErr.Code == "use_dpop_nonce" && attempt == 0 {
			continue // the nonce from this answer is kept; retry once
		}
		return nil, apiErr
	}
}

// PairRequest is the answer of POST /api/pair/requests (docs/protocol.md §3b).
type PairRequest struct {
	RequestID               string `json:"request_id"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// RequestPairing asks the server for a pairing code bound to this tablet's key, as the
// PWA's pairing screen does; name is the tablet's suggestion for the admin ("" for none).
func (t *Tablet) RequestPairing(ctx context.Context, name string) (*PairRequest, error) {
	body := map[string]string{}
	if name != "" {
		body["name"] = name
	}
	data, err := t.call(ctx, "/api/pair/requests", body, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	var pr PairRequest
	if err := json.Unmarshal(data, &pr); err != nil || pr.RequestID == "" || pr.UserCode == "" {
		return nil, fmt.Errorf("/api/pair/requests: unreadable answer %s", data)
	}
	return &pr, nil
}

// Poll asks once whether request id has been approved. Approved, it keeps the device id
// and first token as Pair does and returns nil; otherwise it returns the *APIError:
// authorization_pending, slow_down, expired_token, access_denied, invalid_dpop_proof...
func (t *Tablet) Poll(ctx context.Context, requestID string) error {
	path := "/api/pair/requests/" + requestID + "/poll"
	data, err := t.call(ctx, path, struct{}{}, http.StatusOK)
	if err != nil {
		return err
	}
	return t.keepToken(path, data)
}

// WaitApproved polls req at its interval, adding 5 s at each slow_down (RFC 8628 §3.5),
// until it is approved (nil), refused otherwise (the *APIError), or ctx ends.
func (t *Tablet) WaitApproved(ctx context.Context, req *PairRequest) error {
	interval := time.Duration(max(req.Interval, 1)) * time.Second
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
		err := t.Poll(ctx, req.RequestID)
		var apiErr *APIError
		if !errors.As(err, &apiErr) {
			return err
		}
		switch apiErr.Code {
		case "authorization_pending":
		case "slow_down":
			interval += 5 * time.Second
		default:
			return err
		}
	}
}

// Post sends body to path with a fresh DPoP proof (htm POST) and the last nonce the
// server gave, and keeps the nonce of the answer. Tests use it for the raw answer.
func (t *Tablet) Post(ctx context.Context, path string, body []byte) (*http.Response, error) {
	t.mu.Lock()
	nonce := t.nonce
	t.mu.Unlock()
	var iat time.Time
	if t.Clock != nil {
		iat = t.Clock()
	}
	proof, err := t.Key.Proof(ProofParams{Method: http.MethodPost, URL: t.BaseURL + path, Nonce: nonce, IssuedAt: iat})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("DPoP", proof)
	req.Header.Set("User-Agent", "kioskfeed-test-tablet/1")
	client := t.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if n := resp.Header.Get("DPoP-Nonce"); n != "" {
		t.mu.Lock()
		t.nonce = n
		t.mu.Unlock()
	}
	return resp, nil
}

// WSProof signs the proof of a WebSocket auth message: htm GET, htu the ws URL, the
// challenge as nonce, and the ath of the current token.
func (t *Tablet) WSProof(wsURL, challenge string) (string, error) {
	t.mu.Lock()
	tok := t.Token
	t.mu.Unlock()
	return t.Key.Proof(ProofParams{Method: http.MethodGet, URL: wsURL, Nonce: challenge, AccessToken: tok})
}

func readAnswer(resp *http.Response, want int) (*APIError, []byte) {
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == want {
		return nil, data
	}
	e := &APIError{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
	_ = json.Unmarshal(data, e)
	return e, data
}
