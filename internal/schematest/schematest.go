package schematest

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/kioskfeed/kioskfeed/docs"
)

// Direction says who sent a frame: the schemas of one direction are not the other's.
type Direction int

const (
	// FromServer is a frame the server sends a tablet (server-message.json).
	FromServer Direction = iota
	// FromClient is a frame a tablet sends the server (client-message.json).
	FromClient
)

func (d Direction) String() string {
	if d == FromClient {
		return "tablet → server"
	}
	return "server → tablet"
}

// maxShown bounds how much of a failing frame an error quotes.
const maxShown = 300

// feedID is a feed id (docs/protocol.md #names), the subject's middle token.
var feedID = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// compiled is every schema, compiled once per test binary.
type compiled struct {
	byName map[string]*jsonschema.Schema // by file name
	types  [2][]string                   // by Direction, from the direction's enum
}

var (
	once     sync.Once
	set      *compiled
	setErr   error
	recorded struct {
		sync.Mutex
		n     int
		first []string
	}
)

func load() (*compiled, error) {
	once.Do(func() { set, setErr = compile() })
	return set, setErr
}

func compile() (*compiled, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	fsys := docs.Schemas()
	names := docs.SchemaNames()
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("schematest: docs/schemas/%s: %w", name, err)
		}
		if err := c.AddResource(docs.SchemaBase+name, doc); err != nil {
			return nil, fmt.Errorf("schematest: docs/schemas/%s: %w", name, err)
		}
	}
	out := &compiled{byName: map[string]*jsonschema.Schema{}}
	for _, name := range names {
		sch, err := c.Compile(docs.SchemaBase + name)
		if err != nil {
			return nil, fmt.Errorf("schematest: compile docs/schemas/%s: %w", name, err)
		}
		out.byName[name] = sch
	}
	for d, name := range [2]string{"server-message.json", "client-message.json"} {
		types, err := enumOfType(fsys, name)
		if err != nil {
			return nil, err
		}
		out.types[d] = types
	}
	return out, nil
}

// enumOfType reads properties.type.enum of a direction's schema: the types it takes.
func enumOfType(fsys fs.FS, name string) ([]string, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, err
	}
	var s struct {
		Properties struct {
			Type struct {
				Enum []string `json:"enum"`
			} `json:"type"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(b, &s); err != nil || len(s.Properties.Type.Enum) == 0 {
		return nil, fmt.Errorf("schematest: docs/schemas/%s has no properties.type.enum", name)
	}
	return slices.Sorted(slices.Values(s.Properties.Type.Enum)), nil
}

// Types lists the message types of one direction, sorted.
func Types(d Direction) []string {
	s, err := load()
	if err != nil {
		return nil
	}
	return slices.Clone(s.types[d])
}

// Measuring reports whether this test binary runs benchmarks (go test -bench): then
// Frame checks nothing, since a check costs some 35–50 µs of CPU a frame (more under
// -race), which a benchmark of the server on the same cores would measure. Tests run
// without -bench, as .ci/run and go test run them, check every frame.
func Measuring() bool {
	f := flag.Lookup("test.bench")
	return f != nil && f.Value.String() != ""
}

// Frame checks one text frame of /ws sent in direction d: its type must be one of
// that direction's, and the frame valid against <type>.json. The error says the
// direction, the type, the reason and (shortened, without secrets) the frame. It
// checks nothing while benchmarks run (Measuring).
func Frame(d Direction, payload []byte) error {
	if Measuring() {
		return nil
	}
	return frame(d, payload)
}

func frame(d Direction, payload []byte) error {
	s, err := load()
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return fail(d, "", payload, "not a single JSON value: "+err.Error())
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fail(d, "", payload, "not a JSON object")
	}
	typ, ok := obj["type"].(string)
	if !ok {
		return fail(d, "", payload, `no string member "type"`)
	}
	if !slices.Contains(s.types[d], typ) {
		return fail(d, typ, payload, fmt.Sprintf("unknown type for this direction (%s has %v)", dirSchema(d), s.types[d]))
	}
	if err := s.byName[typ+".json"].Validate(v); err != nil {
		return fail(d, typ, payload, "docs/schemas/"+typ+".json: "+reason(err))
	}
	return nil
}

// Message checks a frame against the direction's whole schema (server-message.json or
// client-message.json, a oneOf by type): what a generic validator given any frame says.
func Message(d Direction, payload []byte) error {
	return against(dirSchema(d), payload)
}

// Producer checks a body a producer publishes on subject: subject must be
// feeds.<feed>.<kind>, the body valid against producer-event.json, and a kind in it
// the subject's (docs/protocol.md §8).
func Producer(subject string, body []byte) error {
	rest, ok := strings.CutPrefix(subject, "feeds.")
	feed, kind, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || !feedID.MatchString(feed) || !slices.Contains([]string{"state", "item", "clear"}, kind) {
		return fmt.Errorf("schematest: subject %q is not feeds.<feed>.<state|item|clear>", subject)
	}
	if err := against("producer-event.json", body); err != nil {
		return err
	}
	var b struct {
		Kind string `json:"kind"`
	}
	_ = json.Unmarshal(body, &b)
	if b.Kind != "" && b.Kind != kind {
		return fmt.Errorf("schematest: body kind %q disagrees with subject %q: %s", b.Kind, subject, shorten(body))
	}
	return nil
}

// Alert checks an alert body (the ALERTS stream's data, a webhook delivery's body)
// against alert.json, and, when subject is not "", that subject is kioskfeed.alerts.<its type>.
func Alert(subject string, body []byte) error {
	if err := against("alert.json", body); err != nil {
		return err
	}
	if subject != "" {
		var a struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(body, &a)
		if subject != "kioskfeed.alerts."+a.Type {
			return fmt.Errorf("schematest: alert of type %q on subject %q", a.Type, subject)
		}
	}
	return nil
}

// against validates payload with the named schema file.
func against(name string, payload []byte) error {
	s, err := load()
	if err != nil {
		return err
	}
	sch := s.byName[name]
	if sch == nil {
		return fmt.Errorf("schematest: no schema docs/schemas/%s", name)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("schematest: docs/schemas/%s: not a single JSON value: %v: %s", name, err, shorten(payload))
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("schematest: docs/schemas/%s refuses %s: %s", name, shorten(payload), reason(err))
	}
	return nil
}

func dirSchema(d Direction) string {
	if d == FromClient {
		return "client-message.json"
	}
	return "server-message.json"
}

func fail(d Direction, typ string, payload []byte, why string) error {
	if typ == "" {
		typ = "?"
	}
	return fmt.Errorf("schematest: %s frame of type %q fails: %s; frame: %s", d, typ, why, shorten(payload))
}

// reason is the validator's verdict on one line, without the schema URL it begins with.
func reason(err error) string {
	msg := err.Error()
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		if _, rest, ok := strings.Cut(msg, "\n"); ok {
			msg = rest
		}
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", "; ")), " ")
}

// secrets are the members whose values an error never quotes in full.
var secrets = []string{"token", "proof"}

// shorten quotes a frame for an error: tokens and proofs cut to their first 8
// characters, and the whole to maxShown bytes.
func shorten(payload []byte) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(payload, &obj) == nil {
		changed := false
		for _, k := range secrets {
			raw, ok := obj[k]
			if !ok {
				continue
			}
			var s string
			if json.Unmarshal(raw, &s) == nil && len(s) > 8 {
				s = s[:8] + fmt.Sprintf("…(%d bytes)", len(s))
			} else if len(raw) > 8 {
				s = "…(redacted)"
			} else {
				continue
			}
			obj[k], _ = json.Marshal(s)
			changed = true
		}
		if changed {
			payload, _ = json.Marshal(obj)
		} else {
			payload = bytes.Clone(payload)
		}
	} else if bytes.Contains(payload, []byte(`"token"`)) || bytes.Contains(payload, []byte(`"proof"`)) {
		return fmt.Sprintf("(%d bytes, not quoted: it may hold a token or proof)", len(payload))
	}
	if len(payload) > maxShown {
		return fmt.Sprintf("%s…(%d bytes)", payload[:maxShown], len(payload))
	}
	return string(payload)
}

// Record notes a failure seen where it cannot fail a test at once (a helper whose
// caller ignores errors); Recorded reports them, for TestMain.
func Record(err error) {
	if err == nil {
		return
	}
	recorded.Lock()
	defer recorded.Unlock()
	recorded.n++
	if len(recorded.first) < 10 {
		recorded.first = append(recorded.first, err.Error())
	}
}

// Recorded is how many failures Record saw, and the first ten of them.
func Recorded() (int, []string) {
	recorded.Lock()
	defer recorded.Unlock()
	return recorded.n, slices.Clone(recorded.first)
}

// Main runs a test binary's tests (m.Run()) and then fails it, naming them, if any
// frame failed its schema on the way: tests that tolerate a helper's error still fail.
func Main(run func() int) int {
	code := run()
	if n, first := Recorded(); n > 0 {
		fmt.Printf("FAIL: %d frame(s) failed their JSON Schema (docs/schemas/); the first:\n", n)
		for _, e := range first {
			fmt.Println("  " + e)
		}
		if code == 0 {
			code = 1
		}
	}
	return code
}
