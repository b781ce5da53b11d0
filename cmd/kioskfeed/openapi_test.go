package main

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/kioskfeed/kioskfeed/docs"
	"github.com/kioskfeed/kioskfeed/internal/apitest"
)

// TestServesTheOpenAPIDocument: a running server hands out docs/openapi.json, without a
// credential, cacheable and revalidated by its ETag.
func TestServesTheOpenAPIDocument(t *testing.T) {
	s := startServe(t, t.TempDir())
	client := apitest.Client(t)
	resp, err := client.Get(s.base + "/api/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/openapi.json: %d %q, want 200 application/json", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !bytes.Equal(body, docs.OpenAPI) {
		t.Fatalf("GET /api/openapi.json served %d bytes that are not docs/openapi.json's %d", len(body), len(docs.OpenAPI))
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=3600" {
		t.Errorf("Cache-Control %q, want public, max-age=3600", cc)
	}
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req, _ := http.NewRequest(http.MethodGet, s.base+"/api/openapi.json", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("GET /api/openapi.json with If-None-Match: its ETag: %d, want 304", resp.StatusCode)
	}
}
