package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// defaultCallTimeout bounds one HTTP call whose context has no earlier deadline.
	defaultCallTimeout = 15 * time.Second
	// maxAnswer bounds the body of an HTTP answer that is read.
	maxAnswer = 1 << 20
	// tokenMargin is how long a token must still live to be used for a new socket, as
	// the PWA does: a socket authenticated with a nearly dead token is re-authed at once.
	tokenMargin = time.Minute
	// userAgent is sent unless Device.UserAgent says otherwise.
	userAgent = "kioskfeed-client/1"
)

// Typed refusals a caller acts on. An *APIError with the matching code satisfies
// errors.Is with them.
var (
	// ErrRevoked means the server no longer knows this device (revoked, replaced by a
	// PIN issued with replace, or never registered): forget it and pair again. It is
	// what a socket closed 4403 and a token refusal (401 invalid_token) mean.
	ErrRevoked = errors.New("client: device revoked or unknown")
	// ErrPairingExpired means a pairing request aged out, or its device was revoked
	// since it was approved (expired_token): make a new request.
	ErrPairingExpired = errors.New("client: pairing request expired")
	// ErrPairingDenied means an administrator denied the pairing request (access_denied).
	ErrPairingDenied = errors.New("client: pairing request denied")
	// ErrNotPaired is a call that needs a device id before there is one.
	ErrNotPaired = errors.New("client: device is not paired")
)

// APIError is a refusal in the JSON error format of docs/protocol.md §1.
type APIError struct {
	Status  int    // the HTTP status
	Code    string `json:"error"` // the protocol's error code: invalid_pin, slow_down, ...
	Message string `json:"message"`
	// RetryAfter is the Retry-After of a 429 or 503 (zero when absent).
	RetryAfter time.Duration
}

// Error gives status, code and message; never a credential.
func (e *APIError) Error() string {
	return fmt.Sprintf("client: HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// Is maps the codes a caller must act on to this package's sentinels.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrRevoked:
		return e.Code == "invalid_token"
	case ErrPairingExpired:
		return e.Code == "expired_token"
	case ErrPairingDenied:
		return e.Code == "access_denied"
	}
	return false
}

// Credentials are what pairing gave a device: its id and feed, and the current access
// token with its expiry. Only the key is needed to get a new token, so DeviceID and
// Feed are what a display keeps across restarts.
type Credentials struct {
	DeviceID string
	Feed     string
	Token    string
	Expires  time.Time
}

// Device is one display's side of the pairing and token endpoints (docs/protocol.md
// §3, §3b, §4): one key, DPoP proofs carrying the server's last nonce (a use_dpop_nonce
// refusal is retried once with the new one), and no secret but the key. Its methods
// may be called from several goroutines.
type Device struct {
	// BaseURL is the server's public URL, which proofs' htu are built from.
	BaseURL string
	// Key is the device key.
	Key *Key
	// HTTP is the client used; default http.DefaultClient (each call is bounded by
	// Timeout anyway).
	HTTP *http.Client
	// Clock dates the proofs (iat) and the token's expiry; default time.Now.
	Clock func() time.Time
	// Timeout bounds each HTTP call; default 15 s.
	Timeout time.Duration
	// UserAgent is sent with every call, and shown to the admin; default
	// "kioskfeed-client/1".
	UserAgent string

	mu    sync.Mutex
	nonce string
	creds Credentials
}

// NewDevice is a Device for the server at baseURL, not yet paired.
func NewDevice(baseURL string, key *Key) *Device {
	return &Device{BaseURL: strings.TrimRight(baseURL, "/"), Key: key}
}

// Credentials returns the device's current credentials.
func (d *Device) Credentials() Credentials {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.creds
}

// SetCredentials restores credentials kept from an earlier run: a device id and feed
// are enough, the next socket fetches a token.
func (d *Device) SetCredentials(c Credentials) {
	d.mu.Lock()
	d.creds = c
	d.mu.Unlock()
}

// forgetToken makes the next socket fetch a new token (after a 4401).
func (d *Device) forgetToken() {
	d.mu.Lock()
	d.creds.Token, d.creds.Expires = "", time.Time{}
	d.mu.Unlock()
}

func (d *Device) now() time.Time {
	if d.Clock != nil {
		return d.Clock()
	}
	return time.Now()
}

// PairWithPIN redeems an administrator's PIN for feed (POST /api/pair), registering this
// key as a device of the feed; name is shown to administrators ("" for none).
func (d *Device) PairWithPIN(ctx context.Context, feed, pin, name string) error {
	body := map[string]string{"feed": feed, "pin": pin}
	if name != "" {
		body["name"] = name
	}
	return d.tokenCall(ctx, "/api/pair", body, http.StatusCreated)
}

// Refresh gets a fresh access token for the paired device (POST /api/token). A device
// the server no longer knows gets an error that is ErrRevoked.
func (d *Device) Refresh(ctx context.Context) error {
	id := d.Credentials().DeviceID
	if id == "" {
		return ErrNotPaired
	}
	return d.tokenCall(ctx, "/api/token", map[string]string{"device_id": id}, http.StatusOK)
}

// ensureToken refreshes the token unless it lives at least tokenMargin more.
func (d *Device) ensureToken(ctx context.Context) error {
	c := d.Credentials()
	if c.Token != "" && c.Expires.Sub(d.now()) > tokenMargin {
		return nil
	}
	return d.Refresh(ctx)
}

// tokenAnswer is the body of a successful pairing or token call.
type tokenAnswer struct {
	DeviceID    string `json:"device_id"`
	Feed        string `json:"feed"`
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

func (d *Device) tokenCall(ctx context.Context, path string, body any, want int) error {
	data, err := d.call(ctx, path, body, want)
	if err != nil {
		return err
	}
	return d.keepToken(path, data)
}

// keepToken keeps the device id and token of a token answer.
func (d *Device) keepToken(path string, data []byte) error {
	var ta tokenAnswer
	if err := json.Unmarshal(data, &ta); err != nil {
		return fmt.Errorf("client: %s: unreadable answer: %w", path, err)
	}
	if ta.TokenType != "DPoP" || ta.AccessToken == "" || ta.DeviceID == "" || ta.ExpiresIn <= 0 {
		return fmt.Errorf("client: %s: the answer holds no DPoP token", path)
	}
	d.SetCredentials(Credentials{DeviceID: ta.DeviceID, Feed: ta.Feed, Token: ta.AccessToken,
		Expires: d.now().Add(time.Duration(ta.ExpiresIn) * time.Second)})
	return nil
}

// call posts body (JSON) to path with a proof and returns the answer's body when its
// status is want, else the *APIError. A use_dpop_nonce refusal is retried once with
// the nonce it brought (RFC 9449 §8).
func (d *Device) call(ctx context.Context, path string, body any, want int) ([]byte, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("client: encode: %w", err)
	}
	for attempt := 0; ; attempt++ {
		resp, err := d.Post(ctx, path, raw)
		if err != nil {
			return nil, err
		}
		data, err := readAnswer(resp, want)
		var apiErr *APIError
		if errors.As(err, &apiErr) && apiErr.Code == "use_dpop_nonce" && attempt == 0 {
			continue
		}
		return data, err
	}
}

// Post sends body (JSON) to path with a fresh DPoP proof (htm POST) and the last nonce
// the server gave, bounded by Timeout, and keeps the nonce of the answer. The caller
// closes the body. It is the raw call under the others, for tests of the server.
func (d *Device) Post(ctx context.Context, path string, body []byte) (*http.Response, error) {
	d.mu.Lock()
	nonce := d.nonce
	d.mu.Unlock()
	proof, err := d.Key.Proof(http.MethodPost, d.BaseURL+path, nonce, "", d.now())
	if err != nil {
		return nil, err
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = defaultCallTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("client: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("DPoP", proof)
	ua := d.UserAgent
	if ua == "" {
		ua = userAgent
	}
	req.Header.Set("User-Agent", ua)
	hc := d.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("client: POST %s: %w", path, err)
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	if n := resp.Header.Get("DPoP-Nonce"); n != "" {
		d.mu.Lock()
		d.nonce = n
		d.mu.Unlock()
	}
	return resp, nil
}

// cancelOnClose ends a call's timeout context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// readAnswer reads and closes resp: its body (bounded) when the status is want, else
// the *APIError it describes.
func readAnswer(resp *http.Response, want int) ([]byte, error) {
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("client: read answer: %w", err)
	}
	if resp.StatusCode == want {
		return data, nil
	}
	e := &APIError{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	if json.Unmarshal(data, e) != nil || e.Code == "" {
		e.Code, e.Message = "", http.StatusText(resp.StatusCode)
	}
	return nil, e
}

// retryAfter reads a Retry-After of seconds (the only form the server sends).
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// AuthMessage is the socket's auth message (docs/protocol.md §5 step 2) answering
// nonce (a challenge or a reauth): the device's current token, a proof over nonce with
// htm GET and htu wsURL ("" for WSURL), and resume. Conn sends it itself; it is
// exported for tests that write it on a raw socket.
func (d *Device) AuthMessage(wsURL, nonce string, resume Resume) ([]byte, error) {
	if wsURL == "" {
		wsURL = d.WSURL()
	}
	tok := d.Credentials().Token
	proof, err := d.Key.Proof(http.MethodGet, wsURL, nonce, tok, d.now())
	if err != nil {
		return nil, err
	}
	msg, err := json.Marshal(authMsg{Type: "auth", Token: tok, Proof: proof, Since: resume.Since, Epoch: resume.Epoch, Feed: resume.Feed})
	if err != nil {
		return nil, fmt.Errorf("client: encode auth: %w", err)
	}
	return msg, nil
}

// WSURL is the socket's public URL: BaseURL with a ws or wss scheme, and /ws. It is
// the htu the socket proofs sign.
func (d *Device) WSURL() string {
	return "ws" + strings.TrimPrefix(d.BaseURL, "http") + "/ws"
}
