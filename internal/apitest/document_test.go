package apitest_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kioskfeed/kioskfeed/docs"
	"github.com/kioskfeed/kioskfeed/internal/apitest"
)

func TestTheDocumentLoads(t *testing.T) {
	if _, err := apitest.Default(); err != nil {
		t.Fatal(err)
	}
}

// anchorOf is protocol.md's anchor rule: #http-<method>-<path>, segments joined with
// "-", placeholders without braces.
func anchorOf(method, path string) string {
	p := strings.NewReplacer("{", "", "}", "").Replace(strings.Trim(path, "/"))
	return "http-" + strings.ToLower(method) + "-" + strings.ReplaceAll(p, "/", "-")
}

// TestProtocolAnchorsMatchTheOperations keeps docs/protocol.md and docs/openapi.json
// naming the same endpoints: an endpoint added to either alone fails here.
func TestProtocolAnchorsMatchTheOperations(t *testing.T) {
	md, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	var inProse []string
	for _, m := range regexp.MustCompile(`<a id="(http-[^"]+)"></a>`).FindAllStringSubmatch(string(md), -1) {
		inProse = append(inProse, m[1])
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Anchor string `json:"x-protocol-anchor"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(docs.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	var inDoc []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			want := anchorOf(method, path)
			if op.Anchor != want {
				t.Errorf("%s %s: x-protocol-anchor %q, want %q", strings.ToUpper(method), path, op.Anchor, want)
			}
			inDoc = append(inDoc, op.Anchor)
		}
	}
	slices.Sort(inProse)
	slices.Sort(inDoc)
	for _, a := range inProse {
		if !slices.Contains(inDoc, a) {
			t.Errorf("protocol.md has #%s, docs/openapi.json has no operation for it", a)
		}
	}
	for _, a := range inDoc {
		if !slices.Contains(inProse, a) {
			t.Errorf("docs/openapi.json has the operation of #%s, protocol.md has no such anchor", a)
		}
	}
	if len(inDoc) < 40 {
		t.Fatalf("docs/openapi.json names only %d operations", len(inDoc))
	}
}
