package config_test

import (
	"slices"
	"strings"
	"testing"
)

// The HTTP hardening keys: a metrics listener, a metrics token and more host names.
// Each refusal names its source and what would be right, and a token is never quoted.
func TestValidateHardeningKeys(t *testing.T) {
	tests := []struct {
		name string
		in   input
		want []string // empty: valid
		hide []string
	}{
		{name: "defaults", in: input{}},
		{name: "metrics_listen", in: input{env: mapOf("KIOSKFEED_METRICS_LISTEN", "127.0.0.1:9090")}},
		{name: "metrics_listen without a port", in: input{env: mapOf("KIOSKFEED_METRICS_LISTEN", "localhost")},
			want: []string{`KIOSKFEED_METRICS_LISTEN "localhost": want host:port, such as "127.0.0.1:9090", or empty for the main listener`}},
		{name: "metrics_token", in: input{args: []string{"--metrics-token=0123456789abcdef"}}},
		{name: "metrics_token too short", in: input{env: mapOf("KIOSKFEED_METRICS_TOKEN", "short-secret")},
			want: []string{`metrics_token (KIOSKFEED_METRICS_TOKEN): too short: want at least 16 characters`}, hide: []string{"short-secret"}},
		{name: "allowed_hosts", in: input{file: "allowed_hosts:\n  - kiosk.example.com\n  - Lobby-2.Example.org.\n  - 10.0.0.7\n  - \"[fd00::1]\"\n  - fd00::2\n"}},
		{name: "allowed_hosts with a scheme", in: input{env: mapOf("KIOSKFEED_ALLOWED_HOSTS", "ok.example,https://k.example")},
			want: []string{`KIOSKFEED_ALLOWED_HOSTS "https://k.example": want a host name or IP address with no scheme or port`}, hide: []string{`"ok.example"`}},
		{name: "allowed_hosts with a port", in: input{args: []string{"--allowed-hosts=k.example:8080"}},
			want: []string{`--allowed-hosts "k.example:8080": want a host name or IP address`}},
		{name: "allowed_hosts wildcard", in: input{file: "allowed_hosts:\n  - \"*.example.com\"\n"},
			want: []string{`allowed_hosts in {file} "*.example.com": want a host name`}},
		{name: "allowed_hosts bad label", in: input{args: []string{"--allowed-hosts=-a.example,a..b,a b"}},
			want: []string{`--allowed-hosts "-a.example"`, `--allowed-hosts "a..b"`, `--allowed-hosts "a b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, path := mustLoad(t, tt.in)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			}
			got := err.Error()
			for _, w := range tt.want {
				if w = strings.ReplaceAll(w, "{file}", path); !strings.Contains(got, w) {
					t.Errorf("Validate() = %q\nwant it to contain %q", got, w)
				}
			}
			for _, h := range tt.hide {
				if strings.Contains(got, h) {
					t.Errorf("Validate() = %q\nwant it not to contain %q", got, h)
				}
			}
			if n := len(strings.Split(got, "\n")); n != len(tt.want) {
				t.Errorf("Validate() gave %d problems, want %d:\n%s", n, len(tt.want), got)
			}
		})
	}
}

// The defaults keep today's behaviour for a new install (metrics on the main listener,
// no token, no extra hosts), and the token is masked where the config is printed.
func TestHardeningDefaultsAndMasking(t *testing.T) {
	c, _ := mustLoad(t, input{})
	if c.MetricsListen != "" || c.MetricsToken != "" || len(c.AllowedHosts) != 0 {
		t.Fatalf("defaults: metrics_listen %q, metrics_token %q, allowed_hosts %q; want all empty", c.MetricsListen, c.MetricsToken, c.AllowedHosts)
	}
	c, _ = mustLoad(t, input{env: mapOf("KIOSKFEED_METRICS_TOKEN", "metrics-secret-0123456789", "KIOSKFEED_ALLOWED_HOSTS", "a.example,b.example")})
	if line := effectiveLine(t, c, "metrics_token"); strings.Contains(line, "metrics-secret") {
		t.Fatalf("effective config shows the metrics token: %q", line)
	}
	if !slices.Equal(c.AllowedHosts, []string{"a.example", "b.example"}) {
		t.Fatalf("allowed_hosts = %q, want [a.example b.example]", c.AllowedHosts)
	}
}

func mapOf(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}
