package schedule

// This file holds the cron strategies of seed 000: the `schedules` array of
// the system config `ananke`, parsed into CronEntry values whose Next method
// is pure arithmetic on an injected instant. Claiming a tick exactly once per
// cluster is done elsewhere; it relies on ID and Next being identical on every
// node for the same configuration.
//
// Recorded decisions (see also the comments on each function):
//   - All times are UTC, as the seed says; the node's --timezone does not apply.
//   - `once` fires at its instant if that is after the given time, never again.
//   - `periodic` ticks at every Unix time that is a multiple of its period, so
//     every node computes the same ticks without coordination and a restart
//     does not shift the phase.
//   - `every` fires at second 0 of each minute that satisfies ALL of minutes,
//     hours, month_days, monthes and weekdays. Unlike Vixie cron, restricting
//     both month_days and weekdays does not OR them: the seed says the task runs
//     "when time will satisfy conditions".
//   - A bad entry is reported with its index and field and skipped; the good
//     entries still run.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"redial/internal/jsonfield"
	"redial/internal/validate"
)

// Strategy types of a schedule entry, spelled as in seed 000.
const (
	TypeOnce     = "once"
	TypePeriodic = "periodic"
	TypeEvery    = "every"
)

// ActionCheckVoicemail is the only action type seed 000 defines: check a
// voicemail box and, when it holds unread messages, behave as on a
// voicemail_saved event.
const ActionCheckVoicemail = "check_voicemail"

// searchYears bounds how far Next looks ahead for an `every` entry. Eight
// years rather than five so that "February 29" still finds its next
// occurrence across a skipped century leap year (2096 -> 2104); rarer
// combinations (February 29 that is also a Monday) may need longer and then
// yield the zero time, which callers treat as "nothing planned; ask again
// later".
const searchYears = 8

// CronEntry is one parsed element of the `schedules` array.
type CronEntry struct {
	// Index is the entry's position in the schedules array, for messages only:
	// it is not part of ID, so inserting an entry before another does not
	// change the other's identity.
	Index int
	// Type is TypeOnce, TypePeriodic or TypeEvery.
	Type string

	// At is the instant of a `once` entry (UTC), built from second, minute,
	// hour (default 0), day, month (default 1) and year (default 1970).
	At time.Time

	// Period is the period of a `periodic` entry: seconds + minutes + hours +
	// days (each default 0), always a positive whole number of seconds.
	Period time.Duration

	// Minutes, Hours, MonthDays, Months and Weekdays restrict an `every`
	// entry; nil means "all" (the default). The lists are sorted and without
	// duplicates. Weekdays use 0 for Sunday; a 7 in the input is stored as 0.
	// Months comes from the seed's key "monthes" ("months" is accepted too).
	Minutes, Hours, MonthDays, Months, Weekdays []int

	// Action is what a tick does.
	Action Action

	// ID identifies the entry across nodes and restarts: a hash of the
	// entry's canonical JSON (keys sorted, no insignificant whitespace). Any
	// edit of the entry yields a new ID, so ticks already run under the old
	// definition do not suppress ticks of the new one.
	ID string
}

// Action is the task a schedule entry runs.
type Action struct {
	// Type is the action type; only ActionCheckVoicemail is accepted.
	Type string `json:"type"`
	// AccountID is the account of the voicemail box.
	AccountID string `json:"account_id"`
	// VmboxID is the voicemail box to check.
	VmboxID string `json:"vmbox_id"`
	// Raw is the whole action object as configured (numbers as json.Number),
	// for logs and for properties later actions may need.
	Raw map[string]any `json:"-"`
}

// ParseSchedules parses the `schedules` array of the system config `ananke`.
// An empty or null value means no schedules. Each bad entry is reported in
// errs with its index and field, for example
// `schedules[2].type: want once, periodic or every, got "weekly"`, and is
// skipped; the good entries are returned in order. Unknown fields are ignored;
// numbers may be JSON numbers or numeric strings; a null field counts as
// omitted. An entry identical to an earlier one (same ID) is reported and
// skipped, because its ticks would be the same ticks.
func ParseSchedules(raw json.RawMessage) (entries []CronEntry, errs []error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, []error{fmt.Errorf("schedules: %w", err)}
	}
	if doc == nil {
		return nil, nil
	}
	list, ok := doc.([]any)
	if !ok {
		return nil, []error{fmt.Errorf("schedules: want array, got %s", jsonfield.Describe(doc))}
	}
	seen := make(map[string]int)
	for i, item := range list {
		p := &parser{prefix: fmt.Sprintf("schedules[%d]", i)}
		e := p.entry(i, item)
		if len(p.errs) > 0 {
			errs = append(errs, p.errs...)
			continue
		}
		if first, dup := seen[e.ID]; dup {
			errs = append(errs, fmt.Errorf("schedules[%d]: same as schedules[%d]; skipped", i, first))
			continue
		}
		seen[e.ID] = i
		entries = append(entries, e)
	}
	return entries, errs
}

// Next returns the first tick of e strictly after t, in UTC, or the zero time
// when there is none: a `once` entry whose instant is not after t, or an
// `every` entry with no matching minute within searchYears of t.
func (e CronEntry) Next(t time.Time) time.Time {
	t = t.UTC()
	switch e.Type {
	case TypeOnce:
		if e.At.After(t) {
			return e.At.UTC()
		}
	case TypePeriodic:
		// Anchored at the Unix epoch: ticks are k*period for integer k. Unix()
		// floors, so a t between two ticks and a t exactly on a tick both
		// yield the following tick.
		p := int64(e.Period / time.Second)
		if p <= 0 {
			return time.Time{}
		}
		k := floorDiv(t.Unix(), p) + 1
		if k > math.MaxInt64/p {
			return time.Time{}
		}
		return time.Unix(k*p, 0).UTC()
	case TypeEvery:
		return e.nextEvery(t)
	}
	return time.Time{}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// nextEvery walks forward from the first whole minute after t, skipping a
// whole month when the month does not match, a whole day when the day of
// month or weekday does not, then jumping straight to the next matching hour
// and minute; it never scans second by second and is bounded by searchYears.
func (e CronEntry) nextEvery(t time.Time) time.Time {
	months := mask(e.Months, 1, 12)
	mdays := mask(e.MonthDays, 1, 31)
	wdays := mask(normWeekdays(e.Weekdays), 0, 6)
	hours := mask(e.Hours, 0, 23)
	minutes := mask(e.Minutes, 0, 59)
	if months == 0 || mdays == 0 || wdays == 0 || hours == 0 || minutes == 0 {
		return time.Time{}
	}

	c := t.Truncate(time.Minute).Add(time.Minute)
	limit := c.AddDate(searchYears, 0, 0)
	for c.Before(limit) {
		y, mo, d := c.Date()
		if months&(1<<uint(mo)) == 0 {
			c = time.Date(y, mo+1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		// time.Date normalises d+1 past the month's end into the next month,
		// which is how month_days [31] skips 30-day months and [29] skips
		// February outside leap years.
		if mdays&(1<<uint(d)) == 0 || wdays&(1<<uint(c.Weekday())) == 0 {
			c = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		h, ok := nextBit(hours, c.Hour())
		if !ok {
			c = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		from := c.Minute()
		if h != c.Hour() {
			from = 0
		}
		m, ok := nextBit(minutes, from)
		if !ok {
			c = time.Date(y, mo, d, h+1, 0, 0, 0, time.UTC)
			continue
		}
		return time.Date(y, mo, d, h, m, 0, 0, time.UTC)
	}
	return time.Time{}
}

// mask turns a list into a bit set over lo..hi; nil means every value.
// Values outside lo..hi are ignored (ParseSchedules never produces them).
func mask(list []int, lo, hi int) uint64 {
	var m uint64
	if list == nil {
		for v := lo; v <= hi; v++ {
			m |= 1 << uint(v)
		}
		return m
	}
	for _, v := range list {
		if v >= lo && v <= hi {
			m |= 1 << uint(v)
		}
	}
	return m
}

func normWeekdays(list []int) []int {
	if list == nil {
		return nil
	}
	out := make([]int, len(list))
	for i, v := range list {
		if v == 7 {
			v = 0
		}
		out[i] = v
	}
	return out
}

// nextBit returns the smallest set bit of m that is >= from.
func nextBit(m uint64, from int) (int, bool) {
	if from > 63 {
		return 0, false
	}
	rest := m >> uint(from)
	if rest == 0 {
		return 0, false
	}
	return from + bits.TrailingZeros64(rest), true
}

// parser collects every error of one entry, each prefixed with its path.
type parser struct {
	prefix string
	errs   []error
}

func (p *parser) fail(field, format string, args ...any) {
	path := p.prefix
	if field != "" {
		path += "." + field
	}
	p.errs = append(p.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (p *parser) entry(index int, item any) CronEntry {
	e := CronEntry{Index: index}
	obj, ok := item.(map[string]any)
	if !ok {
		p.fail("", "want object, got %s", jsonfield.Describe(item))
		return e
	}
	e.ID = entryID(obj)

	typ, _ := obj["type"].(string)
	switch {
	case obj["type"] == nil:
		p.fail("type", "missing; want once, periodic or every")
	case typ == TypeOnce:
		e.Type = typ
		p.once(obj, &e)
	case typ == TypePeriodic:
		e.Type = typ
		p.periodic(obj, &e)
	case typ == TypeEvery:
		e.Type = typ
		p.every(obj, &e)
	default:
		p.fail("type", "want once, periodic or every, got %s", jsonfield.Describe(obj["type"]))
	}
	e.Action = p.action(obj["action"])
	return e
}

// entryID hashes the canonical JSON of an entry. encoding/json writes map
// keys sorted and json.Number as its literal, so key order and whitespace do
// not matter but any changed value does. 128 bits of SHA-256 are plenty for
// the handful of entries one config holds.
func entryID(obj map[string]any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(obj); err != nil {
		// Values decoded from JSON always re-encode; keep a stable fallback.
		buf.Reset()
		fmt.Fprintf(&buf, "%v", obj)
	}
	sum := sha256.Sum256(bytes.TrimSpace(buf.Bytes()))
	return hex.EncodeToString(sum[:16])
}

// intField reads an optional integer field within lo..hi.
func (p *parser) intField(obj map[string]any, key string, def, lo, hi int64) int64 {
	v, ok := obj[key]
	if !ok || v == nil {
		return def
	}
	n, err := toInt(v)
	if err != nil {
		p.fail(key, "%v", err)
		return def
	}
	if n < lo || n > hi {
		p.fail(key, "want %d..%d, got %d", lo, hi, n)
		return def
	}
	return n
}

// once: the defaults make an entry with no fields 1970-01-01 00:00:00 UTC,
// which is in the past and therefore never fires. A date that does not exist
// (February 30) is an error rather than silently normalised into March.
func (p *parser) once(obj map[string]any, e *CronEntry) {
	before := len(p.errs)
	sec := p.intField(obj, "second", 0, 0, 59)
	minute := p.intField(obj, "minute", 0, 0, 59)
	hour := p.intField(obj, "hour", 0, 0, 23)
	day := p.intField(obj, "day", 1, 1, 31)
	month := p.intField(obj, "month", 1, 1, 12)
	year := p.intField(obj, "year", 1970, 1, 9999)
	if len(p.errs) > before {
		return
	}
	at := time.Date(int(year), time.Month(month), int(day), int(hour), int(minute), int(sec), 0, time.UTC)
	if at.Day() != int(day) {
		p.fail("day", "%d-%02d has no day %d", year, month, day)
		return
	}
	e.At = at
}

// maxPeriodSeconds keeps Period within time.Duration (about 292 years).
const maxPeriodSeconds = math.MaxInt64 / int64(time.Second)

func (p *parser) periodic(obj map[string]any, e *CronEntry) {
	before := len(p.errs)
	const lim = 1 << 31
	total := p.intField(obj, "seconds", 0, 0, lim) +
		p.intField(obj, "minutes", 0, 0, lim)*60 +
		p.intField(obj, "hours", 0, 0, lim)*3600 +
		p.intField(obj, "days", 0, 0, lim)*86400
	if len(p.errs) > before {
		return
	}
	switch {
	case total <= 0:
		p.fail("", "periodic: want seconds+minutes+hours+days > 0, got 0")
	case total > maxPeriodSeconds:
		p.fail("", "periodic: want a period of at most %d seconds, got %d", maxPeriodSeconds, total)
	default:
		e.Period = time.Duration(total) * time.Second
	}
}

func (p *parser) every(obj map[string]any, e *CronEntry) {
	before := len(p.errs)
	e.Minutes = p.listField(obj, "minutes", 0, 59)
	e.Hours = p.listField(obj, "hours", 0, 23)
	e.MonthDays = p.listField(obj, "month_days", 1, 31)
	monthKey := "monthes"
	if _, seedKey := obj["monthes"]; !seedKey {
		if _, ok := obj["months"]; ok {
			monthKey = "months"
		}
	} else if _, both := obj["months"]; both {
		p.fail("months", "both monthes (the seed's spelling) and months are given; keep one")
	}
	e.Months = p.listField(obj, monthKey, 1, 12)
	e.Weekdays = normWeekdays(p.listField(obj, "weekdays", 0, 7))
	if e.Weekdays != nil {
		slices.Sort(e.Weekdays)
		e.Weekdays = slices.Compact(e.Weekdays)
	}
	if len(p.errs) > before {
		return
	}
	// An entry that can never match would make every Next call search the
	// whole horizon for nothing; say so at configuration time instead.
	if !daysPossible(e.MonthDays, e.Months) {
		p.fail("month_days", "%v never occur in %s %v", e.MonthDays, monthKey, e.Months)
	}
}

// daysPossible reports whether some listed day exists in some listed month
// (February counted with 29 days, since leap years come round).
func daysPossible(days, months []int) bool {
	if days == nil {
		return true
	}
	earliest := slices.Min(days)
	if months == nil {
		months = []int{1}
	}
	for _, m := range months {
		if earliest <= daysIn(m) {
			return true
		}
	}
	return false
}

func daysIn(month int) int {
	switch month {
	case 2:
		return 29
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// listField reads "all" (or an omitted/null field) as nil, an array of
// integers within lo..hi as a sorted list without duplicates, and, leniently,
// a single integer as a one-element list. An empty array would never match
// and is rejected.
func (p *parser) listField(obj map[string]any, key string, lo, hi int) []int {
	v, ok := obj[key]
	if !ok || v == nil {
		return nil
	}
	if s, isStr := v.(string); isStr && strings.EqualFold(strings.TrimSpace(s), "all") {
		return nil
	}
	items, isList := v.([]any)
	if !isList {
		n, err := toInt(v)
		if err != nil {
			p.fail(key, "want \"all\" or an array of %d..%d, got %s", lo, hi, jsonfield.Describe(v))
			return nil
		}
		items = []any{json.Number(strconv.FormatInt(n, 10))}
	}
	if len(items) == 0 {
		p.fail(key, "want \"all\" or a non-empty array of %d..%d, got []", lo, hi)
		return nil
	}
	out := make([]int, 0, len(items))
	for i, it := range items {
		n, err := toInt(it)
		if err != nil {
			p.fail(fmt.Sprintf("%s[%d]", key, i), "%v", err)
			continue
		}
		if n < int64(lo) || n > int64(hi) {
			p.fail(fmt.Sprintf("%s[%d]", key, i), "want %d..%d, got %d", lo, hi, n)
			continue
		}
		out = append(out, int(n))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (p *parser) action(v any) Action {
	if v == nil {
		p.fail("action", "missing")
		return Action{}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		p.fail("action", "want object, got %s", jsonfield.Describe(v))
		return Action{}
	}
	a := Action{Raw: obj}
	switch t := obj["type"]; {
	case t == nil:
		p.fail("action.type", "missing; want %s", ActionCheckVoicemail)
	case t != ActionCheckVoicemail:
		p.fail("action.type", "want %s, got %s", ActionCheckVoicemail, jsonfield.Describe(t))
	default:
		a.Type = ActionCheckVoicemail
	}
	a.AccountID = p.idField(obj, "account_id")
	a.VmboxID = p.idField(obj, "vmbox_id")
	return a
}

func (p *parser) idField(obj map[string]any, key string) string {
	v := obj[key]
	s, ok := v.(string)
	switch {
	case v == nil:
		p.fail("action."+key, "missing")
	case !ok:
		p.fail("action."+key, "want string, got %s", jsonfield.Describe(v))
	case strings.TrimSpace(s) == "":
		p.fail("action."+key, "want a non-empty string, got \"\"")
	case validate.Ref("", s) != nil:
		// Ids become key names and channel variables of the callback.
		p.fail("action."+key, "%v", validate.Ref("", s))
	}
	return strings.TrimSpace(s)
}

// toInt accepts a JSON number or a numeric string holding an integer
// (3, "3", 3.0); fractions, booleans and other types are errors.
func toInt(v any) (int64, error) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	case float64:
		s = strconv.FormatFloat(x, 'g', -1, 64)
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	default:
		return 0, fmt.Errorf("want integer, got %s", jsonfield.Describe(v))
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Errorf("want integer, got %s", jsonfield.Describe(v))
	}
	return int64(f), nil
}
