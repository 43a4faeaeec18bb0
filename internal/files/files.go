// Package files maps the store paths that IVR scripts and the ivrapi use
// (":GS_PUB/x/y/14.mp3", ":TEMP/14.mp3", "prompts/hello.wav") onto directories
// under the node's --data dir, and refuses every path that could reach a file
// outside its store.
//
// Store paths are taken literally: nothing is URL-decoded, so "%2e%2e" is an
// ordinary file name, not "..". Decoding is the transport's business (HTTP,
// WebSocket JSON); doing it twice here would let "%252e%252e" through a
// check made on the once-decoded form.
//
// The checks are made when a path is resolved. Files are then opened by name,
// so somebody who can create symlinks inside a store between the check and
// the open could still redirect it; redial itself never creates symlinks, so
// that needs shell access to --data.
package files

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrUnsafePath is wrapped by every error that rejects a path because it
// could reach outside its store or is not a plain name.
var ErrUnsafePath = errors.New("unsafe path")

// ErrUnknownStore is wrapped by errors for a store prefix that is not one of
// the known stores, and by StorePath for a file outside all stores.
var ErrUnknownStore = errors.New("unknown file store")

// ErrNoSession is wrapped by errors for a :TEMP path used without an IVR
// session, which is the only owner of a temp dir.
var ErrNoSession = errors.New(":TEMP needs an IVR session")

// storeDef describes one store. The long name is the directory name; the
// short name is what StorePath writes, as the seed's results do.
type storeDef struct {
	short, long string
	perDomain   bool
}

const tempPrefix = ":TEMP"

// storeDefs lists the stores of seed 002; it is never modified.
var storeDefs = [...]storeDef{
	{":SYN_MEDIA", ":SYNC_COMMON", false},
	{":SYN_DOM", ":SYNC_DOMAIN_DATA", true},
	{":SYN_DOM_MEDIA", ":SYNC_DOMAIN_COMMON", true},
	{":SS_PUB", ":SITESHARE_PUBLIC", false},
	{":SS_DOM", ":SITESHARE_DOMAIN_DATA", true},
	{":GS_PUB", ":GLOBALSHARE_PUBLIC", false},
	{":GS_DOM", ":GLOBALSHARE_DOMAIN_DATA", true},
}

// defaultStore is :SYNC_DOMAIN_DATA, used for paths without a prefix.
const defaultStore = 1

// knownStores is the list shown in unknown-store errors.
const knownStores = ":TEMP, :SYN_MEDIA, :SYN_DOM, :SYN_DOM_MEDIA, :SS_PUB, :SS_DOM, :GS_PUB, :GS_DOM or their long names"

// Canonical returns the canonical long name of a store prefix, for example
// ":SITESHARE_PUBLIC" for ":SS_PUB". The prefix must include the colon and
// match in case; ok is false for anything else.
func Canonical(prefix string) (string, bool) {
	if prefix == tempPrefix {
		return tempPrefix, true
	}
	if i := lookup(prefix); i >= 0 {
		return storeDefs[i].long, true
	}
	return "", false
}

func lookup(prefix string) int {
	for i, d := range storeDefs {
		if prefix == d.short || prefix == d.long {
			return i
		}
	}
	return -1
}

// Config configures the file stores of one node.
type Config struct {
	// Root is the --data dir. Stores live under Root/stores/<long name
	// without the colon>, followed by /<Domain> for the *_DOMAIN_* stores;
	// session temp dirs under Root/tmp.
	Root string
	// Domain is the tenant this node serves (--domain); it selects the
	// subdirectory of the per-domain stores.
	Domain string
}

// Stores resolves store paths for one node. It holds no mutable state and
// is safe for concurrent use.
type Stores struct {
	// roots[i] is the directory of storeDefs[i] with symlinks evaluated,
	// so an admin may point a whole store at a mount.
	roots   [len(storeDefs)]string
	tmpRoot string
}

// New creates the store directories (mode 0750) and returns the Stores.
func New(cfg Config) (*Stores, error) {
	if cfg.Root == "" {
		return nil, errors.New("files: Root (--data) is required")
	}
	if cfg.Domain == "" {
		return nil, errors.New("files: Domain is required")
	}
	if msg := checkName(cfg.Domain); msg != "" {
		return nil, fmt.Errorf("files: domain %q: %s: %w", cfg.Domain, msg, ErrUnsafePath)
	}
	abs, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("files: data dir %q: %w", cfg.Root, err)
	}
	s := &Stores{}
	for i, d := range storeDefs {
		dir := filepath.Join(abs, "stores", d.long[1:])
		if d.perDomain {
			dir = filepath.Join(dir, cfg.Domain)
		}
		if s.roots[i], err = makeDir(dir); err != nil {
			return nil, fmt.Errorf("files: store %s: %w", d.long, err)
		}
	}
	if s.tmpRoot, err = makeDir(filepath.Join(abs, "tmp")); err != nil {
		return nil, fmt.Errorf("files: temp dir: %w", err)
	}
	return s, nil
}

func makeDir(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", dir)
	}
	return real, nil
}

// pathError carries the store path and the rule it broke; its text is
// "files: <path>: <rule>" and it unwraps to one of the sentinels (plus the
// OS error, when there is one).
type pathError struct {
	path  string
	msg   string
	kind  error
	cause error
}

func (e *pathError) Error() string {
	s := fmt.Sprintf("files: %q: %s", e.path, e.msg)
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

func (e *pathError) Unwrap() []error {
	var errs []error
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}

func unsafe(path, msg string) error {
	return &pathError{path: path, msg: msg, kind: ErrUnsafePath}
}

// checkChars applies the rules that hold for a whole path and for each name.
func checkChars(s string) string {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return "NUL bytes are not allowed"
	case strings.IndexByte(s, '\\') >= 0:
		return "backslashes are not allowed"
	}
	for _, r := range s {
		// Control characters are refused too: a newline in a file name
		// forges log lines and breaks every line-based tool.
		if r < 0x20 || r == 0x7f {
			return "control characters are not allowed"
		}
	}
	return ""
}

// checkName returns why s is not a single safe path element, or "".
func checkName(s string) string {
	switch s {
	case "":
		return "empty name"
	case "..":
		return `".." is not allowed`
	case ".":
		return `"." is not allowed`
	}
	if msg := checkChars(s); msg != "" {
		return msg
	}
	if strings.IndexByte(s, '/') >= 0 {
		return `"/" is not allowed in a name`
	}
	return ""
}

// checkRel checks the slash-separated part of a path after its prefix.
func checkRel(rel string) string {
	if strings.HasPrefix(rel, "/") {
		return "absolute paths are not allowed"
	}
	parts := strings.Split(rel, "/")
	// ".." first: it is the rule an attacker is probing, so name it even
	// when the path also has an empty element.
	for _, p := range parts {
		if p == ".." {
			return `".." is not allowed`
		}
	}
	for _, p := range parts {
		if msg := checkName(p); msg != "" {
			return msg
		}
	}
	return ""
}

// parsed is a validated store path.
type parsed struct {
	store int    // index into storeDefs, or -1 for :TEMP
	rel   string // slash-separated, "" for the store root
}

func parse(path string) (parsed, error) {
	if path == "" {
		return parsed{}, unsafe(path, "empty path")
	}
	if msg := checkChars(path); msg != "" {
		return parsed{}, unsafe(path, msg)
	}
	p := parsed{store: defaultStore, rel: path}
	if strings.HasPrefix(path, ":") {
		prefix, rest, _ := strings.Cut(path, "/")
		p.rel = rest
		if prefix == tempPrefix {
			p.store = -1
		} else if p.store = lookup(prefix); p.store < 0 {
			return parsed{}, &pathError{path: path,
				msg:  fmt.Sprintf("unknown file store %q (want %s)", prefix, knownStores),
				kind: ErrUnknownStore}
		}
	}
	if p.rel == "" {
		return p, nil
	}
	if msg := checkRel(p.rel); msg != "" {
		return parsed{}, unsafe(path, msg)
	}
	return p, nil
}

// Join appends one file name to a store directory path such as the seed's
// destpath ":GS_PUB/x/y/" and returns ":GS_PUB/x/y/name". Use it instead of
// path.Join for names from outside (a URL's last element): path.Join
// would let "../../etc" climb out of the prefix and silently land in the
// default store.
func Join(dir, name string) (string, error) {
	if msg := checkName(name); msg != "" {
		return "", unsafe(name, msg)
	}
	d := strings.TrimSuffix(dir, "/")
	if d == "" {
		return name, nil
	}
	if _, err := parse(d); err != nil {
		return "", err
	}
	return d + "/" + name, nil
}
