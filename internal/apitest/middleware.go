package apitest

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
)

// reporter hands the failures of one test to it, from any goroutine, until its cleanup
// has run (a handler that finishes later cannot fail a finished test).
type reporter struct {
	tb   testing.TB
	mu   sync.Mutex
	done bool
}

func newReporter(tb testing.TB) *reporter {
	rp := &reporter{tb: tb}
	tb.Cleanup(func() {
		rp.mu.Lock()
		rp.done = true
		rp.mu.Unlock()
	})
	return rp
}

func (rp *reporter) fail(err error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if !rp.done {
		rp.tb.Errorf("apitest: %v", err)
	}
}

func mustDefault(tb testing.TB) *Validator {
	tb.Helper()
	v, err := Default()
	if err != nil {
		tb.Fatalf("apitest: %v", err)
	}
	return v
}

// Handler wraps the handler a test serves so that every exchange through it is
// validated against docs/openapi.json; a failure fails tb.
func Handler(tb testing.TB, next http.Handler) http.Handler {
	tb.Helper()
	return mustDefault(tb).Handler(tb, next)
}

// Handler is the package's Handler with this validator's document.
func (v *Validator) Handler(tb testing.TB, next http.Handler) http.Handler {
	return v.Wrap(next, newReporter(tb).fail)
}

// Wrap is Handler for a server that outlives one test (one a TestMain starts): each
// failure goes to fail, from the handler's goroutine.
func (v *Validator) Wrap(next http.Handler, fail func(error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !IsAPI(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		body, tooLarge := readBounded(r)
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		status := rec.status
		if rec.hijacked {
			status = http.StatusSwitchingProtocols
		} else if status == 0 {
			status = http.StatusOK
		}
		if err := v.Check(Exchange{Request: r, RequestBody: body, BodyTooLarge: tooLarge,
			Status: status, Header: rec.header, Body: rec.body.Bytes()}); err != nil {
			fail(err)
		}
	})
}

// readBounded reads up to maxRequestBody of r's body for the validator and leaves the body
// whole for the handler.
func readBounded(r *http.Request) (body []byte, tooLarge bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, false
	}
	head, _ := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
	if len(head) > maxRequestBody {
		return nil, true
	}
	return head, false
}

// recorder passes an answer through and keeps its status, headers and (bounded) body.
type recorder struct {
	http.ResponseWriter
	status   int
	header   http.Header
	body     bytes.Buffer
	hijacked bool
}

func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 && status >= 200 {
		rec.status = status
		rec.header = rec.ResponseWriter.Header().Clone()
	}
	rec.ResponseWriter.WriteHeader(status)
}

func (rec *recorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	if room := maxBody - rec.body.Len(); room > 0 {
		rec.body.Write(p[:min(len(p), room)])
	}
	return rec.ResponseWriter.Write(p)
}

func (rec *recorder) Flush() {
	if f, ok := rec.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack lets the WebSocket upgrade through; the upgrader writes the 101 itself.
func (rec *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	rec.hijacked = true
	return http.NewResponseController(rec.ResponseWriter).Hijack()
}

func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// Transport wraps base (http.DefaultTransport when nil) so that every exchange a
// client makes is validated; for servers a test runs but cannot wrap, such as the
// whole binary's.
func Transport(tb testing.TB, base http.RoundTripper) http.RoundTripper {
	tb.Helper()
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{v: mustDefault(tb), rp: newReporter(tb), base: base}
}

// Client is an http.Client with Transport.
func Client(tb testing.TB) *http.Client {
	tb.Helper()
	return &http.Client{Transport: Transport(tb, nil)}
}

type transport struct {
	v    *Validator
	rp   *reporter
	base http.RoundTripper
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !IsAPI(r.URL.Path) {
		return t.base.RoundTrip(r)
	}
	var body []byte
	tooLarge := false
	if r.Body != nil && r.Body != http.NoBody {
		head, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
		if err != nil {
			return nil, err
		}
		r2 := r.Clone(r.Context())
		r2.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
		r = r2
		if len(head) > maxRequestBody {
			tooLarge = true
		} else {
			body = head
		}
	}
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if err := t.v.Check(Exchange{Request: r, RequestBody: body, BodyTooLarge: tooLarge, Status: resp.StatusCode, Header: resp.Header}); err != nil {
			t.rp.fail(err)
		}
		return resp, nil
	}
	got, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	rest := resp.Body
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(got), rest), rest}
	if err != nil {
		return resp, nil // the caller sees the read error
	}
	if err := t.v.Check(Exchange{Request: r, RequestBody: body, BodyTooLarge: tooLarge,
		Status: resp.StatusCode, Header: resp.Header, Body: got}); err != nil {
		t.rp.fail(err)
	}
	return resp, nil
}
