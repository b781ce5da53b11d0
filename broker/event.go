package broker

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// Event kinds of docs/protocol.md §8. A feed's state is its newest state or clear event
// plus the items after it.
const (
	KindState = "state"
	KindItem  = "item"
	KindClear = "clear"
)

// SubjectPrefix is where producers publish: feeds.<feed>.<kind>.
const SubjectPrefix = "feeds."

var (
	feedIDRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	eventIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
)

// ValidFeedID reports whether s is a feed id of docs/protocol.md §0; such an id is also a
// valid NATS subject token, so it can be put in a subject without escaping.
func ValidFeedID(s string) bool { return feedIDRe.MatchString(s) }

// ValidEventID reports whether s is a producer-chosen event id of docs/protocol.md §0.
func ValidEventID(s string) bool { return eventIDRe.MatchString(s) }

// ValidKind reports whether k is one of the three event kinds.
func ValidKind(k string) bool { return k == KindState || k == KindItem || k == KindClear }

// Subject is the NATS subject an event of this feed and kind is stored under.
func Subject(feed, kind string) string { return SubjectPrefix + feed + "." + kind }

// FeedSubjects is the filter matching every event of one feed.
func FeedSubjects(feed string) string { return SubjectPrefix + feed + ".*" }

// Event is one stored event of a feed, as tablets and the state API see it.
type Event struct {
	Seq  uint64          `json:"seq"`
	ID   string          `json:"id"`
	Kind string          `json:"kind"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
	// Feed is known from the subject; it is not repeated on the wire.
	Feed string `json:"-"`
}

// EventInput is what a producer sends to POST /api/feeds/{feed}/events.
type EventInput struct {
	ID   string          `json:"id,omitempty"`
	Kind string          `json:"kind"`
	Data json.RawMessage `json:"data"`
}

// storedBody is the message body kept in the FEEDS stream; NATS producers publish the
// same shape.
type storedBody struct {
	Kind string          `json:"kind,omitempty"`
	Data json.RawMessage `json:"data"`
}

var emptyObject = json.RawMessage(`{}`)

// DecodeEventInput parses and checks a producer's event body. maxDataBytes bounds the
// encoded size of data. Every failure is an *httpx.Error a client can act on.
func DecodeEventInput(body []byte, maxDataBytes int) (EventInput, error) {
	var in EventInput
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return EventInput{}, httpx.Errorf(httpx.CodeInvalidRequest, "body is not a valid event: "+httpx.JSONProblem(err))
	}
	if err := httpx.OnlyWhitespaceLeft(dec); err != nil {
		return EventInput{}, err
	}
	if in.ID != "" && !ValidEventID(in.ID) {
		return EventInput{}, httpx.Errorf(httpx.CodeInvalidRequest, `"id" must match ^[A-Za-z0-9._:-]{1,128}$`)
	}
	if !ValidKind(in.Kind) {
		return EventInput{}, httpx.Errorf(httpx.CodeInvalidRequest, `"kind" must be "state", "item" or "clear"`)
	}
	data, err := checkData(in.Data, in.Kind, maxDataBytes)
	if err != nil {
		return EventInput{}, err
	}
	in.Data = data
	return in, nil
}

// checkData enforces docs/protocol.md §8: data is a JSON object of at most maxDataBytes.
// A clear event may leave data out.
func checkData(data json.RawMessage, kind string, maxDataBytes int) (json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		if kind == KindClear {
			return emptyObject, nil
		}
		return nil, httpx.Errorf(httpx.CodeInvalidRequest, `"data" is required and must be a JSON object`)
	}
	if data[0] != '{' {
		return nil, httpx.Errorf(httpx.CodeInvalidRequest, `"data" must be a JSON object`)
	}
	if len(data) > maxDataBytes {
		return nil, httpx.Errorf(httpx.CodeTooLarge, fmt.Sprintf(`"data" is %d bytes; at most %d are allowed`, len(data), maxDataBytes))
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return nil, httpx.Errorf(httpx.CodeInvalidRequest, `"data" is not valid JSON`)
	}
	return buf.Bytes(), nil
}

// encodeStored is the body published to the stream. It is written by hand because
// json.Marshal would HTML-escape the producer's data (& becomes \u0026): the same JSON,
// but not the bytes the producer sent. kind is one of three constants and data is
// already compact, valid JSON.
func encodeStored(kind string, data json.RawMessage) []byte {
	b := make([]byte, 0, len(`{"kind":"","data":}`)+len(kind)+len(data))
	b = append(b, `{"kind":"`...)
	b = append(b, kind...)
	b = append(b, `","data":`...)
	b = append(b, data...)
	return append(b, '}')
}

// DecodeStored turns a message of the FEEDS stream into an Event. Producers on NATS may
// publish anything, so every field is checked; the subject's kind is authoritative and a
// body kind that disagrees makes the message invalid. maxDataBytes is the same bound
// the HTTP API enforces.
func DecodeStored(subject, msgID string, body []byte, seq uint64, t time.Time, maxDataBytes int) (Event, error) {
	feed, kind, ok := splitSubject(subject)
	if !ok {
		return Event{}, fmt.Errorf("subject %q is not feeds.<feed>.<kind>", subject)
	}
	var sb storedBody
	if err := json.Unmarshal(body, &sb); err != nil {
		return Event{}, fmt.Errorf("body is not a JSON object: %w", err)
	}
	if sb.Kind != "" && sb.Kind != kind {
		return Event{}, fmt.Errorf("body kind %q disagrees with subject kind %q", sb.Kind, kind)
	}
	data, err := checkData(sb.Data, KindClear, maxDataBytes) // absent data is {} for any kind here
	if err != nil {
		return Event{}, err
	}
	return Event{Seq: seq, ID: eventIDFromMsgID(feed, msgID, seq), Kind: kind, Time: t.UTC(), Data: data, Feed: feed}, nil
}

func splitSubject(subject string) (feed, kind string, ok bool) {
	rest, found := strings.CutPrefix(subject, SubjectPrefix)
	if !found {
		return "", "", false
	}
	feed, kind, found = strings.Cut(rest, ".")
	if !found || !ValidFeedID(feed) || !ValidKind(kind) {
		return "", "", false
	}
	return feed, kind, true
}

// msgIDFor scopes de-duplication to one feed, so a producer of one feed can neither
// collide with nor suppress another feed's events by reusing its ids. The '/' cannot
// occur in a feed id or an event id, so the split back is unambiguous.
func msgIDFor(feed, id string) string { return feed + "/" + id }

func eventIDFromMsgID(feed, msgID string, seq uint64) string {
	if id, ok := strings.CutPrefix(msgID, feed+"/"); ok && ValidEventID(id) {
		return id
	}
	if ValidEventID(msgID) {
		return msgID
	}
	return "seq-" + strconv.FormatUint(seq, 10)
}

// NewEventID makes a server-side event id (128 random bits) for events sent without one,
// so that even those are de-duplicated when the HTTP layer retries internally.
func NewEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "kf-" + idEncoding.EncodeToString(b[:])
}
