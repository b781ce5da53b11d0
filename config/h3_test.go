package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/config"
)

// The audit log's bounds: bytes on disk, and the window repeated refusals are summed
// up in.
func TestAuditBoundKeys(t *testing.T) {
	d := config.Default()
	if d.AuditMaxBytes != 256<<20 || d.AuditAggregateWindow != time.Minute {
		t.Fatalf("defaults audit_max_bytes %d, audit_aggregate_window %s; want 268435456 and 1m", d.AuditMaxBytes, d.AuditAggregateWindow)
	}
	tests := []struct {
		name string
		in   input
		want string // empty: valid
	}{
		{name: "defaults", in: input{}},
		{name: "audit_max_bytes", in: input{env: mapOf("KIOSKFEED_AUDIT_MAX_BYTES", "1048576")}},
		{name: "audit_max_bytes too small", in: input{args: []string{"--audit-max-bytes=1000"}}, want: "want at least 1048576"},
		{name: "audit_aggregate_window", in: input{env: mapOf("KIOSKFEED_AUDIT_AGGREGATE_WINDOW", "10s")}},
		{name: "audit_aggregate_window zero", in: input{args: []string{"--audit-aggregate-window=0s"}}, want: `--audit-aggregate-window "0s": want between 1s and 1h`},
		{name: "audit_aggregate_window too long", in: input{file: "audit_aggregate_window: 2h\n"}, want: "want between 1s and 1h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := mustLoad(t, tt.in)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
