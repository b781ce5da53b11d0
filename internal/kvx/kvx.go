package kvx

import (
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// IsConflict reports a lost compare-and-set or create: the key existed or changed
// meanwhile. On replicated buckets a losing Create can come back as a bare API error
// (10071 wrong last sequence, 10164) that does not match jetstream.ErrKeyExists
// (NOTES.md), so all three count.
func IsConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
