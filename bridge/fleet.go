package bridge

import (
	"log/slog"

	"github.com/nats-io/nats.go"
)

// The bridge's side of the fleet's bulk actions (docs/protocol.md §6, #http-post-api-admin-devices-bulk):
// a device moved to another feed has its socket closed 4401 on whichever instance
// holds it, so that it fetches a token for the new feed and reconnects to it; and a
// reload signal, sent to every instance over NATS (broker.SignalReload), becomes a
// {"type":"reload"} message on the named devices' sockets held here.

// Moves tells the bridge the moment a device's feed changes on any instance, and what
// a device's feed is now. pairing's Registry satisfies it; New uses it when its
// Revocations value does too.
type Moves interface {
	OnMove(fn func(deviceID, from, to string))
	DeviceFeed(deviceID string) (feed string, ok bool)
}

// reloadFrame is the reload message (docs/protocol.md #ws-reload).
var reloadFrame = textFrame([]byte(`{"type":"reload"}`))

// moved closes the socket of a device moved off its feed on this instance (4401): its
// next token and welcome are for the new feed.
func (br *Bridge) moved(deviceID, _, to string) {
	br.shown.forget(deviceID) // what it showed was another feed's
	if s := br.session(deviceID); s != nil && s.feed != to {
		s.closeWith(reasonMoved)
	}
}

// checkMoved closes a socket just admitted whose device was moved while its handshake
// ran (the move's callback found no session yet). It reports whether it closed it.
func (br *Bridge) checkMoved(s *session) bool {
	if br.moves == nil {
		return false
	}
	if feed, ok := br.moves.DeviceFeed(s.device); ok && feed != s.feed {
		s.closeWith(reasonMoved)
		return true
	}
	return false
}

// subscribeReload starts taking reload signals from every instance.
func (br *Bridge) subscribeReload() (*nats.Subscription, error) {
	return br.b.OnReload(br.reload)
}

// reload sends the reload message to the sockets of ids held by this instance that are
// past their catch-up; others have nothing to reload.
func (br *Bridge) reload(ids []string) {
	n := 0
	for _, id := range ids {
		if s := br.session(id); s != nil && s.joined.Load() {
			s.send(reloadFrame)
			n++
		}
	}
	if n > 0 {
		br.log.Info("reload sent", slog.Int("tablets", n))
	}
}
