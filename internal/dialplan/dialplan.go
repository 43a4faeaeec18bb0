// Package dialplan resolves a destination (extension, dialplan, context) to
// a target through the cti_dialplan@<domain> hash.
package dialplan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"redial/internal/store"
	"redial/internal/validate"
)

// Destination is where an answered call goes, as tasks name it
// (destination_extension, destination_dialplan, destination_context).
type Destination struct {
	Extension string `json:"extension"`
	Dialplan  string `json:"dialplan,omitempty"`
	Context   string `json:"context,omitempty"`
}

// Target types.
const (
	TypeSIP   = "sip"
	TypeIVR   = "ivr"
	TypeQueue = "queue"
	TypeUser  = "user"
	// TypeHangup answers and hangs up at once: a reachability check that
	// needs no destination, and the benchmark's target.
	TypeHangup = "hangup"
)

// Target is one dialplan entry.
type Target struct {
	Type   string `json:"type"`
	URI    string `json:"uri,omitempty"`
	Script string `json:"script,omitempty"`
	Queue  string `json:"queue,omitempty"`
	User   string `json:"user,omitempty"`
	// Key is the field the entry came from, "<context>:<extension>".
	Key string `json:"-"`
}

// ErrNoRoute is returned when no entry matches a destination.
var ErrNoRoute = errors.New("no route")

// cacheTTL is how long a resolved entry is reused: one HGET per entry per
// second instead of one per call, and edits still apply within a second.
const cacheTTL = time.Second

// maxCached bounds the cache: unbounded extensions (a scan of numbers)
// must not grow memory.
const maxCached = 100000

// Dialplan reads cti_dialplan@<domain>.
type Dialplan struct {
	st  *store.Store
	now func() time.Time

	mu    sync.Mutex
	cache map[cacheKey]*cached
}

type cacheKey struct{ context, extension string }

// cached is one resolved entry: the target or the error Resolve returns,
// so a call neither reads Redis nor decodes JSON while it is fresh.
type cached struct {
	target Target
	err    error
	at     time.Time
	// refreshing is set while one caller re-reads a stale entry; the
	// others keep using the stale one meanwhile rather than all reading
	// Redis at once.
	refreshing bool
}

// New returns a dialplan over st.
func New(st *store.Store) *Dialplan {
	return &Dialplan{st: st, now: time.Now, cache: map[cacheKey]*cached{}}
}

// Resolve looks up the target of d. The dialplan name must be empty or
// "XML" (the seed's value), which both mean the built-in dialplan; the
// context defaults to "default".
func (p *Dialplan) Resolve(ctx context.Context, d Destination) (Target, error) {
	if d.Dialplan != "" && !strings.EqualFold(d.Dialplan, "XML") {
		return Target{}, fmt.Errorf("dialplan: destination_dialplan %q: only XML (the built-in dialplan %s) is supported", d.Dialplan, p.st.DialplanKey())
	}
	if d.Extension == "" {
		return Target{}, fmt.Errorf("dialplan: destination_extension is empty: %w", ErrNoRoute)
	}
	c := d.Context
	if c == "" {
		c = "default"
	}
	key := cacheKey{c, d.Extension}
	now := p.now()
	p.mu.Lock()
	e := p.cache[key]
	if e != nil && (now.Sub(e.at) < cacheTTL || e.refreshing) {
		t, err := e.target, e.err
		p.mu.Unlock()
		return t, err
	}
	if e != nil {
		e.refreshing = true
	}
	p.mu.Unlock()

	t, err, keep := p.lookup(ctx, c, d.Extension)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !keep {
		// A Redis error is not an answer about the entry: keep serving
		// what was there (if anything) and let the next call retry.
		if e != nil {
			e.refreshing = false
		}
		return t, err
	}
	if len(p.cache) >= maxCached && e == nil {
		clear(p.cache)
	}
	p.cache[key] = &cached{target: t, err: err, at: now}
	return t, err
}

// lookup reads and parses one entry; keep is false when Redis failed, so
// the result must not be cached.
func (p *Dialplan) lookup(ctx context.Context, c, ext string) (Target, error, bool) {
	raw, found, err := p.st.DialplanEntry(ctx, c, ext)
	if err != nil {
		return Target{}, fmt.Errorf("dialplan: %w", err), false
	}
	if !found {
		return Target{}, fmt.Errorf("dialplan: no entry %s:%s in %s: %w", c, ext, p.st.DialplanKey(), ErrNoRoute), true
	}
	t, err := Parse(p.st.DialplanKey(), c+":"+ext, raw)
	return t, err, true
}

// Parse decodes and validates one entry; errors name the hash, field and
// JSON key at fault.
func Parse(hash, field, raw string) (Target, error) {
	var t Target
	where := fmt.Sprintf("dialplan: entry %q in %s", field, hash)
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return t, fmt.Errorf("%s: malformed JSON: %w", where, err)
	}
	str := func(key string) (string, error) {
		v, ok := m[key]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%s: %s: want string, got %s", where, key, jsonType(v))
		}
		return s, nil
	}
	var err error
	if t.Type, err = str("type"); err != nil {
		return t, err
	}
	need := func(key string, dst *string) error {
		s, err := str(key)
		if err != nil {
			return err
		}
		if s == "" {
			return fmt.Errorf("%s: %s: required for type %q", where, key, t.Type)
		}
		*dst = s
		return nil
	}
	switch t.Type {
	case TypeSIP:
		if err := need("uri", &t.URI); err != nil {
			return t, err
		}
		// sipgo writes the URI as it is into the request line and To.
		if err := validate.SIPURI("uri", t.URI); err != nil {
			return t, fmt.Errorf("%s: %w", where, err)
		}
		if !strings.HasPrefix(t.URI, "sip:") && !strings.HasPrefix(t.URI, "sips:") {
			return t, fmt.Errorf("%s: uri: %q: write the scheme in lower case (sip: or sips:)", where, validate.Truncate(t.URI, 64))
		}
	case TypeIVR:
		err = need("script", &t.Script)
	case TypeQueue:
		err = need("queue", &t.Queue)
	case TypeUser:
		// The user becomes the user part of a Request-URI.
		if err = need("user", &t.User); err == nil {
			if verr := validate.NumberField("user", t.User); verr != nil {
				err = fmt.Errorf("%s: %w", where, verr)
			}
		}
	case TypeHangup:
	case "":
		err = fmt.Errorf("%s: type: required (sip, ivr, queue, user or hangup)", where)
	default:
		err = fmt.Errorf("%s: type: %q is not one of sip, ivr, queue, user, hangup", where, t.Type)
	}
	t.Key = field
	return t, err
}

func jsonType(v any) string {
	switch v.(type) {
	case float64:
		return "number"
	case bool:
		return "bool"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	}
	return "null"
}

// Entry is one dialplan entry as the API shows it.
type Entry struct {
	Key    string  `json:"key"`
	Target *Target `json:"target,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// Entries lists every entry, malformed ones with their error.
func (p *Dialplan) Entries(ctx context.Context) ([]Entry, error) {
	m, err := p.st.Dialplan(ctx)
	if err != nil {
		return nil, fmt.Errorf("dialplan: %w", err)
	}
	out := make([]Entry, 0, len(m))
	for k, raw := range m {
		t, err := Parse(p.st.DialplanKey(), k, raw)
		e := Entry{Key: k}
		if err != nil {
			e.Error = err.Error()
		} else {
			e.Target = &t
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}
