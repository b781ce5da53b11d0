package bridge

import (
	"encoding/json"
	"strconv"

	"github.com/kioskfeed/kioskfeed/internal/jsonx"
)

// decodeClientMsg is json.Unmarshal(payload, m) for a fresh m, without reflection for
// the message every handshake and re-auth starts with (issue 15): an object whose
// members are named exactly as docs/protocol.md §5 writes an auth's (type, token,
// proof, since, epoch, feed) is read by jsonx.Object, member by member in order as
// encoding/json reads it. Anything else (another member, a name in another case,
// which encoding/json matches too, seq or override, a value of the wrong type, input
// that is not an object) goes to encoding/json itself, so that the verdict and the
// fields are always its own; clientmsg_test.go compares the two on every input.
func decodeClientMsg(payload []byte, m *clientMsg) error {
	var o jsonx.Object
	if o.Parse(payload) != nil || !o.Each(func(name, raw []byte) bool { return m.set(name, raw) }) {
		*m = clientMsg{}
		return json.Unmarshal(payload, m)
	}
	return nil
}

// set stores one member as encoding/json would, and reports false for a member it does
// not read itself or a value it would refuse (decodeClientMsg then asks encoding/json).
func (m *clientMsg) set(name, raw []byte) bool {
	var dst *string
	switch string(name) {
	case "type":
		dst = &m.Type
	case "token":
		dst = &m.Token
	case "proof":
		dst = &m.Proof
	case "epoch":
		dst = &m.Epoch
	case "feed":
		dst = &m.Feed
	case "since":
		if string(raw) == "null" { // null leaves a field as it is
			return true
		}
		n, err := strconv.ParseUint(string(raw), 10, 64)
		m.Since = n
		return err == nil
	default:
		return false
	}
	if string(raw) == "null" {
		return true
	}
	s, ok := jsonx.String(raw)
	*dst = s
	return ok
}
