package httpx

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RateLimited is the refusal of a per-address allowance that is used up: 429
// rate_limited with a Retry-After of wait, rounded up to whole seconds (at least 1).
func RateLimited(wait time.Duration) *Error {
	secs := int(math.Ceil(wait.Seconds()))
	return &Error{Code: CodeRateLimited, Message: "too many attempts from this address; retry after " + strconv.Itoa(secs) + "s", RetryAfter: max(secs, 1)}
}

// ReadOptionalJSON decodes a JSON body that may be left out entirely (no body and no
// Content-Type) or be only whitespace; either leaves v as it is.
func ReadOptionalJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if r.ContentLength == 0 && r.Header.Get("Content-Type") == "" {
		return nil
	}
	body, err := ReadJSONBody(w, r, limit)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	return StrictJSON(body, v)
}
