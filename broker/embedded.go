package broker

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"
)

// internalUser is the account kioskfeed itself uses on the embedded server; its password
// is random per process, so only the in-process connection has it.
const internalUser = "kioskfeed"

// ProducerPasswordFile is where a generated producer password is kept in the data dir.
const ProducerPasswordFile = "nats-producer-password"

func (b *Broker) startEmbedded() error {
	if b.cfg.DataDir == "" {
		return errors.New("embedded NATS needs a data dir")
	}
	internalPW, err := randomSecret(24)
	if err != nil {
		return err
	}
	// The server keeps only bcrypt hashes; the in-process connection's password is random
	// per process, so the lowest cost is enough for it.
	internalHash, err := bcrypt.GenerateFromPassword([]byte(internalPW), bcrypt.MinCost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	opts := &server.Options{
		ServerName: "kioskfeed",
		JetStream:  true,
		StoreDir:   filepath.Join(b.cfg.DataDir, "nats"),
		SyncAlways: b.cfg.SyncAlways,
		NoSigs:     true,
		Users:      []*server.User{{Username: internalUser, Password: string(internalHash)}},
		DontListen: true,
		// nats-server PINGs a client 2 s after its CONNECT, not after the PingInterval,
		// unless told not to. Checking a producer's bcrypt hash can take that long on a
		// loaded machine, and that early PING then reaches the client before the PONG
		// its connect waits for, which nats.go and other clients treat as a failed
		// connect. Dead producers are still found by the normal PING interval (2 min).
		DisableShortFirstPing: true,
	}
	// Producers exist only where something listens for them.
	if b.cfg.Listen != "" {
		host, port, err := splitListen(b.cfg.Listen)
		if err != nil {
			return err
		}
		opts.Host, opts.Port, opts.DontListen = host, port, false
		if b.cfg.ProducerPassword == "" {
			pw, _, err := ReadOrCreateSecret(filepath.Join(b.cfg.DataDir, ProducerPasswordFile), 24)
			if err != nil {
				return err
			}
			b.cfg.ProducerPassword = pw
		}
		producerHash, err := bcrypt.GenerateFromPassword([]byte(b.cfg.ProducerPassword), bcrypt.DefaultCost)
		if err != nil {
			return fmt.Errorf("hash producer password: %w", err)
		}
		opts.Users = append(opts.Users, &server.User{Username: b.cfg.ProducerUser, Password: string(producerHash), Permissions: producerPermissions()})
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("embedded NATS: %w", err)
	}
	logger := &natsLogger{log: b.log.With(slog.String("component", "nats"))}
	s.SetLoggerV2(logger, false, false, false)
	b.srv = s
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		if msg := logger.fatal(); msg != "" {
			return fmt.Errorf("embedded NATS did not start: %s", msg)
		}
		return errors.New("embedded NATS did not start within 30s")
	}
	if !opts.DontListen {
		if addr, ok := s.Addr().(*net.TCPAddr); ok {
			b.natsAddr = addr.String()
		}
	}
	nc, err := nats.Connect("", append(b.connOptions(), nats.InProcessServer(s), nats.UserInfo(internalUser, internalPW))...)
	if err != nil {
		return fmt.Errorf("connect to embedded NATS: %w", err)
	}
	b.nc = nc
	return nil
}

// producerPermissions let a producer publish events (and read the FEEDS stream's info)
// and nothing else: no reading feeds, no KV, no audit.
func producerPermissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{SubjectPrefix + ">", "$JS.API.INFO", "$JS.API.STREAM.INFO." + StreamFeeds}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

func (b *Broker) shutdownServer() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

// splitListen turns host:port into nats-server options; port 0 asks for a free port,
// which nats-server spells -1 (its 0 means the default 4222).
func splitListen(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("nats listen %q: want host:port", addr)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("nats listen %q: want a port from 0 to 65535", addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// natsLogger routes nats-server's log into slog. nats-server calls Fatalf when it cannot
// listen; we keep the message to explain the failed start instead of exiting.
type natsLogger struct {
	log *slog.Logger

	mu       sync.Mutex
	fatalMsg string
}

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any)  {}
func (l *natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	l.mu.Lock()
	l.fatalMsg = msg
	l.mu.Unlock()
}

func (l *natsLogger) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatalMsg
}

// ReadOrCreateSecret returns the secret kept in path, or makes one of nbytes random
// bytes, writes it there (mode 0600, atomically) and reports created. Secrets the
// operator did not configure (admin token, producer password, nonce key) live in the
// data dir this way, so a restart keeps them.
func ReadOrCreateSecret(path string, nbytes int) (secret string, created bool, err error) {
	if b, err := os.ReadFile(path); err == nil {
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", false, fmt.Errorf("secret file %s is empty: delete it to have a new one made", path)
		}
		return s, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("read secret: %w", err)
	}
	s, err := randomSecret(nbytes)
	if err != nil {
		return "", false, err
	}
	if err := WriteFileAtomic(path, []byte(s+"\n"), 0o600); err != nil {
		return "", false, err
	}
	return s, true, nil
}

// WriteFileAtomic writes data to path through a temporary file and a rename, so a crash
// never leaves half a file; the directory is made when missing.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("make dir %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// The rename itself, durable: after a power cut the new file is there, not the old.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("write %s: sync its directory: %w", path, err)
		}
	}
	return nil
}

func randomSecret(nbytes int) (string, error) {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
