package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/kioskfeed/kioskfeed/docs"
)

// maxRequestBody bounds what is read of a request's body to validate it (the server
// takes at most some 80 KiB): a test that sends a huge body on purpose still has it
// streamed to the server, unvalidated. maxBody bounds what is kept of an answer.
const (
	maxRequestBody = 1 << 20
	maxBody        = 4 << 20
)

// Validator checks exchanges against one OpenAPI document.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
	bodies *bodies
	seen   sync.Map // "METHOD /path/template status" → true, for SeenEnv
}

// SeenEnv names a file to which each validator appends every documented operation and
// status it saw answered, once per process: concatenated over the suites, it shows
// which answers of the document no test exercises.
const SeenEnv = "KIOSKFEED_APITEST_SEEN"

var registerDecoders sync.Once

// New loads and validates an OpenAPI document: an invalid one is an error, not a
// validator that lets everything through.
func New(spec []byte) (*Validator, error) {
	registerDecoders.Do(func() {
		openapi3filter.RegisterBodyDecoder("image/svg+xml", openapi3filter.FileBodyDecoder)
		openapi3filter.RegisterBodyDecoder("application/openmetrics-text", openapi3filter.FileBodyDecoder)
	})
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is not valid: %w", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route the OpenAPI document: %w", err)
	}
	b, err := newBodies(spec)
	if err != nil {
		return nil, fmt.Errorf("read the OpenAPI document's schemas: %w", err)
	}
	return &Validator{doc: doc, router: router, bodies: b}, nil
}

// Default is the validator of docs/openapi.json, loaded once.
var Default = sync.OnceValues(func() (*Validator, error) { return New(docs.OpenAPI) })

// Exchange is one request and its answer, as the validator sees them.
type Exchange struct {
	Request *http.Request
	// RequestBody is the body the request carried; BodyTooLarge says it was over
	// maxRequestBody, and is then not validated.
	RequestBody  []byte
	BodyTooLarge bool
	Status       int
	Header       http.Header
	Body         []byte
}

// IsAPI says whether path is part of the documented API (see the package doc).
func IsAPI(path string) bool {
	switch {
	case strings.HasPrefix(path, "/api/"), strings.HasPrefix(path, "/.well-known/"):
		return true
	}
	switch path {
	case "/ws", "/healthz", "/readyz", "/metrics", "/admin/live":
		return true
	}
	return false
}

// Check validates an exchange and says what is wrong with it, naming the method, the
// path and the status; nil when the document allows it.
func (v *Validator) Check(x Exchange) error {
	r := x.Request
	if !IsAPI(r.URL.Path) {
		return nil
	}
	where := fmt.Sprintf("%s %s → %d", r.Method, r.URL.Path, x.Status)
	route, params, err := v.router.FindRoute(r)
	if err != nil {
		// An unknown path or method may be refused in the error format: that is
		// documented for every path. Anything else is an undocumented endpoint.
		want, code := http.StatusNotFound, "not_found"
		if errors.Is(err, routers.ErrMethodNotAllowed) {
			want, code = http.StatusMethodNotAllowed, "method_not_allowed"
		}
		if x.Status == want || x.Status == http.StatusMisdirectedRequest {
			if x.Status == http.StatusMisdirectedRequest {
				code = "misdirected_request"
			}
			if e := v.checkError(x, code); e != nil {
				return fmt.Errorf("%s: not in docs/openapi.json (%v), and the refusal is not the error format: %v", where, err, e)
			}
			return nil
		}
		return fmt.Errorf("%s: undocumented endpoint: docs/openapi.json has no such operation (%v)", where, err)
	}
	if x.Status == http.StatusMisdirectedRequest { // the Host check answers for every path
		if e := v.checkError(x, "misdirected_request"); e != nil {
			return fmt.Errorf("%s: %v", where, e)
		}
		return nil
	}
	// JSON bodies are checked here with schemas compiled once (bodies.go); the rest,
	// by kin-openapi.
	jsonRequest := isJSON(r.Header.Get("Content-Type"))
	jsonAnswer := isJSON(x.Header.Get("Content-Type"))
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		ExcludeRequestBody:    x.BodyTooLarge || jsonRequest,
		ExcludeResponseBody:   jsonAnswer,
		AuthenticationFunc:    credentialPresent,
	}
	in := &openapi3filter.RequestValidationInput{Request: cloneWithBody(r, x.RequestBody), PathParams: params, Route: route, Options: opts}
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	if reqErr == nil && jsonRequest && !x.BodyTooLarge {
		reqErr = v.bodies.checkRequestBody(route, r, x.RequestBody)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: x.Status, Header: x.Header, Options: opts}
	out.SetBodyBytes(x.Body)
	v.markSeen(route, x.Status)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Errorf("%s: the answer does not follow docs/openapi.json: %s", where, reason(err))
	}
	if jsonAnswer {
		if err := v.bodies.checkResponseBody(route, x.Status, x.Header.Get("Content-Type"), x.Body); err != nil {
			return fmt.Errorf("%s: the answer does not follow docs/openapi.json: %s", where, truncate(err.Error(), 1500))
		}
	}
	if reqErr != nil && (x.Status < 400 || x.Status >= 500) {
		return fmt.Errorf("%s: the server accepted a request docs/openapi.json refuses: %s", where, reason(reqErr))
	}
	return nil
}

func (v *Validator) markSeen(route *routers.Route, status int) {
	file := os.Getenv(SeenEnv)
	if file == "" {
		return
	}
	key := fmt.Sprintf("%s %s %d", route.Method, route.Path, status)
	if _, dup := v.seen.LoadOrStore(key, true); dup {
		return
	}
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = fmt.Fprintln(f, key)
}

// checkError checks that an answer is the error format with the given code.
func (v *Validator) checkError(x Exchange, code string) error {
	var body struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	dec := json.NewDecoder(bytes.NewReader(x.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return fmt.Errorf("the body %q is not {\"error\",\"message\"}: %v", truncate(string(x.Body), 200), err)
	}
	if body.Error != code || body.Message == "" {
		return fmt.Errorf("the body %q is not {\"error\":%q,\"message\":…}", truncate(string(x.Body), 200), code)
	}
	return nil
}

// credentialPresent is the AuthenticationFunc: the document's security schemes say
// where a credential goes, and a request must carry one there; whether it is good is
// the server's to say (401), which the answer's validation then checks.
func credentialPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	s := in.SecurityScheme
	switch {
	case s.Type == "http":
		h := r.Header.Get("Authorization")
		if scheme, _, ok := strings.Cut(h, " "); !ok || !strings.EqualFold(scheme, s.Scheme) {
			return fmt.Errorf("no Authorization: %s credential", s.Scheme)
		}
	case s.Type == "apiKey" && s.In == "header":
		if r.Header.Get(s.Name) == "" {
			return fmt.Errorf("no %s header", s.Name)
		}
	case s.Type == "apiKey" && s.In == "cookie":
		if _, err := r.Cookie(s.Name); err != nil {
			if _, err := r.Cookie("__Host-" + s.Name); err != nil {
				return fmt.Errorf("no %s cookie", s.Name)
			}
		}
	default:
		return fmt.Errorf("security scheme %s/%s is not checked by apitest", s.Type, s.In)
	}
	return nil
}

func cloneWithBody(r *http.Request, body []byte) *http.Request {
	c := r.Clone(context.Background())
	c.Body = io.NopCloser(bytes.NewReader(body))
	c.ContentLength = int64(len(body))
	c.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return c
}

// reason is the validator's reason without the schema dump kin-openapi appends.
func reason(err error) string {
	s := err.Error()
	if i := strings.Index(s, "\nSchema:"); i > 0 {
		if j := strings.Index(s, "\nValue:"); j > i {
			s = s[:i] + " (value:" + strings.Join(strings.Fields(s[j+len("\nValue:"):]), " ") + ")"
		} else {
			s = s[:i]
		}
	}
	return truncate(s, 1500)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
