package bridge

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/gobwas/ws"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/schedule"
)

// Close codes of docs/protocol.md §5.
const (
	CloseMalformed      ws.StatusCode = 4400 // malformed or unexpected message
	CloseUnauthorized   ws.StatusCode = 4401 // token or proof invalid or expired
	CloseRevoked        ws.StatusCode = 4403 // device revoked or unknown
	CloseAuthTimeout    ws.StatusCode = 4408 // no auth in time
	CloseDuplicate      ws.StatusCode = 4409 // another live connection holds the lease
	CloseTooMany        ws.StatusCode = 4429 // too many connections or attempts
	CloseRestarting     ws.StatusCode = 1012
	CloseTooSlow        ws.StatusCode = 1013
	CloseTooBig         ws.StatusCode = ws.StatusMessageTooBig
	CloseUnsupported    ws.StatusCode = ws.StatusUnsupportedData
	CloseBrokerDown     ws.StatusCode = ws.StatusInternalServerError
	closeNormal         ws.StatusCode = ws.StatusNormalClosure
	maxClientFrameBytes               = 16 << 10
)

// clientMsg is what a tablet may send: auth and shown (shown.go); other types are
// ignored (docs/protocol.md §5). A shown's fields are raw, for parseShown.
type clientMsg struct {
	Type     string          `json:"type"`
	Token    string          `json:"token"`
	Proof    string          `json:"proof"`
	Since    uint64          `json:"since"`
	Epoch    string          `json:"epoch"`
	Feed     string          `json:"feed"` // the feed since and epoch came from (optional)
	Seq      json.RawMessage `json:"seq"`
	Override json.RawMessage `json:"override"`
}

// textFrame compiles one server text frame: its bytes are written as they are, to one
// tablet or to thousands.
func textFrame(payload []byte) []byte {
	b, _ := ws.CompileFrame(ws.NewTextFrame(payload))
	return b
}

// welcomeMsg is docs/protocol.md §5 step 3's welcome, and nonceMsg the challenge and the
// reauth request: typed, since one of each is encoded per handshake (a map costs its
// sorting and its reflection on every one: 4 % of a 10,000-tablet connect storm's CPU).
type welcomeMsg struct {
	Type       string         `json:"type"`
	DeviceID   string         `json:"device_id"`
	Feed       string         `json:"feed"`
	HeartbeatS int            `json:"heartbeat_s"`
	TokenExp   string         `json:"token_exp"`
	Epoch      string         `json:"epoch"`
	Overrides  []string       `json:"overrides"`
	Schedule   *schedule.Spec `json:"schedule"`
}

type nonceMsg struct {
	Type  string `json:"type"`
	Nonce string `json:"nonce"`
}

func jsonFrame(v any) []byte {
	p, _ := json.Marshal(v)
	return textFrame(p)
}

func closeFrame(code ws.StatusCode, reason string) []byte {
	b, _ := ws.CompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)))
	return b
}

var pingFrame, _ = ws.CompileFrame(ws.NewPingFrame(nil))

// eventFrame is an event as tablets receive it, encoded once per event and instance.
func eventFrame(ev broker.Event) []byte {
	b := make([]byte, 0, 96+len(ev.ID)+len(ev.Data))
	b = append(b, `{"type":"event","seq":`...)
	b = strconv.AppendUint(b, ev.Seq, 10)
	b = append(b, `,"id":`...)
	b = strconv.AppendQuote(b, ev.ID)
	b = append(b, `,"kind":"`...)
	b = append(b, ev.Kind...)
	b = append(b, `","time":"`...)
	b = ev.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","data":`...)
	b = append(b, ev.Data...)
	b = append(b, '}')
	return textFrame(b)
}

func syncedFrame(seq uint64) []byte {
	b := strconv.AppendUint([]byte(`{"type":"synced","seq":`), seq, 10)
	return textFrame(append(b, '}'))
}

var resetFrame = textFrame([]byte(`{"type":"reset"}`))
