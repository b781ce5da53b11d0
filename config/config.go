package config

import (
	"net/url"
	"strings"
	"time"
)

// Config holds every setting of the kioskfeed binary, so that one value can be built,
// validated and printed once in cmd/kioskfeed and then handed to each component.
//
// Each field's tags drive loading: key is the YAML key (its env var is KIOSKFEED_ plus
// the key in upper case, its flag is the key with '_' turned into '-'), default is
// the value Default gives it, usage is the flag's help text, and secret marks a value
// that is never printed.
type Config struct {
	// Listen is the HTTP listen address, host:port, that tablets, admins and HTTP
	// producers connect to. Default ":8080" (every interface).
	Listen string `key:"listen" default:":8080" usage:"HTTP listen address, host:port"`

	// PublicURL is the URL tablets and admins use to reach kioskfeed, as seen from
	// outside any proxy. It is the token issuer, the base of DPoP htu checks and, unless
	// AllowedOrigins says otherwise, the only allowed Origin, so it must be exact: an
	// absolute http or https URL with a host and no path, query or fragment. Load strips
	// one trailing "/". Default "http://localhost:8080", or with Load, when no source
	// sets it, "http://localhost:" and the port of Listen (unless that is 0).
	PublicURL string `key:"public_url" default:"http://localhost:8080" usage:"URL tablets and admins use to reach kioskfeed, without a path (unset: http://localhost and the port of --listen)"`

	// DataDir holds everything kioskfeed keeps on local disk: the embedded NATS store and
	// the secrets and keys it generates on first start. Must not be empty. Default
	// "./data".
	DataDir string `key:"data_dir" default:"./data" usage:"directory for the embedded NATS store and generated secrets and keys"`

	// NATSURL points kioskfeed at an existing NATS cluster, so several instances can run
	// side by side and share state. Empty (the default) starts an embedded NATS server
	// instead. Otherwise one or more comma-separated URLs with scheme nats, tls, ws or
	// wss, each with a host.
	NATSURL string `key:"nats_url" usage:"external NATS server URLs, comma-separated (empty = embedded server)"`

	// NATSListen is the embedded server's client listener, host:port, so that producers
	// can publish over NATS. Empty means in-process only: nothing listens. Explicitly
	// setting it to empty in the file, the environment or a flag overrides the default.
	// Unused with NATSURL. Default "127.0.0.1:4222" (loopback only).
	NATSListen string `key:"nats_listen" default:"127.0.0.1:4222" usage:"embedded NATS client listener for producers, host:port (empty = in-process only)"`

	// NATSCredsFile is a NATS credentials file (JWT and nkey seed) for the external
	// server named by NATSURL. Default empty: no credentials file.
	NATSCredsFile string `key:"nats_creds_file" usage:"credentials file for the external NATS server"`

	// NATSUser is the user name for the external server named by NATSURL, for
	// deployments that use user/password rather than a credentials file. Default empty.
	NATSUser string `key:"nats_user" usage:"user name for the external NATS server"`

	// NATSPassword is NATSUser's password. Secret: never printed. Default empty.
	NATSPassword string `key:"nats_password" secret:"true" usage:"password for the external NATS server (prefer the env var: flags show in ps)"`

	// NATSNKeyFile is a file holding a user nkey seed ("SU..."), for an external server
	// that authenticates users by nkey rather than by credentials file or password. Not
	// with NATSCredsFile or NATSUser. Default empty.
	NATSNKeyFile string `key:"nats_nkey_file" usage:"file holding a user nkey seed for the external NATS server"`

	// NATSTLSCA is a PEM file of the CAs that sign the external NATS servers'
	// certificates, for a cluster with a private CA. Setting it or NATSTLSCert makes
	// the connection use TLS even with nats:// URLs. Default empty: the system's roots.
	NATSTLSCA string `key:"nats_tls_ca" usage:"PEM file of the CAs of the external NATS servers' certificates (empty = system roots)"`

	// NATSTLSCert is a PEM client certificate for an external server that verifies
	// clients; with NATSTLSKey. Read again on every reconnect, so a rotated certificate
	// is picked up. Default empty.
	NATSTLSCert string `key:"nats_tls_cert" usage:"PEM client certificate for the external NATS server (with nats_tls_key)"`

	// NATSTLSKey is the PEM private key of NATSTLSCert. Default empty.
	NATSTLSKey string `key:"nats_tls_key" usage:"PEM private key of nats_tls_cert"`

	// NATSStartTimeout is how long kioskfeed waits at start for the external server to
	// accept it and answer on JetStream, so that it may start before NATS or while a
	// cluster elects its leaders; refused credentials fail at once. 1s to 1h. Unused
	// with the embedded server. Default 2m.
	NATSStartTimeout time.Duration `key:"nats_start_timeout" default:"2m" usage:"how long to wait at start for the external NATS JetStream, 1s to 1h"`

	// ProducerUser is the user name producers present on the embedded server's
	// NATSListen listener, so that a producer cannot reach the server's own subjects.
	// Default "producer".
	ProducerUser string `key:"producer_user" default:"producer" usage:"user name producers use on nats_listen"`

	// ProducerPassword is ProducerUser's password. Secret: never printed. Empty (the
	// default) means a password is generated into DataDir on first start.
	ProducerPassword string `key:"producer_password" secret:"true" usage:"password producers use on nats_listen (empty = generated in data_dir)"`

	// NATSReplicas is the JetStream replica count of kioskfeed's streams and buckets:
	// 3 or 5 make acknowledged writes survive the loss of a node in a cluster. 1, 3 or
	// 5; must be 1 with the embedded server. Default 1.
	NATSReplicas int `key:"nats_replicas" default:"1" usage:"JetStream replicas of streams and buckets: 1, 3 or 5 (1 with the embedded server)"`

	// NATSSyncAlways makes the embedded server fsync every write, so that a power cut
	// cannot lose an acknowledged event on a single node. Default true.
	NATSSyncAlways bool `key:"nats_sync_always" default:"true" usage:"embedded NATS server fsyncs every write"`

	// AdminToken is the administrators' bearer token. Secret: never printed. Empty (the
	// default) means one is generated into DataDir on first start; when set, at least
	// 16 characters, so it cannot be guessed.
	AdminToken string `key:"admin_token" secret:"true" usage:"admin bearer token, at least 16 characters (empty = generated in data_dir)"`

	// AllowedOrigins lists the browser origins (scheme://host[:port], no path) allowed
	// to open the tablet WebSocket and post the admin forms, for deployments reached
	// under more than one name. Empty (the default) means PublicURL's origin only; see
	// Origins. Comma-separated in the environment and flags, a YAML list in the file.
	AllowedOrigins []string `key:"allowed_origins" usage:"comma-separated origins allowed to open /ws and post admin forms (empty = public_url's origin)"`

	// AllowedHosts lists more host names (no scheme, no port) that the main listener
	// answers for, besides PublicURL's host, the hosts of AllowedOrigins, localhost and
	// IP addresses. Any other Host header is refused 421, so that a DNS-rebinding page
	// (whose requests carry its own name) cannot reach the dashboard as same-origin.
	// Default empty.
	AllowedHosts []string `key:"allowed_hosts" usage:"comma-separated extra host names the HTTP listener answers for (public_url's and allowed_origins' hosts, localhost and IP addresses always are)"`

	// TrustedProxies lists the IP addresses or CIDRs of reverse proxies whose
	// X-Forwarded-For is believed, so that audit records and rate limits see the real
	// client address. Default empty: X-Forwarded-For is ignored.
	TrustedProxies []string `key:"trusted_proxies" usage:"comma-separated IPs or CIDRs whose X-Forwarded-For is believed"`

	// SigningKeyFile is a PEM file of the ES256 keys that sign access tokens, so that
	// instances sharing a NATS cluster can share keys. Empty (the default) means a key
	// is made in DataDir on first start.
	SigningKeyFile string `key:"signing_key_file" usage:"PEM file of ES256 token signing keys (empty = key made in data_dir)"`

	// LeaseTTL bounds how long a dead instance's device leases outlive it, and so how
	// long a tablet may be refused after its server dies. A whole number of seconds
	// (NATS key TTLs are), at least 1s. Default 15s.
	LeaseTTL time.Duration `key:"lease_ttl" default:"15s" usage:"how long a dead instance's device leases last, whole seconds"`

	// TokenTTL is the lifetime of an access token; it bounds what a missed revocation
	// notice could cost. 1m to 24h. Default 10m.
	TokenTTL time.Duration `key:"token_ttl" default:"10m" usage:"access token lifetime, 1m to 24h"`

	// Heartbeat is how often the server tells a tablet it is alive, so that tablets
	// notice a dead connection. 1s to 5m. Default 20s.
	Heartbeat time.Duration `key:"heartbeat" default:"20s" usage:"WebSocket heartbeat interval, 1s to 5m"`

	// ShownFlushEvery is how often, at most, an instance persists the shown records of
	// its tablets that changed (proof of display): one write per changed chunk, never one
	// per ack. 100ms to 1m. Default 2s.
	ShownFlushEvery time.Duration `key:"shown_flush_every" default:"2s" usage:"how often shown records that changed are persisted, 100ms to 1m"`
	// BehindEvents and BehindAfter decide a device's state: behind when more than
	// BehindEvents events of its feed came after its newest shown, or when the oldest it
	// has not shown is older than BehindAfter; stale when connected longer than
	// BehindAfter with no shown. 1 to 100000, and 1s to 24h. Defaults 5 and 2m.
	BehindEvents int           `key:"behind_events" default:"5" usage:"events not shown past which a device is behind, 1 to 100000"`
	BehindAfter  time.Duration `key:"behind_after" default:"2m" usage:"age of the oldest event not shown past which a device is behind, 1s to 24h"`

	// ProofSkew is how far a DPoP proof's iat may be from the server's clock, because
	// tablet clocks drift. 1s to 1h. Default 10m.
	ProofSkew time.Duration `key:"proof_skew" default:"10m" usage:"allowed DPoP proof iat clock skew, 1s to 1h"`

	// PairBurst and PairEvery bound pairing attempts per client address: a burst of
	// PairBurst, then one every PairEvery. They stop PIN guessing from one address; raise
	// them to provision many tablets from one network at once. Defaults 10 and 6s.
	PairBurst int           `key:"pair_burst" default:"10" usage:"pairing attempts an address may make at once, 1 to 1000000"`
	PairEvery time.Duration `key:"pair_every" default:"6s" usage:"one more pairing attempt per address every this long, 1ms to 1h"`

	// MaxConnections bounds the tablet sockets of this instance; past it new ones are
	// closed 4429 and retry after a longer backoff (elsewhere, behind a balancer). 0, the
	// default, means no bound (the process's open-file limit still is one).
	MaxConnections int `key:"max_connections" default:"0" usage:"most tablet sockets on this instance (0 = no bound)"`

	// WSConnectBurst and WSConnectEvery bound WebSocket handshakes per client address: a
	// burst, then one every WSConnectEvery; past them the upgrade gets 429 with
	// Retry-After. Loose on purpose: hundreds of tablets behind one NAT address
	// reconnect together after a restart. Defaults 1000 and 20ms (50 a second).
	WSConnectBurst int           `key:"ws_connect_burst" default:"1000" usage:"WebSocket handshakes a client address may make at once, 1 to 1000000"`
	WSConnectEvery time.Duration `key:"ws_connect_every" default:"20ms" usage:"one more WebSocket handshake per client address every this long, 1ms to 1h"`
	// WSFailBurst and WSFailEvery bound failed socket authentications per client
	// address (closes 4400, 4401, 4403, 4408, protocol errors before the auth): past
	// them new sockets get 429 before the upgrade and a failing one is closed 4429.
	// Strict on purpose: a real tablet refreshes its token before it uses it. Defaults
	// 20 and 3s.
	WSFailBurst int           `key:"ws_fail_burst" default:"20" usage:"failed WebSocket authentications a client address may make at once, 1 to 1000000"`
	WSFailEvery time.Duration `key:"ws_fail_every" default:"3s" usage:"one more failed WebSocket authentication per client address every this long, 1ms to 1h"`
	// IPv6Prefix is how many leading bits of an IPv6 client address every per-address
	// limit keys on (pairing, tokens, pair requests, code guesses, admin login and
	// bearer tokens, producer keys, sockets): one /64 is one customer network, whose
	// 2^64 addresses would otherwise each have an allowance. 48 to 128. Default 64.
	IPv6Prefix int `key:"ipv6_prefix" default:"64" usage:"leading bits of an IPv6 client address that per-address limits key on, 48 to 128"`

	// ReplayLimit is the most item events of a feed's state, what a reset shows (how far
	// back a replay goes is CatchupLimit). 1 to 10000. Default 100.
	ReplayLimit int `key:"replay_limit" default:"100" usage:"most item events in a feed's state (what a reset sends), 1 to 10000"`

	// CatchupLimit is the most events a reconnecting tablet is replayed; one further
	// behind gets a reset and the feed's state instead, so one catch-up holds at most
	// this many events in memory (not the whole log). 1 to 10000. Default 200.
	CatchupLimit int `key:"catchup_limit" default:"200" usage:"most events replayed to a reconnecting tablet; further behind it gets a reset and the state, 1 to 10000"`

	// QueueFrames bounds each tablet's queue of unsent frames; a tablet whose queue
	// fills is closed 1013. At least max(replay_limit, catchup_limit) + 16, so a whole
	// catch-up fits with room for live events; at most 100000. Default 0: that bound or
	// 256, whichever is more (256 with the defaults), so raising replay_limit or
	// catchup_limit raises it too.
	QueueFrames int `key:"queue_frames" default:"0" usage:"most unsent frames per tablet before it is closed 1013 (0 = max(256, max(replay_limit, catchup_limit) + 16)), else at least max(replay_limit, catchup_limit) + 16"`

	// MaxEventBytes is the largest event data a producer may publish, bounding memory
	// per queued frame. 1 to 1048576. Default 65536 (64 KiB).
	MaxEventBytes int `key:"max_event_bytes" default:"65536" usage:"largest producer event data accepted, bytes, 1 to 1048576"`

	// FeedMaxMsgs is how many events the FEEDS stream keeps per feed per kind; at least
	// ReplayLimit, so that a replay can always be served. Default 1000.
	FeedMaxMsgs int `key:"feed_max_msgs" default:"1000" usage:"events kept per feed per kind, at least replay_limit"`

	// FeedMaxAge is how long the FEEDS stream keeps an event. 0 (the default) means no
	// age limit; otherwise at least 1m.
	FeedMaxAge time.Duration `key:"feed_max_age" default:"0s" usage:"age after which events are dropped (0 = no age limit, else at least 1m)"`

	// DedupWindow is how long a producer's event id is remembered, so that a retried
	// publish is not shown twice. 1s to 24h. Default 2m.
	DedupWindow time.Duration `key:"dedup_window" default:"2m" usage:"window in which a repeated event id is dropped, 1s to 24h"`

	// AuditMaxAge is how long audit records are kept. At least 1h. Default 720h (30
	// days).
	AuditMaxAge time.Duration `key:"audit_max_age" default:"720h" usage:"how long audit records are kept, at least 1h"`

	// AuditMaxBytes bounds the audit log on disk: past it the oldest records are
	// dropped, so that no flood of records fills the disk. At least 1 MiB. Default
	// 268435456 (256 MiB, about a million records).
	AuditMaxBytes int `key:"audit_max_bytes" default:"268435456" usage:"most bytes the audit log keeps on disk (oldest dropped first), at least 1048576"`

	// AuditAggregateWindow is how long repeated refusals (auth_fail, token_refused,
	// pair_fail, pair_approve_fail, admin_login_fail, duplicate_refused,
	// producer_refused) of one type from one address (IPv6: one ipv6_prefix) are
	// counted into one record after the first is written at once. 1s to 1h. Default 1m.
	AuditAggregateWindow time.Duration `key:"audit_aggregate_window" default:"1m" usage:"repeated refusals of one type from one address are summed up into one audit record per window, 1s to 1h"`

	// AlertOfflineAfter is how long a paired device that was seen online may have no
	// live connection before a device_offline alert is raised (docs/protocol.md §12);
	// device_online follows when it is back. 1s to 24h. Default 2m.
	AlertOfflineAfter time.Duration `key:"alert_offline_after" default:"2m" usage:"how long a device may be offline before device_offline is raised, 1s to 24h"`
	// AlertAuthFailBurst refused socket auths for one device or from one address within
	// AlertBurstWindow raise auth_fail_burst. 1 to 1000000. Default 10.
	AlertAuthFailBurst int `key:"alert_auth_fail_burst" default:"10" usage:"refused socket auths for one device or address within alert_burst_window that raise auth_fail_burst, 1 to 1000000"`
	// AlertPairApproveFailBurst approve or deny attempts naming no open pairing request
	// from one address within AlertBurstWindow raise pair_approve_fail_burst. 1 to
	// 1000000. Default 5.
	AlertPairApproveFailBurst int `key:"alert_pair_approve_fail_burst" default:"5" usage:"unknown codes approved or denied from one address within alert_burst_window that raise pair_approve_fail_burst, 1 to 1000000"`
	// AlertBurstWindow is the sliding window of the burst alerts. 1s to 24h. Default 5m.
	AlertBurstWindow time.Duration `key:"alert_burst_window" default:"5m" usage:"window of the auth_fail and pair_approve_fail burst alerts, 1s to 24h"`
	// WebhookAllowPrivate lets webhooks target private, loopback and shared (CGNAT)
	// addresses, for receivers on premises and tests. Link-local, cloud metadata,
	// unspecified, multicast and reserved addresses stay refused. Default false.
	WebhookAllowPrivate bool `key:"webhook_allow_private" default:"false" usage:"allow webhooks to private and loopback addresses (on-premises receivers)"`

	// LogFormat picks log lines for people ("text", the default) or for a log pipeline
	// ("json").
	LogFormat string `key:"log_format" default:"text" usage:"log format: text or json"`

	// LogLevel is the least severe level logged: "debug", "info" (the default), "warn"
	// or "error".
	LogLevel string `key:"log_level" default:"info" usage:"log level: debug, info, warn or error"`

	// PprofListen, when set, serves Go's net/http/pprof profiles on this host:port, on a
	// listener of its own so that it is never exposed with the public one. Keep it on
	// loopback. Empty (the default) means off.
	PprofListen string `key:"pprof_listen" usage:"serve Go profiles (net/http/pprof) on this host:port; keep it on loopback (empty = off)"`

	// MetricsListen, when set, moves GET /metrics off the main listener onto a listener
	// of its own at this host:port, so that strangers cannot read the fleet's size; the
	// main listener then answers 404 there. Empty (the default) serves /metrics on the
	// main listener, as the load tool expects.
	MetricsListen string `key:"metrics_listen" usage:"serve /metrics on this host:port instead of the main listener (empty = on the main listener)"`

	// MetricsToken, when set, makes GET /metrics (wherever it is served) require
	// "Authorization: Bearer <token>"; at least 16 characters, so it cannot be guessed.
	// Secret: never printed. Empty (the default) means no token.
	MetricsToken string `key:"metrics_token" secret:"true" usage:"bearer token that GET /metrics requires, at least 16 characters (empty = none)"`

	// sources records, per key, where Load found the value, so that Validate and
	// WriteEffective can name it. Nil for a Config that did not come from Load.
	sources map[string]origin
}

// Default returns the settings kioskfeed runs with when nothing is configured, one
// machine with an embedded NATS server; Load starts from it.
func Default() Config {
	var c Config
	for _, f := range fields() {
		v, err := f.parse(f.def)
		if err != nil {
			// The default tags are constants checked by the tests.
			panic("config: default of " + f.key + ": " + err.Error())
		}
		f.value(&c).Set(v)
	}
	return c
}

// Origins returns the browser origins allowed to open the tablet WebSocket and post the
// admin forms, so that callers need not repeat the "empty means the public URL's origin"
// rule. Schemes and hosts are lower-cased, as browsers send them. Call it on a Config
// that passed Validate; it returns nil if PublicURL is unusable.
func (c Config) Origins() []string {
	if len(c.AllowedOrigins) > 0 {
		out := make([]string, 0, len(c.AllowedOrigins))
		for _, o := range c.AllowedOrigins {
			u, err := url.Parse(o)
			if err != nil || u.Host == "" {
				out = append(out, o)
				continue
			}
			out = append(out, originOf(u))
		}
		return out
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil || u.Host == "" {
		return nil
	}
	return []string{originOf(u)}
}

func originOf(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}

// Embedded reports whether kioskfeed runs its own NATS server (NATSURL is empty), so
// that callers share one definition of the mode.
func (c Config) Embedded() bool {
	return c.NATSURL == ""
}
