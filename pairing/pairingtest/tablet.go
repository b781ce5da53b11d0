package pairingtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
)

// userAgent is what the test tablets send; the admin tests find it in the device list.
const userAgent = "kioskfeed-test-tablet/1"

// Tablet pairs and refreshes exactly as a display does, through a client.Device: one
// device key, DPoP proofs with the server's nonce (retrying once on use_dpop_nonce), and
// no secret but the key. What it adds for tests is its exported fields, which a test
// may read after a call or set before one (another instance's URL, a thief's stolen
// device id or token, a moved clock); each call hands them to the device first, and
// takes the device's credentials back after.
type Tablet struct {
	// BaseURL is the server's public URL (what the proofs' htu are built from).
	BaseURL string
	// Key is the device key; NewTablet makes one.
	Key *DeviceKey
	// HTTP is the client used; default http.DefaultClient.
	HTTP *http.Client
	// Clock dates the proofs (iat) and the token's expiry; default time.Now. Tests
	// whose server runs on a moved clock move the tablet's with it, as a tablet's clock
	// agrees with the server.
	Clock func() time.Time

	mu  sync.Mutex // guards dev and the fields below while a call hands them over
	dev *client.Device

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

// APIError is a refusal in the JSON error format of docs/protocol.md §1: the
// client's *client.APIError, with Retry-After as the header's text, which tests
// assert on.
type APIError struct {
	Status     int
	Code       string `json:"error"`
	Message    string `json:"message"`
	RetryAfter string
}

func (e *APIError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// device is the tablet's client.Device with the tablet's fields handed to it. The
// device (and the server nonce it keeps) lives as long as the tablet; a field is
// written only when a test changed it, so calls from several goroutines race on
// nothing.
func (t *Tablet) device() *client.Device {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dev == nil {
		t.dev = &client.Device{UserAgent: userAgent, Clock: t.now}
	}
	d := t.dev
	if d.BaseURL != t.BaseURL {
		d.BaseURL = t.BaseURL
	}
	if d.Key != t.Key.key {
		d.Key = t.Key.key
	}
	if d.HTTP != t.HTTP {
		d.HTTP = t.HTTP
	}
	if c := (client.Credentials{DeviceID: t.DeviceID, Feed: t.Feed, Token: t.Token, Expires: t.Expires}); d.Credentials() != c {
		d.SetCredentials(c)
	}
	return d
}

// now is the tablet's clock, read at each use: a test may set Clock after NewTablet.
func (t *Tablet) now() time.Time {
	if t.Clock != nil {
		return t.Clock()
	}
	return time.Now()
}

// done takes back what the call d made gave the device, and turns the client's
// refusal into this package's *APIError.
func (t *Tablet) done(d *client.Device, err error) error {
	c := d.Credentials()
	t.mu.Lock()
	t.DeviceID, t.Feed, t.Token, t.Expires = c.DeviceID, c.Feed, c.Token, c.Expires
	t.mu.Unlock()
	var ce *client.APIError
	if !errors.As(err, &ce) {
		return err
	}
	e := &APIError{Status: ce.Status, Code: ce.Code, Message: ce.Message}
	if ce.RetryAfter > 0 {
		e.RetryAfter = strconv.Itoa(int(ce.RetryAfter / time.Second))
	}
	return e
}

// Pair redeems a PIN for feed and keeps the device id and first token.
func (t *Tablet) Pair(ctx context.Context, feed, pin, name string) error {
	d := t.device()
	return t.done(d, d.PairWithPIN(ctx, feed, pin, name))
}

// Refresh gets a fresh access token for the paired device.
func (t *Tablet) Refresh(ctx context.Context) error {
	d := t.device()
	return t.done(d, d.Refresh(ctx))
}

// PairRequest is the answer of POST /api/pair/requests (docs/protocol.md §3b).
type PairRequest = client.PairRequest

// RequestPairing asks the server for a pairing code bound to this tablet's key, as the
// PWA's pairing screen does; name is the tablet's suggestion for the admin ("" for none).
func (t *Tablet) RequestPairing(ctx context.Context, name string) (*PairRequest, error) {
	d := t.device()
	pr, err := d.RequestPairing(ctx, name)
	return pr, t.done(d, err)
}

// Poll asks once whether request id has been approved. Approved, it keeps the device id
// and first token as Pair does and returns nil; otherwise it returns the *APIError:
// authorization_pending, slow_down, expired_token, access_denied, invalid_dpop_proof...
func (t *Tablet) Poll(ctx context.Context, requestID string) error {
	d := t.device()
	return t.done(d, d.Poll(ctx, &client.PairRequest{RequestID: requestID}))
}

// WaitApproved polls req at its interval, adding 5 s at each slow_down (RFC 8628 §3.5),
// until it is approved (nil), refused, or ctx ends: the client's own loop.
func (t *Tablet) WaitApproved(ctx context.Context, req *PairRequest) error {
	d := t.device()
	return t.done(d, d.WaitApproved(ctx, req))
}

// Device is the tablet's client.Device, with the tablet's fields handed to it: for
// what the client does and the tablet does not wrap (the socket's auth message).
func (t *Tablet) Device() *client.Device { return t.device() }

// Post sends body to path with a fresh DPoP proof (htm POST) and the last nonce the
// server gave, and keeps the nonce of the answer. Tests use it for the raw answer.
func (t *Tablet) Post(ctx context.Context, path string, body []byte) (*http.Response, error) {
	return t.device().Post(ctx, path, body)
}

// WSProof signs the proof of a WebSocket auth message: htm GET, htu the ws URL, the
// challenge as nonce, and the ath of the current token.
func (t *Tablet) WSProof(wsURL, challenge string) (string, error) {
	t.mu.Lock()
	tok := t.Token
	t.mu.Unlock()
	return t.Key.key.Proof(http.MethodGet, wsURL, challenge, tok, time.Time{})
}
