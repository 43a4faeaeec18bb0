package ivr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Script is a parsed, validated IVR script.
type Script struct {
	// ID is the field of ivr_script@<domain> the script came from.
	ID string
	// Start is the oId of the first component.
	Start int
	// Components by oId.
	Components map[int]*Spec
}

// Spec is one component definition: its identity, routes and properties.
type Spec struct {
	OID   int
	OType int
	Name  string
	// Next is the oId the exit "transfer" leads to; HasNext is false when
	// the component has no `transfer`.
	Next    int
	HasNext bool
	// Transfers are the other exits' targets by exit name (menu keys,
	// "timeout", "error").
	Transfers map[string]int
	// Props holds every field of the component's JSON, unknown ones too.
	Props Props
	// Applied is true for a component an external owner applied (not part
	// of a script; its routes lead nowhere).
	Applied bool

	comp Component
}

// route returns the oId exit leads to.
func (s *Spec) route(exit string) (int, bool) {
	if next, ok := s.Transfers[exit]; ok {
		return next, true
	}
	if exit == ExitTransfer && s.HasNext {
		return s.Next, true
	}
	return 0, false
}

// FieldError is a problem with one property; its text is "<field>: <msg>".
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Props are a component's JSON fields. The accessors accept numbers as JSON
// numbers or numeric strings (admin tools send "recTimeSec": "10") and
// return errors naming the field.
type Props map[string]json.RawMessage

// Has reports whether the field is present and not null.
func (p Props) Has(name string) bool {
	v, ok := p[name]
	return ok && !bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

// String returns a string field; a JSON number is returned as written.
// An absent or null field gives def.
func (p Props) String(name, def string) (string, error) {
	if !p.Has(name) {
		return def, nil
	}
	v := bytes.TrimSpace(p[name])
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s, nil
	}
	var n json.Number
	if json.Unmarshal(v, &n) == nil {
		return n.String(), nil
	}
	return "", fieldErr(name, "want string, got %s", abbrev(v))
}

// RequiredString is String for a field that must be present and not empty.
func (p Props) RequiredString(name string) (string, error) {
	s, err := p.String(name, "")
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(s) == "" {
		return "", fieldErr(name, "required")
	}
	return s, nil
}

// Float returns a number field; absent, null or "" gives def.
func (p Props) Float(name string, def float64) (float64, error) {
	if !p.Has(name) {
		return def, nil
	}
	v := bytes.TrimSpace(p[name])
	var f float64
	if json.Unmarshal(v, &f) == nil {
		return f, nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		s = strings.TrimSpace(s)
		if s == "" {
			return def, nil
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f, nil
		}
	}
	return 0, fieldErr(name, "want number, got %s", abbrev(v))
}

// Int returns a whole-number field; absent, null or "" gives def.
func (p Props) Int(name string, def int) (int, error) {
	f, err := p.Float(name, float64(def))
	if err != nil {
		return 0, err
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		return 0, fieldErr(name, "want whole number, got %s", abbrev(p[name]))
	}
	return int(f), nil
}

// IntRange is Int limited to [lo, hi].
func (p Props) IntRange(name string, def, lo, hi int) (int, error) {
	n, err := p.Int(name, def)
	if err != nil {
		return 0, err
	}
	if n < lo || n > hi {
		return 0, fieldErr(name, "%d is out of range %d..%d", n, lo, hi)
	}
	return n, nil
}

// Seconds reads a duration in seconds (fractions allowed) limited to
// [lo, hi] seconds.
func (p Props) Seconds(name string, def, lo, hi float64) (time.Duration, error) {
	f, err := p.Float(name, def)
	if err != nil {
		return 0, err
	}
	if f < lo || f > hi {
		return 0, fieldErr(name, "%g is out of range %g..%g seconds", f, lo, hi)
	}
	return time.Duration(f * float64(time.Second)), nil
}

func abbrev(v []byte) string {
	if len(v) > 40 {
		return string(v[:40]) + "..."
	}
	return string(v)
}

// parseScript parses and validates a script; errors name the script, the
// component and the field.
func (e *Engine) parseScript(id, raw string) (*Script, error) {
	where := fmt.Sprintf("ivr: script %q in %s", id, e.deps.Store.IVRScriptsKey())
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &top); err != nil || top == nil {
		return nil, fmt.Errorf("%s: not a JSON object", where)
	}
	start, err := Props(top).Int("start", -1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if !Props(top).Has("start") {
		return nil, fmt.Errorf("%s: start: required", where)
	}
	var comps []json.RawMessage
	if err := json.Unmarshal(top["components"], &comps); err != nil || len(comps) == 0 {
		return nil, fmt.Errorf("%s: components: want a non-empty array", where)
	}
	s := &Script{ID: id, Start: start, Components: map[int]*Spec{}}
	for i, c := range comps {
		spec, err := e.parseSpec(c, true)
		if err != nil {
			if spec == nil {
				return nil, fmt.Errorf("%s: components[%d]: %w", where, i, err)
			}
			return nil, fmt.Errorf("%s: component %d (oType %d): %w", where, spec.OID, spec.OType, err)
		}
		if _, dup := s.Components[spec.OID]; dup {
			return nil, fmt.Errorf("%s: component %d (oType %d): oId: used twice", where, spec.OID, spec.OType)
		}
		s.Components[spec.OID] = spec
	}
	if _, ok := s.Components[start]; !ok {
		return nil, fmt.Errorf("%s: start: no component with oId %d", where, start)
	}
	for _, spec := range s.Components {
		if spec.HasNext {
			if _, ok := s.Components[spec.Next]; !ok {
				return nil, fmt.Errorf("%s: component %d (oType %d): transfer: no component with oId %d", where, spec.OID, spec.OType, spec.Next)
			}
		}
		keys := make([]string, 0, len(spec.Transfers))
		for k := range spec.Transfers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if _, ok := s.Components[spec.Transfers[k]]; !ok {
				return nil, fmt.Errorf("%s: component %d (oType %d): transfers.%s: no component with oId %d", where, spec.OID, spec.OType, k, spec.Transfers[k])
			}
		}
	}
	return s, nil
}

// parseSpec parses one component. inScript is false for components applied
// by an external owner: their oId defaults to 0 and their routes lead
// nowhere (a menu's transfers still say which keys it accepts). On
// errors after the oId and oType are known, the partial spec is returned so
// the error can name them.
func (e *Engine) parseSpec(raw json.RawMessage, inScript bool) (*Spec, error) {
	var p Props
	if err := json.Unmarshal(raw, &p); err != nil || p == nil {
		return nil, errors.New("not a JSON object")
	}
	oid, err := p.Int("oId", 0)
	if err != nil {
		return nil, err
	}
	if inScript && !p.Has("oId") {
		return nil, fieldErr("oId", "required")
	}
	otype, err := p.Int("oType", 0)
	if err != nil {
		return nil, err
	}
	if !p.Has("oType") {
		return nil, fieldErr("oType", "required")
	}
	spec := &Spec{OID: oid, OType: otype, Props: p, Applied: !inScript}
	if spec.Name, err = p.String("name", ""); err != nil {
		return spec, err
	}
	reg, ok := e.factory(otype)
	if !ok {
		return spec, fieldErr("oType", "unknown component type %d", otype)
	}
	if !inScript && !reg.applicable {
		return spec, fieldErr("oType", "component type %d cannot be applied by an external owner", otype)
	}
	next, err := p.String("transfer", "")
	if err != nil {
		return spec, err
	}
	if strings.TrimSpace(next) != "" {
		if spec.Next, err = p.Int("transfer", 0); err != nil {
			return spec, err
		}
		spec.HasNext = true
	}
	if p.Has("transfers") {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(p["transfers"], &m); err != nil {
			return spec, fieldErr("transfers", "want an object of exit -> oId")
		}
		spec.Transfers = make(map[string]int, len(m))
		for k, v := range m {
			n, err := Props{"transfers." + k: v}.Int("transfers."+k, 0)
			if err != nil {
				return spec, err
			}
			if len(k) == 1 {
				k = strings.ToUpper(k) // menu keys a-d arrive as A-D
			}
			spec.Transfers[k] = n
		}
	}
	if spec.comp, err = reg.f(spec); err != nil {
		return spec, err
	}
	return spec, nil
}

type cachedScript struct {
	at     time.Time
	raw    string
	script *Script
	err    error
}

// script returns the parsed script id, from the cache while it is fresh.
// A Redis error is returned uncached, so the next call tries again.
func (e *Engine) script(ctx context.Context, id string) (*Script, error) {
	e.cacheMu.Lock()
	c := e.cache[id]
	e.cacheMu.Unlock()
	if c != nil && e.cfg.ScriptCacheTTL > 0 && time.Since(c.at) < e.cfg.ScriptCacheTTL {
		return c.script, c.err
	}
	raw, found, err := e.deps.Store.IVRScript(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("ivr: script %q: %w", id, err)
	}
	next := &cachedScript{at: time.Now(), raw: raw}
	switch {
	case !found:
		next.err = fmt.Errorf("ivr: script %q not found in %s", id, e.deps.Store.IVRScriptsKey())
	case c != nil && c.raw == raw && c.err == nil:
		next.script = c.script
	default:
		next.script, next.err = e.parseScript(id, raw)
		if next.err != nil && (c == nil || c.raw != raw) {
			// Logged once per version of the script, not per call.
			e.m.scriptErrors.Inc()
			e.log.Error("ivr script rejected", "script", id, "err", next.err)
		}
	}
	e.cacheMu.Lock()
	e.cache[id] = next
	e.cacheMu.Unlock()
	return next.script, next.err
}
