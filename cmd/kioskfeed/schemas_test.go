package main

import (
	"bytes"
	"io"
	"net/http"
	"testing"

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
}
