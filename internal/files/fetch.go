package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// Defaults of FetchConfig.
const (
	DefaultFetchMaxBytes     = 52428800
	DefaultFetchTimeout      = 30 * time.Second
	DefaultFetchMaxRedirects = 3
)

const (
	fetchMaxURL  = 2048
	fetchMaxName = 100
	// fetchMaxExt bounds the extension kept when a long name is cut; a
	// longer "extension" is just part of the name.
	fetchMaxExt = 16
	// fetchMaxShown bounds a URL quoted in an error message.
	fetchMaxShown = 200
)

// errFetchTimeout is the cause of a fetch context that ran out of
// FetchConfig.Timeout, told apart from the caller's own deadline.
var errFetchTimeout = errors.New("fetch timeout")

// FetchConfig configures a Fetcher. Zero values take the defaults.
type FetchConfig struct {
	Allow        []string      // --fetch-allow
	MaxBytes     int64         // default 52428800
	Timeout      time.Duration // whole fetch incl. redirects; default 30s
	MaxRedirects int           // default 3
}

// Fetcher downloads files from http and https URLs into a directory,
// connecting only to addresses its AddrPolicy allows. It is safe for
// concurrent use.
type Fetcher struct {
	cfg       FetchConfig
	policy    *AddrPolicy
	transport *http.Transport
}

// NewFetcher checks cfg and returns a Fetcher.
func NewFetcher(cfg FetchConfig) (*Fetcher, error) {
	switch {
	case cfg.MaxBytes < 0:
		return nil, fmt.Errorf("files: fetch MaxBytes %d: must not be negative", cfg.MaxBytes)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("files: fetch Timeout %s: must not be negative", cfg.Timeout)
	case cfg.MaxRedirects < 0:
		return nil, fmt.Errorf("files: fetch MaxRedirects %d: must not be negative", cfg.MaxRedirects)
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultFetchMaxBytes
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultFetchTimeout
	}
	if cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = DefaultFetchMaxRedirects
	}
	policy, err := NewAddrPolicy(cfg.Allow)
	if err != nil {
		return nil, err
	}
	f := &Fetcher{cfg: cfg, policy: policy}
	f.transport = &http.Transport{
		// Never the environment's proxy: the proxy would make the
		// connection, out of reach of the address check.
		Proxy:       nil,
		DialContext: f.dial,
		// One connection per fetch: a kept-alive connection would carry a
		// later fetch to an address checked for an earlier one.
		DisableKeepAlives: true,
		// Content-Length then limits what is stored, not a compressed form.
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return f, nil
}

// connectError is a refused connection: "connect to <ip:port>: forbidden
// url (<class>)". It unwraps to ErrForbiddenURL.
type connectError struct {
	addr string
	err  *addrError
}

func (e *connectError) Error() string {
	return fmt.Sprintf("connect to %s: %s (%s)", e.addr, ErrForbiddenURL, e.err.class)
}

func (e *connectError) Unwrap() error { return e.err }

// dial connects to addr ("name:port" from the URL) and checks every address
// actually connected to, after name resolution, in the dialer's Control
// hook: what was checked is what is connected to, whatever DNS answers the
// next time (rebinding).
func (f *Fetcher) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	name := host
	if ip, err := netip.ParseAddr(host); err == nil {
		name = ""
		// Checked before any socket exists, so that a literal is refused
		// the same way on a host without (say) IPv6.
		if err := f.policy.Check("", ip); err != nil {
			return nil, refusal(addr, err)
		}
	}
	var (
		mu      sync.Mutex
		refused error
	)
	d := net.Dialer{
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("connect to %s: %w: %w", address, err, ErrForbiddenURL)
			}
			if err := f.policy.Check(name, ap.Addr()); err != nil {
				err = refusal(address, err)
				mu.Lock()
				if refused == nil {
					refused = err
				}
				mu.Unlock()
				return err
			}
			return nil
		},
	}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		// With several addresses the dialer reports only one failure;
		// a refusal is the one that matters.
		mu.Lock()
		defer mu.Unlock()
		if refused != nil {
			return nil, refused
		}
		return nil, err
	}
	return conn, nil
}

func refusal(addr string, err error) error {
	var ae *addrError
	if errors.As(err, &ae) {
		return &connectError{addr: addr, err: ae}
	}
	return fmt.Errorf("connect to %s: %w", addr, err)
}

// FetchOptions adjust one fetch.
type FetchOptions struct {
	// Check, when set, is called with the downloaded file's path before it
	// gets its final name; its error refuses the file (the download is
	// removed, nothing existing is replaced) and is returned wrapped.
	Check func(path string) error
}

// Fetch downloads rawURL into directory dir (which exists) and returns the
// file name chosen (not the path). The name comes from the last path
// element of the final URL, reduced to safe characters; a file of that name
// in dir is replaced atomically. Errors wrap ErrForbiddenURL,
// ErrFetchFailed, ErrTooLarge or the Check's error, and name the URL
// without its userinfo and query.
func (f *Fetcher) Fetch(ctx context.Context, rawURL, dir string, opt FetchOptions) (name string, err error) {
	shown := fetchShown(rawURL)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("files: fetch %q: "+format, append([]any{shown}, args...)...)
	}
	if len(rawURL) > fetchMaxURL {
		return "", fail("URL longer than %d bytes: %w", fetchMaxURL, ErrForbiddenURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fail("%s: %w", fetchParseMsg(err), ErrForbiddenURL)
	}
	if msg := fetchURLRule(u); msg != "" {
		return "", fail("%s: %w", msg, ErrForbiddenURL)
	}

	ctx, cancel := context.WithTimeoutCause(ctx, f.cfg.Timeout, errFetchTimeout)
	defer cancel()
	hop := "" // the redirect being followed, for messages
	client := &http.Client{
		Transport: f.transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			target := fetchShown(req.URL.String())
			if len(via) > f.cfg.MaxRedirects {
				return fmt.Errorf("redirect to %q: too many redirects (more than %d): %w", target, f.cfg.MaxRedirects, ErrFetchFailed)
			}
			if msg := fetchURLRule(req.URL); msg != "" {
				return fmt.Errorf("redirect to %q: %s: %w", target, msg, ErrForbiddenURL)
			}
			hop = target
			return nil
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fail("%w: %w", err, ErrForbiddenURL)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", f.doError(ctx, fail, hop, err)
	}
	defer resp.Body.Close()
	at := ""
	if hop != "" {
		at = fmt.Sprintf("redirect to %q: ", hop)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fail("%sstatus %s: %w", at, resp.Status, ErrFetchFailed)
	}
	if resp.ContentLength > f.cfg.MaxBytes {
		return "", fail("%sContent-Length %d is over the limit of %d bytes: %w", at, resp.ContentLength, f.cfg.MaxBytes, ErrTooLarge)
	}
	name = fetchName(resp.Request.URL.EscapedPath(), resp.Header.Get("Content-Type"))

	// The temp name ends in the final name, so a media check can go by
	// its extension; the leading dot keeps it out of listings.
	tmp, err := os.CreateTemp(dir, ".fetch-*-"+name)
	if err != nil {
		return "", fail("%w", err)
	}
	tmpPath := tmp.Name()
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmpPath)
		}
	}()
	n, err := io.Copy(tmp, io.LimitReader(resp.Body, f.cfg.MaxBytes+1))
	if n > f.cfg.MaxBytes {
		return "", fail("%smore than %d bytes: %w", at, f.cfg.MaxBytes, ErrTooLarge)
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) { // writing, not reading
			return "", fail("%w", err)
		}
		return "", f.doError(ctx, fail, hop, err)
	}
	resp.Body.Close()
	if err := tmp.Chmod(0o640); err != nil {
		return "", fail("%w", err)
	}
	if err := tmp.Sync(); err != nil {
		return "", fail("%w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fail("%w", err)
	}
	if opt.Check != nil {
		if err := opt.Check(tmpPath); err != nil {
			return "", fail("%w", err)
		}
	}
	if err := os.Rename(tmpPath, filepath.Join(dir, name)); err != nil {
		return "", fail("%w", err)
	}
	done = true
	return name, nil
}

// doError turns an error of the HTTP client into the fetch's error. The
// *url.Error layer is dropped: its text holds the full URL with the query,
// where tokens live.
func (f *Fetcher) doError(ctx context.Context, fail func(string, ...any) error, hop string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	at := ""
	if hop != "" {
		at = fmt.Sprintf("redirect to %q: ", hop)
	}
	var ce *connectError
	switch {
	case errors.As(err, &ce):
		return fail("%s%w", at, ce)
	case errors.Is(err, ErrForbiddenURL), errors.Is(err, ErrFetchFailed):
		return fail("%w", err)
	case context.Cause(ctx) == errFetchTimeout:
		return fail("%sno complete answer within %s: %w", at, f.cfg.Timeout, ErrFetchFailed)
	}
	return fail("%s%w: %w", at, err, ErrFetchFailed)
}

// fetchURLRule returns why u may not be fetched, or "".
func fetchURLRule(u *url.URL) string {
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		if u.Scheme == "" {
			return "not an absolute URL (want http or https)"
		}
		return fmt.Sprintf("scheme %q is not allowed (want http or https)", u.Scheme)
	case u.User != nil:
		return "user info in a URL is not allowed"
	case u.Opaque != "" || u.Hostname() == "":
		return "URL has no host"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("invalid port %q", p)
		}
	}
	return ""
}

// fetchParseMsg describes a URL parse error without repeating the URL,
// which *url.Error quotes whole.
func fetchParseMsg(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	// Errors such as "invalid port" quote the bad part; it sits before any
	// query, but cut the message anyway: it is outsider input.
	msg := err.Error()
	if len(msg) > fetchMaxShown {
		msg = msg[:fetchMaxShown] + "..."
	}
	return "invalid URL: " + msg
}

// fetchShown returns rawURL for an error message: without userinfo, query
// and fragment, and cut to a readable length.
func fetchShown(rawURL string) string {
	var s string
	if u, err := url.Parse(rawURL); err == nil {
		c := *u
		c.User = nil
		c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = "", false, "", ""
		s = c.String()
	} else {
		s, _, _ = strings.Cut(rawURL, "?")
		s, _, _ = strings.Cut(s, "#")
		if scheme, rest, ok := strings.Cut(s, "://"); ok {
			auth, path, _ := strings.Cut(rest, "/")
			if i := strings.LastIndexByte(auth, '@'); i >= 0 {
				auth = auth[i+1:]
			}
			s = scheme + "://" + auth
			if path != "" || strings.Contains(rest, "/") {
				s += "/" + path
			}
		}
	}
	if len(s) > fetchMaxShown {
		cut := fetchMaxShown
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// fetchExts maps the media types of files meant for playback to the
// extension a name without one gets.
var fetchExts = map[string]string{
	"audio/wav":   ".wav",
	"audio/x-wav": ".wav",
	"audio/wave":  ".wav",
	"audio/mpeg":  ".mp3",
	"audio/mp3":   ".mp3",
}

// fetchName chooses the file name for a download from the final URL's
// escaped path and the response's Content-Type. The result is 1 to 100
// bytes of [A-Za-z0-9._-], does not start with "." and never names a
// folder: it is always a plain file name in the target directory.
func fetchName(escapedPath, contentType string) string {
	seg := escapedPath
	if i := strings.LastIndexByte(seg, '/'); i >= 0 {
		seg = seg[i+1:]
	}
	if dec, err := url.PathUnescape(seg); err == nil {
		seg = dec
	}
	var b strings.Builder
	for _, r := range seg {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := strings.TrimLeft(b.String(), ".")
	if ext := filepath.Ext(name); ext == "" || ext == "." {
		mt, _, _ := mime.ParseMediaType(contentType)
		if add := fetchExts[strings.ToLower(mt)]; add != "" {
			name = strings.TrimRight(name, ".")
			if name == "" {
				name = "file"
			}
			name += add
		}
	}
	if name == "" {
		name = "file"
	}
	if len(name) > fetchMaxName {
		ext := filepath.Ext(name)
		if len(ext) > fetchMaxExt {
			ext = ""
		}
		name = name[:fetchMaxName-len(ext)] + ext
	}
	return name
}
