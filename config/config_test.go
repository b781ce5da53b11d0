package config_test

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/config"
)

// input is what one Load call sees. file, when not empty, is written to a temporary
// file that KIOSKFEED_CONFIG names (unless env already names one).
type input struct {
	file string
	env  map[string]string
	args []string
}

// load runs config.Load on in and returns the path of the file it wrote ("" if none).
func load(tb testing.TB, in input) (config.Config, string, error) {
	tb.Helper()
	env := make(map[string]string, len(in.env)+1)
	for k, v := range in.env {
		env[k] = v
	}
	path := ""
	if in.file != "" {
		path = filepath.Join(tb.TempDir(), "kf.yaml")
		if err := os.WriteFile(path, []byte(in.file), 0o600); err != nil {
			tb.Fatal(err)
		}
		if _, ok := env["KIOSKFEED_CONFIG"]; !ok {
			env["KIOSKFEED_CONFIG"] = path
		}
	}
	fs := flag.NewFlagSet("kioskfeed", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c, err := config.Load(fs, in.args, mapEnv(env))
	return c, path, err
}

func mapEnv(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// mustLoad is load for inputs that must be readable.
func mustLoad(tb testing.TB, in input) (config.Config, string) {
	tb.Helper()
	c, path, err := load(tb, in)
	if err != nil {
		tb.Fatalf("Load: %v", err)
	}
	return c, path
}

// sameSettings compares the exported fields of two Configs, ignoring where values
// came from.
func sameSettings(a, b config.Config) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		if !va.Type().Field(i).IsExported() {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			return false
		}
	}
	return true
}

// effective returns c's WriteEffective output.
func effective(tb testing.TB, c config.Config) string {
	tb.Helper()
	var b bytes.Buffer
	if err := c.WriteEffective(&b); err != nil {
		tb.Fatalf("WriteEffective: %v", err)
	}
	return b.String()
}

// effectiveLine returns the line of WriteEffective's output for key.
func effectiveLine(tb testing.TB, c config.Config, key string) string {
	tb.Helper()
	for line := range strings.Lines(effective(tb, c)) {
		if strings.HasPrefix(line, key+": ") {
			return strings.TrimSuffix(line, "\n")
		}
	}
	tb.Fatalf("WriteEffective has no line for %s", key)
	return ""
}

func TestDefault(t *testing.T) {
	want := config.Config{
		Listen:           ":8080",
		PublicURL:        "http://localhost:8080",
		DataDir:          "./data",
		NATSURL:          "",
		NATSListen:       "127.0.0.1:4222",
		NATSCredsFile:    "",
		NATSUser:         "",
		NATSPassword:     "",
		NATSNKeyFile:     "",
		NATSTLSCA:        "",
		NATSTLSCert:      "",
		NATSTLSKey:       "",
		NATSStartTimeout: 2 * time.Minute,
		ProducerUser:     "producer",
		ProducerPassword: "",
		NATSReplicas:     1,
		NATSSyncAlways:   true,
		AdminToken:       "",
		AllowedOrigins:   nil,
		TrustedProxies:   nil,
		SigningKeyFile:   "",
		LeaseTTL:         15 * time.Second,
		TokenTTL:         10 * time.Minute,
		Heartbeat:        20 * time.Second,
		ProofSkew:        10 * time.Minute,
		PairBurst:        10,
		PairEvery:        6 * time.Second,
		MaxConnections:   0,
		WSConnectBurst:   1000,
		WSConnectEvery:   20 * time.Millisecond,
		WSFailBurst:      20,
		WSFailEvery:      3 * time.Second,
		IPv6Prefix:       64,
		ReplayLimit:      100,
		CatchupLimit:     200,
		QueueFrames:      0,
		MaxEventBytes:    65536,
		FeedMaxMsgs:      1000,
		FeedMaxAge:       0,
		DedupWindow:      2 * time.Minute,
		AuditMaxAge:      720 * time.Hour,
		AuditMaxBytes:    256 << 20,
		LogFormat:        "text",
		LogLevel:         "info",

		AuditAggregateWindow: time.Minute,
		ShownFlushEvery:      2 * time.Second,
		BehindEvents:         5,
		BehindAfter:          2 * time.Minute,

		AlertOfflineAfter:         2 * time.Minute,
		AlertAuthFailBurst:        10,
		AlertPairApproveFailBurst: 5,
		AlertBurstWindow:          5 * time.Minute,
		WebhookAllowPrivate:       false,
	}
	if got := config.Default(); !sameSettings(got, want) {
		t.Errorf("Default() =\n%+v\nwant\n%+v", got, want)
	}
	if err := config.Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v, want nil", err)
	}
	if !config.Default().Embedded() {
		t.Errorf("Default().Embedded() = false, want true")
	}

	c, _ := mustLoad(t, input{})
	if !sameSettings(c, want) {
		t.Errorf("Load with nothing set =\n%+v\nwant the defaults\n%+v", c, want)
	}
	for line := range strings.Lines(effective(t, c)) {
		if !strings.HasSuffix(line, "  # default\n") {
			t.Errorf("WriteEffective line %q: want source default", line)
		}
	}
}

func TestPrecedence(t *testing.T) {
	type setting struct {
		name string
		key  string
		file string // YAML line
		env  string // value of the env var
		flag string // one argument
		get  func(config.Config) any

		// The value with defaults only, then with each source on top of the last.
		def, fromFile, fromEnv, fromFlag any
	}
	settings := []setting{
		{
			name: "string", key: "listen",
			file: `listen: ":1001"`, env: ":1002", flag: "--listen=:1003",
			get: func(c config.Config) any { return c.Listen },
			def: ":8080", fromFile: ":1001", fromEnv: ":1002", fromFlag: ":1003",
		},
		{
			name: "duration", key: "heartbeat",
			file: "heartbeat: 21s", env: "22s", flag: "--heartbeat=23s",
			get: func(c config.Config) any { return c.Heartbeat },
			def: 20 * time.Second, fromFile: 21 * time.Second, fromEnv: 22 * time.Second, fromFlag: 23 * time.Second,
		},
		{
			name: "int", key: "replay_limit",
			file: "replay_limit: 101", env: "102", flag: "--replay-limit=103",
			get: func(c config.Config) any { return c.ReplayLimit },
			def: 100, fromFile: 101, fromEnv: 102, fromFlag: 103,
		},
		{
			name: "bool", key: "nats_sync_always",
			file: "nats_sync_always: false", env: "true", flag: "--nats-sync-always=false",
			get: func(c config.Config) any { return c.NATSSyncAlways },
			def: true, fromFile: false, fromEnv: true, fromFlag: false,
		},
		{
			name: "list", key: "allowed_origins",
			file: "allowed_origins: [https://file.example]", env: "https://env.example, https://env2.example",
			flag: "--allowed-origins=https://flag.example",
			get:  func(c config.Config) any { return c.AllowedOrigins },
			def:  []string(nil), fromFile: []string{"https://file.example"},
			fromEnv: []string{"https://env.example", "https://env2.example"}, fromFlag: []string{"https://flag.example"},
		},
	}
	for _, s := range settings {
		for layers := range 8 {
			withFile, withEnv, withFlag := layers&1 != 0, layers&2 != 0, layers&4 != 0
			var parts []string
			var in input
			want, wantSource := s.def, "default"
			if withFile {
				parts = append(parts, "file")
				in.file = s.file + "\n"
				want, wantSource = s.fromFile, "file "
			}
			if withEnv {
				parts = append(parts, "env")
				in.env = map[string]string{"KIOSKFEED_" + strings.ToUpper(s.key): s.env}
				want, wantSource = s.fromEnv, "env KIOSKFEED_"+strings.ToUpper(s.key)
			}
			if withFlag {
				parts = append(parts, "flag")
				in.args = []string{s.flag}
				want, wantSource = s.fromFlag, "flag --"+strings.ReplaceAll(s.key, "_", "-")
			}
			if len(parts) == 0 {
				parts = []string{"default"}
			}
			t.Run(s.name+"/"+strings.Join(parts, "+"), func(t *testing.T) {
				c, path := mustLoad(t, in)
				if got := s.get(c); !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", s.key, got, want)
				}
				if wantSource == "file " {
					wantSource += path
				}
				if got := effectiveLine(t, c, s.key); !strings.HasSuffix(got, "  # "+wantSource) {
					t.Errorf("WriteEffective line %q: want source %q", got, wantSource)
				}
			})
		}
	}
}

func TestExplicitEmptyOverridesDefault(t *testing.T) {
	tests := []struct {
		name       string
		in         input
		wantSource string
	}{
		{"empty env", input{env: map[string]string{"KIOSKFEED_NATS_LISTEN": ""}}, "env KIOSKFEED_NATS_LISTEN"},
		{"empty flag", input{args: []string{"--nats-listen="}}, "flag --nats-listen"},
		{"empty flag, separate argument", input{args: []string{"--nats-listen", ""}}, "flag --nats-listen"},
		{"empty string in file", input{file: "nats_listen: \"\"\n"}, "file "},
		{"null in file", input{file: "nats_listen:\n"}, "file "},
		{"empty env over file", input{file: "nats_listen: 127.0.0.1:4333\n", env: map[string]string{"KIOSKFEED_NATS_LISTEN": ""}}, "env KIOSKFEED_NATS_LISTEN"},
		{"empty flag over env", input{env: map[string]string{"KIOSKFEED_NATS_LISTEN": "127.0.0.1:4333"}, args: []string{"--nats-listen="}}, "flag --nats-listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, path := mustLoad(t, tt.in)
			if c.NATSListen != "" {
				t.Errorf("NATSListen = %q, want empty", c.NATSListen)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil (empty nats_listen means in-process only)", err)
			}
			want := `nats_listen: ""  # ` + strings.Replace(tt.wantSource, "file ", "file "+path, 1)
			if got := effectiveLine(t, c, "nats_listen"); got != want {
				t.Errorf("WriteEffective line = %q, want %q", got, want)
			}
		})
	}
}

func TestConfigFileNamed(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env.yaml")
	flagFile := filepath.Join(dir, "flag.yaml")
	if err := os.WriteFile(envFile, []byte("listen: \":2001\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(flagFile, []byte("listen: \":2002\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   input
		want string
	}{
		{"KIOSKFEED_CONFIG", input{env: map[string]string{"KIOSKFEED_CONFIG": envFile}}, ":2001"},
		{"--config", input{args: []string{"--config", flagFile}}, ":2002"},
		{"--config beats KIOSKFEED_CONFIG", input{env: map[string]string{"KIOSKFEED_CONFIG": envFile}, args: []string{"--config=" + flagFile}}, ":2002"},
		{"empty KIOSKFEED_CONFIG reads no file", input{env: map[string]string{"KIOSKFEED_CONFIG": ""}}, ":8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := mustLoad(t, tt.in)
			if c.Listen != tt.want {
				t.Errorf("Listen = %q, want %q", c.Listen, tt.want)
			}
		})
	}
}

func TestLoadLeavesCallerFlags(t *testing.T) {
	fs := flag.NewFlagSet("kioskfeed", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	demo := fs.Bool("demo", false, "run with demo feeds")
	c, err := config.Load(fs, []string{"--demo", "--listen=:3000", "serve", "--not-parsed"}, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !*demo {
		t.Errorf("--demo = false, want true")
	}
	if c.Listen != ":3000" {
		t.Errorf("Listen = %q, want %q", c.Listen, ":3000")
	}
	if got, want := fs.Args(), []string{"serve", "--not-parsed"}; !slices.Equal(got, want) {
		t.Errorf("fs.Args() = %q, want %q", got, want)
	}
}

func TestValidate(t *testing.T) {
	env := func(kv ...string) map[string]string {
		m := make(map[string]string)
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name string
		in   input
		edit func(*config.Config) // applied after Load: a value set in code
		want []string             // substrings of the error; none means Validate passes. {file} is the config file.
		hide []string             // must not appear in the error
	}{
		{name: "defaults pass"},
		{name: "everything valid and set", in: input{env: env(
			"KIOSKFEED_LISTEN", "127.0.0.1:0",
			"KIOSKFEED_PUBLIC_URL", "https://kiosk.example.com:8443/",
			"KIOSKFEED_NATS_URL", "nats://a.example:4222, tls://b.example:4222,ws://c.example,wss://d.example",
			"KIOSKFEED_NATS_USER", "kf",
			"KIOSKFEED_NATS_PASSWORD", "pw",
			"KIOSKFEED_NATS_REPLICAS", "3",
			"KIOSKFEED_ADMIN_TOKEN", "0123456789abcdef",
			"KIOSKFEED_ALLOWED_ORIGINS", "https://kiosk.example.com,http://[::1]:8080",
			"KIOSKFEED_TRUSTED_PROXIES", "10.0.0.1, 10.0.0.0/8, ::1, fd00::/8",
			"KIOSKFEED_LEASE_TTL", "1s",
			"KIOSKFEED_TOKEN_TTL", "24h",
			"KIOSKFEED_HEARTBEAT", "5m",
			"KIOSKFEED_PROOF_SKEW", "1h",
			"KIOSKFEED_REPLAY_LIMIT", "10000",
			"KIOSKFEED_MAX_EVENT_BYTES", "1048576",
			"KIOSKFEED_FEED_MAX_MSGS", "10000",
			"KIOSKFEED_FEED_MAX_AGE", "1m",
			"KIOSKFEED_DEDUP_WINDOW", "24h",
			"KIOSKFEED_AUDIT_MAX_AGE", "1h",
			"KIOSKFEED_LOG_FORMAT", "json",
			"KIOSKFEED_LOG_LEVEL", "debug",
		)}},
		{name: "external NATS with a creds file", in: input{env: env("KIOSKFEED_NATS_URL", "nats://n:4222", "KIOSKFEED_NATS_CREDS_FILE", "/run/kf.creds", "KIOSKFEED_NATS_REPLICAS", "5")}},
		{name: "external NATS with an nkey and TLS", in: input{env: env(
			"KIOSKFEED_NATS_URL", "tls://n1:4222,tls://n2:4222,tls://n3:4222",
			"KIOSKFEED_NATS_NKEY_FILE", "/run/kf.nk",
			"KIOSKFEED_NATS_TLS_CA", "/run/ca.pem",
			"KIOSKFEED_NATS_TLS_CERT", "/run/kf.pem",
			"KIOSKFEED_NATS_TLS_KEY", "/run/kf-key.pem",
			"KIOSKFEED_NATS_REPLICAS", "3",
			"KIOSKFEED_NATS_START_TIMEOUT", "1h",
		)}},
		{name: "external NATS with a TLS CA only", in: input{env: env("KIOSKFEED_NATS_URL", "nats://n:4222", "KIOSKFEED_NATS_TLS_CA", "/run/ca.pem", "KIOSKFEED_NATS_START_TIMEOUT", "1s")}},
		{name: "external NATS with a client certificate only", in: input{env: env("KIOSKFEED_NATS_URL", "nats://n:4222", "KIOSKFEED_NATS_TLS_CERT", "/run/kf.pem", "KIOSKFEED_NATS_TLS_KEY", "/run/kf-key.pem")}},
		{name: "nats_start_timeout with embedded server is unused, not wrong", in: input{args: []string{"--nats-start-timeout=5m"}}},
		{name: "no producer user without a listener", in: input{env: env("KIOSKFEED_NATS_LISTEN", "", "KIOSKFEED_PRODUCER_USER", "")}},

		{name: "listen from env", in: input{env: env("KIOSKFEED_LISTEN", "abc")},
			want: []string{`KIOSKFEED_LISTEN "abc": want host:port, such as ":8080" or "127.0.0.1:8080"`}},
		{name: "listen from flag", in: input{args: []string{"--listen", "abc"}},
			want: []string{`--listen "abc": want host:port`}},
		{name: "listen from file", in: input{file: "listen: abc\n"},
			want: []string{`listen in {file} "abc": want host:port`}},
		{name: "listen set in code", edit: func(c *config.Config) { c.Listen = "abc" },
			want: []string{`listen "abc": want host:port`}},
		{name: "listen port out of range", in: input{env: env("KIOSKFEED_LISTEN", ":65536")},
			want: []string{`KIOSKFEED_LISTEN ":65536": want host:port`}},
		{name: "listen set in code after load from env", in: input{env: env("KIOSKFEED_LISTEN", ":9000")},
			edit: func(c *config.Config) { c.Listen = "abc" },
			want: []string{`listen "abc": want host:port`}, hide: []string{"KIOSKFEED_LISTEN"}},

		{name: "public_url not absolute", in: input{env: env("KIOSKFEED_PUBLIC_URL", "kiosk.example.com")},
			want: []string{`KIOSKFEED_PUBLIC_URL "kiosk.example.com": want an absolute http or https URL`}},
		{name: "public_url scheme", in: input{env: env("KIOSKFEED_PUBLIC_URL", "ftp://kiosk.example.com")},
			want: []string{`KIOSKFEED_PUBLIC_URL "ftp://kiosk.example.com": want an absolute http or https URL`}},
		{name: "public_url no host", in: input{args: []string{"--public-url=https://"}},
			want: []string{`--public-url "https://": want a host`}},
		{name: "public_url query", in: input{env: env("KIOSKFEED_PUBLIC_URL", "https://k.example?a=1")},
			want: []string{`KIOSKFEED_PUBLIC_URL "https://k.example?a=1": want no query or fragment`}},
		{name: "public_url fragment", in: input{env: env("KIOSKFEED_PUBLIC_URL", "https://k.example#top")},
			want: []string{`KIOSKFEED_PUBLIC_URL "https://k.example#top": want no query or fragment`}},
		{name: "public_url path", in: input{file: "public_url: https://k.example/kiosk\n"},
			want: []string{`public_url in {file} "https://k.example/kiosk": want no path`}},
		{name: "public_url only one slash stripped", in: input{env: env("KIOSKFEED_PUBLIC_URL", "https://k.example//")},
			want: []string{`KIOSKFEED_PUBLIC_URL "https://k.example//": want no path`}},
		{name: "public_url user info masked", in: input{env: env("KIOSKFEED_PUBLIC_URL", "https://kf:hunter2@k.example")},
			want: []string{`KIOSKFEED_PUBLIC_URL "https://****@k.example": want no user name or password`}, hide: []string{"hunter2"}},

		{name: "data_dir empty", in: input{args: []string{"--data-dir="}},
			want: []string{`--data-dir "": want a directory`}},

		{name: "nats_url scheme", in: input{env: env("KIOSKFEED_NATS_URL", "http://n.example")},
			want: []string{`KIOSKFEED_NATS_URL "http://n.example": want URLs with scheme nats, tls, ws or wss`}},
		{name: "nats_url no scheme", in: input{env: env("KIOSKFEED_NATS_URL", "n.example:4222")},
			want: []string{`KIOSKFEED_NATS_URL "n.example:4222": want URLs with scheme nats, tls, ws or wss`}},
		{name: "nats_url no host", in: input{env: env("KIOSKFEED_NATS_URL", "nats://a.example,nats://:4222")},
			want: []string{`KIOSKFEED_NATS_URL "nats://a.example,nats://:4222": want a host in every URL`}},
		{name: "nats_url empty entry", in: input{env: env("KIOSKFEED_NATS_URL", "nats://a.example,,nats://b.example")},
			want: []string{`KIOSKFEED_NATS_URL "nats://a.example,,nats://b.example": want URLs separated by single commas`}},
		{name: "nats_url password masked", in: input{env: env("KIOSKFEED_NATS_URL", "nats://kf:hunter2@a.example,http://tok@b.example")},
			want: []string{`KIOSKFEED_NATS_URL "nats://****@a.example,http://****@b.example": want URLs with scheme`}, hide: []string{"hunter2", "tok@"}},

		{name: "nats_listen", in: input{env: env("KIOSKFEED_NATS_LISTEN", "abc")},
			want: []string{`KIOSKFEED_NATS_LISTEN "abc": want host:port, such as "127.0.0.1:4222", or empty for in-process only`}},
		{name: "producer_user empty with a listener", in: input{env: env("KIOSKFEED_PRODUCER_USER", "")},
			want: []string{`KIOSKFEED_PRODUCER_USER "": want a user name for producers`}},

		{name: "nats_replicas not 1, 3 or 5", in: input{env: env("KIOSKFEED_NATS_URL", "nats://n:4222", "KIOSKFEED_NATS_REPLICAS", "2")},
			want: []string{`KIOSKFEED_NATS_REPLICAS "2": want 1, 3 or 5`}},
		{name: "nats_replicas with embedded server", in: input{args: []string{"--nats-replicas=3"}},
			want: []string{`--nats-replicas "3": want 1 with the embedded NATS server`}},

		{name: "nats_creds_file with embedded server", in: input{env: env("KIOSKFEED_NATS_CREDS_FILE", "/run/kf.creds")},
			want: []string{`KIOSKFEED_NATS_CREDS_FILE "/run/kf.creds": want it only with nats_url`}},
		{name: "nats_user with embedded server", in: input{env: env("KIOSKFEED_NATS_USER", "kf")},
			want: []string{`KIOSKFEED_NATS_USER "kf": want it only with nats_url`}},
		{name: "nats_password with embedded server", in: input{env: env("KIOSKFEED_NATS_PASSWORD", "hunter2")},
			want: []string{`nats_password (KIOSKFEED_NATS_PASSWORD): set without nats_url`}, hide: []string{"hunter2"}},
		{name: "nats_user and nats_creds_file", in: input{env: env("KIOSKFEED_NATS_URL", "nats://n:4222", "KIOSKFEED_NATS_USER", "kf", "KIOSKFEED_NATS_CREDS_FILE", "/run/kf.creds")},
			want: []string{`KIOSKFEED_NATS_USER "kf": want either nats_creds_file or nats_user, not both`}},
		{name: "nats_password without nats_user", in: input{file: "nats_url: nats://n:4222\nnats_password: hunter2\n"},
			want: []string{`nats_password (in {file}): set without nats_user: want nats_user too`}, hide: []string{"hunter2"}},

		{name: "nats_nkey_file with embedded server", in: input{env: env("KIOSKFEED_NATS_NKEY_FILE", "/run/kf.nk")},
			want: []string{`KIOSKFEED_NATS_NKEY_FILE "/run/kf.nk": want it only with nats_url`}},
		{name: "nats TLS files with embedded server", in: input{file: "nats_tls_ca: /run/ca.pem\nnats_tls_cert: /run/kf.pem\nnats_tls_key: /run/kf-key.pem\n"},
			want: []string{
				`nats_tls_ca in {file} "/run/ca.pem": want it only with nats_url`,
				`nats_tls_cert in {file} "/run/kf.pem": want it only with nats_url`,
				`nats_tls_key in {file} "/run/kf-key.pem": want it only with nats_url`,
			}},
		{name: "nats_nkey_file and nats_creds_file", in: input{env: env("KIOSKFEED_NATS_URL", "nats://n:4222", "KIOSKFEED_NATS_NKEY_FILE", "/run/kf.nk", "KIOSKFEED_NATS_CREDS_FILE", "/run/kf.creds")},
			want: []string{`KIOSKFEED_NATS_NKEY_FILE "/run/kf.nk": want one way to authenticate: nats_creds_file, nats_nkey_file or nats_user, not several`}},
		{name: "nats_nkey_file and nats_user", in: input{env: env("KIOSKFEED_NATS_URL", "nats://n:4222", "KIOSKFEED_NATS_USER", "kf", "KIOSKFEED_NATS_PASSWORD", "pw"), args: []string{"--nats-nkey-file=/run/kf.nk"}},
			want: []string{`--nats-nkey-file "/run/kf.nk": want one way to authenticate`}, hide: []string{"pw"}},
		{name: "nats_tls_cert without nats_tls_key", in: input{env: env("KIOSKFEED_NATS_URL", "nats://n:4222", "KIOSKFEED_NATS_TLS_CERT", "/run/kf.pem")},
			want: []string{`KIOSKFEED_NATS_TLS_CERT "/run/kf.pem": want nats_tls_key too`}},
		{name: "nats_tls_key without nats_tls_cert", in: input{env: env("KIOSKFEED_NATS_URL", "nats://n:4222", "KIOSKFEED_NATS_TLS_KEY", "/run/kf-key.pem")},
			want: []string{`KIOSKFEED_NATS_TLS_KEY "/run/kf-key.pem": want nats_tls_cert too`}},
		{name: "nats_start_timeout too short", in: input{env: env("KIOSKFEED_NATS_URL", "nats://n:4222", "KIOSKFEED_NATS_START_TIMEOUT", "500ms")},
			want: []string{`KIOSKFEED_NATS_START_TIMEOUT "500ms": want between 1s and 1h`}},
		{name: "nats_start_timeout too long", in: input{file: "nats_url: nats://n:4222\nnats_start_timeout: 2h\n"},
			want: []string{`nats_start_timeout in {file} "2h": want between 1s and 1h`}},

		{name: "admin_token too short from env", in: input{env: env("KIOSKFEED_ADMIN_TOKEN", "short-secret")},
			want: []string{`admin_token (KIOSKFEED_ADMIN_TOKEN): too short: want at least 16 characters`}, hide: []string{"short-secret"}},
		{name: "admin_token too short from flag", in: input{args: []string{"--admin-token=short-secret"}},
			want: []string{`admin_token (--admin-token): too short`}, hide: []string{"short-secret"}},
		{name: "admin_token too short in code", edit: func(c *config.Config) { c.AdminToken = "short-secret" },
			want: []string{`admin_token: too short`}, hide: []string{"short-secret"}},

		{name: "allowed_origins with a path", in: input{env: env("KIOSKFEED_ALLOWED_ORIGINS", "https://ok.example,https://k.example/app")},
			want: []string{`KIOSKFEED_ALLOWED_ORIGINS "https://k.example/app": want an origin scheme://host[:port] with no path`}, hide: []string{`"https://ok.example"`}},
		{name: "allowed_origins wildcard", in: input{file: "allowed_origins:\n  - \"*\"\n"},
			want: []string{`allowed_origins in {file} "*": want an origin`}},
		{name: "trusted_proxies", in: input{args: []string{"--trusted-proxies=10.0.0.1,10.0.0.300"}},
			want: []string{`--trusted-proxies "10.0.0.300": want an IP address or CIDR`}},

		{name: "lease_ttl not whole seconds", in: input{args: []string{"--lease-ttl=1500ms"}},
			want: []string{`--lease-ttl "1500ms": want a whole number of seconds, at least 1s`}},
		{name: "lease_ttl zero", in: input{env: env("KIOSKFEED_LEASE_TTL", "0s")},
			want: []string{`KIOSKFEED_LEASE_TTL "0s": want a whole number of seconds, at least 1s`}},
		{name: "token_ttl too short", in: input{env: env("KIOSKFEED_TOKEN_TTL", "30s")},
			want: []string{`KIOSKFEED_TOKEN_TTL "30s": want between 1m and 24h`}},
		{name: "token_ttl too long", in: input{env: env("KIOSKFEED_TOKEN_TTL", "25h")},
			want: []string{`KIOSKFEED_TOKEN_TTL "25h": want between 1m and 24h`}},
		{name: "heartbeat too short", in: input{env: env("KIOSKFEED_HEARTBEAT", "500ms")},
			want: []string{`KIOSKFEED_HEARTBEAT "500ms": want between 1s and 5m`}},
		{name: "heartbeat too long", in: input{file: "heartbeat: 6m\n"},
			want: []string{`heartbeat in {file} "6m": want between 1s and 5m`}},
		{name: "proof_skew too long", in: input{env: env("KIOSKFEED_PROOF_SKEW", "2h")},
			want: []string{`KIOSKFEED_PROOF_SKEW "2h": want between 1s and 1h`}},
		{name: "pair_burst zero", in: input{env: env("KIOSKFEED_PAIR_BURST", "0")},
			want: []string{`KIOSKFEED_PAIR_BURST "0": want between 1 and 1000000`}},
		{name: "pair_every too long", in: input{env: env("KIOSKFEED_PAIR_EVERY", "2h")},
			want: []string{`KIOSKFEED_PAIR_EVERY "2h": want between 1ms and 1h`}},
		{name: "pprof_listen without a port", in: input{env: env("KIOSKFEED_PPROF_LISTEN", "localhost")},
			want: []string{`KIOSKFEED_PPROF_LISTEN "localhost": want host:port, such as "127.0.0.1:6060", or empty for off`}},
		{name: "max_connections negative", in: input{env: env("KIOSKFEED_MAX_CONNECTIONS", "-1")},
			want: []string{`KIOSKFEED_MAX_CONNECTIONS "-1": want 0 (no bound) or more`}},
		{name: "replay_limit zero", in: input{env: env("KIOSKFEED_REPLAY_LIMIT", "0")},
			want: []string{`KIOSKFEED_REPLAY_LIMIT "0": want between 1 and 10000`}},
		{name: "replay_limit too big", in: input{env: env("KIOSKFEED_REPLAY_LIMIT", "10001", "KIOSKFEED_FEED_MAX_MSGS", "20000")},
			want: []string{`KIOSKFEED_REPLAY_LIMIT "10001": want between 1 and 10000`}},
		{name: "max_event_bytes zero", in: input{env: env("KIOSKFEED_MAX_EVENT_BYTES", "0")},
			want: []string{`KIOSKFEED_MAX_EVENT_BYTES "0": want between 1 and 1048576`}},
		{name: "max_event_bytes too big", in: input{env: env("KIOSKFEED_MAX_EVENT_BYTES", "1048577")},
			want: []string{`KIOSKFEED_MAX_EVENT_BYTES "1048577": want between 1 and 1048576`}},
		{name: "feed_max_msgs below replay_limit", in: input{env: env("KIOSKFEED_FEED_MAX_MSGS", "50")},
			want: []string{`KIOSKFEED_FEED_MAX_MSGS "50": want at least replay_limit (100)`}},
		{name: "feed_max_age too short", in: input{env: env("KIOSKFEED_FEED_MAX_AGE", "30s")},
			want: []string{`KIOSKFEED_FEED_MAX_AGE "30s": want 0 (no age limit) or at least 1m`}},
		{name: "dedup_window too short", in: input{env: env("KIOSKFEED_DEDUP_WINDOW", "500ms")},
			want: []string{`KIOSKFEED_DEDUP_WINDOW "500ms": want between 1s and 24h`}},
		{name: "dedup_window too long", in: input{env: env("KIOSKFEED_DEDUP_WINDOW", "25h")},
			want: []string{`KIOSKFEED_DEDUP_WINDOW "25h": want between 1s and 24h`}},
		{name: "audit_max_age too short", in: input{env: env("KIOSKFEED_AUDIT_MAX_AGE", "59m")},
			want: []string{`KIOSKFEED_AUDIT_MAX_AGE "59m": want at least 1h`}},
		{name: "log_format", in: input{env: env("KIOSKFEED_LOG_FORMAT", "xml")},
			want: []string{`KIOSKFEED_LOG_FORMAT "xml": want text or json`}},
		{name: "log_level", in: input{env: env("KIOSKFEED_LOG_LEVEL", "trace")},
			want: []string{`KIOSKFEED_LOG_LEVEL "trace": want debug, info, warn or error`}},

		{name: "all problems at once", in: input{env: env("KIOSKFEED_LISTEN", "abc", "KIOSKFEED_LOG_LEVEL", "trace"), args: []string{"--heartbeat=0s"}},
			want: []string{`KIOSKFEED_LISTEN "abc"`, `KIOSKFEED_LOG_LEVEL "trace"`, `--heartbeat "0s"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, path := mustLoad(t, tt.in)
			if tt.edit != nil {
				tt.edit(&c)
			}
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
				w = strings.ReplaceAll(w, "{file}", path)
				if !strings.Contains(got, w) {
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

func TestLoadErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	tests := []struct {
		name   string
		in     input
		want   []string // substrings; {file} is the config file
		wantIs error
	}{
		{name: "unknown YAML key", in: input{file: "listen: \":1\"\nlisen: \":2\"\n"},
			want: []string{`config file {file}: line 2: unknown key "lisen": want one of listen, public_url,`}},
		{name: "key given twice", in: input{file: "listen: \":1\"\nlisten: \":2\"\n"},
			want: []string{`config file {file}: line 2: mapping key "listen" already defined at line 1`}},
		{name: "YAML syntax", in: input{file: "listen: [\n"},
			want: []string{`config file {file}: yaml:`}},
		{name: "not a mapping", in: input{file: "just words\n"},
			want: []string{`config file {file}: line 1: want a mapping of keys to values`}},
		{name: "two documents", in: input{file: "listen: \":1\"\n---\nlisten: \":2\"\n"},
			want: []string{`config file {file}: want one YAML document`}},
		{name: "bad duration in file", in: input{file: "heartbeat: soon\n"},
			want: []string{`heartbeat in {file} "soon": want a Go duration such as 20s`}},
		{name: "list in file is a string", in: input{file: "allowed_origins: https://k.example\n"},
			want: []string{`allowed_origins in {file} (line 1): want a YAML list`}},
		{name: "mapping for a string", in: input{file: "listen:\n  host: x\n"},
			want: []string{`listen in {file} (line 2): want a single value`}},
		{name: "bad duration in env", in: input{env: map[string]string{"KIOSKFEED_HEARTBEAT": "soon"}},
			want: []string{`KIOSKFEED_HEARTBEAT "soon": want a Go duration such as 20s`}},
		{name: "bad duration default 0 suggests 1h", in: input{env: map[string]string{"KIOSKFEED_FEED_MAX_AGE": "a week"}},
			want: []string{`KIOSKFEED_FEED_MAX_AGE "a week": want a Go duration such as 1h`}},
		{name: "bad int in env", in: input{env: map[string]string{"KIOSKFEED_REPLAY_LIMIT": "lots"}},
			want: []string{`KIOSKFEED_REPLAY_LIMIT "lots": want an integer such as 100`}},
		{name: "bad bool in env", in: input{env: map[string]string{"KIOSKFEED_NATS_SYNC_ALWAYS": "maybe"}},
			want: []string{`KIOSKFEED_NATS_SYNC_ALWAYS "maybe": want true or false`}},
		{name: "bad duration in flag", in: input{args: []string{"--token-ttl=soon"}},
			want: []string{`--token-ttl "soon": want a Go duration such as 10m`}},
		{name: "several at once", in: input{env: map[string]string{"KIOSKFEED_HEARTBEAT": "soon", "KIOSKFEED_REPLAY_LIMIT": "lots"}},
			want: []string{`KIOSKFEED_HEARTBEAT "soon"`, `KIOSKFEED_REPLAY_LIMIT "lots"`}},
		{name: "missing file from env", in: input{env: map[string]string{"KIOSKFEED_CONFIG": missing}},
			want: []string{`read config file named by KIOSKFEED_CONFIG: open ` + missing}, wantIs: os.ErrNotExist},
		{name: "missing file from flag", in: input{args: []string{"--config", missing}},
			want: []string{`read config file named by --config: open ` + missing}, wantIs: os.ErrNotExist},
		{name: "unknown flag", in: input{args: []string{"--lissen=:1"}},
			want: []string{`parse flags: flag provided but not defined: -lissen`}},
		{name: "help", in: input{args: []string{"-h"}}, wantIs: flag.ErrHelp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, path, err := load(t, tt.in)
			if err == nil {
				t.Fatalf("Load: err = nil, want an error")
			}
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "{file}", path)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load: err = %q\nwant it to contain %q", err, w)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Load: err = %v, want errors.Is %v", err, tt.wantIs)
			}
		})
	}
}

func TestWriteEffective(t *testing.T) {
	const token = "0123456789abcdef-secret"
	c, path := mustLoad(t, input{
		file: "listen: \":9000\"\ntrusted_proxies:\n  - 10.0.0.1\n  - 10.1.0.0/16\n",
		env: map[string]string{
			"KIOSKFEED_ADMIN_TOKEN": token,
			"KIOSKFEED_NATS_URL":    "nats://kf:hunter2@n.example:4222",
		},
		args: []string{"--heartbeat=30s", "--producer-password="},
	})
	c.DataDir = "/srv/kf"
	out := effective(t, c)
	for _, want := range []string{
		"listen: \":9000\"  # file " + path + "\n",
		"trusted_proxies: [\"10.0.0.1\", \"10.1.0.0/16\"]  # file " + path + "\n",
		"admin_token: \"****\"  # env KIOSKFEED_ADMIN_TOKEN\n",
		"nats_url: \"nats://****@n.example:4222\"  # env KIOSKFEED_NATS_URL\n",
		"nats_password: \"\"  # default\n",
		"producer_password: \"\"  # flag --producer-password\n",
		"heartbeat: 30s  # flag --heartbeat\n",
		"audit_max_age: 720h  # default\n",
		"nats_sync_always: true  # default\n",
		"allowed_origins: []  # default\n",
		"data_dir: \"/srv/kf\"  # code\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("WriteEffective =\n%s\nwant a line %q", out, want)
		}
	}
	for _, hide := range []string{token, "hunter2"} {
		if strings.Contains(out, hide) {
			t.Errorf("WriteEffective =\n%s\nwant no %q", out, hide)
		}
	}

	t.Run("output reads back as a config file", func(t *testing.T) {
		orig, _ := mustLoad(t, input{env: map[string]string{
			"KIOSKFEED_LISTEN":          "127.0.0.1:9000",
			"KIOSKFEED_ALLOWED_ORIGINS": "https://a.example,https://b.example",
			"KIOSKFEED_LEASE_TTL":       "30s",
			"KIOSKFEED_FEED_MAX_AGE":    "1h30m",
			"KIOSKFEED_NATS_LISTEN":     "",
			"KIOSKFEED_LOG_LEVEL":       "de\"bug",
		}})
		back, _ := mustLoad(t, input{file: effective(t, orig)})
		if !sameSettings(orig, back) {
			t.Errorf("loaded back\n%+v\nwant\n%+v", back, orig)
		}
	})

	t.Run("write error", func(t *testing.T) {
		if err := config.Default().WriteEffective(failWriter{}); err == nil {
			t.Errorf("WriteEffective to a failing writer = nil, want an error")
		}
	})
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestOrigins(t *testing.T) {
	tests := []struct {
		name string
		in   input
		want []string
	}{
		{"default is the public URL's origin", input{}, []string{"http://localhost:8080"}},
		{"public URL lower-cased", input{env: map[string]string{"KIOSKFEED_PUBLIC_URL": "HTTPS://Kiosk.Example.com/"}}, []string{"https://kiosk.example.com"}},
		{"allowed origins win", input{env: map[string]string{"KIOSKFEED_ALLOWED_ORIGINS": "https://A.example, http://b.example:8080"}}, []string{"https://a.example", "http://b.example:8080"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := mustLoad(t, tt.in)
			if got := c.Origins(); !slices.Equal(got, tt.want) {
				t.Errorf("Origins() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEmbedded(t *testing.T) {
	tests := []struct {
		natsURL string
		want    bool
	}{
		{"", true},
		{"nats://n.example:4222", false},
	}
	for _, tt := range tests {
		c := config.Default()
		c.NATSURL = tt.natsURL
		if got := c.Embedded(); got != tt.want {
			t.Errorf("Embedded() with nats_url %q = %v, want %v", tt.natsURL, got, tt.want)
		}
	}
}

func FuzzLoadYAML(f *testing.F) {
	var def bytes.Buffer
	if err := config.Default().WriteEffective(&def); err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		def.String(),
		"",
		"# only a comment\n",
		"listen: \":1\"\nallowed_origins: [a, b]\n",
		"allowed_origins: &x [\"https://a.example\"]\ntrusted_proxies: *x\n",
		"<<: {listen: \":1\"}\n",
		"listen: [\n",
		"---\n---\n",
		"? [a]\n: b\n",
		"nats_listen: ~\nheartbeat: !!int 5\n",
	} {
		f.Add([]byte(seed))
	}
	// One file, rewritten by each call: calls do not run in parallel (no t.Parallel).
	path := filepath.Join(f.TempDir(), "kf.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fs := flag.NewFlagSet("kioskfeed", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c, err := config.Load(fs, nil, mapEnv(map[string]string{"KIOSKFEED_CONFIG": path}))
		if err != nil {
			return
		}
		_ = c.Validate()
		_ = c.Origins()
		if err := c.WriteEffective(io.Discard); err != nil {
			t.Fatalf("WriteEffective: %v", err)
		}
	})
}

// A public_url no source set takes listen's port, so that changing only the port leaves
// a working set-up (the tablet app signs its proofs for the address it was loaded
// from); any public_url that is set wins, and a port chosen at start changes nothing.
func TestPublicURLFollowsListen(t *testing.T) {
	tests := []struct {
		name       string
		in         input
		want       string
		wantSource string
	}{
		{"default", input{}, "http://localhost:8080", "default"},
		{"listen flag", input{args: []string{"--listen", ":9000"}}, "http://localhost:9000", "default, with the port of listen"},
		{"listen with a host", input{env: map[string]string{"KIOSKFEED_LISTEN": "127.0.0.1:9001"}}, "http://localhost:9001", "default, with the port of listen"},
		{"listen in the file", input{file: "listen: \"[::1]:9002\"\n"}, "http://localhost:9002", "default, with the port of listen"},
		{"port 0", input{args: []string{"--listen", "127.0.0.1:0"}}, "http://localhost:8080", "default"},
		{"listen 8080", input{args: []string{"--listen", "0.0.0.0:8080"}}, "http://localhost:8080", "default"},
		{"public_url set", input{args: []string{"--listen", ":9000", "--public-url", "https://kiosk.example"}}, "https://kiosk.example", "flag --public-url"},
		{"public_url set to the default", input{env: map[string]string{"KIOSKFEED_PUBLIC_URL": "http://localhost:8080"}, args: []string{"--listen", ":9000"}}, "http://localhost:8080", "env KIOSKFEED_PUBLIC_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := mustLoad(t, tt.in)
			if c.PublicURL != tt.want {
				t.Fatalf("PublicURL = %q, want %q", c.PublicURL, tt.want)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got := effectiveLine(t, c, "public_url"); !strings.HasSuffix(got, "  # "+tt.wantSource) {
				t.Fatalf("WriteEffective line %q: want source %q", got, tt.wantSource)
			}
		})
	}
}
