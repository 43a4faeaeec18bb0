package files

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrForbiddenURL is wrapped by every error that refuses a URL before or
// while connecting: a scheme other than http/https, userinfo, or an address
// the AddrPolicy refuses.
var ErrForbiddenURL = errors.New("forbidden url")

// ErrFetchFailed is wrapped by errors of a URL fetch that was allowed but
// did not bring in a file: connection errors, timeouts, non-2xx statuses,
// too many redirects.
var ErrFetchFailed = errors.New("fetch failed")

// ErrTooLarge is wrapped by errors of a URL fetch whose file is larger than
// the configured limit.
var ErrTooLarge = errors.New("file too large")

// AddrPolicy decides which addresses a URL fetch may connect to. It holds
// no mutable state and is safe for concurrent use.
type AddrPolicy struct {
	prefixes []netip.Prefix
	hosts    map[string]bool // lower case, without trailing dot
}

// NewAddrPolicy parses --fetch-allow entries: CIDRs ("127.0.0.1/32",
// "fd00::/8"), bare IPs (treated as /32 or /128) or host names (matched
// case-insensitively and exactly against the URL's host, a trailing dot
// ignored). Empty entries are skipped, so an unset flag allows nothing.
func NewAddrPolicy(allow []string) (*AddrPolicy, error) {
	p := &AddrPolicy{hosts: map[string]bool{}}
	for _, raw := range allow {
		e := strings.TrimSpace(raw)
		if e == "" {
			continue
		}
		pfx, err := parseAllowAddr(e)
		if err != nil {
			return nil, fmt.Errorf("files: --fetch-allow entry %q: %w", raw, err)
		}
		if pfx.IsValid() {
			p.prefixes = append(p.prefixes, pfx)
			continue
		}
		h := normHost(e)
		if !validHostName(h) {
			return nil, fmt.Errorf("files: --fetch-allow entry %q: not a CIDR, IP address or host name", raw)
		}
		p.hosts[h] = true
	}
	return p, nil
}

// parseAllowAddr returns the prefix an address entry stands for, an
// invalid prefix for something that is not an address (a host name), or an
// error for a malformed address.
func parseAllowAddr(e string) (netip.Prefix, error) {
	if strings.Contains(e, "/") {
		pfx, err := netip.ParsePrefix(e)
		if err != nil {
			return netip.Prefix{}, err
		}
		// Check compares unmapped addresses, so "::ffff:10.0.0.0/104"
		// must become "10.0.0.0/8" to ever match.
		if a := pfx.Addr(); a.Is4In6() && pfx.Bits() >= 96 {
			pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
		}
		return pfx.Masked(), nil
	}
	a, err := netip.ParseAddr(e)
	if err != nil {
		if strings.ContainsAny(e, ":") || looksNumeric(e) {
			return netip.Prefix{}, err
		}
		return netip.Prefix{}, nil
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("addresses with a zone are not allowed")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// looksNumeric reports whether e is made of digits and dots only: a
// mistyped IPv4 address ("10.0.0.256"), never a host name to trust.
func looksNumeric(e string) bool {
	for _, c := range e {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

func normHost(h string) string {
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" {
			return false
		}
		for _, c := range label {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}

// addrError is Check's refusal; the fetcher rewrites it as "connect to
// <ip:port>: ..." so the address is not named twice.
type addrError struct {
	ip    netip.Addr
	class string
}

func (e *addrError) Error() string {
	return fmt.Sprintf("%s: %s (%s)", e.ip, ErrForbiddenURL, e.class)
}

func (e *addrError) Unwrap() error { return ErrForbiddenURL }

// Check returns nil when a connection to ip, reached through the URL host
// name host ("" when the URL host was an IP literal), is allowed; otherwise
// an error wrapping ErrForbiddenURL that names the address and the class of
// its range ("loopback", "private", "link-local", "CGNAT", "multicast",
// "unspecified", "reserved", "broadcast").
func (p *AddrPolicy) Check(host string, ip netip.Addr) error {
	if !ip.IsValid() {
		return &addrError{ip: ip, class: "invalid"}
	}
	// A zone only comes from an IP literal naming an interface; no public
	// service is reached that way.
	if ip.Zone() != "" {
		return &addrError{ip: ip, class: "zoned"}
	}
	if h := normHost(host); h != "" && p.hosts[h] {
		return nil
	}
	a := ip.Unmap()
	v4, embedded := embeddedV4(a)
	for _, pfx := range p.prefixes {
		if pfx.Contains(a) || (embedded && pfx.Contains(v4)) {
			return nil
		}
	}
	if class := addrClass(a); class != "" {
		return &addrError{ip: ip, class: class}
	}
	return nil
}

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// embeddedV4 returns the IPv4 address a NAT64 (64:ff9b::/96) or 6to4
// (2002::/16) address leads to: connecting to it reaches that IPv4 host.
func embeddedV4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case nat64Prefix.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

type rangeClass struct {
	pfx   netip.Prefix
	class string
}

func ranges(spec ...string) []rangeClass {
	out := make([]rangeClass, 0, len(spec)/2)
	for i := 0; i < len(spec); i += 2 {
		out = append(out, rangeClass{netip.MustParsePrefix(spec[i]), spec[i+1]})
	}
	return out
}

// v4Ranges lists the IPv4 ranges a fetch must not reach; first match wins,
// so the broadcast address comes before 240/4. The documentation and
// benchmarking nets are refused as "reserved": nothing public lives there
// and 198.18/15 is used inside networks.
var v4Ranges = ranges(
	"0.0.0.0/8", "unspecified",
	"10.0.0.0/8", "private",
	"100.64.0.0/10", "CGNAT",
	"127.0.0.0/8", "loopback",
	"169.254.0.0/16", "link-local",
	"172.16.0.0/12", "private",
	"192.0.0.0/24", "reserved",
	"192.0.2.0/24", "reserved",
	"192.168.0.0/16", "private",
	"198.18.0.0/15", "reserved",
	"198.51.100.0/24", "reserved",
	"203.0.113.0/24", "reserved",
	"224.0.0.0/4", "multicast",
	"255.255.255.255/32", "broadcast",
	"240.0.0.0/4", "reserved",
)

// v6Ranges lists the IPv6 ranges refused before the global unicast test.
// Teredo (2001::/32) is refused because its embedded client address is
// not checkable, and the local-use NAT64 prefix because it leads into the
// operator's own network.
var v6Ranges = ranges(
	"::/128", "unspecified",
	"::1/128", "loopback",
	"fe80::/10", "link-local",
	"fc00::/7", "private",
	"fec0::/10", "private",
	"64:ff9b:1::/48", "private",
	"ff00::/8", "multicast",
	"2001::/32", "reserved",
	"2001:db8::/32", "reserved",
	"3fff::/20", "reserved",
)

var globalUnicast = netip.MustParsePrefix("2000::/3")

// addrClass returns the class of a refused address, or "" for a public one.
// a must be unmapped.
func addrClass(a netip.Addr) string {
	if v4, ok := embeddedV4(a); ok {
		return addrClass(v4)
	}
	rs := v6Ranges
	if a.Is4() {
		rs = v4Ranges
	}
	for _, r := range rs {
		if r.pfx.Contains(a) {
			return r.class
		}
	}
	// Everything in IPv6 outside 2000::/3 (IPv4-compatible ::a.b.c.d,
	// ::ffff:0:a.b.c.d, 100::/64 ...) is unassigned or special purpose.
	if a.Is6() && !globalUnicast.Contains(a) {
		return "reserved"
	}
	return ""
}
