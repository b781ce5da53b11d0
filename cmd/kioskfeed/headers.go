package main

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/kioskfeed/kioskfeed/config"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// hstsValue is sent when the public URL is https: a year, without includeSubDomains,
// because kioskfeed cannot know that every other name under its host serves HTTPS (a
// proxy that knows can add it).
const hstsValue = "max-age=31536000"

// hostExempt are the paths answered whatever the Host: probes and scrapers reach a
// pod or container by a name or address of their own (Kubernetes probes by pod IP,
// Compose health checks by service name). They show nothing that a DNS-rebinding page
// could not learn from the public listener anyway; metrics_token or metrics_listen
// close /metrics.
var hostExempt = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// frontDoor is the main listener's outermost handler: the headers every response
// carries, and the Host check.
//
// nosniff goes on every response (errors, JSON, static files, /metrics), so that no
// browser guesses a script or a page out of a body. Strict-Transport-Security goes on
// every response when the public URL is https, and never when it is http, where it would
// pin browsers to an https that does not exist.
//
// The Host check stops DNS rebinding: a page of the attacker's, its name pointed at this
// server's address, is same-origin with whatever answers there, so the dashboard's
// cookie and origin checks would let it in. Its requests carry the attacker's name in
// Host, so anything but a name this server answers for is refused 421
// misdirected_request. Allowed: the public URL's host, the hosts of allowed_origins,
// allowed_hosts, "localhost" and any IP address (a browser sends an IP in Host only when
// it was pointed at that address itself, which rebinding cannot do; so the admin CLI on
// the server, proxies that pass their upstream address, and probes by IP all work).
// Ports are not compared: rebinding changes the name, never the port.
func frontDoor(cfg config.Config, next http.Handler) http.Handler {
	allowed := allowedHosts(cfg)
	https := strings.HasPrefix(strings.ToLower(cfg.PublicURL), "https:")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		if https {
			h.Set("Strict-Transport-Security", hstsValue)
		}
		if !hostExempt[r.URL.Path] && !hostAllowed(allowed, r.Host) {
			httpx.WriteError(w, httpx.Errorf(httpx.CodeMisdirected, "unknown host: this server answers for its public_url's host (see allowed_hosts)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// allowedHosts are the names, normalised by normHost, that frontDoor lets through
// besides localhost and IP addresses.
func allowedHosts(cfg config.Config) map[string]bool {
	out := map[string]bool{}
	add := func(rawURL string) {
		if u, err := url.Parse(rawURL); err == nil && u.Host != "" {
			out[normHost(u.Hostname())] = true
		}
	}
	add(cfg.PublicURL)
	for _, o := range cfg.Origins() {
		add(o)
	}
	for _, h := range cfg.AllowedHosts {
		out[normHost(h)] = true
	}
	return out
}

// hostAllowed reports whether a request's Host (host or host:port, an IPv6 address in
// brackets) names this server.
func hostAllowed(allowed map[string]bool, hostHeader string) bool {
	host := hostHeader
	if h, _, err := net.SplitHostPort(hostHeader); err == nil {
		host = h
	}
	host = normHost(host)
	if host == "" {
		return false
	}
	if host == "localhost" || allowed[host] {
		return true
	}
	_, err := netip.ParseAddr(host)
	return err == nil
}

// normHost lower-cases a host name and drops IPv6 brackets and a trailing dot, so that
// "Kiosk.Example.com." and "kiosk.example.com" are one name.
func normHost(h string) string {
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.ToLower(strings.TrimSuffix(h, "."))
}
