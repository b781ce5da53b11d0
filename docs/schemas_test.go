package docs_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kioskfeed/kioskfeed/docs"
)

// TestSchemasServed: every schema file and the AsyncAPI document are served as
// committed, revalidated by their ETag; an unknown or path-like name is a JSON 404.
func TestSchemasServed(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET /api/schemas/{name}", docs.SchemasHandler())
	mux.Handle("GET /api/asyncapi.yaml", docs.AsyncAPIHandler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path, etag string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	names := docs.SchemaNames()
	if len(names) < 15 {
		t.Fatalf("only %d schemas embedded: %v", len(names), names)
	}
	for _, name := range names {
		want, _ := docs.Schema(name)
		resp, body := get("/api/schemas/"+name, "")
		if resp.StatusCode != 200 || !bytes.Equal(body, want) || resp.Header.Get("Content-Type") != "application/schema+json" {
			t.Errorf("%s: %d %q, %d bytes; want 200 with the file", name, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		if !json.Valid(body) {
			t.Errorf("%s is not JSON", name)
		}
		if again, _ := get("/api/schemas/"+name, resp.Header.Get("ETag")); again.StatusCode != http.StatusNotModified {
			t.Errorf("%s with its ETag: %d, want 304", name, again.StatusCode)
		}
	}
	resp, body := get("/api/asyncapi.yaml", "")
	if resp.StatusCode != 200 || !bytes.Equal(body, docs.AsyncAPI()) || resp.Header.Get("Content-Type") != "application/yaml" {
		t.Errorf("asyncapi.yaml: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, path := range []string{"/api/schemas/nope.json", "/api/schemas/..%2fdoc.go", "/api/schemas/%2e%2e", "/api/schemas/doc.go"} {
		resp, body := get(path, "")
		var e struct{ Error, Message string }
		if resp.StatusCode != 404 || json.Unmarshal(body, &e) != nil || e.Error != "not_found" || e.Message == "" {
			t.Errorf("%s: %d %s; want a JSON 404", path, resp.StatusCode, body)
		}
	}
}
