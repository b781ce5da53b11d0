package bridge

// This file owns the socket's lifecycle: the one state type that says how far a socket
// is on its way to the end, and the table of the moves it may make.

import "log/slog"

// connState is how far a socket is on its way to the end. Two things end on the way,
// in either order: sending (closing: a close frame is queued, or a write failed) and
// reading (aborted: the reader must stop at its next read). Both have ended once reading
// is over (finished), which happens once; cleanup runs then. Each move is one way:
//
//	         closeLocked, a failed write
//	open ─────────────────────────────────▶ closing ──────────┐
//	 │ │                                      │               │
//	 │ │ abort, a live read timing out        │ abort,        │
//	 │ ▼                                      ▼ closeTimedOut │
//	 │ aborted ─────────────────────▶ closingAborted          │
//	 │   │   closeLocked, a failed write      │               │
//	 ▼   ▼                                    ▼               ▼
//	 └───┴────────── the reader ends ─────────┴───────────────┴──▶ finished ──▶ cleanup
//
// The reader ends on EOF, a failed read (a stopped reader's too), the tablet's close or
// a frame that breaks the protocol (a close frame is queued first). A read timing out
// aborts a live socket, and a closing one (whose tablet did not answer in time).
//
// What each state allows:
//   - open: frames are sent and read.
//   - closing: nothing more is sent (sendLocked, catchUpLocked, askReauth, a second
//     closeLocked and probe do nothing), no message is acted on, and the reader goes on
//     reading for the tablet's close reply; CloseGrace runs when closeLocked queued a
//     close frame.
//   - aborted: a reader at work got a read deadline in the past and fails its next read;
//     setReadDeadline leaves that deadline alone and doneReading ends reading instead of
//     rearming. Sends still queue (a close frame, for one, still counts in the metrics).
//   - closingAborted: both.
//   - finished: reading is over (endReading's first caller runs cleanup), and everything
//     the other states forbid stays forbidden. No reader claims the socket and no probe
//     starts; the drain hangs up once the queue is out.
//
// The flags that stay beside it are not steps of this life, and are documented on
// session: reading and writing say who owns the socket's read and write side right now
// (a reader, a drain goroutine), and come and go many times in any state; dead says how
// the socket is hung up (a reset), and may still be set once finished (a write failing
// after cleanup); authed and joined are the protocol's progress, read without the lock
// on hot paths, and a socket may close at any step of its handshake.
type connState uint8

const (
	stateOpen connState = iota
	stateClosing
	stateAborted
	stateClosingAborted
	stateFinished
	numConnStates // not a state: how many there are
)

var connStateNames = [numConnStates]string{"open", "closing", "aborted", "closingAborted", "finished"}

func (st connState) String() string {
	if st < numConnStates {
		return connStateNames[st]
	}
	return "invalid"
}

// closing reports whether sending has ended: nothing more is queued.
func (st connState) closing() bool {
	return st == stateClosing || st == stateClosingAborted || st == stateFinished
}

// aborted reports whether reading must end: a reader stops at its next read.
func (st connState) aborted() bool {
	return st == stateAborted || st == stateClosingAborted || st == stateFinished
}

// withClosing is st once sending has ended.
func (st connState) withClosing() connState {
	switch st {
	case stateOpen:
		return stateClosing
	case stateAborted:
		return stateClosingAborted
	}
	return st
}

// withAborted is st once reading must end.
func (st connState) withAborted() connState {
	switch st {
	case stateOpen:
		return stateAborted
	case stateClosing:
		return stateClosingAborted
	}
	return st
}

// transitions is the table of the diagram above: transitions[from][to].
var transitions = [numConnStates][numConnStates]bool{
	stateOpen:           {stateClosing: true, stateAborted: true, stateFinished: true},
	stateClosing:        {stateClosingAborted: true, stateFinished: true},
	stateAborted:        {stateClosingAborted: true, stateFinished: true},
	stateClosingAborted: {stateFinished: true},
}

// transition reports whether a socket may move from one state to another. Staying in a
// state is not a move.
func transition(from, to connState) bool {
	return from < numConnStates && to < numConnStates && transitions[from][to]
}

// strictStates makes an illegal move panic instead of being refused and logged; the
// package's tests set it (export_test.go), so that no test passes over one.
var strictStates bool

// moveLocked moves the socket to state to, which must differ from the state it is in,
// and reports whether it did. An illegal move is a bug: it is refused (the state stays)
// and logged. The caller holds s.mu.
func (s *session) moveLocked(to connState) bool {
	from := s.state
	if !transition(from, to) {
		if strictStates {
			panic("bridge: illegal session state move " + from.String() + " → " + to.String())
		}
		if s.br.log != nil {
			s.br.log.Error("illegal session state move refused", slog.String("from", from.String()),
				slog.String("to", to.String()), slog.String("conn_id", s.id))
		}
		return false
	}
	s.state = to
	return true
}

// endSendingLocked ends sending, unless it has ended already. The caller holds s.mu.
func (s *session) endSendingLocked() {
	if to := s.state.withClosing(); to != s.state {
		s.moveLocked(to)
	}
}

// abortReadingLocked makes reading end, unless it must end already. The caller holds
// s.mu.
func (s *session) abortReadingLocked() {
	if to := s.state.withAborted(); to != s.state {
		s.moveLocked(to)
	}
}
