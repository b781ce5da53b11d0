package alerts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// The SSRF guard (docs/protocol.md §12, #webhook-addresses): a webhook must not make
// the server reach its own machine or network. An address is checked when a webhook is
// made (every address its host resolves to) and again on every delivery, on the very
// address dialled (net.Dialer.Control), so that a name that later resolves elsewhere
// (DNS rebinding) is refused too.

// ErrRefusedAddress is what a delivery to a refused address fails with.
var ErrRefusedAddress = errors.New("refused address")

var (
	// metadata are the cloud metadata services' addresses, refused even when private
	// targets are allowed: AWS, GCP, Azure and others (169.254.169.254), AWS over IPv6
	// (fd00:ec2::254), Alibaba (100.100.100.200).
	metadata = []netip.Addr{
		netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("fd00:ec2::254"), netip.MustParseAddr("100.100.100.200"),
	}
	cgnat     = netip.MustParsePrefix("100.64.0.0/10")
	thisNet   = netip.MustParsePrefix("0.0.0.0/8")
	reserved  = netip.MustParsePrefix("240.0.0.0/4") // includes 255.255.255.255
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	benchmark = netip.MustParsePrefix("198.18.0.0/15")
)

// addrProblem says why a webhook may not target ip ("" when it may). With allowPrivate,
// loopback, private (RFC 1918, unique-local fc00::/7), shared (CGNAT 100.64.0.0/10) and
// benchmark addresses are allowed; metadata, link-local, unspecified, multicast and
// reserved addresses never are.
func addrProblem(ip netip.Addr, allowPrivate bool) string {
	ip = ip.Unmap()
	if nat64.Contains(ip) { // a NAT64 address reaches the IPv4 address inside it
		b := ip.As16()
		return addrProblem(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), allowPrivate)
	}
	for _, m := range metadata {
		if ip == m {
			return "a cloud metadata address"
		}
	}
	switch {
	case !ip.IsValid() || ip.IsUnspecified() || thisNet.Contains(ip):
		return "an unspecified address"
	case ip.IsLinkLocalUnicast():
		return "a link-local address"
	case ip.IsMulticast() || reserved.Contains(ip):
		return "a multicast or reserved address"
	}
	private := ""
	switch {
	case ip.IsLoopback():
		private = "a loopback address"
	case ip.IsPrivate():
		private = "a private address"
	case cgnat.Contains(ip):
		private = "a shared (CGNAT) address"
	case benchmark.Contains(ip):
		private = "a private (benchmark) address"
	}
	if private != "" && !allowPrivate {
		return private
	}
	return ""
}

// checkURL checks a webhook URL as it is made: an absolute http or https URL with a
// host, no user info or fragment, at most maxURLBytes, whose host (each address it
// resolves to) passes addrProblem. The message is for the administrator.
func checkURL(ctx context.Context, raw string, allowPrivate bool) (*url.URL, string) {
	if raw == "" {
		return nil, `"url" is required: the receiver's http or https URL`
	}
	if len(raw) > maxURLBytes {
		return nil, fmt.Sprintf(`"url" must be at most %d bytes`, maxURLBytes)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "":
		return nil, `"url" must be an absolute http or https URL, such as "https://hooks.example.com/kioskfeed"`
	case u.User != nil:
		return nil, `"url" must not hold a user name or password (put a token in the path, or use the signature)`
	case u.Hostname() == "":
		return nil, `"url" must name a host`
	case u.Fragment != "" || u.RawFragment != "":
		return nil, `"url" must not have a fragment`
	}
	if p := u.Port(); p != "" {
		if _, err := netip.ParseAddrPort("0.0.0.0:" + p); err != nil {
			return nil, `"url" has an invalid port`
		}
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		addrs, err = net.DefaultResolver.LookupNetIP(rctx, "ip", host)
		if err != nil || len(addrs) == 0 {
			return nil, fmt.Sprintf(`"url": the host %q does not resolve`, host)
		}
	}
	for _, ip := range addrs {
		if why := addrProblem(ip, allowPrivate); why != "" {
			hint := ""
			if addrProblem(ip, true) == "" {
				hint = " (webhook_allow_private allows private and loopback receivers on premises)"
			}
			return nil, fmt.Sprintf(`"url": the host %q is %s (%s); webhooks may not target the server's own machine or network%s`, host, why, ip.Unmap(), hint)
		}
	}
	return u, ""
}

// maxURLBytes bounds a webhook URL.
const maxURLBytes = 2048

// newHTTPClient is the deliveries' client: it dials only addresses that pass
// addrProblem (checked on the address dialled, after DNS resolution), uses no proxy
// from the environment (a proxy would dial for us, unchecked), follows no redirect, and
// bounds each attempt by timeout.
func newHTTPClient(timeout time.Duration, allowPrivate bool) *http.Client {
	dialer := &net.Dialer{
		Timeout: timeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrRefusedAddress, address)
			}
			if why := addrProblem(ap.Addr(), allowPrivate); why != "" {
				return fmt.Errorf("%w: %s is %s", ErrRefusedAddress, ap.Addr().Unmap(), why)
			}
			return nil
		},
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            dialer.DialContext,
			TLSHandshakeTimeout:    timeout,
			ResponseHeaderTimeout:  timeout,
			MaxResponseHeaderBytes: 16 << 10,
			MaxIdleConns:           16,
			IdleConnTimeout:        30 * time.Second,
			ForceAttemptHTTP2:      true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
