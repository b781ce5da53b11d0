package docs

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
)

// OpenAPI is the OpenAPI 3.1 document of the HTTP API (openapi.json): every endpoint of
// protocol.md, its answers, the error format and the security schemes. The tests
// validate every request and response against it (internal/apitest).
//
//go:embed openapi.json
var OpenAPI []byte

// OpenAPIHandler serves OpenAPI as GET /api/openapi.json: no credential (the document
// holds no secret), cacheable for an hour and revalidated by its ETag, so a generator or
// a producer's tooling can fetch it from any running server.
func OpenAPIHandler() http.Handler {
	sum := sha256.Sum256(OpenAPI)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "public, max-age=3600")
		h.Set("ETag", etag)
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", "application/json")
		_, _ = w.Write(OpenAPI)
	})
}
