package bridge

import (
	"context"

	"github.com/kioskfeed/kioskfeed/broker"
)

// Authenticator checks what a tablet sends in its auth message: the access token, the
// DPoP proof over the challenge nonce (htm GET, htu the ws URL), and the device's
// standing. pairing.Authority satisfies it; the bridge never parses a JWT itself.
//
// Errors: broker.ErrCredentialInvalid → close 4401, broker.ErrDeviceRevoked → 4403,
// anything else (the replay cache is unreachable) → 1011.
type Authenticator interface {
	Authenticate(ctx context.Context, token, proof, nonce, htu string) (broker.Identity, error)
}

// Revocations tells the bridge the moment a device is revoked on any instance, so it can
// close that device's socket (4403).
type Revocations interface {
	OnRevoke(fn func(deviceID, feed string))
}
