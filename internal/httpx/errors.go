package httpx

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// Codes of the JSON error body of docs/protocol.md §1. One table (statusOf) maps them to
// HTTP statuses so every handler of every package answers the same way.
const (
	CodeInvalidRequest   = "invalid_request"
	CodeUseDPoPNonce     = "use_dpop_nonce"
	CodeInvalidDPoPProof = "invalid_dpop_proof"
	CodeInvalidToken     = "invalid_token"
	CodeInvalidPIN       = "invalid_pin"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeMisdirected      = "misdirected_request"
	CodeTooLarge         = "too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeRateLimited      = "rate_limited"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
)

var statusOf = map[string]int{
	CodeInvalidRequest:   http.StatusBadRequest,
	CodeUseDPoPNonce:     http.StatusBadRequest,
	CodeInvalidDPoPProof: http.StatusUnauthorized,
	CodeInvalidToken:     http.StatusUnauthorized,
	CodeInvalidPIN:       http.StatusUnauthorized,
	CodeForbidden:        http.StatusForbidden,
	CodeNotFound:         http.StatusNotFound,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	CodeMisdirected:      http.StatusMisdirectedRequest,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia: http.StatusUnsupportedMediaType,
	CodeRateLimited:      http.StatusTooManyRequests,
	CodeUnavailable:      http.StatusServiceUnavailable,
	CodeInternal:         http.StatusInternalServerError,
}

// Error is a domain error with a protocol code and a message a person can act on.
// Its Message is shown to clients, so it must never hold a secret or a Go error
// string from a dependency.
type Error struct {
	Code    string
	Message string
	// RetryAfter, in seconds, is sent as Retry-After with rate_limited and unavailable.
	RetryAfter int
	// HTTPStatus overrides the code's usual status where the protocol gives one code
	// two statuses (invalid_dpop_proof is 400 at the token endpoints, RFC 9449 §5.2,
	// and 401 where a token is presented).
	HTTPStatus int
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf is shorthand for a client-facing *Error.
func Errorf(code, message string) *Error { return &Error{Code: code, Message: message} }

// Status is the HTTP status of a code; unknown codes are internal errors.
func Status(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// WriteJSON answers with a JSON body, with nosniff so that no browser reads it as
// anything else (whatever wraps the handler). Encoding errors are ignored: the status
// line has gone out already and the client sees a truncated body.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers err in the format of docs/protocol.md §1. An error that is not an
// *Error is internal: the caller must have logged its detail already, and the client
// learns only that something went wrong on our side.
func WriteError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: CodeInternal, Message: "internal error"}
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	status := e.HTTPStatus
	if status == 0 {
		status = Status(e.Code)
	}
	WriteJSON(w, status, map[string]string{"error": e.Code, "message": e.Message})
}

// JSONErrors wraps the whole mux so that the answers ServeMux writes itself (404 for an
// unknown path, 405 for a known path with another method) use the JSON error format
// too. Handlers that already answer JSON pass through untouched.
func JSONErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&plainErrorWriter{ResponseWriter: w}, r)
	})
}

type plainErrorWriter struct {
	http.ResponseWriter
	swallow bool
}

func (w *plainErrorWriter) WriteHeader(status int) {
	if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
		if ct := w.Header().Get("Content-Type"); strings.HasPrefix(ct, "text/plain") {
			w.swallow = true
			code, msg := CodeNotFound, "no such endpoint"
			if status == http.StatusMethodNotAllowed {
				code, msg = CodeMethodNotAllowed, "this endpoint does not take that method; see the Allow header"
			}
			WriteError(w.ResponseWriter, Errorf(code, msg))
			return
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *plainErrorWriter) Write(p []byte) (int, error) {
	if w.swallow {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer (hijacking for the
// WebSocket upgrade, flushing).
func (w *plainErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
