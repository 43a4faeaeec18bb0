package lines

import (
	"context"
	"net"
	"strings"
)

// FromAddress returns the enabled line whose URI host is, or resolves to,
// ip: an INVITE from a carrier's address is trusted as coming from that
// trunk.
func (m *Manager) FromAddress(ctx context.Context, ip string) (Line, bool) {
	snap, err := m.current(ctx)
	if err != nil {
		return Line{}, false
	}
	for _, ls := range snap.lines {
		l := ls.line
		if !l.Enable {
			continue
		}
		host := uriHost(l.URI)
		if host == ip {
			return cloneLine(l), true
		}
		if net.ParseIP(host) != nil {
			continue
		}
		addrs, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if a == ip {
				return cloneLine(l), true
			}
		}
	}
	return Line{}, false
}

// Credentials returns the password of the enabled line whose username is
// user: a trunk may authenticate instead of calling from a known address.
func (m *Manager) Credentials(ctx context.Context, user string) (string, Line, bool) {
	snap, err := m.current(ctx)
	if err != nil || user == "" {
		return "", Line{}, false
	}
	for _, ls := range snap.lines {
		if ls.line.Enable && ls.line.Username == user && ls.line.Password != "" {
			return ls.line.Password, cloneLine(ls.line), true
		}
	}
	return "", Line{}, false
}

// uriHost is the host of "sip:[user@]host[:port][;params]".
func uriHost(uri string) string {
	_, rest, _ := strings.Cut(uri, ":")
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = rest[at+1:]
	}
	rest, _, _ = strings.Cut(rest, ";")
	if strings.HasPrefix(rest, "[") {
		if end := strings.Index(rest, "]"); end > 0 {
			return rest[1:end]
		}
	}
	host, _, err := net.SplitHostPort(rest)
	if err != nil {
		return rest
	}
	return host
}
