package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/kioskfeed/kioskfeed/admin"
	"github.com/kioskfeed/kioskfeed/alerts"
	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/config"
	"github.com/kioskfeed/kioskfeed/docs"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pwa"
)

// Where pairing and admin meet the packages that use them, without either importing
// the other.
var (
	_ broker.AdminAuthorizer = (*admin.Admin)(nil)
	_ admin.Presence         = (*bridge.Bridge)(nil)
	_ admin.Delivery         = (*bridge.Bridge)(nil)
	_ bridge.Authenticator   = (*pairing.Authority)(nil)
	_ bridge.Revocations     = (*pairing.Registry)(nil)
	_ bridge.Moves           = (*pairing.Registry)(nil)
	_ bridge.FeedSource      = (*broker.Broker)(nil)
)

// shutdownGrace bounds the drain of HTTP requests and the NATS flush on shutdown.
const shutdownGrace = 10 * time.Second

func serve(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	var demo bool
	var demoEvery time.Duration
	cfg, _, err := loadConfig("serve", args, lookupEnv, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&demo, "demo", false, `also publish a rotating demo feed named "demo"`)
		fs.DurationVar(&demoEvery, "demo-every", 5*time.Second, "how often the demo feed changes")
	})
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid config:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	log := newLogger(cfg, stderr)
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

	adminHash, newAdminToken, err := adminTokenHash(cfg, dataDir)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Listen before anything slow starts, so a port clash fails at once.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (set KIOSKFEED_LISTEN or --listen to another address)", cfg.Listen, err)
	}
	defer ln.Close()

	// Each step of the start-up is timed, for the "serving" line (issue 15: a restart's
	// start is part of the time tablets are away).
	var steps []any
	stepAt := time.Now()
	step := func(name string) {
		now := time.Now()
		steps = append(steps, slog.Duration("start_"+name, now.Sub(stepAt)))
		stepAt = now
	}
	b, err := broker.New(ctx, brokerConfig(cfg, dataDir, log, reg))
	if err != nil {
		return err
	}
	step("broker")
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		began := time.Now()
		if err := b.Close(closeCtx); err != nil {
			log.Warn("broker close", slog.String("error", err.Error()))
		}
		log.Info("NATS connection closed", slog.Duration("took", time.Since(began)))
	}()

	// pairing first, then the bridge that asks it, then the admin side, which reads the
	// bridge's presence and acts through pairing.
	keys, err := signingKeys(cfg, dataDir)
	if err != nil {
		return err
	}
	auth, err := newAuthority(ctx, cfg, keys, b, log)
	if err != nil {
		return err
	}
	defer auth.Close()
	step("pairing")

	br, err := bridge.New(ctx, bridge.Config{
		PublicURL:      cfg.PublicURL,
		AllowedOrigins: cfg.Origins(),
		TrustedProxies: cfg.TrustedProxies,
		Heartbeat:      cfg.Heartbeat,
		LeaseTTL:       cfg.LeaseTTL,
		ReplayLimit:    cfg.ReplayLimit,
		CatchupLimit:   cfg.CatchupLimit,
		QueueFrames:    cfg.QueueFrames,
		MaxConns:       cfg.MaxConnections,
		WSConnectBurst: cfg.WSConnectBurst,
		WSConnectEvery: cfg.WSConnectEvery,
		WSFailBurst:    cfg.WSFailBurst,
		WSFailEvery:    cfg.WSFailEvery,
		IPv6Prefix:     cfg.IPv6Prefix,
		Shown:          bridge.ShownConfig{FlushEvery: cfg.ShownFlushEvery, BehindEvents: cfg.BehindEvents, BehindAfter: cfg.BehindAfter},
		// The embedded server's memory-stored leases end with this process.
		LeasesEndWithProcess: cfg.Embedded(),
		Now:                  b.Now,
		Logger:               log.With(slog.String("component", "bridge")),
		Registerer:           reg,
	}, b, b, auth, auth.Devices())
	if err != nil {
		return err
	}
	step("bridge")
	al, err := startAlerts(ctx, cfg, b, auth, br, log)
	if err != nil {
		return err
	}
	defer stopAlerts(al)
	step("alerts")
	adm, err := newAdmin(ctx, cfg, keys, adminHash, b, auth, br, al, log)
	if err != nil {
		return err
	}
	defer adm.Close()
	newPassword, err := adm.EnsurePassword(ctx)
	if err != nil {
		return err
	}
	step("admin")

	mux := http.NewServeMux()
	b.RegisterHealth(mux)
	broker.NewAPI(b, adm).Register(mux)
	auth.Register(mux)
	adm.Register(mux)
	br.Register(mux)
	mux.Handle("GET /api/openapi.json", docs.OpenAPIHandler())
	mux.Handle("GET /api/schemas/{name}", docs.SchemasHandler())
	mux.Handle("GET /api/asyncapi.yaml", docs.AsyncAPIHandler())
	app, err := pwa.New(pwa.Config{Name: "kioskfeed", Logger: log.With(slog.String("component", "pwa"))})
	if err != nil {
		return err
	}
	app.Register(mux)
	metrics := metricsHandler(reg, cfg.MetricsToken)
	if cfg.MetricsListen == "" { // else on its own listener, below: 404 here
		mux.Handle("GET /metrics", metrics)
	}

	srv := &http.Server{
		Handler:           frontDoor(cfg, httpx.JSONErrors(httpx.InstrumentHTTP(reg, mux))),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}

	g, gctx := errgroup.WithContext(ctx)
	if cfg.PprofListen != "" {
		stop, err := servePprof(cfg.PprofListen, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	if cfg.MetricsListen != "" {
		stop, bound, err := serveMetrics(cfg.MetricsListen, metrics, log)
		if err != nil {
			return err
		}
		defer stop()
		cfg.MetricsListen = bound // the port taken, for the banner
	}
	// The tablets' upgrades are read off the socket by the lane, past net/http's
	// per-connection buffers (issue 15): the front door's Host check, then the bridge's
	// own; every other request, and any upgrade either refuses, goes on to srv.
	hosts := allowedHosts(cfg)
	lane := httpx.NewLane(ln, "/ws", srv.ReadHeaderTimeout, func(c net.Conn, r *http.Request, early []byte) bool {
		return hostAllowed(hosts, r.Host) && br.TakeUpgrade(c, r, early)
	})
	g.Go(func() error {
		if err := srv.Serve(lane); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	if demo {
		g.Go(func() error { return runDemo(gctx, b, demoEvery, log) })
	}
	printBanner(stdout, cfg, ln.Addr().String(), dataDir, b, newAdminToken, newPassword, demo)
	log.Info("serving", append([]any{slog.String("listen", ln.Addr().String()), slog.String("public_url", cfg.PublicURL),
		slog.Bool("embedded_nats", cfg.Embedded()), slog.String("data_dir", dataDir)}, steps...)...)

	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: draining tablets")
		began := time.Now()
		shutCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		// The alert rules first, so the drain is not taken for tablets going offline.
		// Then the listener closes (srv.Shutdown does that first, then runs its hooks,
		// then waits for the requests in flight): an attempt made during the drain is
		// refused by the kernel at no cost, where it used to take an accept, a request
		// and a 503 from a server whose CPU the drain needs (issue 15: 2,900–6,600 of
		// them in a 10,000-tablet restart). Then the tablets (1012, leases released),
		// so they reconnect elsewhere at once.
		stopAlerts(al)
		closed := make(chan struct{})
		srv.RegisterOnShutdown(func() { close(closed) })
		httpDone := make(chan error, 1)
		go func() { httpDone <- srv.Shutdown(shutCtx) }()
		<-closed
		if err := br.Shutdown(shutCtx); err != nil {
			log.Warn("bridge drain", slog.String("error", err.Error()))
		}
		log.Info("tablets drained", slog.Duration("took", time.Since(began)))
		return <-httpDone
	})
	return g.Wait()
}

func brokerConfig(cfg config.Config, dataDir string, log *slog.Logger, reg prometheus.Registerer) broker.Config {
	return broker.Config{
		URL:              cfg.NATSURL,
		CredsFile:        cfg.NATSCredsFile,
		User:             cfg.NATSUser,
		Password:         cfg.NATSPassword,
		NKeySeedFile:     cfg.NATSNKeyFile,
		TLSCA:            cfg.NATSTLSCA,
		TLSCert:          cfg.NATSTLSCert,
		TLSKey:           cfg.NATSTLSKey,
		StartTimeout:     cfg.NATSStartTimeout,
		Listen:           cfg.NATSListen,
		ProducerUser:     cfg.ProducerUser,
		ProducerPassword: cfg.ProducerPassword,
		SyncAlways:       cfg.NATSSyncAlways,
		DataDir:          dataDir,
		Replicas:         cfg.NATSReplicas,
		FeedMaxMsgs:      int64(cfg.FeedMaxMsgs),
		FeedMaxAge:       cfg.FeedMaxAge,
		DedupWindow:      cfg.DedupWindow,
		MaxEventBytes:    cfg.MaxEventBytes,
		ReplayLimit:      cfg.ReplayLimit,
		AuditMaxAge:      cfg.AuditMaxAge,
		TrustedProxies:   cfg.TrustedProxies,
		IPv6Prefix:       cfg.IPv6Prefix,
		AuditMaxBytes:    int64(cfg.AuditMaxBytes),
		Logger:           log,
		Registerer:       reg,

		AuditAggregateWindow: cfg.AuditAggregateWindow,
	}
}

// signingKeys loads (or on first start makes) the token signing keys.
func signingKeys(cfg config.Config, dataDir string) ([]*ecdsa.PrivateKey, error) {
	keyFile := cfg.SigningKeyFile
	if keyFile == "" {
		keyFile = filepath.Join(dataDir, SigningKeyFile)
	}
	return pairing.LoadOrCreateSigningKeys(keyFile)
}

func newAuthority(ctx context.Context, cfg config.Config, keys []*ecdsa.PrivateKey, b *broker.Broker, log *slog.Logger) (*pairing.Authority, error) {
	return pairing.New(ctx, pairing.Config{
		PublicURL:      cfg.PublicURL,
		SigningKeys:    keys,
		TokenTTL:       cfg.TokenTTL,
		ProofSkew:      cfg.ProofSkew,
		TrustedProxies: cfg.TrustedProxies,
		PairBurst:      cfg.PairBurst,
		PairEvery:      cfg.PairEvery,
		IPv6Prefix:     cfg.IPv6Prefix,
		Now:            b.Now, // the cluster's clock: peers check these times
		Logger:         log.With(slog.String("component", "pairing")),
	}, b)
}

// newAdmin makes the admin side. Its CSRF key is derived from the signing key, so that
// every instance sharing the key file accepts the others' forms.
func newAdmin(ctx context.Context, cfg config.Config, keys []*ecdsa.PrivateKey, adminHash [32]byte, b *broker.Broker,
	auth *pairing.Authority, presence admin.Presence, webhooks *alerts.Service, log *slog.Logger) (*admin.Admin, error) {
	csrfKey, err := pairing.DeriveKey(keys[0], "kioskfeed csrf", 32)
	if err != nil {
		return nil, err
	}
	return admin.New(ctx, admin.Config{
		PublicURL:      cfg.PublicURL,
		CSRFKey:        csrfKey,
		TokenHashes:    [][32]byte{adminHash},
		TrustedProxies: cfg.TrustedProxies,
		IPv6Prefix:     cfg.IPv6Prefix,
		Now:            b.Now,
		Logger:         log.With(slog.String("component", "admin")),
		Webhooks:       webhooks,
	}, b, auth, presence)
}

// SigningKeyFile is where the token signing keys are made in the data dir when
// signing_key_file is not set.
const SigningKeyFile = "signing-keys.pem"

// adminTokenHash is the configured admin token's hash, or the one kept in the data dir
// (made on first start, when newToken is the token to show once).
func adminTokenHash(cfg config.Config, dataDir string) (hash [32]byte, newToken string, err error) {
	if cfg.AdminToken != "" {
		return admin.HashToken(cfg.AdminToken), "", nil
	}
	return admin.LoadOrCreateToken(dataDir)
}

func printBanner(w io.Writer, cfg config.Config, addr, dataDir string, b *broker.Broker, newAdminToken, newPassword string, demo bool) {
	pub := cfg.PublicURL
	fmt.Fprintf(w, "kioskfeed %s is serving on %s\n", version, addr)
	fmt.Fprintf(w, "  public URL:     %s\n", pub)
	fmt.Fprintf(w, "  tablets:        %s/   (it shows a code: approve it on the dashboard)\n", pub)
	fmt.Fprintf(w, "  dashboard:      %s/admin\n", pub)
	if newPassword != "" {
		fmt.Fprintf(w, "  admin password: %s\n", newPassword)
		fmt.Fprintf(w, "                  (new: shown this once; change it with 'kioskfeed admin passwd')\n")
	}
	fmt.Fprintf(w, "  tablet socket:  %s/ws\n", "ws"+strings.TrimPrefix(pub, "http"))
	fmt.Fprintf(w, "  producer API:   POST %s/api/feeds/{feed}/events   (key from POST %s/api/admin/producer-keys)\n", pub, pub)
	fmt.Fprintf(w, "  feed state:     GET  %s/api/feeds/{feed}/state\n", pub)
	metrics := pub + "/metrics"
	if cfg.MetricsListen != "" {
		metrics = "http://" + cfg.MetricsListen + "/metrics"
	}
	if cfg.MetricsToken != "" {
		metrics += " (bearer metrics_token)"
	}
	fmt.Fprintf(w, "  health:         %s/healthz  %s/readyz  %s\n", pub, pub, metrics)
	if addr := b.NATSAddr(); addr != "" {
		user, _ := b.ProducerCredentials()
		where := "as configured (producer_password)"
		if cfg.ProducerPassword == "" {
			where = "in " + filepath.Join(dataDir, broker.ProducerPasswordFile)
		}
		fmt.Fprintf(w, "  NATS producers: nats://%s  user %q, password %s\n", addr, user, where)
	} else if cfg.Embedded() {
		fmt.Fprintf(w, "  NATS producers: off (nats_listen is empty)\n")
	} else {
		fmt.Fprintf(w, "  NATS:           external, %d replicas\n", cfg.NATSReplicas)
	}
	fmt.Fprintf(w, "  data dir:       %s\n", dataDir)
	switch {
	case newAdminToken != "":
		fmt.Fprintf(w, "  admin token:    %s\n", newAdminToken)
		fmt.Fprintf(w, "                  (new: shown this once and stored only as a hash; delete %s to make another)\n",
			filepath.Join(dataDir, admin.TokenHashFile))
	case cfg.AdminToken != "":
		fmt.Fprintf(w, "  admin token:    as configured (admin_token)\n")
	default:
		fmt.Fprintf(w, "  admin token:    made at first start (delete %s to make another)\n", filepath.Join(dataDir, admin.TokenHashFile))
	}
	if demo {
		fmt.Fprintf(w, "  demo feed:      \"demo\" — see it with: curl -H \"Authorization: Bearer $ADMIN_TOKEN\" %s/api/feeds/demo/state\n", pub)
	}
}
