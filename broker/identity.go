package broker

import (
	"errors"
	"time"
)

// Identity is an authenticated tablet: what the bridge needs to know of a device once
// pairing has checked its token and proof. It lives here, in the package both import,
// so that pairing can satisfy the bridge's Authenticator without either importing the
// other.
type Identity struct {
	DeviceID string
	Feed     string
	// Expires is when the access token stops being valid; the bridge asks for re-auth
	// before then.
	Expires time.Time
	// MovedSeq, for a device moved from another feed, is the newest seq of that feed
	// when it moved: a since up to it, from a tablet that does not say its feed, is
	// the old feed's (docs/protocol.md #bulk-actions). 0: never moved.
	MovedSeq uint64
}

// Why an authentication failed, as the bridge's close codes need it (docs/protocol.md §5).
var (
	// ErrCredentialInvalid: the token or proof is invalid or expired (close 4401: get a
	// new token and reconnect).
	ErrCredentialInvalid = errors.New("token or proof invalid")
	// ErrDeviceRevoked: the device is revoked or unknown (close 4403: forget the device).
	ErrDeviceRevoked = errors.New("device revoked or unknown")
)
