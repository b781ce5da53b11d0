package bridge

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestConnStateTransitions checks the table of state.go against the moves the diagram
// draws: each drawn move is accepted, every other pair (staying put included) refused.
func TestConnStateTransitions(t *testing.T) {
	drawn := map[[2]connState]bool{
		{stateOpen, stateClosing}:            true,
		{stateOpen, stateAborted}:            true,
		{stateOpen, stateFinished}:           true,
		{stateClosing, stateClosingAborted}:  true,
		{stateClosing, stateFinished}:        true,
		{stateAborted, stateClosingAborted}:  true,
		{stateAborted, stateFinished}:        true,
		{stateClosingAborted, stateFinished}: true,
	}
	accepted := 0
	for from := connState(0); from <= numConnStates; from++ { // one past the end: invalid
		for to := connState(0); to <= numConnStates; to++ {
			want := drawn[[2]connState{from, to}]
			if got := transition(from, to); got != want {
				t.Errorf("transition(%v, %v) = %v, want %v", from, to, got, want)
			}
			if want {
				accepted++
			}
		}
	}
	if accepted != len(drawn) {
		t.Fatalf("%d moves checked as accepted, want %d", accepted, len(drawn))
	}

	// What each state says, and the moves withClosing and withAborted make: the only
	// ones endSendingLocked and abortReadingLocked ask for.
	for _, tc := range []struct {
		st                   connState
		closing, aborted     bool
		withClosing, withAbo connState
	}{
		{stateOpen, false, false, stateClosing, stateAborted},
		{stateClosing, true, false, stateClosing, stateClosingAborted},
		{stateAborted, false, true, stateClosingAborted, stateAborted},
		{stateClosingAborted, true, true, stateClosingAborted, stateClosingAborted},
		{stateFinished, true, true, stateFinished, stateFinished},
	} {
		if tc.st.closing() != tc.closing || tc.st.aborted() != tc.aborted {
			t.Errorf("%v: closing %v aborted %v, want %v %v", tc.st, tc.st.closing(), tc.st.aborted(), tc.closing, tc.aborted)
		}
		if got := tc.st.withClosing(); got != tc.withClosing {
			t.Errorf("%v.withClosing() = %v, want %v", tc.st, got, tc.withClosing)
		}
		if got := tc.st.withAborted(); got != tc.withAbo {
			t.Errorf("%v.withAborted() = %v, want %v", tc.st, got, tc.withAbo)
		}
		for _, to := range []connState{tc.st.withClosing(), tc.st.withAborted()} {
			if to != tc.st && !transition(tc.st, to) {
				t.Errorf("%v → %v is asked for but not allowed", tc.st, to)
			}
		}
	}
	if got := numConnStates.String(); got != "invalid" {
		t.Errorf("String of no state = %q", got)
	}
}

// TestIllegalMoveIsRefused checks moveLocked: an illegal move panics under strictStates
// (as in every test of this package) and otherwise leaves the state as it was and logs.
func TestIllegalMoveIsRefused(t *testing.T) {
	var buf bytes.Buffer
	s := &session{br: &Bridge{log: slog.New(slog.NewTextHandler(&buf, nil))}, id: "c1"}
	if !s.moveLocked(stateFinished) || s.state != stateFinished {
		t.Fatalf("open → finished refused; state %v", s.state)
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(r.(string), "finished → open") {
				t.Errorf("illegal move under strictStates: recovered %v, want a panic naming it", r)
			}
		}()
		s.moveLocked(stateOpen)
	}()
	strictStates = false
	defer func() { strictStates = true }()
	if s.moveLocked(stateClosing) || s.state != stateFinished {
		t.Errorf("finished → closing accepted; state %v", s.state)
	}
	if !strings.Contains(buf.String(), "illegal session state move refused") || !strings.Contains(buf.String(), "from=finished") {
		t.Errorf("refused move not logged: %q", buf.String())
	}
}
