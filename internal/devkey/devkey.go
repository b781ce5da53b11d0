// Package devkey is a tablet's device key and pairing client for programs, not tests:
// a P-256 key, its RFC 7638 thumbprint, DPoP proofs signed as the PWA signs them with
// WebCrypto (ES256, raw r‖s, header typ/alg/jwk with kty, crv, x, y only), and pairing
// by PIN and token refresh over HTTP.
//
// It exists so that the load tool, which is linked into the production binary, does not
// pull the testing package in through pairing/pairingtest (whose helpers take a
// testing.TB). pairingtest stays the tests' helper; the two are checked against each
// other and against the server's verifier in devkey_test.go.
package devkey

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// ErrNotDPoP is an answer from /api/pair or /api/token that holds no DPoP token.
var ErrNotDPoP = errors.New("devkey: answer is not a DPoP token")

var b64 = base64.RawURLEncoding

// Key is one tablet's P-256 key pair.
type Key struct {
	priv *ecdsa.PrivateKey
	jwk  string // the proof header's jwk member, members in the PWA's order
	jkt  string
}

// NewKey makes a fresh P-256 key, as generateKey({name:"ECDSA", namedCurve:"P-256"})
// does in the PWA.
func NewKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return FromPrivateKey(priv)
}

// FromPrivateKey wraps an existing P-256 key.
func FromPrivateKey(priv *ecdsa.PrivateKey) (*Key, error) {
	if priv.Curve != elliptic.P256() {
		return nil, errors.New("devkey: key is not P-256")
	}
	raw, err := priv.PublicKey.Bytes() // 0x04 || x || y, 32 bytes each
	if err != nil {
		return nil, err
	}
	x, y := b64.EncodeToString(raw[1:33]), b64.EncodeToString(raw[33:65])
	// RFC 7638: the required members in lexicographic order, no whitespace.
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	return &Key{
		priv: priv,
		jwk:  `{"kty":"EC","crv":"P-256","x":"` + x + `","y":"` + y + `"}`,
		jkt:  b64.EncodeToString(sum[:]),
	}, nil
}

// JKT is the key's RFC 7638 SHA-256 thumbprint, base64url: the device's identity.
func (k *Key) JKT() string { return k.jkt }

// Proof signs a DPoP proof for method and url (the htu: no query, no fragment), with
// nonce and the ath of accessToken when they are not empty, dated iat (zero: now).
func (k *Key) Proof(method, url, nonce, accessToken string, iat time.Time) (string, error) {
	if iat.IsZero() {
		iat = time.Now()
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	claims := struct {
		JTI   string `json:"jti"`
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		IAT   int64  `json:"iat"`
		Nonce string `json:"nonce,omitempty"`
		ATH   string `json:"ath,omitempty"`
	}{JTI: b64.EncodeToString(jti), HTM: method, HTU: url, IAT: iat.Unix(), Nonce: nonce}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims.ATH = b64.EncodeToString(sum[:])
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString([]byte(`{"typ":"dpop+jwt","alg":"ES256","jwk":`+k.jwk+`}`)) + "." + b64.EncodeToString(c)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, digest[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64) // what crypto.subtle.sign returns: r‖s, 32 bytes each
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64.EncodeToString(sig), nil
}

// Tablet pairs and refreshes as the tablet PWA does: one key, DPoP proofs with the
// server's last nonce (retrying once on use_dpop_nonce), and no secret but the key.
type Tablet struct {
	BaseURL string       // the server's public URL, which the proofs' htu are built from
	Key     *Key         // NewTablet makes one
	HTTP    *http.Client // default http.DefaultClient

	mu       sync.Mutex
	nonce    string
	DeviceID string
	Feed     string
	Token    string
	Expires  time.Time
}

// NewTablet makes a tablet with a fresh key, not yet paired.
func NewTablet(baseURL string) (*Tablet, error) {
	k, err := NewKey()
	if err != nil {
		return nil, err
	}
	return &Tablet{BaseURL: strings.TrimRight(baseURL, "/"), Key: k}, nil
}

// APIError is a refusal in the JSON error format of the protocol (§1).
type APIError struct {
	Status  int
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *APIError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// Pair redeems a PIN for feed (POST /api/pair) and keeps the device id and first token.
func (t *Tablet) Pair(ctx context.Context, feed, pin, name string) error {
	body := map[string]string{"feed": feed, "pin": pin}
	if name != "" {
		body["name"] = name
	}
	return t.tokenCall(ctx, "/api/pair", body, http.StatusCreated)
}

// Refresh gets a fresh access token for the paired device (POST /api/token).
func (t *Tablet) Refresh(ctx context.Context) error {
	t.mu.Lock()
	id := t.DeviceID
	t.mu.Unlock()
	return t.tokenCall(ctx, "/api/token", map[string]string{"device_id": id}, http.StatusOK)
}

// WSProof signs the proof of a WebSocket auth message: htm GET, htu the ws URL, the
// challenge as nonce, and the ath of the current token.
func (t *Tablet) WSProof(wsURL, challenge string) (string, error) {
	t.mu.Lock()
	tok := t.Token
	t.mu.Unlock()
	return t.Key.Proof(http.MethodGet, wsURL, challenge, tok, time.Time{})
}

// CurrentToken is the access token and its expiry.
func (t *Tablet) CurrentToken() (string, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.Token, t.Expires
}

func (t *Tablet) tokenCall(ctx context.Context, path string, body any, want int) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		data, err := t.post(ctx, path, raw, want)
		var apiErr *APIError
		if errors.As(err, &apiErr) && apiErr.Code == "use_dpop_nonce" && attempt == 0 {
			continue // the answer brought the nonce to use: retry once (RFC 9449 §8)
		}
		if err != nil {
			return err
		}
		var tr struct {
			DeviceID    string `json:"device_id"`
			Feed        string `json:"feed"`
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
			ExpiresIn   int    `json:"expires_in"`
		}
		if err := json.Unmarshal(data, &tr); err != nil {
			return fmt.Errorf("%s: unreadable answer: %w", path, err)
		}
		if tr.TokenType != "DPoP" || tr.AccessToken == "" {
			return fmt.Errorf("%s: %w", path, ErrNotDPoP)
		}
		t.mu.Lock()
		t.DeviceID, t.Feed, t.Token = tr.DeviceID, tr.Feed, tr.AccessToken
		t.Expires = time.Now().Add(time.Duration(tr.ExpiresIn) * time.Second)
		t.mu.Unlock()
		return nil
	}
}

// post sends body to path with a fresh proof and the last nonce, keeps the answer's
// nonce, and returns the body when the status is want, else an *APIError.
func (t *Tablet) post(ctx context.Context, path string, body []byte, want int) ([]byte, error) {
	t.mu.Lock()
	nonce := t.nonce
	t.mu.Unlock()
	proof, err := t.Key.Proof(http.MethodPost, t.BaseURL+path, nonce, "", time.Time{})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("DPoP", proof)
	req.Header.Set("User-Agent", "kioskfeed-loadtest/1")
	client := t.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if n := resp.Header.Get("DPoP-Nonce"); n != "" {
		t.mu.Lock()
		t.nonce = n
		t.mu.Unlock()
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == want {
		return data, nil
	}
	e := &APIError{Status: resp.StatusCode}
	_ = json.Unmarshal(data, e)
	return nil, e
}
