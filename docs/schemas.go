package docs

import (
	"embed"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// SchemaBase is the base of the schemas' $id: each file's $id is SchemaBase and its
// name, and their $refs are relative to it. It names them; it is not where they are
// fetched from (they are embedded here, and the server may serve them itself).
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
