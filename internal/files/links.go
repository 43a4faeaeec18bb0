package files

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LinksPrefix is the URL path prefix the Links handler is mounted at.
const LinksPrefix = "/files/"

const (
	linkMaxToken    = 1024
	linkSweepEvery  = 30 * time.Second
	linkDefaultTTL  = 5 * time.Minute
	linkKeyLabel    = "redial file links v1"
	linkRandomBytes = 8 // 16 hex digits in the held file name
)

var linkB64 = base64.RawURLEncoding.Strict()

// LinksConfig configures signed file links of one node.
type LinksConfig struct {
	// Dir is the holding dir, e.g. <data>/links; it is created with mode 0750.
	Dir string
	// Host is this node's name, signed into every link.
	Host string
	// PublicURL returns the base URL of this node, e.g.
	// "http://127.0.0.1:8088". It is a func because the URL is known only
	// after the listener is bound.
	PublicURL func() string
	// TTL is how long a link stays valid; 5 minutes when zero.
	TTL time.Duration
}

// LinksDeps are the collaborators of Links.
type LinksDeps struct {
	// Secret returns the cluster-wide key material
	// (store.Store.DigestSecret). It is called until it succeeds once, then
	// the derived key is cached.
	Secret func(ctx context.Context) ([]byte, error)
	// Locate returns the public URL of another node, so that a link of that
	// node is answered with a 307 there. It may be nil.
	Locate func(ctx context.Context, host string) (string, bool)
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger receives the janitor's and the handler's log lines; nothing is
	// logged when nil.
	Logger *slog.Logger
}

// Links hands out signed, expiring download links for files and serves
// them. A published file is held (hard-linked, or copied when linking
// fails) in the holding dir until its link expires, because the file it
// came from — typically a recording in a session's :TEMP dir — may be
// removed as soon as the session ends, while the link must keep working.
//
// Any node holding the same cluster secret can verify a link; only the node
// that published it has the file, so the others redirect there.
//
// A hard link shares the file's contents: a file rewritten in place after
// publishing (rather than replaced or removed) changes what the link serves.
// Recordings are written once, so the copy this would take is not made.
type Links struct {
	dir       string
	host      string
	publicURL func() string
	ttl       time.Duration
	secret    func(ctx context.Context) ([]byte, error)
	locate    func(ctx context.Context, host string) (string, bool)
	now       func() time.Time
	log       *slog.Logger
	// link makes the hard link; tests replace it to exercise the copy.
	link func(oldname, newname string) error

	keyMu sync.Mutex
	key   []byte // derived link key; nil until Secret succeeded

	sweepMu sync.Mutex
	// skipped holds the names the janitor could not parse and has logged,
	// so that a stray file costs one log line, not one every sweep.
	skipped map[string]bool
}

// linkPayload is the signed part of a token. Field names are short because
// the token is part of a URL.
type linkPayload struct {
	Host    string `json:"h"`
	File    string `json:"f"` // held file name in the holding dir
	Name    string `json:"n"` // download name
	Expires int64  `json:"e"` // unix seconds
}

// NewLinks creates the holding dir and returns the Links. Run must be
// running for held files to be removed.
func NewLinks(cfg LinksConfig, deps LinksDeps) (*Links, error) {
	switch {
	case cfg.Dir == "":
		return nil, errors.New("files: links: Dir is required")
	case cfg.Host == "":
		return nil, errors.New("files: links: Host is required")
	case cfg.PublicURL == nil:
		return nil, errors.New("files: links: PublicURL is required")
	case deps.Secret == nil:
		return nil, errors.New("files: links: Secret is required")
	case cfg.TTL < 0:
		return nil, fmt.Errorf("files: links: TTL %v: must not be negative", cfg.TTL)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("files: links: holding dir %q: %w", cfg.Dir, err)
	}
	if dir, err = makeDir(dir); err != nil {
		return nil, fmt.Errorf("files: links: holding dir: %w", err)
	}
	l := &Links{
		dir:       dir,
		host:      cfg.Host,
		publicURL: cfg.PublicURL,
		ttl:       cfg.TTL,
		secret:    deps.Secret,
		locate:    deps.Locate,
		now:       deps.Now,
		log:       deps.Logger,
		link:      os.Link,
		skipped:   map[string]bool{},
	}
	if l.ttl == 0 {
		l.ttl = linkDefaultTTL
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	return l, nil
}

// Run removes held files whose links have expired, once at start (leftovers
// of a previous run) and then every 30 s, until ctx ends.
func (l *Links) Run(ctx context.Context) error {
	t := time.NewTicker(linkSweepEvery)
	defer t.Stop()
	for {
		l.sweep()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sweep removes every held file whose expiry prefix is not in the future.
func (l *Links) sweep() {
	l.sweepMu.Lock()
	defer l.sweepMu.Unlock()
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		l.log.Error("file links: reading holding dir", "dir", l.dir, "err", err)
		return
	}
	now := l.now().Unix()
	present := make(map[string]bool, len(entries))
	for _, e := range entries {
		name := e.Name()
		present[name] = true
		exp, ok := linkHeldExpiry(name)
		if !ok || e.IsDir() {
			if !l.skipped[name] {
				l.skipped[name] = true
				l.log.Warn("file links: leaving unknown entry in holding dir alone", "dir", l.dir, "name", name)
			}
			continue
		}
		if exp > now {
			continue
		}
		if err := os.Remove(filepath.Join(l.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.log.Error("file links: removing expired held file", "name", name, "err", err)
		}
	}
	// Forget names that are gone, so a later file of the same name is
	// logged again and the map does not grow.
	for name := range l.skipped {
		if !present[name] {
			delete(l.skipped, name)
		}
	}
}

// Publish holds the file at abs (the absolute path of an existing regular
// file, not a symlink) and returns its URL "<PublicURL>/files/<token>" and
// when the link expires. The held file is independent of abs: removing abs
// does not break the link. Publishing the same file twice holds it twice.
func (l *Links) Publish(ctx context.Context, abs string) (url string, expires time.Time, err error) {
	if !filepath.IsAbs(abs) {
		return "", time.Time{}, fmt.Errorf("files: publishing %q: not an absolute path", abs)
	}
	key, err := l.linkKey(ctx)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("files: publishing %q: %w", abs, err)
	}
	base := strings.TrimRight(l.publicURL(), "/")
	if base == "" {
		return "", time.Time{}, fmt.Errorf("files: publishing %q: public URL of this node is not known yet", abs)
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("files: publishing %q: %w", abs, err)
	}
	if !fi.Mode().IsRegular() {
		return "", time.Time{}, fmt.Errorf("files: publishing %q: not a regular file (%s)", abs, fi.Mode().Type())
	}

	// Round the expiry up to whole seconds: a link is valid at least TTL.
	exp := l.now().Add(l.ttl)
	e := exp.Unix()
	if time.Unix(e, 0).Before(exp) {
		e++
	}
	rnd := make([]byte, linkRandomBytes)
	if _, err := rand.Read(rnd); err != nil {
		return "", time.Time{}, fmt.Errorf("files: publishing %q: random name: %w", abs, err)
	}
	held := strconv.FormatInt(e, 10) + "-" + hex.EncodeToString(rnd) + linkExt(abs)
	if err := l.hold(abs, fi, filepath.Join(l.dir, held)); err != nil {
		return "", time.Time{}, fmt.Errorf("files: publishing %q: %w", abs, err)
	}

	tok, err := linkSign(key, linkPayload{Host: l.host, File: held, Name: filepath.Base(abs), Expires: e})
	if err == nil && len(tok) > linkMaxToken {
		err = fmt.Errorf("token of %d bytes is longer than %d", len(tok), linkMaxToken)
	}
	if err != nil {
		_ = os.Remove(filepath.Join(l.dir, held))
		return "", time.Time{}, fmt.Errorf("files: publishing %q: %w", abs, err)
	}
	return base + LinksPrefix + tok, time.Unix(e, 0), nil
}

// hold makes dst a hard link to abs, or a copy of it when linking fails
// (another filesystem, hard links not permitted). Either way dst must end up
// as the very file that was checked with Lstat (fi): if abs was swapped for
// a symlink in between, the link would hold the symlink and the copy would
// follow it.
func (l *Links) hold(abs string, fi fs.FileInfo, dst string) error {
	linkErr := l.link(abs, dst)
	if linkErr == nil {
		hfi, err := os.Lstat(dst)
		if err == nil && hfi.Mode().IsRegular() && os.SameFile(fi, hfi) {
			return nil
		}
		_ = os.Remove(dst)
		if err != nil {
			return fmt.Errorf("checking held file: %w", err)
		}
		return errors.New("file changed while it was being held")
	}
	if err := linkCopy(abs, fi, dst); err != nil {
		return fmt.Errorf("hard link failed (%v), copy failed: %w", linkErr, err)
	}
	l.log.Debug("file links: held a copy", "file", abs, "link_err", linkErr)
	return nil
}

func linkCopy(abs string, fi fs.FileInfo, dst string) (err error) {
	src, err := os.OpenFile(abs, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer src.Close()
	sfi, err := src.Stat()
	if err != nil {
		return err
	}
	if !sfi.Mode().IsRegular() || !os.SameFile(fi, sfi) {
		return errors.New("file changed while it was being held")
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(dst)
		}
	}()
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return fmt.Errorf("copying to %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copying to %s: %w", dst, err)
	}
	// Keep Last-Modified the same as with a hard link.
	if err := os.Chtimes(dst, time.Time{}, sfi.ModTime()); err != nil {
		return fmt.Errorf("setting time of %s: %w", dst, err)
	}
	return nil
}

// linkKey returns the derived signing key, asking Secret until it succeeds.
func (l *Links) linkKey(ctx context.Context) ([]byte, error) {
	l.keyMu.Lock()
	defer l.keyMu.Unlock()
	if l.key != nil {
		return l.key, nil
	}
	secret, err := l.secret(ctx)
	if err != nil {
		return nil, fmt.Errorf("link secret: %w", err)
	}
	if len(secret) == 0 {
		return nil, errors.New("link secret: empty")
	}
	// Derive a key of its own, so a link signature can never be replayed
	// as anything else the digest secret signs.
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(linkKeyLabel))
	l.key = mac.Sum(nil)
	return l.key, nil
}

func linkSign(key []byte, p linkPayload) (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("encoding link: %w", err)
	}
	return linkB64.EncodeToString(b) + "." + linkB64.EncodeToString(linkMAC(key, b)), nil
}

func linkMAC(key, payload []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write(payload)
	return mac.Sum(nil)
}

// ServeHTTP serves GET and HEAD LinksPrefix+<token> (405 otherwise).
func (l *Links) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	tok, ok := strings.CutPrefix(r.URL.Path, LinksPrefix)
	if !ok || tok == "" || len(tok) > linkMaxToken || strings.Contains(tok, "/") {
		http.NotFound(w, r)
		return
	}
	p64, s64, ok := strings.Cut(tok, ".")
	if !ok {
		http.NotFound(w, r)
		return
	}
	payload, err := linkB64.DecodeString(p64)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	sig, err := linkB64.DecodeString(s64)
	if err != nil || len(sig) != sha256.Size {
		http.NotFound(w, r)
		return
	}
	key, err := l.linkKey(r.Context())
	if err != nil {
		l.log.Error("file links: cannot verify link", "err", err)
		http.Error(w, "links unavailable", http.StatusServiceUnavailable)
		return
	}
	// The signature is checked before the payload is parsed, so nothing
	// an outsider sends reaches the JSON decoder.
	if !hmac.Equal(sig, linkMAC(key, payload)) {
		l.log.Info("file links: bad signature", "remote", r.RemoteAddr)
		http.Error(w, "bad signature", http.StatusForbidden)
		return
	}
	var p linkPayload
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || p.Host == "" {
		http.NotFound(w, r)
		return
	}
	if exp, ok := linkHeldExpiry(p.File); !ok || exp != p.Expires || checkName(p.File) != "" {
		http.NotFound(w, r)
		return
	}
	now := l.now()
	expires := time.Unix(p.Expires, 0)
	if !now.Before(expires) {
		http.Error(w, "link expired", http.StatusGone)
		return
	}
	if p.Host != l.host {
		if l.locate != nil {
			if base, ok := l.locate(r.Context(), p.Host); ok && base != "" {
				http.Redirect(w, r, strings.TrimRight(base, "/")+LinksPrefix+tok, http.StatusTemporaryRedirect)
				return
			}
		}
		http.NotFound(w, r)
		return
	}
	f, err := os.OpenFile(filepath.Join(l.dir, p.File), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			l.log.Error("file links: opening held file", "name", p.File, "err", err)
		}
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", linkContentType(p.File))
	h.Set("Content-Disposition", `attachment; filename="`+linkSafeName(p.Name)+`"`)
	h.Set("Cache-Control", "private, max-age="+strconv.FormatInt(int64(expires.Sub(now)/time.Second), 10))
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// linkHeldExpiry parses "<unix seconds>-<16 hex><ext>" and returns the
// expiry.
func linkHeldExpiry(name string) (int64, bool) {
	num, rest, ok := strings.Cut(name, "-")
	if !ok || num == "" || len(rest) < 2*linkRandomBytes {
		return 0, false
	}
	e, err := strconv.ParseInt(num, 10, 64)
	if err != nil || e <= 0 {
		return 0, false
	}
	if _, err := hex.DecodeString(rest[:2*linkRandomBytes]); err != nil {
		return 0, false
	}
	ext := rest[2*linkRandomBytes:]
	if ext != "" && linkExt(ext) != ext {
		return 0, false
	}
	return e, true
}

// linkExt returns the extension of name if it is short and plain
// (".wav"), else "": it becomes part of a file name in the holding dir.
func linkExt(name string) string {
	ext := filepath.Ext(name)
	if len(ext) < 2 || len(ext) > 16 {
		return ""
	}
	for _, c := range ext[1:] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return ext
}

func linkContentType(name string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".wav":
		return "audio/wav"
	case ".mp3":
		return "audio/mpeg"
	}
	return "application/octet-stream"
}

// linkSafeName keeps only [A-Za-z0-9._-], so the name cannot break out of
// the quoted Content-Disposition parameter or carry a path.
func linkSafeName(n string) string {
	var b strings.Builder
	for _, c := range n {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteRune(c)
		}
	}
	s := strings.Trim(b.String(), ".")
	if s == "" {
		return "download"
	}
	return s
}
