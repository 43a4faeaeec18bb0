// Package config holds a node's configuration: command-line flags, each
// settable as a REDIAL_* environment variable, validated before anything
// starts so a typo fails fast with a message naming the setting.
package config

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"redial/internal/store"
)

// Listener is one SIP transport listener.
type Listener struct {
	Network string // "udp" or "tcp"
	Addr    string // host:port
}

// Node is the configuration of one redial node.
type Node struct {
	Redis       string
	Host        string
	Domain      string
	SIP         []Listener
	SIPPublicIP string
	RTPMin      int
	RTPMax      int
	// RTPKernel is whether bridged calls' settled RTP is forwarded in the
	// kernel (eBPF): "auto" (or empty) when the node may load eBPF
	// programs, "on" (the node does not start without it) or "off".
	RTPKernel string
	HTTP      string
	// HTTPPublicURL is the base of the links this node hands out, and its
	// host is accepted in the Host header. Empty only when --http has port
	// 0: the app derives it once the port is bound.
	HTTPPublicURL string
	// HTTPAllowHosts are further names accepted in the Host header.
	HTTPAllowHosts []string
	// TLSCert and TLSKey are PEM files; when set (both or neither) --http
	// serves HTTPS, and SIP over WebSocket at /ws is WSS.
	TLSCert, TLSKey string
	Timezone        *time.Location
	TimezoneName    string
	Data            string
	NotifyPrefix    string
	NotifyFormat    string
	LogLevel        string
	// Resync is how often task configs are re-read even without a change
	// notice.
	Resync time.Duration
	// HeartbeatTTL is how long after its last heartbeat a node counts as
	// dead, when others recover its claimed numbers.
	HeartbeatTTL time.Duration
	// FetchAllow are CIDRs or host names URL fetches may reach although
	// they are loopback or private (checked again by files.NewAddrPolicy).
	FetchAllow []string
	// FetchMaxBytes is the largest file a URL fetch may bring in.
	FetchMaxBytes int64
	// IVRAPIGrace is how long a session stays owned after its owner's
	// WebSocket dropped.
	IVRAPIGrace time.Duration
	// WebUIModules is the npm packages dir the agent page's libraries are
	// served from ("" finds webui/node_modules).
	WebUIModules string
}

// flagSpec ties a flag to its environment variable and default.
type flagSpec struct {
	name, def, usage string
	target           *string
}

// raw holds flag values as strings until Validate parses them.
type raw struct {
	redis, host, domain, sip, sipPublicIP, rtpPorts, http, httpPublicURL, httpAllowHost, timezone, data, notifyPrefix, notifyFormat, logLevel, resync, heartbeat, fetchAllow, fetchMaxBytes, ivrapiGrace, tlsCert, tlsKey, webuiModules, rtpKernel string
}

// Flags registers the node flags on fs and returns a function that, after
// fs.Parse, applies REDIAL_* environment variables for flags not given on
// the command line, validates everything and returns the Node.
func Flags(fs *flag.FlagSet) func() (*Node, error) {
	r := &raw{}
	host, _ := os.Hostname()
	specs := []flagSpec{
		{"redis", "redis://127.0.0.1:6379/0", "Redis URL (redis://, rediss://, redis-sentinel://h1,h2/master, redis-cluster://h1,h2)", &r.redis},
		{"host", host, "this node's name: selects ...@<host> keys and the config@<host> channel", &r.host},
		{"domain", "default", "tenant whose ...@<domain> keys this node serves", &r.domain},
		{"sip", "udp:0.0.0.0:5060,tcp:0.0.0.0:5060", "SIP listeners, comma separated transport:host:port", &r.sip},
		{"sip-public-ip", "", "address written in Contact/Via/SDP (default: first non-loopback address)", &r.sipPublicIP},
		{"rtp-ports", "16384-32767", "RTP port range min-max", &r.rtpPorts},
		{"rtp-kernel", "auto", "forward bridged calls' RTP in the kernel (eBPF on the interfaces' ingress; needs CAP_BPF and CAP_NET_ADMIN): auto, on or off", &r.rtpKernel},
		{"http", "127.0.0.1:8088", "HTTP listen address (REST, /metrics, /healthz); the API is open without a token only on loopback while no token exists", &r.http},
		{"http-public-url", "", "base URL of the links this node hands out; its host is accepted in the Host header (default: http://<sip-public-ip>:<http port>, or the --http address when it is a specific one)", &r.httpPublicURL},
		{"http-allow-host", "", "further host names, comma separated, accepted in the HTTP Host header (IP addresses, localhost, --host and the --http-public-url host always are)", &r.httpAllowHost},
		{"tls-cert", "", "PEM certificate (chain) file: --http serves HTTPS and /ws WSS; needs --tls-key", &r.tlsCert},
		{"tls-key", "", "PEM private key file of --tls-cert", &r.tlsKey},
		{"timezone", "Local", "default IANA time zone for task windows", &r.timezone},
		{"data", "./data", "directory for the notification spool, recordings and file stores", &r.data},
		{"notify-prefix", store.DefaultNotifyPrefix, "prefix of the notification lists", &r.notifyPrefix},
		{"notify-format", "v3", "inbound notification format: v3 (call_dir) or legacy (campaign_ref)", &r.notifyFormat},
		{"log-level", "info", "debug, info, warn or error", &r.logLevel},
		{"resync", "30s", "re-read task configs this often, besides change notices", &r.resync},
		{"heartbeat-ttl", "10s", "a node silent this long is dead and its claimed numbers are recovered", &r.heartbeat},
		{"fetch-allow", "", "CIDRs or host names, comma separated, that URL fetches (ivrapi uploads) may reach although loopback or private", &r.fetchAllow},
		{"fetch-max-bytes", "52428800", "largest file a URL fetch may bring in", &r.fetchMaxBytes},
		{"webui-modules", "", "the npm packages dir (webui/node_modules, installed by make deps) the agent page's SIP.js is served from (default: ./webui/node_modules, or next to the executable)", &r.webuiModules},
		{"ivrapi-grace", "30s", "how long an IVR session stays owned after its owner's WebSocket dropped, waiting for ivrapi_reaccept", &r.ivrapiGrace},
	}
	for _, s := range specs {
		fs.StringVar(s.target, s.name, s.def, s.usage+" [env "+EnvName(s.name)+"]")
	}
	return func() (*Node, error) {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for _, s := range specs {
			if set[s.name] {
				continue
			}
			if v, ok := os.LookupEnv(EnvName(s.name)); ok {
				*s.target = v
			}
		}
		return r.validate()
	}
}

// EnvName is the environment variable of a flag: --sip-public-ip is
// REDIAL_SIP_PUBLIC_IP.
func EnvName(flagName string) string {
	return "REDIAL_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (r *raw) validate() (*Node, error) {
	n := &Node{Redis: r.redis, Host: r.host, Domain: r.domain, HTTP: r.http, Data: r.data,
		NotifyPrefix: r.notifyPrefix, NotifyFormat: r.notifyFormat, LogLevel: r.logLevel, RTPKernel: r.rtpKernel}
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("config: --%s (%s): %s", name, EnvName(name), fmt.Sprintf(format, a...)))
	}
	if !strings.Contains(r.redis, "://") {
		bad("redis", "%q is not a URL (want redis://host:port/db)", r.redis)
	}
	if strings.TrimSpace(r.host) == "" || strings.ContainsAny(r.host, " @{}") {
		bad("host", "%q must be a non-empty name without spaces, '@' or braces", r.host)
	}
	if strings.TrimSpace(r.domain) == "" || strings.ContainsAny(r.domain, " @{}") {
		bad("domain", "%q must be a non-empty name without spaces, '@' or braces", r.domain)
	}
	for _, item := range strings.Split(r.sip, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		network, addr, ok := strings.Cut(item, ":")
		if !ok || (network != "udp" && network != "tcp") {
			bad("sip", "%q: want udp:host:port or tcp:host:port", item)
			continue
		}
		if _, port, err := net.SplitHostPort(addr); err != nil {
			bad("sip", "%q: %v", item, err)
			continue
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad("sip", "%q: port %q is not a number 0-65535", item, port)
			continue
		}
		n.SIP = append(n.SIP, Listener{Network: network, Addr: addr})
	}
	if len(n.SIP) == 0 {
		bad("sip", "no listener given")
	}
	n.SIPPublicIP = r.sipPublicIP
	if n.SIPPublicIP == "" {
		n.SIPPublicIP = defaultPublicIP(n.SIP)
	} else if _, err := netip.ParseAddr(n.SIPPublicIP); err != nil {
		bad("sip-public-ip", "%q is not an IP address", n.SIPPublicIP)
	}
	lo, hi, ok := strings.Cut(r.rtpPorts, "-")
	min, err1 := strconv.Atoi(strings.TrimSpace(lo))
	max, err2 := strconv.Atoi(strings.TrimSpace(hi))
	switch {
	case !ok || err1 != nil || err2 != nil:
		bad("rtp-ports", "%q: want min-max, e.g. 16384-32767", r.rtpPorts)
	case min < 1024 || max > 65535 || max-min < 2:
		bad("rtp-ports", "%q: want a range of at least two ports within 1024-65535", r.rtpPorts)
	default:
		n.RTPMin, n.RTPMax = min, max
	}
	if httpHost, httpPort, err := net.SplitHostPort(r.http); err != nil {
		bad("http", "%q: %v", r.http, err)
	} else if r.httpPublicURL != "" {
		u, err := publicURL(r.httpPublicURL)
		if err != nil {
			bad("http-public-url", "%q: %v", r.httpPublicURL, err)
		}
		n.HTTPPublicURL = u
	} else if httpPort != "0" {
		n.HTTPPublicURL = DefaultPublicURL(httpHost, httpPort, n.SIPPublicIP)
	}
	for _, h := range strings.Split(r.httpAllowHost, ",") {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		if !hostNameRE.MatchString(h) {
			if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err != nil {
				bad("http-allow-host", "%q: want a host name (no scheme, port or wildcard)", h)
				continue
			}
		}
		n.HTTPAllowHosts = append(n.HTTPAllowHosts, strings.TrimSuffix(h, "."))
	}
	switch {
	case (r.tlsCert == "") != (r.tlsKey == ""):
		bad("tls-cert", "--tls-cert and --tls-key go together: give both or neither")
	case r.tlsCert != "":
		if _, err := tls.LoadX509KeyPair(r.tlsCert, r.tlsKey); err != nil {
			bad("tls-cert", "%q with --tls-key %q: %v", r.tlsCert, r.tlsKey, err)
			break
		}
		n.TLSCert, n.TLSKey = r.tlsCert, r.tlsKey
		if r.httpPublicURL == "" && n.HTTPPublicURL != "" {
			n.HTTPPublicURL = "https://" + strings.TrimPrefix(n.HTTPPublicURL, "http://")
		}
	}
	loc, err := time.LoadLocation(r.timezone)
	if err != nil {
		bad("timezone", "%q is not an IANA time zone: %v", r.timezone, err)
	}
	n.Timezone, n.TimezoneName = loc, r.timezone
	if r.data == "" {
		bad("data", "must not be empty")
	}
	if r.notifyPrefix == "" {
		bad("notify-prefix", "must not be empty")
	}
	switch r.rtpKernel {
	case "auto", "on", "off":
	default:
		bad("rtp-kernel", "%q: want auto, on or off", r.rtpKernel)
	}
	if r.notifyFormat != "v3" && r.notifyFormat != "legacy" {
		bad("notify-format", "%q: want v3 or legacy", r.notifyFormat)
	}
	if d, err := time.ParseDuration(r.resync); err != nil || d < 100*time.Millisecond {
		bad("resync", "%q: want a duration of at least 100ms, e.g. 30s", r.resync)
	} else {
		n.Resync = d
	}
	if d, err := time.ParseDuration(r.heartbeat); err != nil || d < 500*time.Millisecond {
		bad("heartbeat-ttl", "%q: want a duration of at least 500ms, e.g. 10s", r.heartbeat)
	} else {
		n.HeartbeatTTL = d
	}
	n.WebUIModules = r.webuiModules
	for _, e := range strings.Split(r.fetchAllow, ",") {
		if e = strings.TrimSpace(e); e != "" {
			n.FetchAllow = append(n.FetchAllow, e)
		}
	}
	if v, err := strconv.ParseInt(strings.TrimSpace(r.fetchMaxBytes), 10, 64); err != nil || v < 1024 {
		bad("fetch-max-bytes", "%q: want a number of bytes of at least 1024", r.fetchMaxBytes)
	} else {
		n.FetchMaxBytes = v
	}
	if d, err := time.ParseDuration(r.ivrapiGrace); err != nil || d < 100*time.Millisecond || d > 24*time.Hour {
		bad("ivrapi-grace", "%q: want a duration from 100ms to 24h, e.g. 30s", r.ivrapiGrace)
	} else {
		n.IVRAPIGrace = d
	}
	switch r.logLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "%q: want debug, info, warn or error", r.logLevel)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return n, nil
}

var hostNameRE = regexp.MustCompile(`^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$`)

// publicURL checks an --http-public-url and returns it without a trailing
// slash.
func publicURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", err
	case u.Scheme != "http" && u.Scheme != "https":
		return "", errors.New("want an http:// or https:// URL")
	case u.Hostname() == "":
		return "", errors.New("no host")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return "", errors.New("want scheme://host[:port][/path] without user, query or fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("port %q is not a number 1-65535", p)
		}
	}
	return strings.TrimRight(raw, "/"), nil
}

// DefaultPublicURL is the --http-public-url when none is given: the SIP
// public IP when --http listens on every interface, else the --http
// address itself (a node listening on 127.0.0.1 is reachable only there).
func DefaultPublicURL(httpHost, httpPort, sipPublicIP string) string {
	host := httpHost
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = sipPublicIP
	}
	return "http://" + net.JoinHostPort(host, httpPort)
}

// defaultPublicIP picks the listener's own address when it is specific, else
// the first non-loopback IPv4 address of the machine, else 127.0.0.1.
func defaultPublicIP(ls []Listener) string {
	for _, l := range ls {
		host, _, _ := net.SplitHostPort(l.Addr)
		if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
			return host
		}
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return "127.0.0.1"
}
