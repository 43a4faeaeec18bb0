package dialer

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"redial/internal/jsonfield"
	"redial/internal/validate"
)

// Task is one queue dialer task of seed 004: the @template and @<host>
// hash values of one name, merged and validated.
type Task struct {
	Name string
	// Enable is params.enable; absent means true, so a task written
	// without the field dials (like a line without "enable").
	Enable bool
	// LineGroups are tried in order: a trunk-side failure on the first
	// group moves the call to the second.
	LineGroups []string
	// Limit is the most concurrent calls of this task on this node; 0
	// pauses the task.
	Limit int
	// GlobalLimit is the most concurrent calls of this task across all
	// nodes; 0 means no cluster-wide limit.
	GlobalLimit int
	// CPS is the most new calls per second; 0 means unlimited.
	CPS float64
	// AgentRatio (params.agent_ratio, default 1) paces a task whose
	// destination is a queue: at most floor(available agents x AgentRatio)
	// of its calls on this node are not yet connected to an agent.
	AgentRatio float64
	// Start and Stop bound the task: it dials in [Start, Stop). nil when
	// the field is absent or empty.
	Start, Stop *time.Time
	// WorkHours are wall-clock ranges [Begin, End) of a day; a range whose
	// End is not after its Begin crosses midnight and belongs to the day it
	// begins on. Empty means all day.
	WorkHours []ClockRange
	// WorkWeek are the days the task dials, sorted, without duplicates;
	// empty means every day.
	WorkWeek []time.Weekday
	// Holidays are ranges [Begin, End) when the task does not dial.
	Holidays []TimeRange
	// Queue is the Redis list of numbers (params.number_queue).
	Queue string
	// Destination is where an answered call goes; Dialplan defaults to
	// "XML" and Context to "default", as in FreeSWITCH.
	Destination struct{ Extension, Dialplan, Context string }
	// Location is the zone of the task's times: params.timezone, else the
	// node default.
	Location *time.Location
	// Retry maps a disposition (BUSY, NO_ANSWER, ...) to how often and
	// when a number that ended with it is dialed again; nil when absent.
	Retry map[string]RetryRule
	// RedialInterrupted puts a number whose INVITE was sent by a node
	// that died back in the queue instead of <queue>:interrupted.
	RedialInterrupted bool
	// Variables are the task's channel variables, @template over @<host>.
	Variables map[string]string
	// Warnings are config oddities that did not stop the task; the caller
	// logs them.
	Warnings []string
}

// RetryRule is one entry of params.retry.
type RetryRule struct {
	// Attempts is how many times a number is dialed again after the
	// first call ended with this disposition.
	Attempts int
	// Delay is how long the number waits in Redis before it is dialed
	// again.
	Delay time.Duration
}

// ClockRange is a range of wall-clock time within a day, as durations
// since midnight (End may be 24h).
type ClockRange struct{ Begin, End time.Duration }

// crosses reports whether the range runs past midnight into the next day.
func (r ClockRange) crosses() bool { return r.End <= r.Begin }

// TimeRange is a range of instants [Begin, End).
type TimeRange struct{ Begin, End time.Time }

// RetryDispositions are the dispositions params.retry may name; ANSWERED
// is not among them because an answered number was reached.
var RetryDispositions = []string{"BUSY", "NO_ANSWER", "FAILED", "CONGESTION", "CANCELLED", "INVALID_NUMBER", "NO_LINE"}

// param is one params value and the hash it came from, so an error can
// name the hash the operator has to fix.
type param struct {
	raw json.RawMessage
	key string
}

// taskError names the hash, task and field of a rejected task config.
func taskError(name, key string, err error) error {
	return fmt.Errorf("dialer: task %q in %s: %w", name, key, err)
}

// ParseTask merges and validates the task name from the
// cti_queue_dialer_task@template value templateJSON and the @<host> value
// hostJSON; an empty string means the name is not in that hash. hostKey
// and templateKey are the hash names used in errors. Params merge key by
// key, the host's value overriding the template's (null counts as absent,
// so a host cannot unset a template field with null; "" clears the times
// and [] the ranges). Lists (work_hour, holiday, retry, ...) are replaced
// whole, never merged element by element. defaultLoc (nil = time.Local) is
// the zone when params.timezone is absent.
func ParseTask(hostKey, templateKey, name string, templateJSON, hostJSON string, defaultLoc *time.Location) (*Task, error) {
	tk, err := parseTask(hostKey, templateKey, name, templateJSON, hostJSON, defaultLoc)
	return tk, validate.Short(err)
}

func parseTask(hostKey, templateKey, name string, templateJSON, hostJSON string, defaultLoc *time.Location) (*Task, error) {
	if defaultLoc == nil {
		defaultLoc = time.Local
	}
	tk := &Task{Name: name}
	var keys []string
	params := map[string]param{}
	// Seed 004: number < @host < @template < line, so unlike params the
	// template's variables win over the host's. DESIGN.md says "variables
	// likewise", but the seed states the precedence explicitly and issue 3
	// repeats it.
	var vars map[string]string
	for _, src := range []struct{ key, raw string }{{hostKey, hostJSON}, {templateKey, templateJSON}} {
		if strings.TrimSpace(src.raw) == "" {
			continue
		}
		keys = append(keys, src.key)
		p, v, warn, err := decodeTaskValue(src.raw)
		if err != nil {
			return nil, taskError(name, src.key, err)
		}
		for _, w := range warn {
			tk.Warnings = append(tk.Warnings, src.key+": "+w)
		}
		for k, raw := range p {
			if _, ok := params[k]; !ok { // the host (first) wins
				params[k] = param{raw: raw, key: src.key}
			}
		}
		if len(v) > 0 && vars == nil {
			vars = map[string]string{}
		}
		for k, val := range v { // the template (last) wins
			vars[k] = val
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("dialer: task %q: in neither %s nor %s", name, templateKey, hostKey)
	}
	tk.Variables = vars
	// missingKey is where a field missing from the merged config should
	// have been: the template when there is one (it serves every node).
	missingKey := keys[len(keys)-1]
	if err := tk.fill(params, missingKey, defaultLoc); err != nil {
		return nil, taskError(name, err.key, err.err)
	}
	return tk, nil
}

// keyedError is a field error and the hash it belongs to.
type keyedError struct {
	key string
	err error
}

// decodeTaskValue decodes one hash value into its non-null params and its
// stringified variables, with work_time renamed work_hour.
func decodeTaskValue(raw string) (params map[string]json.RawMessage, vars map[string]string, warnings []string, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &top); err != nil {
		return nil, nil, nil, &jsonfield.Error{Msg: "invalid JSON: " + err.Error()}
	}
	if top == nil {
		return nil, nil, nil, &jsonfield.Error{Msg: "want a JSON object, got null"}
	}
	p, err := jsonfield.Object("params", top["params"])
	if err != nil {
		return nil, nil, nil, err
	}
	params = map[string]json.RawMessage{}
	for k, v := range p {
		if !jsonfield.IsNull(v) {
			params[k] = v
		}
	}
	// The seed lists the field as work_time but its example says
	// work_hour. Renaming inside each value lets a host's work_time
	// override a template's work_hour.
	if wt, ok := params["work_time"]; ok {
		if _, both := params["work_hour"]; both {
			warnings = append(warnings, "params.work_time ignored: params.work_hour is also set")
		} else {
			params["work_hour"] = wt
		}
		delete(params, "work_time")
	}
	if vars, err = jsonfield.Variables("variables", top["variables"]); err != nil {
		return params, nil, warnings, err
	}
	return params, vars, warnings, validate.VariablesField("variables", vars)
}

// fill decodes the merged params into tk.
func (tk *Task) fill(params map[string]param, missingKey string, defaultLoc *time.Location) *keyedError {
	// at wraps a field error with the hash the field came from.
	at := func(field string, err error) *keyedError {
		if err == nil {
			return nil
		}
		key := missingKey
		if p, ok := params[field]; ok {
			key = p.key
		}
		return &keyedError{key: key, err: err}
	}
	get := func(field string) json.RawMessage { return params[field].raw }
	var err error

	if tk.Enable, err = jsonfield.Bool("params.enable", get("enable"), true); err != nil {
		return at("enable", err)
	}
	if tk.RedialInterrupted, err = jsonfield.Bool("params.redial_interrupted", get("redial_interrupted"), false); err != nil {
		return at("redial_interrupted", err)
	}
	if tk.LineGroups, err = stringList("params.line_group", get("line_group")); err != nil {
		return at("line_group", err)
	}
	if len(tk.LineGroups) == 0 {
		return at("line_group", &jsonfield.Error{Field: "params.line_group", Msg: "missing"})
	}
	if err := validate.LineGroups("params.line_group", tk.LineGroups); err != nil {
		return at("line_group", err)
	}
	limit, set, err := count("params.limit", get("limit"))
	if err != nil {
		return at("limit", err)
	}
	if !set {
		return at("limit", &jsonfield.Error{Field: "params.limit", Msg: "missing"})
	}
	tk.Limit = limit
	if tk.GlobalLimit, _, err = count("params.global_limit", get("global_limit")); err != nil {
		return at("global_limit", err)
	}
	if tk.CPS, err = rate("params.cps", get("cps")); err != nil {
		return at("cps", err)
	}
	if tk.AgentRatio, err = agentRatio("params.agent_ratio", get("agent_ratio")); err != nil {
		return at("agent_ratio", err)
	}
	if tk.Queue, err = jsonfield.String("params.number_queue", get("number_queue"), false); err != nil {
		return at("number_queue", err)
	}
	if strings.TrimSpace(tk.Queue) == "" {
		return at("number_queue", &jsonfield.Error{Field: "params.number_queue", Msg: "missing"})
	}
	d := &tk.Destination
	if d.Extension, err = jsonfield.String("params.destination_extension", get("destination_extension"), true); err != nil {
		return at("destination_extension", err)
	}
	if d.Extension = strings.TrimSpace(d.Extension); d.Extension == "" {
		return at("destination_extension", &jsonfield.Error{Field: "params.destination_extension", Msg: "missing"})
	}
	if err := validate.NumberField("params.destination_extension", d.Extension); err != nil {
		return at("destination_extension", err)
	}
	if d.Dialplan, err = jsonfield.String("params.destination_dialplan", get("destination_dialplan"), false); err != nil {
		return at("destination_dialplan", err)
	}
	if d.Dialplan = strings.TrimSpace(d.Dialplan); d.Dialplan == "" {
		d.Dialplan = "XML"
	}
	if d.Context, err = jsonfield.String("params.destination_context", get("destination_context"), false); err != nil {
		return at("destination_context", err)
	}
	if d.Context = strings.TrimSpace(d.Context); d.Context == "" {
		d.Context = "default"
	}
	if tk.Location, err = zone("params.timezone", get("timezone"), defaultLoc); err != nil {
		return at("timezone", err)
	}
	if tk.Start, err = optionalDateTime("params.start_time", get("start_time"), tk.Location); err != nil {
		return at("start_time", err)
	}
	if tk.Stop, err = optionalDateTime("params.stop_time", get("stop_time"), tk.Location); err != nil {
		return at("stop_time", err)
	}
	if tk.Start != nil && tk.Stop != nil && !tk.Stop.After(*tk.Start) {
		// The task could never dial; say so instead of waiting forever.
		return at("stop_time", &jsonfield.Error{Field: "params.stop_time", Msg: fmt.Sprintf("%s is not after params.start_time %s",
			tk.Stop.Format("2006-01-02 15:04:05"), tk.Start.Format("2006-01-02 15:04:05"))})
	}
	if tk.WorkHours, err = clockRanges("params.work_hour", get("work_hour")); err != nil {
		return at("work_hour", err)
	}
	if tk.WorkWeek, err = weekdays("params.work_week", get("work_week")); err != nil {
		return at("work_week", err)
	}
	if tk.Holidays, err = timeRanges("params.holiday", get("holiday"), tk.Location); err != nil {
		return at("holiday", err)
	}
	if tk.Retry, err = retryRules("params.retry", get("retry")); err != nil {
		return at("retry", err)
	}
	return nil
}

// numeric returns the text of a JSON number or of a string holding one
// ("100" is accepted for 100).
func numeric(field string, raw json.RawMessage) (float64, error) {
	text := ""
	if n, ok := jsonfield.Number(raw); ok {
		text = n.String()
	} else {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, jsonfield.WantGot(field, "number", raw)
		}
		text = strings.TrimSpace(s)
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, jsonfield.WantGot(field, "number", raw)
	}
	return f, nil
}

// count decodes a non-negative whole number; set is false when absent.
func count(field string, raw json.RawMessage) (n int, set bool, err error) {
	if jsonfield.IsNull(raw) {
		return 0, false, nil
	}
	f, err := numeric(field, raw)
	if err != nil {
		return 0, false, err
	}
	switch {
	case f < 0:
		return 0, false, jsonfield.WantGot(field, "number >= 0", raw)
	case f != math.Trunc(f):
		return 0, false, jsonfield.WantGot(field, "whole number", raw)
	case f > 1e9:
		return 0, false, jsonfield.WantGot(field, "number <= 1000000000", raw)
	}
	return int(f), true, nil
}

// rate decodes a non-negative number; 0 when absent.
func rate(field string, raw json.RawMessage) (float64, error) {
	if jsonfield.IsNull(raw) {
		return 0, nil
	}
	f, err := numeric(field, raw)
	if err != nil {
		return 0, err
	}
	if f < 0 || f > 1e9 {
		return 0, jsonfield.WantGot(field, "number between 0 and 1000000000", raw)
	}
	return f, nil
}

// MaxAgentRatio bounds params.agent_ratio: beyond it "pacing" would
// flood the queue with callers nobody can take.
const MaxAgentRatio = 10

// agentRatio decodes params.agent_ratio: a number in (0, MaxAgentRatio];
// 1 when absent.
func agentRatio(field string, raw json.RawMessage) (float64, error) {
	if jsonfield.IsNull(raw) {
		return 1, nil
	}
	want := fmt.Sprintf("number > 0 and <= %d", MaxAgentRatio)
	f, err := numeric(field, raw)
	if err != nil || f <= 0 || f > MaxAgentRatio {
		return 0, jsonfield.WantGot(field, want, raw)
	}
	return f, nil
}

// stringList decodes an array of non-empty strings, or a single string
// as a one-element list.
func stringList(field string, raw json.RawMessage) ([]string, error) {
	if jsonfield.IsNull(raw) {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one = strings.TrimSpace(one); one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil, jsonfield.WantGot(field, "array of strings", raw)
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		f := fmt.Sprintf("%s[%d]", field, i)
		var s string
		if json.Unmarshal(it, &s) != nil {
			return nil, jsonfield.WantGot(f, "string", it)
		}
		if s = strings.TrimSpace(s); s == "" {
			return nil, &jsonfield.Error{Field: f, Msg: "empty"}
		}
		out = append(out, s)
	}
	return out, nil
}

// zone decodes an IANA zone name; def when absent or empty.
func zone(field string, raw json.RawMessage, def *time.Location) (*time.Location, error) {
	name, err := jsonfield.String(field, raw, false)
	if err != nil {
		return nil, err
	}
	if name = strings.TrimSpace(name); name == "" {
		return def, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, &jsonfield.Error{Field: field, Msg: "unknown time zone " + strconv.Quote(validate.Truncate(name, 64))}
	}
	return loc, nil
}

// dateTimeLayouts are the wall-clock forms of start_time, stop_time and
// holidays. Go's "1", "2" and "15" also take two digits, so
// "2020-1-20 8:00" and "2020-01-20 08:00" both match the first.
var dateTimeLayouts = []string{
	"2006-1-2 15:04",
	"2006-1-2 15:04:05",
	"2006-1-2T15:04",
	"2006-1-2T15:04:05",
	"2006-1-2",
}

const dateTimeWant = `date-time like "2020-01-20 12:00" or "2020-01-20 12:00:05"`

// parseDateTime reads a wall-clock date-time in loc (see wallClock for
// times that a DST change skips or repeats); an RFC 3339 time with an
// offset is the instant it names.
func parseDateTime(field, s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range dateTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			y, m, d := t.Date()
			since := time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second
			return wallClock(y, m, d, since, loc), nil
		}
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.In(loc), nil
	}
	b, _ := json.Marshal(s)
	return time.Time{}, jsonfield.WantGot(field, dateTimeWant, b)
}

// optionalDateTime decodes start_time/stop_time; nil when absent or "".
func optionalDateTime(field string, raw json.RawMessage, loc *time.Location) (*time.Time, error) {
	s, err := jsonfield.String(field, raw, false)
	if err != nil {
		return nil, jsonfield.WantGot(field, dateTimeWant, raw)
	}
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	t, err := parseDateTime(field, s, loc)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// parseClock reads "8:00", "08:00" or "8:00:30" as time since midnight;
// "24:00" only when end is true.
func parseClock(field, s string, end bool) (time.Duration, error) {
	bad := func() (time.Duration, error) {
		b, _ := json.Marshal(s)
		want := `time of day like "8:00" or "08:00:30"`
		if end {
			want = `time of day like "18:00" or "24:00"`
		}
		return 0, jsonfield.WantGot(field, want, b)
	}
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) < 2 || len(parts) > 3 || len(parts[0]) < 1 || len(parts[0]) > 2 {
		return bad()
	}
	var v [3]int
	for i, p := range parts {
		if i > 0 && len(p) != 2 {
			return bad()
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p[0] == '+' || p[0] == '-' {
			return bad()
		}
		v[i] = n
	}
	if v[1] > 59 || v[2] > 59 || v[0] > 24 || v[0] == 24 && (!end || v[1] != 0 || v[2] != 0) {
		return bad()
	}
	return time.Duration(v[0])*time.Hour + time.Duration(v[1])*time.Minute + time.Duration(v[2])*time.Second, nil
}

// rangeFields decodes the {begin, end} objects of work_hour and holiday.
func rangeFields(field string, raw json.RawMessage, each func(f, begin, end string) error) error {
	if jsonfield.IsNull(raw) {
		return nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return jsonfield.WantGot(field, `array of {"begin", "end"}`, raw)
	}
	for i, it := range items {
		f := fmt.Sprintf("%s[%d]", field, i)
		m, err := jsonfield.Object(f, it)
		if err != nil || m == nil {
			return jsonfield.WantGot(f, `{"begin", "end"}`, it)
		}
		var be [2]string
		for j, name := range []string{"begin", "end"} {
			s, err := jsonfield.String(f+"."+name, m[name], false)
			if err != nil {
				return err
			}
			if strings.TrimSpace(s) == "" {
				return &jsonfield.Error{Field: f + "." + name, Msg: "missing"}
			}
			be[j] = s
		}
		if err := each(f, be[0], be[1]); err != nil {
			return err
		}
	}
	return nil
}

// clockRanges decodes work_hour.
func clockRanges(field string, raw json.RawMessage) ([]ClockRange, error) {
	var out []ClockRange
	err := rangeFields(field, raw, func(f, begin, end string) error {
		b, err := parseClock(f+".begin", begin, false)
		if err != nil {
			return err
		}
		e, err := parseClock(f+".end", end, true)
		if err != nil {
			return err
		}
		if b == e {
			// Either nothing or the whole day: too ambiguous to guess.
			return &jsonfield.Error{Field: f, Msg: fmt.Sprintf("begin %q equals end %q (use 0:00-24:00 for the whole day)", begin, end)}
		}
		out = append(out, ClockRange{Begin: b, End: e})
		return nil
	})
	return out, err
}

// timeRanges decodes holiday.
func timeRanges(field string, raw json.RawMessage, loc *time.Location) ([]TimeRange, error) {
	var out []TimeRange
	err := rangeFields(field, raw, func(f, begin, end string) error {
		b, err := parseDateTime(f+".begin", begin, loc)
		if err != nil {
			return err
		}
		e, err := parseDateTime(f+".end", end, loc)
		if err != nil {
			return err
		}
		if !e.After(b) {
			return &jsonfield.Error{Field: f + ".end", Msg: fmt.Sprintf("%q is not after begin %q", end, begin)}
		}
		out = append(out, TimeRange{Begin: b, End: e})
		return nil
	})
	return out, err
}

// weekdays decodes work_week: 0..6 with 0 = Sunday, 7 also Sunday.
func weekdays(field string, raw json.RawMessage) ([]time.Weekday, error) {
	if jsonfield.IsNull(raw) {
		return nil, nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil, jsonfield.WantGot(field, "array of week days 0-6 (0 = Sunday)", raw)
	}
	var out []time.Weekday
	for i, it := range items {
		f := fmt.Sprintf("%s[%d]", field, i)
		n, _, err := count(f, it)
		if err != nil || jsonfield.IsNull(it) || n > 7 {
			return nil, jsonfield.WantGot(f, "week day 0-6 (0 = Sunday)", it)
		}
		out = append(out, time.Weekday(n%7))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// retryRules decodes params.retry; disposition names are matched without
// regard to case.
func retryRules(field string, raw json.RawMessage) (map[string]RetryRule, error) {
	m, err := jsonfield.Object(field, raw)
	if err != nil || m == nil {
		return nil, err
	}
	out := make(map[string]RetryRule, len(m))
	seen := map[string]string{}
	for k, v := range m {
		f := field + "." + k
		disp := strings.ToUpper(strings.TrimSpace(k))
		if !slices.Contains(RetryDispositions, disp) {
			return nil, &jsonfield.Error{Field: f, Msg: "not a retryable disposition (want one of " + strings.Join(RetryDispositions, ", ") + ")"}
		}
		if other, dup := seen[disp]; dup {
			return nil, &jsonfield.Error{Field: f, Msg: fmt.Sprintf("%s is also given as %q", disp, other)}
		}
		seen[disp] = k
		r, err := jsonfield.Object(f, v)
		if err != nil || r == nil {
			return nil, jsonfield.WantGot(f, `{"attempts", "delay_s"}`, v)
		}
		attempts, set, err := count(f+".attempts", r["attempts"])
		if err != nil {
			return nil, err
		}
		if !set {
			// A rule without attempts is most likely a typo; retrying zero
			// times silently would hide it.
			return nil, &jsonfield.Error{Field: f + ".attempts", Msg: "missing"}
		}
		delay, err := rate(f+".delay_s", r["delay_s"])
		if err != nil {
			return nil, err
		}
		out[disp] = RetryRule{Attempts: attempts, Delay: time.Duration(delay * float64(time.Second))}
	}
	return out, nil
}
