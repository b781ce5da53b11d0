package docs

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"
)

// SchemaBase is the base URI validators in this module load the schemas under (each
// file as SchemaBase and its name). The files have no $id: their $refs are relative
// ("defs.json#/$defs/seq"), so they resolve wherever the files are read from together
// (docs/schemas/ in the repository, or /api/schemas/ on a running server).
const SchemaBase = "https://github.com/kioskfeed/kioskfeed/docs/schemas/"

// The JSON Schemas (draft 2020-12) of the socket's messages, one file per message type
// (docs/protocol.md §5: <type>.json), server-message.json and client-message.json (any
// frame of one direction, told apart by its type), defs.json (what they share), and the
// NATS bodies: producer-event.json (feeds.<feed>.<kind>) and alert.json
// (kioskfeed.alerts.<type>).
//
//go:embed schemas/*.json
var schemaFiles embed.FS

// The AsyncAPI 3.0 document: the /ws channel and the NATS subjects, its messages
// referencing the schemas by their file names.
//
//go:embed asyncapi.yaml
var asyncAPI []byte

// Schemas is the schema files, by file name ("welcome.json").
func Schemas() fs.FS {
	sub, err := fs.Sub(schemaFiles, "schemas")
	if err != nil {
		panic(err) // the embedded folder exists: the build checks the pattern
	}
	return sub
}

// SchemaNames lists the schema files, sorted.
func SchemaNames() []string {
	entries, _ := schemaFiles.ReadDir("schemas")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// Schema is one schema file's bytes by its file name, and false for a name that is
// none of them (including any path with a separator in it).
func Schema(name string) ([]byte, bool) {
	if name == "" || strings.ContainsAny(name, `/\`) || path.Ext(name) != ".json" {
		return nil, false
	}
	b, err := schemaFiles.ReadFile("schemas/" + name)
	return b, err == nil
}

// AsyncAPI is the AsyncAPI document (YAML), as committed.
func AsyncAPI() []byte { return slices.Clone(asyncAPI) }

// SchemasHandler serves the schema files as GET /api/schemas/{name} (a route with a
// {name} wildcard), and AsyncAPIHandler the AsyncAPI document as GET /api/asyncapi.yaml:
// no credential (they hold no secret), cacheable for an hour and revalidated by their
// ETag, so a generator or a producer's tooling can take them from any running server.
// An unknown name is 404 in the JSON error format.
func SchemasHandler() http.Handler {
	files := map[string]published{}
	for _, name := range SchemaNames() {
		b, _ := Schema(name)
		files[name] = publish(b, "application/schema+json")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.PathValue("name")]
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"not_found","message":"no such schema: the names are listed in the AsyncAPI document, /api/asyncapi.yaml"}`))
			return
		}
		f.ServeHTTP(w, r)
	})
}

// AsyncAPIHandler serves the AsyncAPI document: see SchemasHandler.
func AsyncAPIHandler() http.Handler { return publish(asyncAPI, "application/yaml") }

// published is one embedded file as served: its bytes, type and strong ETag.
type published struct {
	body        []byte
	contentType string
	etag        string
}

func publish(body []byte, contentType string) published {
	sum := sha256.Sum256(body)
	return published{body: body, contentType: contentType, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`}
}

func (p published) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("ETag", p.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Header.Get("If-None-Match") == p.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", p.contentType)
	_, _ = w.Write(p.body)
}
