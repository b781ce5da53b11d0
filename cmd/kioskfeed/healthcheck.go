package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// healthcheckTimeout bounds the whole check (connect, request, answer): a container
// runtime's HEALTHCHECK has its own timeout, and an instance slower than this to answer
// /readyz is not healthy anyway.
const healthcheckTimeout = 3 * time.Second

// healthcheckCmd is the container image's HEALTHCHECK (a scratch image has no curl): it
// GETs /readyz of this instance and returns nil on 200, else an error of one line that
// says why (nothing answered, or the status and the server's message). The address is
// --url, else the configured listen address (config file, KIOSKFEED_LISTEN, --listen)
// with an unspecified host replaced by loopback, so it follows the same config as the
// serve it checks.
func healthcheckCmd(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	var base string
	timeout := healthcheckTimeout
	cfg, _, err := loadConfig("healthcheck", args, lookupEnv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&base, "url", "", "kioskfeed's URL (default: http:// and the listen address, loopback for an unspecified host)")
		fs.DurationVar(&timeout, "timeout", healthcheckTimeout, "give up after this long")
	})
	if err != nil {
		return err
	}
	if base == "" {
		if base, err = listenURL(cfg.Listen); err != nil {
			return err
		}
	}
	u, err := url.Parse(strings.TrimRight(base, "/") + "/readyz")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Sprintf("--url %q: want http:// or https:// and a host", base)}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	where := "GET " + u.Redacted()
	resp, err := (&http.Client{CheckRedirect: noRedirect}).Do(req)
	if err != nil {
		return fmt.Errorf("not ready: %s: %s", where, transportReason(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		msg := http.StatusText(resp.StatusCode)
		var e struct{ Message string }
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			msg = e.Message // internal/httpx's {"error","message"}
		}
		return fmt.Errorf("not ready: %s: HTTP %d: %s", where, resp.StatusCode, oneLineOf(msg))
	}
	fmt.Fprintln(stdout, "ready")
	return nil
}

// listenURL is the http:// URL that reaches a listen address from the same host.
func listenURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" || port == "0" {
		return "", usageError{fmt.Sprintf("listen %q is not a host:port to check: give --url", listen)}
	}
	switch ip := net.ParseIP(host); {
	case host == "", ip != nil && ip.To4() != nil && ip.IsUnspecified():
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// noRedirect keeps the check on the address it was given: /readyz never redirects.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// transportReason is why nothing answered, without the URL (the caller names it once).
func transportReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer within the timeout"
	case isRefused(err):
		return "nothing is listening there (" + oneLineOf(err.Error()) + ")"
	}
	return oneLineOf(err.Error())
}

func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && strings.Contains(err.Error(), "refused")
}

// oneLineOf keeps a reason to one short line.
func oneLineOf(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
