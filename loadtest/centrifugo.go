package loadtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CentrifugoVersion is the Centrifugo release the load tool measures beside kioskfeed
// (docs: BENCHMARKS.md). It is pinned, with every module it needs, in
// peers/centrifugo.mod and .sum, which never enter kioskfeed's own go.mod.
const CentrifugoVersion = "v6.9.1"

var (
	//go:embed peers/centrifugo.mod
	centrifugoMod []byte
	//go:embed peers/centrifugo.sum
	centrifugoSum []byte
)

// CentrifugoBinary returns the path of a Centrifugo binary of CentrifugoVersion:
// $KIOSKFEED_CENTRIFUGO when set, else one built on first use from the Go module proxy
// into cacheDir (default: the user's cache directory, kioskfeed/centrifugo-<version>)
// with the go command on PATH, and reused after that. The first build takes a few
// minutes on two cores.
func CentrifugoBinary(ctx context.Context, cacheDir string, logf func(string, ...any)) (string, error) {
	if exe := os.Getenv("KIOSKFEED_CENTRIFUGO"); exe != "" {
		return exe, checkCentrifugo(ctx, exe)
	}
	if cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("centrifugo: no cache directory (%w): set KIOSKFEED_CENTRIFUGO to a centrifugo %s binary", err, CentrifugoVersion)
		}
		cacheDir = filepath.Join(base, "kioskfeed")
	}
	dir := filepath.Join(cacheDir, "centrifugo-"+CentrifugoVersion)
	exe := filepath.Join(dir, "centrifugo")
	if checkCentrifugo(ctx, exe) == nil {
		return exe, nil
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("centrifugo: building %s needs the go command on PATH (or set KIOSKFEED_CENTRIFUGO): %w", CentrifugoVersion, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("centrifugo: %w", err)
	}
	// The pinned module files, as a module of their own in the cache directory.
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), centrifugoMod, 0o644); err != nil {
		return "", fmt.Errorf("centrifugo: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), centrifugoSum, 0o644); err != nil {
		return "", fmt.Errorf("centrifugo: %w", err)
	}
	if logf != nil {
		logf("building centrifugo %s into %s (first use: a few minutes)", CentrifugoVersion, dir)
	}
	tmp := exe + ".tmp"
	// The version as their release builds set it (.goreleaser.yml); without it the
	// binary calls itself v0.0.0.
	ldflags := "-s -w -X github.com/centrifugal/centrifugo/v6/internal/build.Version=" + strings.TrimPrefix(CentrifugoVersion, "v")
	cmd := exec.CommandContext(ctx, goCmd, "build", "-mod=readonly", "-trimpath", "-ldflags", ldflags, "-o", tmp, "github.com/centrifugal/centrifugo/v6")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("centrifugo: go build %s: %w\n%s", CentrifugoVersion, err, lastLines(out.String(), 20))
	}
	if err := os.Rename(tmp, exe); err != nil {
		return "", fmt.Errorf("centrifugo: %w", err)
	}
	return exe, checkCentrifugo(ctx, exe)
}

// checkCentrifugo runs `exe version` and wants CentrifugoVersion in what it prints.
func checkCentrifugo(ctx context.Context, exe string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, exe, "version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("centrifugo: %s version: %w", exe, err)
	}
	if !strings.Contains(string(out), strings.TrimPrefix(CentrifugoVersion, "v")) {
		return fmt.Errorf("centrifugo: %s is %q, want %s", exe, strings.TrimSpace(string(out)), CentrifugoVersion)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// centrifugoPeer is a running Centrifugo configured the way a user would for our job:
// ES256 connection tokens, one channel namespace with history and forced recovery
// (what a tablet needs after a reconnect), and one connection per user.
type centrifugoPeer struct {
	c      *child
	port   int
	apiKey string
	key    *ecdsa.PrivateKey // signs connection tokens
	keyPEM string            // its PKCS#8 form, for the workers
	origin string
	http   *http.Client
}

// centrifugoConfig is the server's config for port, with pub the tokens' public key.
func centrifugoConfig(port int, pubPEM, apiKey, origin string, historySize int) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "error"},
		"health":      map[string]any{"enabled": true},
		"usage_stats": map[string]any{"disabled": true}, // no calls home from a benchmark
		"client": map[string]any{
			"token":                 map[string]any{"ecdsa_public_key": pubPEM},
			"allowed_origins":       []string{origin},
			"user_connection_limit": 1,
			"ping_interval":         "20s",
		},
		"channel": map[string]any{"without_namespace": map[string]any{
			"allow_subscribe_for_client": true,
			"history_size":               historySize,
			"history_ttl":                "300s",
			"force_recovery":             true,
		}},
		"http_api": map[string]any{"key": apiKey},
	}, "", "  ")
}

// startCentrifugo writes a config into dir and starts exe on a free loopback port,
// returning once its health endpoint answers.
func startCentrifugo(ctx context.Context, exe, dir string, historySize int) (*centrifugoPeer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	p := &centrifugoPeer{port: port, apiKey: rand.Text(), key: key, origin: "http://127.0.0.1",
		keyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})),
		http:   &http.Client{Timeout: 10 * time.Second}}
	conf, err := centrifugoConfig(port, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})), p.apiKey, p.origin, historySize)
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "centrifugo.json")
	if err := os.WriteFile(confPath, conf, 0o600); err != nil {
		return nil, err
	}
	p.c, err = startChild("centrifugo", exe, []string{"-c", confPath}, nil, filepath.Join(dir, "centrifugo.log"), nil)
	if err != nil {
		return nil, err
	}
	for start := time.Now(); ; {
		resp, err := p.http.Get(p.baseURL() + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if exit := p.c.exited(); exit != nil || time.Since(start) > 30*time.Second || ctx.Err() != nil {
			p.c.kill()
			return nil, fmt.Errorf("centrifugo did not come up (log: %s): %w", filepath.Join(dir, "centrifugo.log"), errors.Join(err, exit, ctx.Err()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *centrifugoPeer) baseURL() string { return "http://127.0.0.1:" + strconv.Itoa(p.port) }

func (p *centrifugoPeer) wsURL() string {
	return "ws://127.0.0.1:" + strconv.Itoa(p.port) + "/connection/websocket"
}

// publish sends data to channel through the server API, as a producer would.
func (p *centrifugoPeer) publish(ctx context.Context, channel string, data []byte) error {
	body, err := json.Marshal(map[string]any{"channel": channel, "data": json.RawMessage(data)})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.baseURL()+"/api/publish", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", p.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&r) != nil || r.Error != nil {
		return fmt.Errorf("centrifugo publish: HTTP %d %+v", resp.StatusCode, r.Error)
	}
	return nil
}

func (p *centrifugoPeer) stop() error { return p.c.stop(10 * time.Second) }
