package kvx_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/internal/kvx"
)

// TestIsConflict: what counts as a lost create or compare-and-set. A wrong answer reads a
// replayed jti as an outage (503), or an outage as a replay.
func TestIsConflict(t *testing.T) {
	for name, tc := range map[string]struct {
		err  error
		want bool
	}{
		"key exists":              {jetstream.ErrKeyExists, true},
		"key exists, wrapped":     {fmt.Errorf("create: %w", jetstream.ErrKeyExists), true},
		"wrong last sequence":     {&jetstream.APIError{ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}, true},
		"wrong last sequence (0)": {&jetstream.APIError{ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant}, true},
		"other API error":         {&jetstream.APIError{ErrorCode: jetstream.JSErrCodeStreamNotFound}, false},
		"no stream response":      {jetstream.ErrNoStreamResponse, false},
		"plain":                   {errors.New("nats: timeout"), false},
		"nil":                     {nil, false},
	} {
		if got := kvx.IsConflict(tc.err); got != tc.want {
			t.Errorf("%s: IsConflict = %v, want %v", name, got, tc.want)
		}
	}
}
