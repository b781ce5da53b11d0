package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/kioskfeed/kioskfeed/docs"
	"github.com/kioskfeed/kioskfeed/internal/apitest"
)

// TestServesTheSchemas: a running server hands out every JSON Schema of docs/schemas/
// and the AsyncAPI document, without a credential, as docs/openapi.json describes them
// (the client validates each exchange), and an unknown schema is a JSON 404.
func TestServesTheSchemas(t *testing.T) {
	s := startServe(t, t.TempDir())
	client := apitest.Client(t)
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := client.Get(s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	for _, name := range docs.SchemaNames() {
		want, _ := docs.Schema(name)
		resp, body := get("/api/schemas/" + name)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) || resp.Header.Get("ETag") == "" {
			t.Errorf("GET /api/schemas/%s: %d, %d bytes, ETag %q; want 200 with the file", name, resp.StatusCode, len(body), resp.Header.Get("ETag"))
		}
	}
	resp, body := get("/api/asyncapi.yaml")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, docs.AsyncAPI()) {
		t.Errorf("GET /api/asyncapi.yaml: %d, %d bytes; want 200 with docs/asyncapi.yaml", resp.StatusCode, len(body))
	}
	if resp, body := get("/api/schemas/nope.json"); resp.StatusCode != http.StatusNotFound || !bytes.Contains(body, []byte(`"error":"not_found"`)) {
		t.Errorf("GET /api/schemas/nope.json: %d %s; want 404 not_found", resp.StatusCode, body)
	}

	// A validator given only the served address of server-message.json finds the rest
	// beside it (relative $refs, no $id), and judges frames with it.
	c := jsonschema.NewCompiler()
	c.UseLoader(jsonschema.SchemeURLLoader{"http": httpLoader{client}})
	sch, err := c.Compile(s.base + "/api/schemas/server-message.json")
	if err != nil {
		t.Fatalf("compile the served schemas: %v", err)
	}
	for frame, ok := range map[string]bool{`{"type":"synced","seq":3}`: true, `{"type":"synced","seq":3,"x":1}`: false, `{"type":"hello"}`: false} {
		v, _ := jsonschema.UnmarshalJSON(strings.NewReader(frame))
		if err := sch.Validate(v); (err == nil) != ok {
			t.Errorf("served server-message.json on %s: %v, want valid %v", frame, err, ok)
		}
	}
}

// httpLoader loads a schema over HTTP, for the compiler.
type httpLoader struct{ c *http.Client }

func (l httpLoader) Load(url string) (any, error) {
	resp, err := l.c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return jsonschema.UnmarshalJSON(resp.Body)
}
