package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// slowDownStep is what RFC 8628 §3.5 makes a client add to its interval at each
// slow_down; the server adds the same to the interval it enforces.
const slowDownStep = 5 * time.Second

// PairRequest is a pending pairing by code (docs/protocol.md §3b): the answer of POST
// /api/pair/requests. Interval is the poll interval in seconds; Poll adds five at each
// slow_down, so it always says how often the server lets this request be polled.
type PairRequest struct {
	RequestID               string `json:"request_id"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// RequestPairing asks for a code bound to this device's key, which the display shows
// and an administrator approves: nothing secret is typed on the display. name is the
// display's suggestion for the admin ("" for none).
func (d *Device) RequestPairing(ctx context.Context, name string) (*PairRequest, error) {
	body := map[string]string{}
	if name != "" {
		body["name"] = name
	}
	data, err := d.call(ctx, "/api/pair/requests", body, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	var pr PairRequest
	if err := json.Unmarshal(data, &pr); err != nil || pr.RequestID == "" || pr.UserCode == "" {
		return nil, errors.New("client: /api/pair/requests: unreadable answer")
	}
	if pr.Interval < 1 {
		pr.Interval = 1
	}
	return &pr, nil
}

// Poll asks once whether req was approved. Approved, the device keeps its id and first
// token (as PairWithPIN) and Poll returns nil; otherwise the *APIError:
// authorization_pending, slow_down (req.Interval has grown by 5 s), expired_token
// (ErrPairingExpired), access_denied (ErrPairingDenied), ...
func (d *Device) Poll(ctx context.Context, req *PairRequest) error {
	path := "/api/pair/requests/" + url.PathEscape(req.RequestID) + "/poll"
	data, err := d.call(ctx, path, struct{}{}, http.StatusOK)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Code == "slow_down" {
		req.Interval += int(slowDownStep / time.Second)
	}
	if err != nil {
		return err
	}
	return d.keepToken(path, data)
}

// WaitApproved polls req every req.Interval seconds until it is approved (nil), refused
// (ErrPairingExpired, ErrPairingDenied or another *APIError), or ctx ends. A network
// error or a 429/503 on one poll is retried at the next interval, so a blip does not
// end a pairing that an administrator is about to approve.
func (d *Device) WaitApproved(ctx context.Context, req *PairRequest) error {
	if req.ExpiresIn > 0 { // the server says expired_token by then; a silent one cannot
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, time.Duration(req.ExpiresIn)*time.Second+defaultCallTimeout, ErrPairingExpired)
		defer cancel()
	}
	for {
		wait := time.Duration(max(req.Interval, 1)) * time.Second
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
		err := d.Poll(ctx, req)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		var apiErr *APIError
		if !errors.As(err, &apiErr) {
			continue // the network: try again at the next interval
		}
		switch {
		case apiErr.Code == "authorization_pending", apiErr.Code == "slow_down":
		case apiErr.Status == http.StatusTooManyRequests, apiErr.Status == http.StatusServiceUnavailable:
			if extra := apiErr.RetryAfter - wait; extra > 0 {
				if err := sleep(ctx, extra); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("client: pairing by code: %w", err)
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
