package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MinAdminTokenLen is the shortest admin token Validate accepts, so that a configured
// token cannot be guessed.
const MinAdminTokenLen = 16

// Validate checks every setting and returns all problems at once (joined with
// errors.Join), so that an operator fixes a config in one round. Each message names the
// setting in the spelling of the source that set it, quotes the value (never a secret's,
// and never a password inside a URL) and says what would be right.
func (c Config) Validate() error {
	v := validator{c: &c, fields: make(map[string]field)}
	for _, f := range fields() {
		v.fields[f.key] = f
	}

	v.hostPort("listen", c.Listen, `want host:port, such as ":8080" or "127.0.0.1:8080"`)
	if c.PprofListen != "" {
		v.hostPort("pprof_listen", c.PprofListen, `want host:port, such as "127.0.0.1:6060", or empty for off`)
	}
	if c.MetricsListen != "" {
		v.hostPort("metrics_listen", c.MetricsListen, `want host:port, such as "127.0.0.1:9090", or empty for the main listener`)
	}
	if c.MetricsToken != "" && utf8.RuneCountInString(c.MetricsToken) < MinAdminTokenLen {
		v.badSecret("metrics_token", fmt.Sprintf("too short: want at least %d characters, or empty for none", MinAdminTokenLen))
	}
	for _, h := range c.AllowedHosts {
		if !isHostName(h) {
			v.bad("allowed_hosts", h, `want a host name or IP address with no scheme or port, such as "kiosk.example.com"`)
		}
	}
	v.publicURL()
	if c.DataDir == "" {
		v.bad("data_dir", "", `want a directory, such as "./data"`)
	}
	v.natsURL()
	if c.Embedded() && c.NATSListen != "" {
		v.hostPort("nats_listen", c.NATSListen, `want host:port, such as "127.0.0.1:4222", or empty for in-process only`)
		if c.ProducerUser == "" {
			v.bad("producer_user", "", `want a user name for producers on nats_listen, such as "producer"`)
		}
	}
	v.externalOnly()
	v.between("nats_start_timeout", c.NATSStartTimeout, time.Second, time.Hour)

	switch {
	case c.NATSReplicas != 1 && c.NATSReplicas != 3 && c.NATSReplicas != 5:
		v.bad("nats_replicas", "", "want 1, 3 or 5")
	case c.Embedded() && c.NATSReplicas != 1:
		v.bad("nats_replicas", "", "want 1 with the embedded NATS server (nats_url is empty)")
	}

	if c.AdminToken != "" && utf8.RuneCountInString(c.AdminToken) < MinAdminTokenLen {
		v.badSecret("admin_token", fmt.Sprintf("too short: want at least %d characters, or empty to have one generated", MinAdminTokenLen))
	}

	for _, o := range c.AllowedOrigins {
		if !isOrigin(o) {
			v.bad("allowed_origins", o, `want an origin scheme://host[:port] with no path, such as "https://kiosk.example.com"`)
		}
	}
	for _, p := range c.TrustedProxies {
		if _, err := netip.ParseAddr(p); err == nil {
			continue
		}
		if _, err := netip.ParsePrefix(p); err == nil {
			continue
		}
		v.bad("trusted_proxies", p, `want an IP address or CIDR, such as "10.0.0.1" or "10.0.0.0/8"`)
	}

	if c.LeaseTTL < time.Second || c.LeaseTTL%time.Second != 0 {
		v.bad("lease_ttl", "", "want a whole number of seconds, at least 1s")
	}
	v.between("token_ttl", c.TokenTTL, time.Minute, 24*time.Hour)
	v.between("heartbeat", c.Heartbeat, time.Second, 5*time.Minute)
	v.between("shown_flush_every", c.ShownFlushEvery, 100*time.Millisecond, time.Minute)
	if c.BehindEvents < 1 || c.BehindEvents > 100000 {
		v.bad("behind_events", "", "want between 1 and 100000")
	}
	v.between("behind_after", c.BehindAfter, time.Second, 24*time.Hour)
	v.between("proof_skew", c.ProofSkew, time.Second, time.Hour)
	if c.PairBurst < 1 || c.PairBurst > 1000000 {
		v.bad("pair_burst", "", "want between 1 and 1000000")
	}
	v.between("pair_every", c.PairEvery, time.Millisecond, time.Hour)
	if c.MaxConnections < 0 {
		v.bad("max_connections", "", "want 0 (no bound) or more")
	}
	if c.WSConnectBurst < 1 || c.WSConnectBurst > 1000000 {
		v.bad("ws_connect_burst", "", "want between 1 and 1000000")
	}
	v.between("ws_connect_every", c.WSConnectEvery, time.Millisecond, time.Hour)
	if c.WSFailBurst < 1 || c.WSFailBurst > 1000000 {
		v.bad("ws_fail_burst", "", "want between 1 and 1000000")
	}
	v.between("ws_fail_every", c.WSFailEvery, time.Millisecond, time.Hour)
	if c.IPv6Prefix < 48 || c.IPv6Prefix > 128 {
		v.bad("ipv6_prefix", "", "want between 48 and 128 (64 keys one customer network)")
	}
	if c.ReplayLimit < 1 || c.ReplayLimit > 10000 {
		v.bad("replay_limit", "", "want between 1 and 10000")
	}
	if c.CatchupLimit < 1 || c.CatchupLimit > 10000 {
		v.bad("catchup_limit", "", "want between 1 and 10000")
	}
	if least := max(c.ReplayLimit, c.CatchupLimit) + 16; c.QueueFrames != 0 && (c.QueueFrames < least || c.QueueFrames > 100000) {
		v.bad("queue_frames", "", fmt.Sprintf("want 0 (derived) or between max(replay_limit, catchup_limit) + 16 (%d), so a whole catch-up fits with room for live events, and 100000", least))
	}
	if c.MaxEventBytes < 1 || c.MaxEventBytes > 1<<20 {
		v.bad("max_event_bytes", "", "want between 1 and 1048576 (1 MiB)")
	}
	if least := max(1, c.ReplayLimit); c.FeedMaxMsgs < least {
		v.bad("feed_max_msgs", "", fmt.Sprintf("want at least replay_limit (%d), so a replay can always be served", least))
	}
	if c.FeedMaxAge != 0 && c.FeedMaxAge < time.Minute {
		v.bad("feed_max_age", "", "want 0 (no age limit) or at least 1m")
	}
	v.between("dedup_window", c.DedupWindow, time.Second, 24*time.Hour)
	if c.AuditMaxAge < time.Hour {
		v.bad("audit_max_age", "", "want at least 1h")
	}
	if c.AuditMaxBytes < 1<<20 {
		v.bad("audit_max_bytes", "", "want at least 1048576 (1 MiB)")
	}
	v.between("audit_aggregate_window", c.AuditAggregateWindow, time.Second, time.Hour)
	v.between("alert_offline_after", c.AlertOfflineAfter, time.Second, 24*time.Hour)
	if c.AlertAuthFailBurst < 1 || c.AlertAuthFailBurst > 1000000 {
		v.bad("alert_auth_fail_burst", "", "want between 1 and 1000000")
	}
	if c.AlertPairApproveFailBurst < 1 || c.AlertPairApproveFailBurst > 1000000 {
		v.bad("alert_pair_approve_fail_burst", "", "want between 1 and 1000000")
	}
	v.between("alert_burst_window", c.AlertBurstWindow, time.Second, 24*time.Hour)
	if c.LogFormat != "text" && c.LogFormat != "json" {
		v.bad("log_format", "", "want text or json")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		v.bad("log_level", "", "want debug, info, warn or error")
	}
	return errors.Join(v.errs...)
}

// validator gathers Validate's problems.
type validator struct {
	c      *Config
	fields map[string]field
	errs   []error
}

// bad records a problem with the setting key. shown is the offending value to quote
// (one item of a list, say); empty means the whole value, in the spelling its source
// used.
func (v *validator) bad(key, shown, want string) {
	f := v.fields[key]
	o, loaded := v.c.originOf(f)
	if shown == "" {
		shown = f.format(v.c)
		if loaded && f.kind != kindList {
			shown = o.raw
		}
	}
	if key == "nats_url" || key == "public_url" {
		shown = maskUserinfo(shown)
	}
	v.errs = append(v.errs, fmt.Errorf("%s: %s", o.subject(f, shown), want))
}

// badSecret records a problem with a secret setting without showing its value.
func (v *validator) badSecret(key, problem string) {
	f := v.fields[key]
	o, _ := v.c.originOf(f)
	v.errs = append(v.errs, fmt.Errorf("%s: %s", o.secretSubject(f), problem))
}

func (v *validator) between(key string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		v.bad(key, "", fmt.Sprintf("want between %s and %s", formatDuration(lo), formatDuration(hi)))
	}
}

// hostPort checks a listen address; the port must be a number so that a typo is not
// taken for a service name.
func (v *validator) hostPort(key, addr, want string) {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		if n, perr := strconv.Atoi(port); perr == nil && n >= 0 && n <= 65535 && !strings.HasPrefix(port, "+") {
			return
		}
	}
	v.bad(key, "", want)
}

const examplePublicURL = `such as "https://kiosk.example.com"`

func (v *validator) publicURL() {
	s := v.c.PublicURL
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https"):
		v.bad("public_url", "", "want an absolute http or https URL, "+examplePublicURL)
	case u.User != nil:
		v.bad("public_url", "", "want no user name or password in the URL, "+examplePublicURL)
	case u.Hostname() == "" || strings.HasSuffix(u.Host, ":"):
		v.bad("public_url", "", "want a host (and a port number after any colon), "+examplePublicURL)
	case u.RawQuery != "" || u.ForceQuery || strings.Contains(s, "#"):
		v.bad("public_url", "", "want no query or fragment, "+examplePublicURL)
	case u.Opaque != "" || u.Path != "":
		v.bad("public_url", "", "want no path (kioskfeed is served at the root of its host), "+examplePublicURL)
	}
}

func (v *validator) natsURL() {
	if v.c.NATSURL == "" {
		return
	}
	const example = `such as "nats://nats1.example.com:4222,nats://nats2.example.com:4222"`
	for part := range strings.SplitSeq(v.c.NATSURL, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			v.bad("nats_url", "", "want URLs separated by single commas, found an empty one, "+example)
			return
		}
		u, err := url.Parse(part)
		switch {
		case err != nil || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme):
			v.bad("nats_url", "", fmt.Sprintf("want URLs with scheme nats, tls, ws or wss, %s (not %q), or empty for the embedded server", example, maskUserinfo(part)))
			return
		case u.Hostname() == "":
			v.bad("nats_url", "", fmt.Sprintf("want a host in every URL, %s (not %q)", example, maskUserinfo(part)))
			return
		}
	}
}

// externalOnly checks the settings that only make sense with an external NATS server,
// so that an operator who set them is not silently ignored.
func (v *validator) externalOnly() {
	c := v.c
	if c.Embedded() {
		const want = "want it only with nats_url (an external NATS server), or remove it"
		if c.NATSCredsFile != "" {
			v.bad("nats_creds_file", "", want)
		}
		if c.NATSUser != "" {
			v.bad("nats_user", "", want)
		}
		if c.NATSPassword != "" {
			v.badSecret("nats_password", "set without nats_url: "+want)
		}
		for _, f := range []struct{ key, val string }{
			{"nats_nkey_file", c.NATSNKeyFile},
			{"nats_tls_ca", c.NATSTLSCA},
			{"nats_tls_cert", c.NATSTLSCert},
			{"nats_tls_key", c.NATSTLSKey},
		} {
			if f.val != "" {
				v.bad(f.key, "", want)
			}
		}
		return
	}
	if c.NATSCredsFile != "" && c.NATSUser != "" {
		v.bad("nats_user", "", "want either nats_creds_file or nats_user, not both")
	}
	if c.NATSNKeyFile != "" && (c.NATSCredsFile != "" || c.NATSUser != "") {
		v.bad("nats_nkey_file", "", "want one way to authenticate: nats_creds_file, nats_nkey_file or nats_user, not several")
	}
	if c.NATSPassword != "" && c.NATSUser == "" {
		v.badSecret("nats_password", "set without nats_user: want nats_user too")
	}
	if c.NATSTLSCert != "" && c.NATSTLSKey == "" {
		v.bad("nats_tls_cert", "", "want nats_tls_key too (the certificate's private key)")
	}
	if c.NATSTLSKey != "" && c.NATSTLSCert == "" {
		v.bad("nats_tls_key", "", "want nats_tls_cert too (the certificate of this key)")
	}
}

// isHostName reports whether s is a DNS name or an IP address with no scheme, port or
// path: what allowed_hosts lists.
func isHostName(s string) bool {
	if _, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return true
	}
	name := strings.TrimSuffix(s, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// isOrigin reports whether s is a browser origin: scheme://host[:port], nothing more.
func isOrigin(s string) bool {
	u, err := url.Parse(s)
	return err == nil &&
		(u.Scheme == "http" || u.Scheme == "https") &&
		u.User == nil && u.Hostname() != "" && !strings.HasSuffix(u.Host, ":") && u.Opaque == "" && u.Path == "" &&
		u.RawQuery == "" && !u.ForceQuery && !strings.Contains(s, "#")
}
