package broker

// This file owns reaching NATS: the connection's options, connecting to external
// servers (with the retry and the log lines that tell an operator what to fix), and
// the errors no retry can fix.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func (b *Broker) connOptions() []nats.Option {
	return []nats.Option{
		nats.Name("kioskfeed"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		// A NATS node that vanishes without closing its sockets (power loss, partition)
		// is noticed within about 30s rather than the default 4 minutes, so the
		// connection moves to a live node of the cluster.
		nats.PingInterval(15 * time.Second),
		nats.MaxPingsOutstanding(2),
		// No reconnect buffer: a publish while disconnected fails at once (503) instead of
		// being sent later, after its caller was already told it failed.
		nats.ReconnectBufSize(-1),
		// New retries the first connection itself (startExternal), so that it can tell
		// refused credentials from a server that is not up yet.
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed it ourselves
				b.log.Warn("nats disconnected", slog.String("reason", err.Error()))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("nats reconnected", slog.String("server", nc.ConnectedServerName()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				b.denied.Store(&err)
			}
			b.log.Warn("nats async error", slog.String("error", errString(err)))
		}),
	}
}

// externalOptions are the connection options for an external NATS. Files named in the
// config are read here, so a missing or unreadable one fails before any waiting.
func (b *Broker) externalOptions() ([]nats.Option, error) {
	opts := b.connOptions()
	if b.cfg.CredsFile != "" {
		if _, err := os.Stat(b.cfg.CredsFile); err != nil {
			return nil, fmt.Errorf("NATS credentials file (nats_creds_file): %w", err)
		}
		opts = append(opts, nats.UserCredentials(b.cfg.CredsFile))
	}
	if b.cfg.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(b.cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("NATS nkey seed file (nats_nkey_file) %s: %w", b.cfg.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	}
	if b.cfg.User != "" {
		opts = append(opts, nats.UserInfo(b.cfg.User, b.cfg.Password))
	}
	if b.cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(b.cfg.TLSCA))
	}
	if (b.cfg.TLSCert == "") != (b.cfg.TLSKey == "") {
		return nil, errors.New("NATS TLS client certificate: set both nats_tls_cert and nats_tls_key, or neither")
	}
	if b.cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(b.cfg.TLSCert, b.cfg.TLSKey))
	}
	// The TLS options load their files when applied: try them once on scratch options,
	// so that a bad file is reported now, by name, rather than as a failed connection.
	scratch := nats.GetDefaultOptions()
	for _, opt := range opts {
		if err := opt(&scratch); err != nil {
			return nil, fmt.Errorf("NATS TLS files (nats_tls_ca, nats_tls_cert, nats_tls_key): %w", err)
		}
	}
	return opts, nil
}

// startLogEvery spaces the "waiting for NATS JetStream" lines.
const startLogEvery = 5 * time.Second

// startExternal connects to the external NATS and sets up the streams and buckets,
// retrying both until they work, a permanent error comes back, ctx ends or
// StartTimeout passes: NATS may start after kioskfeed, and a cluster answers JetStream
// requests only once it has elected a meta leader and the stream leaders.
func (b *Broker) startExternal(ctx context.Context) error {
	opts, err := b.externalOptions()
	if err != nil {
		return err
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, b.cfg.StartTimeout)
	defer cancel()
	urls := redactURLs(b.cfg.URL)
	start := time.Now()
	var lastLog time.Time
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := b.tryExternal(ctx, opts)
		if err == nil {
			b.log.Info("connected to NATS JetStream", slog.String("url", urls),
				slog.String("server", b.nc.ConnectedServerName()), slog.Int("attempts", attempt),
				slog.Duration("waited", time.Since(start).Round(time.Millisecond)))
			return nil
		}
		if fix := permanentFix(err); fix != "" {
			return fmt.Errorf("NATS at %s: %w; %s", urls, err, fix)
		}
		if time.Since(lastLog) >= startLogEvery {
			b.log.Warn("waiting for NATS JetStream at "+urls+": "+err.Error(),
				slog.Int("attempt", attempt), slog.Duration("waited", time.Since(start).Round(time.Millisecond)))
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("waiting for NATS JetStream at %s: %w (last problem: %v)", urls, parent.Err(), err)
			}
			return fmt.Errorf("NATS JetStream at %s not available within %s (nats_start_timeout): %w; check nats_url, that the servers run with JetStream, and that a majority of the cluster is up", urls, b.cfg.StartTimeout, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// tryExternal is one attempt of startExternal: connect unless connected (the
// connection then reconnects by itself), then set up.
func (b *Broker) tryExternal(ctx context.Context, opts []nats.Option) error {
	if b.nc != nil && b.nc.IsClosed() {
		b.nc = nil
	}
	if b.nc == nil {
		nc, err := nats.Connect(b.cfg.URL, opts...)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		b.nc = nc
	}
	if !b.nc.IsConnected() {
		// Lost since the last attempt; it reconnects by itself meanwhile.
		if err := b.nc.LastError(); err != nil {
			return fmt.Errorf("reconnect: %w", err)
		}
		return fmt.Errorf("connection %s", strings.ToLower(b.nc.Status().String()))
	}
	if err := b.setup(ctx); err != nil {
		if p := b.denied.Swap(nil); p != nil {
			return fmt.Errorf("%w (%w)", err, *p)
		}
		return err
	}
	return nil
}

// permanentFix says what the operator must change when waiting cannot make err go
// away, and "" when it can (NATS not up yet, no JetStream leader yet).
func permanentFix(err error) string {
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired):
		return "NATS refused kioskfeed's credentials: check nats_creds_file, nats_nkey_file, or nats_user and nats_password"
	case errors.Is(err, nats.ErrPermissionViolation):
		return "the NATS user may not use JetStream: allow it to publish to $JS.API.> and feeds.>, and to subscribe to _INBOX.>"
	case errors.Is(err, nats.ErrSecureConnRequired):
		return "the NATS servers require TLS: use tls:// URLs or set nats_tls_ca"
	case errors.Is(err, nats.ErrSecureConnWanted):
		return "TLS is configured but the NATS servers do not offer it: enable TLS on them, or remove nats_tls_ca, nats_tls_cert and nats_tls_key"
	case isTLSFailure(err):
		return "the TLS handshake with NATS failed: check that nats_tls_ca signed the servers' certificates, and nats_tls_cert and nats_tls_key if the servers verify clients"
	}
	var apiErr jetstream.JetStreamError
	if !errors.As(err, &apiErr) || apiErr.APIError() == nil {
		return ""
	}
	switch apiErr.APIError().ErrorCode {
	case jsErrReplicasNotSupported:
		return "the NATS server is not clustered: set nats_replicas to 1, or point nats_url at a JetStream cluster"
	case jetstream.JSErrCodeStreamNameInUse, jsErrSubjectOverlap:
		return "another stream in this NATS account already uses kioskfeed's subjects (" + SubjectPrefix + "*, " + auditSubjectPrefix + ">) or stream names: remove it, or give kioskfeed an account of its own"
	case jsErrInvalidConfig, jsErrUpdate, jsErrReplicasNotUpdatable, jsErrMirrorNotUpdatable, jsErrMaxBytesRequired:
		return "the existing stream's configuration cannot be changed to kioskfeed's: fix the setting named above, or remove the stream"
	}
	return ""
}

// JetStream API error codes (nats-server errors.json) that no retry can fix.
const (
	jsErrMaxBytesRequired     jetstream.ErrorCode = 10113
	jsErrInvalidConfig        jetstream.ErrorCode = 10052
	jsErrMirrorNotUpdatable   jetstream.ErrorCode = 10055
	jsErrReplicasNotUpdatable jetstream.ErrorCode = 10061
	jsErrSubjectOverlap       jetstream.ErrorCode = 10065
	jsErrUpdate               jetstream.ErrorCode = 10069
	jsErrReplicasNotSupported jetstream.ErrorCode = 10074
)

// isTLSFailure reports a TLS handshake that failed on a certificate or a refusal by the
// server, not because the connection dropped: only the first is fixed by configuration.
func isTLSFailure(err error) bool {
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid) {
		return true
	}
	// An alert from the server (a client certificate it refused or missed) has no
	// exported type, and with TLS 1.3 it arrives after the handshake, unwrapped.
	return strings.Contains(err.Error(), "remote error: tls:")
}

// redactURLs drops user info from NATS URLs before they are logged.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "***@" + p[at+1:]
			}
		}
	}
	return strings.Join(parts, ",")
}
