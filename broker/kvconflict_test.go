package broker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
)

func TestIsKVConflict(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"ErrKeyExists", jetstream.ErrKeyExists, true},
		{"wrapped ErrKeyExists", fmt.Errorf("create: %w", jetstream.ErrKeyExists), true},
		{"bare 10071", &jetstream.APIError{Code: 400, ErrorCode: 10071}, true},
		{"bare 10164 (replicated streams)", fmt.Errorf("x: %w", &jetstream.APIError{Code: 400, ErrorCode: 10164}), true},
		{"other API error", &jetstream.APIError{Code: 503, ErrorCode: 10008}, false},
		{"timeout", context.DeadlineExceeded, false},
		{"other", errors.New("nats: connection closed"), false},
	}
	for _, tt := range tests {
		if got := broker.IsKVConflict(tt.err); got != tt.want {
			t.Errorf("%s: IsKVConflict = %v, want %v", tt.name, got, tt.want)
		}
	}
}
