package apitest

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/routers"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// bodies validates JSON bodies with schemas compiled once each: kin-openapi compiles a
// schema anew for every value it checks under OpenAPI 3.1 (about a millisecond, ten
// times that with the race detector), which would slow the tests of rate limits past
// the allowances they measure. The whole document is one JSON Schema resource, so a
// body's schema is a JSON pointer into it and its $refs resolve as they are written.
type bodies struct {
	mu       sync.Mutex
	compiler *jsonschema.Compiler
	cache    map[string]*jsonschema.Schema
	doc      map[string]any
}

const docURL = "mem:///openapi.json"

func newBodies(spec []byte) (*bodies, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(spec))
	if err != nil {
		return nil, err
	}
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the document is not a JSON object")
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(docURL, doc); err != nil {
		return nil, err
	}
	return &bodies{compiler: c, cache: map[string]*jsonschema.Schema{}, doc: m}, nil
}

// isJSON says whether a media type is JSON (application/json or a +json type).
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// schemaFor compiles (once) the schema at pointer.
func (b *bodies) schemaFor(pointer string) (*jsonschema.Schema, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.cache[pointer]; ok {
		return s, nil
	}
	s, err := b.compiler.Compile(docURL + "#" + pointer)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", pointer, err)
	}
	b.cache[pointer] = s
	return s, nil
}

// lookup follows a JSON pointer in the document, and a $ref where it lands on one.
func (b *bodies) lookup(pointer string) (map[string]any, string) {
	var cur any = b.doc
	for _, tok := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, ""
		}
		cur = m[unescapePointer.Replace(tok)]
	}
	m, _ := cur.(map[string]any)
	if ref, ok := m["$ref"].(string); ok && strings.HasPrefix(ref, "#/") {
		return b.lookup(ref[1:])
	}
	if m == nil {
		return nil, ""
	}
	return m, pointer
}

// JSON pointer tokens (RFC 6901): "~" and "/" escaped.
var (
	escapePointer   = strings.NewReplacer("~", "~0", "/", "~1")
	unescapePointer = strings.NewReplacer("~1", "/", "~0", "~")
)

func escape(s string) string { return escapePointer.Replace(s) }

// mediaPointer is the pointer of the schema of contentType in the content object at
// pointer, or "" when it has none.
func (b *bodies) mediaPointer(pointer, contentType string) (string, error) {
	obj, at := b.lookup(pointer)
	if obj == nil {
		return "", nil
	}
	content, _ := obj["content"].(map[string]any)
	if len(content) == 0 {
		return "", nil
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	if _, ok := content[mt]; !ok {
		return "", fmt.Errorf("content type %q is not documented", contentType)
	}
	if media, _ := content[mt].(map[string]any); media["schema"] == nil {
		return "", nil
	}
	return at + "/content/" + escape(mt) + "/schema", nil
}

func (b *bodies) validate(pointer string, body []byte) error {
	s, err := b.schemaFor(pointer)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("the body is not JSON: %v", err)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("%s", flatten(err))
	}
	return nil
}

// flatten turns a jsonschema error into one line: its causes, without the schema's
// address the first line names.
func flatten(err error) string {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	if len(lines) > 1 {
		lines = lines[1:]
	}
	for i, l := range lines {
		lines[i] = strings.TrimLeft(strings.TrimSpace(l), "- ")
	}
	return strings.Join(lines, "; ")
}

func opPointer(route *routers.Route) string {
	return "/paths/" + escape(route.Path) + "/" + strings.ToLower(route.Method)
}

// checkRequestBody validates a JSON request body against its operation's schema.
func (b *bodies) checkRequestBody(route *routers.Route, r *http.Request, body []byte) error {
	rb, _ := b.lookup(opPointer(route) + "/requestBody")
	if rb == nil {
		if len(body) > 0 {
			return fmt.Errorf("a body, where the operation takes none")
		}
		return nil
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if req, _ := rb["required"].(bool); req {
			return fmt.Errorf("no body, where one is required")
		}
		return nil
	}
	p, err := b.mediaPointer(opPointer(route)+"/requestBody", r.Header.Get("Content-Type"))
	if err != nil || p == "" {
		return err
	}
	if err := b.validate(p, body); err != nil {
		return fmt.Errorf("request body: %v", err)
	}
	return nil
}

// checkResponseBody validates a JSON answer against the schema of its status, or of
// the operation's "default" answer; an undocumented status is kin-openapi's to report.
func (b *bodies) checkResponseBody(route *routers.Route, status int, contentType string, body []byte) error {
	base := opPointer(route) + "/responses/"
	at := base + strconv.Itoa(status)
	if obj, _ := b.lookup(at); obj == nil {
		at = base + "default"
		if obj, _ := b.lookup(at); obj == nil {
			return nil
		}
	}
	p, err := b.mediaPointer(at, contentType)
	if err != nil || p == "" {
		return err
	}
	if err := b.validate(p, body); err != nil {
		return fmt.Errorf("response body: %v", err)
	}
	return nil
}
