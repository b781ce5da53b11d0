package broker_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/internal/schematest"
)

// FuzzDecodeEventInput feeds arbitrary producer bodies to the decoder: it must never
// panic, every refusal must be a client error, and every accepted event must be one
// the rest of the system can store and show.
func FuzzDecodeEventInput(f *testing.F) {
	for _, s := range []string{
		`{"kind":"item","data":{}}`, `{"id":"a:b.c-d","kind":"state","data":{"title":"x","rows":[1,2]}}`,
		`{"kind":"clear"}`, `{"kind":"clear","data":null}`, `{"kind":"item","data":[1]}`, `{"kind":5}`,
		`{"kind":"item","data":{}} {}`, `{"kind":"item","data":{"a":"\ud800"}}`, `null`, `[]`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := broker.DecodeEventInput(body, 1024)
		if err != nil {
			var e *httpx.Error
			if !errors.As(err, &e) || httpx.Status(e.Code) >= 500 {
				t.Fatalf("refusal %v is not a client error", err)
			}
			return
		}
		if !broker.ValidKind(in.Kind) || (in.ID != "" && !broker.ValidEventID(in.ID)) {
			t.Fatalf("accepted invalid kind %q or id %q", in.Kind, in.ID)
		}
		if len(in.Data) == 0 || in.Data[0] != '{' || !json.Valid(in.Data) || len(in.Data) > 1024 {
			t.Fatalf("accepted data %q that is not a JSON object within the bound", in.Data)
		}
		stored := []byte(`{"kind":"` + in.Kind + `","data":` + string(in.Data) + `}`)
		ev, err := broker.DecodeStored("feeds.lobby."+in.Kind, "lobby/"+in.ID, stored, 7, time.Unix(0, 0), 1024)
		if err != nil || string(ev.Data) != string(in.Data) {
			t.Fatalf("accepted event does not round-trip through the stream: %v (%q vs %q)", err, ev.Data, in.Data)
		}
		// What the server stores for it is a producer body of the contract
		// (docs/schemas/producer-event.json), as a NATS producer would publish it.
		msg, _, err := broker.EventMessage("lobby", in, 1024)
		if err != nil {
			t.Fatalf("accepted event has no message: %v", err)
		}
		if err := schematest.Producer(msg.Subject, msg.Data); err != nil {
			t.Fatalf("the stored body of an accepted event fails its schema: %v", err)
		}
	})
}

// FuzzDecodeStored feeds what a NATS producer might publish: never a panic, and only
// well-formed events come out.
func FuzzDecodeStored(f *testing.F) {
	f.Add("feeds.lobby.state", "lobby/x", []byte(`{"kind":"state","data":{}}`))
	f.Add("feeds.lobby.item", "", []byte(`{"data":{"a":1}}`))
	f.Add("feeds..item", "x", []byte(`{}`))
	f.Add("feeds.lobby.item.x", "", []byte(`[]`))
	f.Fuzz(func(t *testing.T, subject, msgID string, body []byte) {
		ev, err := broker.DecodeStored(subject, msgID, body, 42, time.Unix(0, 0), 4096)
		// A body valid against the contract's schema on a feeds.<feed>.<kind> subject
		// is always shown (within the data bound); the server is laxer than the schema
		// (unknown members, a null data), never stricter.
		if err != nil && len(body) < 4096 && schematest.Producer(subject, body) == nil {
			t.Fatalf("a schema-valid body %q on %q was refused: %v", body, subject, err)
		}
		if err != nil {
			return
		}
		if !broker.ValidFeedID(ev.Feed) || !broker.ValidKind(ev.Kind) || !broker.ValidEventID(ev.ID) || !json.Valid(ev.Data) || ev.Data[0] != '{' {
			t.Fatalf("decoded an invalid event %+v from %q", ev, subject)
		}
	})
}
