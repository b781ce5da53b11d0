package broker

import "github.com/kioskfeed/kioskfeed/internal/httpx"

// ErrUnavailable is what every caller gets when NATS or JetStream cannot be reached:
// a 503 with Retry-After, never a 500, because the client did nothing wrong and a
// retry will work once the broker is back.
var ErrUnavailable = &httpx.Error{Code: httpx.CodeUnavailable, Message: "the event store is unreachable; retry shortly", RetryAfter: 2}
