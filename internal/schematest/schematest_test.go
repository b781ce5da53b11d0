package schematest_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/kioskfeed/kioskfeed/docs"
	"github.com/kioskfeed/kioskfeed/internal/schematest"
)

const (
	jwt   = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJkZXZfMSJ9.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl"
	nonce = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	spec  = `{"time_zone":"Europe/Berlin","week":{"mon":["07:00-19:00"],"sun":["22:00-06:00"]},"exceptions":{"2026-12-25":[]},"asleep_view":"clock"}`
)

// valid are frames as the server and the PWA write them, one or more per type.
var valid = []struct {
	d     schematest.Direction
	frame string
}{
	{schematest.FromServer, `{"type":"challenge","nonce":"` + nonce + `"}`},
	{schematest.FromServer, `{"type":"welcome","device_id":"dev_5KQ2M8V3W1XJ4T7R9P0A","feed":"lobby","heartbeat_s":20,"token_exp":"2026-12-01T10:00:00Z","epoch":"1a2b3c","overrides":[],"schedule":null}`},
	{schematest.FromServer, `{"type":"welcome","device_id":"dev_5KQ2M8V3W1XJ4T7R9P0A","feed":"lobby","heartbeat_s":20,"token_exp":"2026-12-01T10:00:00Z","epoch":"1a2b3c","overrides":["ovr_abcdefghijk23"],"schedule":` + spec + `}`},
	{schematest.FromServer, `{"type":"reset"}`},
	{schematest.FromServer, `{"type":"synced","seq":0}`},
	{schematest.FromServer, `{"type":"event","seq":1043,"id":"order-4711-ready","kind":"item","time":"2026-12-01T10:00:00.123456789Z","data":{"a":[1,2]}}`},
	{schematest.FromServer, `{"type":"heartbeat","time":"2026-12-01T10:00:00Z"}`},
	{schematest.FromServer, `{"type":"reauth","nonce":"` + nonce + `"}`},
	{schematest.FromServer, `{"type":"override","id":"ovr_abcdefghijk23","title":"Fire","body":"Leave now","level":"danger","feeds":["*"],"created_at":"2026-12-01T10:00:00Z","expires_at":"2026-12-01T11:00:00Z"}`},
	{schematest.FromServer, `{"type":"override_clear","id":"ovr_abcdefghijk23"}`},
	{schematest.FromServer, `{"type":"schedule","feed":"lobby","schedule":` + spec + `,"updated_at":"2026-12-01T10:00:00Z"}`},
	{schematest.FromServer, `{"type":"schedule","feed":"lobby","schedule":null}`},
	{schematest.FromServer, `{"type":"reload"}`},
	{schematest.FromClient, `{"type":"auth","token":"` + jwt + `","proof":"` + jwt + `","since":0}`},
	{schematest.FromClient, `{"type":"auth","token":"` + jwt + `","proof":"` + jwt + `","since":1042,"epoch":"1a2b3c","feed":"lobby"}`},
	{schematest.FromClient, `{"type":"shown","seq":7}`},
	{schematest.FromClient, `{"type":"shown","override":"ovr_abcdefghijk23"}`},
}

func TestValidFramesPass(t *testing.T) {
	seen := map[schematest.Direction][]string{}
	for _, tc := range valid {
		if err := schematest.Frame(tc.d, []byte(tc.frame)); err != nil {
			t.Errorf("Frame: %v", err)
		}
		if err := schematest.Message(tc.d, []byte(tc.frame)); err != nil {
			t.Errorf("Message (the direction's oneOf): %v", err)
		}
		typ := regexp.MustCompile(`"type":"([a-z_]+)"`).FindStringSubmatch(tc.frame)[1]
		seen[tc.d] = append(seen[tc.d], typ)
	}
	// Every type has a valid example here, so the cases below test every schema.
	for _, d := range []schematest.Direction{schematest.FromServer, schematest.FromClient} {
		for _, typ := range schematest.Types(d) {
			if !slices.Contains(seen[d], typ) {
				t.Errorf("no valid %s example of %q in this test", d, typ)
			}
		}
	}
}

// TestInvalidFramesFail is the proof that validation bites: an extra member, a wrong
// type, a missing member, an unknown type, a bad format each fail, in both the
// per-type check and the direction's whole schema, and the error names the type.
func TestInvalidFramesFail(t *testing.T) {
	bad := []struct {
		name  string
		d     schematest.Direction
		frame string
		want  string // in the error
	}{
		{"extra member", schematest.FromServer, `{"type":"synced","seq":3,"extra":1}`, `"synced"`},
		{"extra member in the welcome", schematest.FromServer, `{"type":"welcome","device_id":"dev_5KQ2M8V3W1XJ4T7R9P0A","feed":"lobby","heartbeat_s":20,"token_exp":"2026-12-01T10:00:00Z","epoch":"1a","overrides":[],"schedule":null,"motd":"hi"}`, "motd"},
		{"wrong type of a member", schematest.FromServer, `{"type":"event","seq":"1043","id":"x","kind":"item","time":"2026-12-01T10:00:00Z","data":{}}`, `"event"`},
		{"data not an object", schematest.FromServer, `{"type":"event","seq":1043,"id":"x","kind":"item","time":"2026-12-01T10:00:00Z","data":[1]}`, "/data"},
		{"missing member", schematest.FromServer, `{"type":"event","seq":1043,"kind":"item","time":"2026-12-01T10:00:00Z","data":{}}`, "id"},
		{"unknown type", schematest.FromServer, `{"type":"hello"}`, "unknown type"},
		{"a client type from the server", schematest.FromServer, `{"type":"shown","seq":1}`, "unknown type"},
		{"a server type from the client", schematest.FromClient, `{"type":"reset"}`, "unknown type"},
		{"no type", schematest.FromServer, `{"seq":1}`, "type"},
		{"not an object", schematest.FromServer, `[1]`, "object"},
		{"not RFC 3339", schematest.FromServer, `{"type":"heartbeat","time":"yesterday"}`, "/time"},
		{"not UTC", schematest.FromServer, `{"type":"heartbeat","time":"2026-12-01T10:00:00+01:00"}`, "/time"},
		{"bad enum", schematest.FromServer, `{"type":"override","id":"ovr_abcdefghijk23","title":"","body":"b","level":"panic","feeds":["*"],"created_at":"2026-12-01T10:00:00Z","expires_at":"2026-12-01T11:00:00Z"}`, "/level"},
		{"schedule deleted with a time", schematest.FromServer, `{"type":"schedule","feed":"lobby","schedule":null,"updated_at":"2026-12-01T10:00:00Z"}`, `"schedule"`},
		{"schedule without its time", schematest.FromServer, `{"type":"schedule","feed":"lobby","schedule":` + spec + `}`, `"schedule"`},
		{"schedule with a bad range", schematest.FromServer, `{"type":"schedule","feed":"lobby","schedule":{"time_zone":"UTC","week":{"mon":["25:00-26:00"]},"asleep_view":"black"},"updated_at":"2026-12-01T10:00:00Z"}`, "/schedule"},
		{"shown with both", schematest.FromClient, `{"type":"shown","seq":7,"override":"ovr_abcdefghijk23"}`, `"shown"`},
		{"shown with neither", schematest.FromClient, `{"type":"shown"}`, `"shown"`},
		{"shown seq 0", schematest.FromClient, `{"type":"shown","seq":0}`, "/seq"},
		{"auth without proof", schematest.FromClient, `{"type":"auth","token":"` + jwt + `","since":0}`, "proof"},
		{"auth with a negative since", schematest.FromClient, `{"type":"auth","token":"` + jwt + `","proof":"` + jwt + `","since":-1}`, "/since"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := schematest.Frame(tc.d, []byte(tc.frame))
			if err == nil {
				t.Fatalf("Frame accepted %s", tc.frame)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if schematest.Message(tc.d, []byte(tc.frame)) == nil {
				t.Errorf("the direction's oneOf schema accepted %s", tc.frame)
			}
		})
	}
}

// TestErrorsNeverQuoteASecret: a failing auth is quoted without its token and proof.
func TestErrorsNeverQuoteASecret(t *testing.T) {
	secret := strings.Repeat("s", 40)
	tok := "eyJhbGciOiJFUzI1NiJ9." + secret + ".sig"
	err := schematest.Frame(schematest.FromClient, []byte(`{"type":"auth","token":"`+tok+`","proof":"`+tok+`","since":"x"}`))
	if err == nil {
		t.Fatal("a since that is a string passed")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the error quotes the token: %v", err)
	}
	long := `{"type":"reset","pad":"` + strings.Repeat("x", 5000) + `"}`
	if err := schematest.Frame(schematest.FromServer, []byte(long)); err == nil || len(err.Error()) > 1500 {
		t.Errorf("a long frame's error is not cut short (%d bytes): %v", len(err.Error()), err)
	}
}

func TestProducerAndAlertBodies(t *testing.T) {
	for _, tc := range []struct {
		subject, body string
		ok            bool
	}{
		{"feeds.lobby.item", `{"kind":"item","data":{"text":"hi"}}`, true},
		{"feeds.lobby.clear", `{"kind":"clear"}`, true},
		{"feeds.lobby.state", `{"data":{}}`, true},
		{"feeds.lobby.state", `{"kind":"item","data":{}}`, false}, // disagrees with its subject
		{"feeds.lobby.item", `{"kind":"item","data":"x"}`, false}, // data not an object
		{"feeds.lobby.item", `{"kind":"item","data":{},"x":1}`, false},
		{"feeds.lobby.other", `{"kind":"item","data":{}}`, false}, // not a captured subject
	} {
		err := schematest.Producer(tc.subject, []byte(tc.body))
		if (err == nil) != tc.ok {
			t.Errorf("Producer(%s, %s) = %v, want ok=%v", tc.subject, tc.body, err, tc.ok)
		}
	}
	good := `{"id":"al_0123456789ABCDEFGHJK","type":"device_offline","time":"2026-12-01T10:00:00Z","feed":"lobby","device_id":"dev_5KQ2M8V3W1XJ4T7R9P0A","detail":"offline for 2m","since":"2026-12-01T09:58:00Z"}`
	if err := schematest.Alert("kioskfeed.alerts.device_offline", []byte(good)); err != nil {
		t.Error(err)
	}
	if schematest.Alert("kioskfeed.alerts.device_online", []byte(good)) == nil {
		t.Error("an alert on another type's subject passed")
	}
	if schematest.Alert("", []byte(strings.Replace(good, `"detail"`, `"secret":"x","detail"`, 1))) == nil {
		t.Error("an alert with an undocumented member passed")
	}
}

// protocolTypes reads the socket message types docs/protocol.md names (its #ws-<type>
// anchors) and which of them a tablet sends (the text after the anchor says
// "client →").
func protocolTypes(t *testing.T) (server, client []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	re := regexp.MustCompile(`<a id="ws-([a-z-]+)"></a>`)
	for _, m := range re.FindAllStringSubmatchIndex(text, -1) {
		typ := strings.ReplaceAll(text[m[2]:m[3]], "-", "_")
		after := text[m[1]:min(len(text), m[1]+80)]
		before := text[max(0, m[0]-40):m[0]]
		if strings.Contains(after, "client →") || strings.Contains(before, "client →") {
			client = append(client, typ)
		} else {
			server = append(server, typ)
		}
	}
	slices.Sort(server)
	slices.Sort(client)
	return server, client
}

// TestSchemasMatchTheProtocol: every message type docs/protocol.md names has a schema
// of its direction, and every schema names a type the contract has, so neither can
// change without the other.
func TestSchemasMatchTheProtocol(t *testing.T) {
	server, client := protocolTypes(t)
	if len(server) < 10 || len(client) < 2 {
		t.Fatalf("read only %v and %v from docs/protocol.md's #ws- anchors", server, client)
	}
	if got := schematest.Types(schematest.FromServer); !slices.Equal(got, server) {
		t.Errorf("server-message.json has %v; docs/protocol.md's server messages are %v", got, server)
	}
	if got := schematest.Types(schematest.FromClient); !slices.Equal(got, client) {
		t.Errorf("client-message.json has %v; docs/protocol.md's client messages are %v", got, client)
	}
	names := docs.SchemaNames()
	want := map[string]bool{"defs.json": true, "server-message.json": true, "client-message.json": true, "producer-event.json": true, "alert.json": true}
	for _, typ := range append(server, client...) {
		want[typ+".json"] = true
		if !slices.Contains(names, typ+".json") {
			t.Errorf("docs/schemas/ has no %s.json", typ)
		}
	}
	for _, n := range names {
		if !want[n] {
			t.Errorf("docs/schemas/%s names no message of docs/protocol.md", n)
		}
	}
}

// TestAsyncAPINamesEverySchema: the AsyncAPI document is an AsyncAPI 3 document whose
// /ws channel has every socket message (each payload the type's schema), whose
// operations split them by direction, and whose NATS channels are the contract's
// subjects with their bodies' schemas.
func TestAsyncAPINamesEverySchema(t *testing.T) {
	var doc struct {
		AsyncAPI string `yaml:"asyncapi"`
		Channels map[string]struct {
			Address    string                    `yaml:"address"`
			Parameters map[string]map[string]any `yaml:"parameters"`
			Messages   map[string]struct {
				Ref string `yaml:"$ref"`
			} `yaml:"messages"`
		} `yaml:"channels"`
		Operations map[string]struct {
			Action  string `yaml:"action"`
			Channel struct {
				Ref string `yaml:"$ref"`
			} `yaml:"channel"`
			Messages []struct {
				Ref string `yaml:"$ref"`
			} `yaml:"messages"`
		} `yaml:"operations"`
		Components struct {
			Messages map[string]struct {
				Name    string `yaml:"name"`
				Payload struct {
					SchemaFormat string `yaml:"schemaFormat"`
					Schema       struct {
						Ref string `yaml:"$ref"`
					} `yaml:"schema"`
				} `yaml:"payload"`
			} `yaml:"messages"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(docs.AsyncAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.AsyncAPI != "3.0.0" {
		t.Errorf("asyncapi: %q", doc.AsyncAPI)
	}
	addr := map[string]string{}
	for name, ch := range doc.Channels {
		addr[ch.Address] = name
		for m, r := range ch.Messages {
			if r.Ref != "#/components/messages/"+m {
				t.Errorf("channel %s message %s refers to %q", name, m, r.Ref)
			}
			if _, ok := doc.Components.Messages[m]; !ok {
				t.Errorf("channel %s names message %s, which components.messages lacks", name, m)
			}
		}
	}
	ws := doc.Channels[addr["/ws"]]
	if addr["/ws"] == "" {
		t.Fatal("no channel with the address /ws")
	}
	feeds, alerts := doc.Channels[addr["feeds.{feed}.{kind}"]], doc.Channels[addr["kioskfeed.alerts.{type}"]]
	if feeds.Parameters["feed"] == nil || feeds.Parameters["kind"] == nil || alerts.Parameters["type"] == nil {
		t.Errorf("the NATS channels or their parameters are missing: %v %v", feeds.Parameters, alerts.Parameters)
	}
	byAction := map[string][]string{}
	for name, op := range doc.Operations {
		if op.Channel.Ref != "#/channels/"+addr["/ws"] {
			continue
		}
		for _, m := range op.Messages {
			msg, ok := strings.CutPrefix(m.Ref, "#/channels/"+addr["/ws"]+"/messages/")
			if !ok {
				t.Errorf("operation %s refers to %q", name, m.Ref)
			}
			byAction[op.Action] = append(byAction[op.Action], msg)
		}
	}
	slices.Sort(byAction["send"])
	slices.Sort(byAction["receive"])
	server, client := protocolTypes(t)
	if !slices.Equal(byAction["send"], server) || !slices.Equal(byAction["receive"], client) {
		t.Errorf("the /ws operations send %v and receive %v; docs/protocol.md has %v and %v", byAction["send"], byAction["receive"], server, client)
	}
	if len(ws.Messages) != len(server)+len(client) {
		t.Errorf("the /ws channel has %d messages, the protocol %d", len(ws.Messages), len(server)+len(client))
	}
	wantSchema := map[string]string{"producerEvent": "producer-event.json", "alert": "alert.json"}
	for _, typ := range append(server, client...) {
		wantSchema[typ] = typ + ".json"
	}
	for m, want := range wantSchema {
		cm := doc.Components.Messages[m]
		if cm.Payload.Schema.Ref != "schemas/"+want {
			t.Errorf("message %s's payload is %q, want schemas/%s", m, cm.Payload.Schema.Ref, want)
		}
		if _, ok := docs.Schema(want); !ok {
			t.Errorf("message %s's schema %s is not embedded", m, want)
		}
		if cm.Payload.SchemaFormat != "application/schema+json;version=draft-2020-12" {
			t.Errorf("message %s's schemaFormat is %q", m, cm.Payload.SchemaFormat)
		}
	}
	if len(doc.Components.Messages) != len(wantSchema) {
		t.Errorf("components.messages has %d messages, want %d", len(doc.Components.Messages), len(wantSchema))
	}
}

// TestAsyncAPIHasNoLostText: every description the YAML carries reaches its reader
// whole (an unquoted " #" would start a YAML comment and cut it short).
func TestAsyncAPIHasNoLostText(t *testing.T) {
	var doc any
	if err := yaml.Unmarshal(docs.AsyncAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "description" || k == "summary") && strings.Count(s, "(") != strings.Count(s, ")") {
					t.Errorf("%s %q is cut short (quote it)", k, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
}

// TestSchemasLoadFromTheirFolder: a validator given the file docs/schemas/
// server-message.json alone resolves the rest beside it (relative $refs, no $id).
func TestSchemasLoadFromTheirFolder(t *testing.T) {
	sch, err := jsonschema.NewCompiler().Compile(filepath.Join("..", "..", "docs", "schemas", "server-message.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range valid {
		if tc.d != schematest.FromServer {
			continue
		}
		v, _ := jsonschema.UnmarshalJSON(strings.NewReader(tc.frame))
		if err := sch.Validate(v); err != nil {
			t.Errorf("%s: %v", tc.frame, err)
		}
	}
	v, _ := jsonschema.UnmarshalJSON(strings.NewReader(`{"type":"reset","x":1}`))
	if sch.Validate(v) == nil {
		t.Error("a reset with a member it lacks passed")
	}
}
