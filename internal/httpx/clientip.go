package httpx

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientAddr finds a request's client address. X-Forwarded-For is believed only when the
// connection comes from a trusted proxy, and then only up to the first address that is
// not itself a trusted proxy, counting from the right: anything to the left of that was
// written by the client and proves nothing.
type ClientAddr struct {
	trusted []netip.Prefix
}

// NewClientAddr believes X-Forwarded-For from the given proxies (IPs or CIDRs).
func NewClientAddr(proxies []string) (*ClientAddr, error) {
	c := &ClientAddr{}
	for _, p := range proxies {
		if !strings.Contains(p, "/") {
			addr, err := netip.ParseAddr(p)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", p, err)
			}
			addr = addr.Unmap() // addresses are compared unmapped
			c.trusted = append(c.trusted, netip.PrefixFrom(addr, addr.BitLen()))
			continue
		}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", p, err)
		}
		if a := pfx.Addr(); a.Is4In6() {
			if pfx.Bits() < 96 {
				return nil, fmt.Errorf("trusted proxy %q: an IPv4-mapped range needs at least /96", p)
			}
			pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
		}
		c.trusted = append(c.trusted, pfx.Masked())
	}
	return c, nil
}

func (c *ClientAddr) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// Of returns the client's IP address as text.
func (c *ClientAddr) Of(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if !c.isTrusted(peer) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if !c.isTrusted(a.Unmap()) {
			return a.Unmap().String()
		}
		peer = a.Unmap()
	}
	return peer.String()
}
