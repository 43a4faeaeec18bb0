package callback

// This file decides, from the documents seed 000 names, whether a voicemail
// box gets callbacks, to which number, and on what schedule. It is pure: the
// caller loads the documents and acts on the Policy.
//
// Recorded decisions:
//   - Paths are nested objects ({"notify":{"callback":{"number":"..."}}}).
//     Documents stored flat ({"notify.callback.number":"..."}) or half flat
//     ({"voicemail":{"notify.callback.number":"..."}}) are read too; when both
//     spellings hold a value the most nested one wins.
//   - A value that is null, an empty or blank string, or an empty array counts
//     as not set, so the next level applies. (Admin UIs store "" for cleared
//     fields; the original treats an empty schedule as absent.)
//   - A value that is set but malformed is an error naming the document and
//     path; it does not silently fall through to the next level, because the
//     administrator meant to set it.
//   - Number and disabled come from vmbox then owner only, exactly as the seed
//     lists; schedule from vmbox, owner, account; attempts, interval_s and
//     timeout_s from vmbox, owner, account, system config, default.
//   - A callback number, and the number of the voicemail-check callflow, follow
//     the one number rule of package validate (64 characters, no '/', '@',
//     spaces or control characters...). A callback number that breaks it is an
//     error like any malformed value; a callflow number that breaks it is
//     passed over like a callflow without numbers.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"redial/internal/jsonfield"
	"redial/internal/validate"
)

// Sources of a resolved value, as reported in Policy.Sources.
const (
	SourceVmbox   = "vmbox"
	SourceOwner   = "owner"
	SourceAccount = "account"
	SourceSystem  = "system"
	// SourceDefault means no document set the value; the built-in default
	// (or, for number, the empty string) applies.
	SourceDefault = "default"
	// SourceDerived is the source of a schedule built from attempts and
	// interval_s because no document had a schedule.
	SourceDerived = "attempts*interval_s"
)

// Defaults of seed 000, used when neither the documents nor the system config
// set a value.
const (
	DefaultAttempts = 5
	DefaultInterval = 300 * time.Second
	DefaultTimeout  = 20 * time.Second
)

// MaxAttempts bounds attempts and the length of a schedule, so that a typo
// ("attempts": 50000) cannot plan an endless series of calls.
const MaxAttempts = 100

// maxSeconds bounds any interval or timeout (ten years) to stay far inside
// time.Duration.
const maxSeconds = 10 * 366 * 24 * 3600

// Docs are the documents a policy is resolved from. Any of them may be nil
// (a vmbox without an owner, an account without settings).
type Docs struct {
	// Vmbox is the voicemail box document; its options live under
	// notify.callback.
	Vmbox map[string]any
	// Owner is the vmbox owner's user document; options under
	// voicemail.notify.callback.
	Owner map[string]any
	// Account is the account document; options under voicemail.notify.callback.
	Account map[string]any
	// System is the system_config "ananke" document; options under
	// voicemail.notify.callback.
	System map[string]any
}

// Policy is how one voicemail box is called back.
type Policy struct {
	// Number is the number to call: vmbox notify.callback.number, else owner
	// voicemail.notify.callback.number, else "" (the caller decides what no
	// number means; the original logs and does nothing).
	Number string
	// Disabled is vmbox notify.callback.disabled when set (true or false),
	// else owner voicemail.notify.callback.disabled, else false. So a vmbox
	// with disabled=false re-enables callbacks its owner disabled.
	Disabled bool
	// Schedule lists the waits between attempts: attempt i+1 is made
	// Schedule[i] after the event (i = 0) or after the previous attempt
	// ended; len(Schedule) is the number of attempts. It is the first
	// non-empty schedule of vmbox, owner, account, else Attempts copies of
	// Interval.
	Schedule []time.Duration
	// Attempts, Interval and Timeout are attempts, interval_s and timeout_s,
	// each the first set of vmbox, owner, account, system config, default
	// (5, 300 s, 20 s). Timeout is the ring timeout of each attempt. Attempts
	// and Interval only shape Schedule when no document has a schedule.
	Attempts int
	Interval time.Duration
	Timeout  time.Duration
	// Sources says, for each of "number", "disabled", "schedule",
	// "attempts", "interval_s" and "timeout_s", where the value came from:
	// one of the Source constants. Meant for the API and logs.
	Sources map[string]string
}

// level is one document in a precedence chain.
type level struct {
	source string
	doc    map[string]any
	prefix string
}

func (l level) path(key string) string { return l.prefix + key }

// Resolve computes the callback policy of a vmbox from its documents. On
// error the Policy is incomplete and must not be used to place calls; the
// error lists every malformed value, each naming its document and path, for
// example `vmbox notify.callback.schedule[1]: want seconds, got "soon"`.
func Resolve(d Docs) (Policy, error) {
	vmbox := level{SourceVmbox, d.Vmbox, "notify.callback."}
	owner := level{SourceOwner, d.Owner, "voicemail.notify.callback."}
	account := level{SourceAccount, d.Account, "voicemail.notify.callback."}
	system := level{SourceSystem, d.System, "voicemail.notify.callback."}
	personal := []level{vmbox, owner}
	docs := []level{vmbox, owner, account}
	all := []level{vmbox, owner, account, system}

	p := Policy{Sources: make(map[string]string, 6)}
	var errs []error
	p.Number = pick(&p, &errs, personal, "number", "", parseNumber)
	p.Disabled = pick(&p, &errs, personal, "disabled", false, parseBool)
	p.Attempts = pick(&p, &errs, all, "attempts", DefaultAttempts, parseAttempts)
	p.Interval = pick(&p, &errs, all, "interval_s", DefaultInterval, parseInterval)
	p.Timeout = pick(&p, &errs, all, "timeout_s", DefaultTimeout, parseTimeout)
	p.Schedule = pick(&p, &errs, docs, "schedule", nil, parseSchedule)
	if p.Sources["schedule"] == SourceDefault {
		p.Sources["schedule"] = SourceDerived
		p.Schedule = slices.Repeat([]time.Duration{p.Interval}, p.Attempts)
	}
	return p, errors.Join(errs...)
}

// pick returns the value of the first level that sets key, recording its
// source in p.Sources, or def with SourceDefault.
func pick[T any](p *Policy, errs *[]error, levels []level, key string, def T, parse func(any) (T, error)) T {
	for _, l := range levels {
		v, ok := lookup(l.doc, l.path(key))
		if !ok {
			continue
		}
		p.Sources[key] = l.source
		val, err := parse(v)
		if err != nil {
			var ie *indexError
			if errors.As(err, &ie) {
				*errs = append(*errs, fmt.Errorf("%s %s[%d]: %w", l.source, l.path(key), ie.index, ie.err))
			} else {
				*errs = append(*errs, fmt.Errorf("%s %s: %w", l.source, l.path(key), err))
			}
			return def
		}
		return val
	}
	p.Sources[key] = SourceDefault
	return def
}

// lookup finds a dotted path in a document, trying at each level the longest
// run of segments as a single key last: {"a":{"b":1}} before {"a.b":1}.
func lookup(doc map[string]any, path string) (any, bool) {
	if doc == nil {
		return nil, false
	}
	return lookupSegs(doc, strings.Split(path, "."))
}

func lookupSegs(m map[string]any, segs []string) (any, bool) {
	for k := 1; k <= len(segs); k++ {
		v, ok := m[strings.Join(segs[:k], ".")]
		if !ok {
			continue
		}
		if k == len(segs) {
			if isUnset(v) {
				continue
			}
			return v, true
		}
		if sub, isMap := v.(map[string]any); isMap {
			if found, ok := lookupSegs(sub, segs[k:]); ok {
				return found, true
			}
		}
	}
	return nil, false
}

func isUnset(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return strings.TrimSpace(x) == ""
	case []any:
		return len(x) == 0
	}
	return false
}

// indexError marks an error in one element of an array value, so the path
// reads "schedule[1]".
type indexError struct {
	index int
	err   error
}

func (e *indexError) Error() string { return fmt.Sprintf("[%d]: %v", e.index, e.err) }
func (e *indexError) Unwrap() error { return e.err }

// parseNumber accepts a string (trimmed) or a JSON number holding an integer,
// since some stores keep phone numbers as numbers, that validate.Number
// accepts.
func parseNumber(v any) (string, error) {
	s, err := numberText(v)
	if err != nil {
		return "", err
	}
	if err := validate.NumberField("", s); err != nil {
		return "", err
	}
	return s, nil
}

// describe renders a refused value for an error, at most a short prefix
// of it: documents are written by outsiders and errors are logged.
func describe(v any) string { return validate.Truncate(jsonfield.Describe(v), 64) }

func numberText(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x), nil
	case json.Number:
		if _, err := strconv.ParseInt(x.String(), 10, 64); err == nil {
			return x.String(), nil
		}
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return strconv.FormatInt(int64(x), 10), nil
		}
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	}
	return "", fmt.Errorf("want phone number, got %s", describe(v))
}

// parseBool accepts JSON booleans and the strings "true" and "false" (any
// case).
func parseBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, fmt.Errorf("want true or false, got %s", describe(v))
}

func parseAttempts(v any) (int, error) {
	f, ok := toFloat(v)
	if !ok || f != math.Trunc(f) {
		return 0, fmt.Errorf("want integer, got %s", describe(v))
	}
	if f < 0 || f > MaxAttempts {
		return 0, fmt.Errorf("want 0..%d, got %s", MaxAttempts, describe(v))
	}
	return int(f), nil
}

// parseInterval requires a positive interval: back-to-back retries with no
// pause are almost surely a mistake (the original plans no calls at all for
// interval 0).
func parseInterval(v any) (time.Duration, error) { return seconds(v, false) }

// parseTimeout requires a positive ring timeout.
func parseTimeout(v any) (time.Duration, error) { return seconds(v, false) }

// parseSchedule accepts an array of seconds >= 0 (fractions allowed; a 0
// first element calls at once).
func parseSchedule(v any) ([]time.Duration, error) {
	items, ok := v.([]any)
	if !ok {
		switch x := v.(type) {
		case []float64:
			items = make([]any, len(x))
			for i, f := range x {
				items[i] = f
			}
		case []int:
			items = make([]any, len(x))
			for i, n := range x {
				items[i] = n
			}
		default:
			return nil, fmt.Errorf("want array of seconds, got %s", describe(v))
		}
	}
	if len(items) > MaxAttempts {
		return nil, fmt.Errorf("want at most %d intervals, got %d", MaxAttempts, len(items))
	}
	out := make([]time.Duration, len(items))
	for i, it := range items {
		d, err := seconds(it, true)
		if err != nil {
			return nil, &indexError{index: i, err: err}
		}
		out[i] = d
	}
	return out, nil
}

func seconds(v any, zeroOK bool) (time.Duration, error) {
	f, ok := toFloat(v)
	if !ok {
		return 0, fmt.Errorf("want seconds, got %s", describe(v))
	}
	switch {
	case zeroOK && f < 0:
		return 0, fmt.Errorf("want seconds >= 0, got %s", describe(v))
	case !zeroOK && f <= 0:
		return 0, fmt.Errorf("want seconds > 0, got %s", describe(v))
	case f > maxSeconds:
		return 0, fmt.Errorf("want at most %d seconds, got %s", maxSeconds, describe(v))
	}
	return time.Duration(math.Round(f * float64(time.Second))), nil
}

// toFloat accepts JSON numbers (json.Number or float64, as decoded with or
// without UseNumber), Go integers, and numeric strings.
func toFloat(v any) (float64, bool) {
	var s string
	switch x := v.(type) {
	case float64:
		s = strconv.FormatFloat(x, 'g', -1, 64)
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	default:
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// UnreadCount is the number of messages in folder "new" of a vmbox document
// (its `messages` array, each with a `folder`). Messages without a folder or
// in any other folder ("saved", "deleted") are not counted.
func UnreadCount(vmbox map[string]any) int {
	msgs, _ := vmbox["messages"].([]any)
	n := 0
	for _, m := range msgs {
		if msg, ok := m.(map[string]any); ok && msg["folder"] == "new" {
			n++
		}
	}
	return n
}

// maxFlowDepth stops the walk of a malformed (or hostile) deeply nested flow.
const maxFlowDepth = 64

// CheckCallflowNumber finds, among callflow documents (id -> document), one
// whose flow contains the module "voicemail" with data.action "check", at any
// depth of the flow tree (`flow` with `module`, `data` and a `children` map of
// sub-flows), and returns its first non-empty entry of `numbers` with its id.
// Callflows are examined in id order so every node picks the same one when an
// account has several; one without numbers (pattern-only) is passed over.
// data.single_mailbox_login does not matter here. It returns "", "" when no
// callflow qualifies. Numbers that validate.Number refuses are passed over.
func CheckCallflowNumber(callflows map[string]map[string]any) (number string, callflowID string) {
	ids := make([]string, 0, len(callflows))
	for id := range callflows {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		doc := callflows[id]
		if !hasVoicemailCheck(doc["flow"], 0) {
			continue
		}
		nums, _ := doc["numbers"].([]any)
		for _, n := range nums {
			if s, ok := n.(string); ok && validate.Number(strings.TrimSpace(s)) == nil {
				return strings.TrimSpace(s), id
			}
		}
	}
	return "", ""
}

func hasVoicemailCheck(flow any, depth int) bool {
	node, ok := flow.(map[string]any)
	if !ok || depth > maxFlowDepth {
		return false
	}
	if node["module"] == "voicemail" {
		if data, ok := node["data"].(map[string]any); ok && data["action"] == "check" {
			return true
		}
	}
	switch children := node["children"].(type) {
	case map[string]any:
		for _, child := range children {
			if hasVoicemailCheck(child, depth+1) {
				return true
			}
		}
	case []any:
		for _, child := range children {
			if hasVoicemailCheck(child, depth+1) {
				return true
			}
		}
	}
	return false
}
