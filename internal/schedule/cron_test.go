package schedule

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// seedExample is the "Cron event example" of seed 000, verbatim.
const seedExample = `[
    {
        "type": "every",
        "minutes": [23,24,25],
        "hours": [9],
        "month_days": "all",
        "monthes": "all",
        "weekdays": [1,2,3,4,5],
        "action": {
            "type": "check_voicemail",
            "account_id": "72fabca989b3102c28482c60070aac5b",
            "vmbox_id": "b2f1c691e3e733f52c7c8b4b621289bc"
        }
    },
    {
        "type": "once",
        "minute": 30,
        "hour": 2,
        "day": 1,
        "month": 1,
        "year": 2016,
        "action": {
            "type": "check_voicemail",
            "account_id": "72fabca989b3102c28482c60070aac5b",
            "vmbox_id": "b2f1c691e3e733f52c7c8b4b621289bc"
        }
    },
    {
        "type": "periodic",
        "seconds": 3,
        "minutes": 30,
        "hours": 2,
        "days": 1,
        "action": {
            "type": "check_voicemail",
            "account_id": "72fabca989b3102c28482c60070aac5b",
            "vmbox_id": "b2f1c691e3e733f52c7c8b4b621289bc"
        }
    }
]`

const action = `"action":{"type":"check_voicemail","account_id":"a1","vmbox_id":"v1"}`

func utc(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

// one parses a single entry given as the inside of a JSON object (the action
// is appended) and fails the test on any error.
func one(t *testing.T, fields string) CronEntry {
	t.Helper()
	raw := "[{" + fields
	if fields != "" {
		raw += ","
	}
	raw += action + "}]"
	entries, errs := ParseSchedules(json.RawMessage(raw))
	if len(errs) > 0 || len(entries) != 1 {
		t.Fatalf("ParseSchedules(%s) = %d entries, errs %v", raw, len(entries), errs)
	}
	return entries[0]
}

func TestSeedExampleParses(t *testing.T) {
	entries, errs := ParseSchedules(json.RawMessage(seedExample))
	if len(errs) > 0 {
		t.Fatalf("errs: %v", errs)
	}
	if len(entries) != 3 {
		t.Fatalf("got %d entries, want 3", len(entries))
	}
	every, once, periodic := entries[0], entries[1], entries[2]

	if every.Type != TypeEvery || every.Index != 0 {
		t.Errorf("entry 0: type %q index %d", every.Type, every.Index)
	}
	if !slices.Equal(every.Minutes, []int{23, 24, 25}) || !slices.Equal(every.Hours, []int{9}) ||
		every.MonthDays != nil || every.Months != nil || !slices.Equal(every.Weekdays, []int{1, 2, 3, 4, 5}) {
		t.Errorf("every fields: %+v", every)
	}
	if once.Type != TypeOnce || !once.At.Equal(utc(2016, 1, 1, 2, 30, 0)) {
		t.Errorf("once: type %q at %v", once.Type, once.At)
	}
	if periodic.Type != TypePeriodic || periodic.Period != 95403*time.Second {
		t.Errorf("periodic: type %q period %v, want 95403s", periodic.Type, periodic.Period)
	}
	for i, e := range entries {
		a := e.Action
		if a.Type != ActionCheckVoicemail || a.AccountID != "72fabca989b3102c28482c60070aac5b" ||
			a.VmboxID != "b2f1c691e3e733f52c7c8b4b621289bc" || a.Raw["vmbox_id"] != a.VmboxID {
			t.Errorf("entry %d action: %+v", i, a)
		}
		if len(e.ID) != 32 {
			t.Errorf("entry %d ID %q", i, e.ID)
		}
	}
	if entries[0].ID == entries[1].ID || entries[1].ID == entries[2].ID {
		t.Error("different entries share an ID")
	}

	// Weekdays 09:23-09:25 UTC: Friday 2024-06-07 09:24:30 -> 09:25, then
	// the weekend is skipped to Monday 09:23.
	tests := []struct {
		from, want time.Time
	}{
		{utc(2024, 6, 7, 9, 24, 30), utc(2024, 6, 7, 9, 25, 0)},
		{utc(2024, 6, 7, 9, 25, 0), utc(2024, 6, 10, 9, 23, 0)},
		{utc(2024, 6, 7, 8, 0, 0), utc(2024, 6, 7, 9, 23, 0)},
	}
	for _, tt := range tests {
		if got := every.Next(tt.from); !got.Equal(tt.want) {
			t.Errorf("every.Next(%v) = %v, want %v", tt.from, got, tt.want)
		}
	}
	if got := once.Next(utc(2015, 12, 31, 0, 0, 0)); !got.Equal(utc(2016, 1, 1, 2, 30, 0)) {
		t.Errorf("once.Next before = %v", got)
	}
	if got := once.Next(utc(2016, 1, 1, 2, 30, 0)); !got.IsZero() {
		t.Errorf("once.Next at its own instant = %v, want zero (strictly after)", got)
	}
}

func TestNextConvertsToUTC(t *testing.T) {
	e := one(t, `"type":"every","hours":[9],"minutes":[0]`)
	zone := time.FixedZone("UTC+3", 3*3600)
	// 08:30 in UTC+3 is 05:30 UTC, so the next 09:00 UTC is the same day.
	got := e.Next(time.Date(2024, 6, 7, 8, 30, 0, 0, zone))
	if !got.Equal(utc(2024, 6, 7, 9, 0, 0)) || got.Location() != time.UTC {
		t.Errorf("got %v", got)
	}
}

func TestOnce(t *testing.T) {
	def := one(t, `"type":"once"`)
	if !def.At.Equal(time.Unix(0, 0)) {
		t.Errorf("defaults: At = %v, want 1970-01-01 00:00:00 UTC", def.At)
	}
	if got := def.Next(utc(2020, 1, 1, 0, 0, 0)); !got.IsZero() {
		t.Errorf("defaults: Next(2020) = %v, want zero", got)
	}
	if got := def.Next(utc(1969, 12, 31, 23, 59, 59)); !got.Equal(time.Unix(0, 0)) {
		t.Errorf("defaults: Next(1969) = %v", got)
	}

	full := one(t, `"type":"once","second":"15","minute":"7","hour":23,"day":29,"month":2,"year":"2028"`)
	want := utc(2028, 2, 29, 23, 7, 15)
	if !full.At.Equal(want) {
		t.Errorf("At = %v, want %v", full.At, want)
	}
	if got := full.Next(want.Add(-time.Nanosecond)); !got.Equal(want) {
		t.Errorf("Next just before = %v", got)
	}
	if got := full.Next(want.Add(time.Nanosecond)); !got.IsZero() {
		t.Errorf("Next just after = %v", got)
	}
}

func TestPeriodic(t *testing.T) {
	e := one(t, `"type":"periodic","seconds":3,"minutes":"30","hours":2,"days":1`)
	if e.Period != 95403*time.Second {
		t.Fatalf("Period = %v, want 95403s", e.Period)
	}
	tests := []struct {
		from time.Time
		want int64
	}{
		{time.Unix(0, 0), 95403},
		{time.Unix(95402, 999_999_999), 95403},
		{time.Unix(95403, 0), 2 * 95403},
		{time.Unix(95403, 1), 2 * 95403},
		{time.Unix(-1, 0), 0},
		{time.Unix(-95404, 0), -95403},
	}
	for _, tt := range tests {
		if got := e.Next(tt.from); got.Unix() != tt.want || got.Nanosecond() != 0 {
			t.Errorf("Next(%d.%09d) = %v, want unix %d", tt.from.Unix(), tt.from.Nanosecond(), got, tt.want)
		}
	}

	// Epoch anchoring: two nodes asking at different moments within one
	// period agree on the tick, whatever their local zone.
	e10 := one(t, `"type":"periodic","minutes":10`)
	a := e10.Next(time.Date(2024, 6, 7, 12, 0, 1, 0, time.UTC))
	b := e10.Next(time.Date(2024, 6, 7, 15, 9, 59, 0, time.FixedZone("x", 3*3600)))
	if !a.Equal(utc(2024, 6, 7, 12, 10, 0)) || !a.Equal(b) {
		t.Errorf("ticks %v and %v, want both 12:10 UTC", a, b)
	}
}

func TestEvery(t *testing.T) {
	tests := []struct {
		name, fields string
		from, want   time.Time
	}{
		{"all fires the next whole minute", `"type":"every"`,
			utc(2024, 6, 7, 12, 0, 0), utc(2024, 6, 7, 12, 1, 0)},
		{"all from mid-minute", `"type":"every","minutes":"all","hours":"all","month_days":"all","monthes":"all","weekdays":"all"`,
			utc(2024, 6, 7, 12, 0, 59), utc(2024, 6, 7, 12, 1, 0)},
		{"numeric strings in lists", `"type":"every","minutes":["5","35"],"hours":["10"]`,
			utc(2024, 6, 7, 10, 5, 0), utc(2024, 6, 7, 10, 35, 0)},
		{"hour jump resets minute", `"type":"every","minutes":[0,30],"hours":[9,17]`,
			utc(2024, 6, 7, 9, 30, 0), utc(2024, 6, 7, 17, 0, 0)},
		{"last hour rolls to next day", `"type":"every","minutes":[0,30],"hours":[9,17]`,
			utc(2024, 6, 7, 17, 30, 0), utc(2024, 6, 8, 9, 0, 0)},
		{"year end", `"type":"every","minutes":[0],"hours":[0]`,
			utc(2024, 12, 31, 0, 0, 0), utc(2025, 1, 1, 0, 0, 0)},
		{"weekday 0 is Sunday", `"type":"every","weekdays":[0],"hours":[8],"minutes":[0]`,
			utc(2024, 6, 3, 0, 0, 0), utc(2024, 6, 9, 8, 0, 0)},
		{"weekday 7 is Sunday too", `"type":"every","weekdays":[7],"hours":[8],"minutes":[0]`,
			utc(2024, 6, 3, 0, 0, 0), utc(2024, 6, 9, 8, 0, 0)},
		{"weekday 6 is Saturday", `"type":"every","weekdays":[6],"hours":[8],"minutes":[0]`,
			utc(2024, 6, 3, 0, 0, 0), utc(2024, 6, 8, 8, 0, 0)},
		{"month_days 31 skips April", `"type":"every","month_days":[31],"hours":[0],"minutes":[0]`,
			utc(2024, 3, 31, 0, 0, 0), utc(2024, 5, 31, 0, 0, 0)},
		{"month_days 29 in February 2023 waits for 2024", `"type":"every","month_days":[29],"monthes":[2],"hours":[0],"minutes":[0]`,
			utc(2023, 1, 1, 0, 0, 0), utc(2024, 2, 29, 0, 0, 0)},
		{"month_days 29 in February 2024", `"type":"every","month_days":[29],"monthes":[2],"hours":[0],"minutes":[0]`,
			utc(2024, 2, 1, 0, 0, 0), utc(2024, 2, 29, 0, 0, 0)},
		{"after February 29 2024 the next is 2028", `"type":"every","month_days":[29],"monthes":[2],"hours":[0],"minutes":[0]`,
			utc(2024, 2, 29, 0, 0, 0), utc(2028, 2, 29, 0, 0, 0)},
		{"monthes (seed spelling)", `"type":"every","monthes":[6,1],"hours":[0],"minutes":[0]`,
			utc(2024, 1, 31, 0, 0, 0), utc(2024, 6, 1, 0, 0, 0)},
		{"months accepted as well", `"type":"every","months":[6],"hours":[0],"minutes":[0]`,
			utc(2024, 1, 31, 0, 0, 0), utc(2024, 6, 1, 0, 0, 0)},
		// All conditions must hold (not cron's OR of day-of-month and
		// weekday): the next Friday the 13th after New Year 2024.
		{"month_days and weekdays both required", `"type":"every","month_days":[13],"weekdays":[5],"hours":[0],"minutes":[0]`,
			utc(2024, 1, 1, 0, 0, 0), utc(2024, 9, 13, 0, 0, 0)},
		{"single number accepted as a list", `"type":"every","hours":9,"minutes":"15"`,
			utc(2024, 6, 7, 10, 0, 0), utc(2024, 6, 8, 9, 15, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := one(t, tt.fields)
			if got := e.Next(tt.from); !got.Equal(tt.want) {
				t.Errorf("Next(%v) = %v, want %v", tt.from, got, tt.want)
			}
		})
	}
}

func TestEveryBeyondHorizonIsZero(t *testing.T) {
	// February 29 on a Monday: 2028 Tue, 2032 Sun, 2036 Fri, 2040 Wed, 2044
	// Mon. The search stops after searchYears and reports nothing.
	e := one(t, `"type":"every","month_days":[29],"monthes":[2],"weekdays":[1]`)
	if got := e.Next(utc(2024, 3, 1, 0, 0, 0)); !got.IsZero() {
		t.Errorf("Next = %v, want zero beyond the %d-year horizon", got, searchYears)
	}
	if got := e.Next(utc(2040, 3, 1, 0, 0, 0)); !got.Equal(utc(2044, 2, 29, 0, 0, 0)) {
		t.Errorf("Next from 2040 = %v, want 2044-02-29", got)
	}
}

// TestEveryMatchesBruteForce compares Next with a naive minute-by-minute
// check over two days for random dense entries, and with a day-by-day check
// for random sparse ones.
func TestEveryMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(lo, hi, max int) []int {
		if rng.IntN(3) == 0 {
			return nil
		}
		n := 1 + rng.IntN(max)
		out := make([]int, n)
		for i := range out {
			out[i] = lo + rng.IntN(hi-lo+1)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	matches := func(e CronEntry, c time.Time) bool {
		in := func(l []int, v int) bool { return l == nil || slices.Contains(l, v) }
		return c.Second() == 0 && in(e.Minutes, c.Minute()) && in(e.Hours, c.Hour()) &&
			in(e.MonthDays, c.Day()) && in(e.Months, int(c.Month())) && in(e.Weekdays, int(c.Weekday()))
	}
	for i := range 300 {
		e := CronEntry{Type: TypeEvery, Minutes: pick(0, 59, 4), Hours: pick(0, 23, 3),
			MonthDays: pick(1, 31, 6), Months: pick(1, 12, 4), Weekdays: pick(0, 6, 3)}
		from := utc(2023, 1, 1, 0, 0, 0).Add(time.Duration(rng.Int64N(int64(3 * 365 * 24 * time.Hour)))).
			Add(time.Duration(rng.IntN(60)) * time.Second)
		got := e.Next(from)

		// Reference: days first, then every minute of a matching day.
		var want time.Time
		day := time.Date(from.Year(), from.Month(), from.Day(), 0, 0, 0, 0, time.UTC)
	search:
		for d := 0; d < 366*searchYears; d++ {
			date := day.AddDate(0, 0, d)
			if !matches(CronEntry{MonthDays: e.MonthDays, Months: e.Months, Weekdays: e.Weekdays}, date) {
				continue
			}
			for m := range 24 * 60 {
				c := date.Add(time.Duration(m) * time.Minute)
				if c.After(from) && matches(e, c) {
					want = c
					break search
				}
			}
		}
		if !got.Equal(want) && !(want.After(from.AddDate(searchYears, 0, 0)) && got.IsZero()) {
			t.Fatalf("case %d %+v from %v: Next = %v, want %v", i, e, from, got, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, entry, want string
	}{
		{"unknown type", `{"type":"weekly",` + action + `}`,
			`schedules[0].type: want once, periodic or every, got "weekly"`},
		{"missing type", `{` + action + `}`, `schedules[0].type: missing`},
		{"not an object", `"every"`, `schedules[0]: want object, got "every"`},
		{"minute out of range", `{"type":"every","minutes":[5,60],` + action + `}`,
			`schedules[0].minutes[1]: want 0..59, got 60`},
		{"hour not a number", `{"type":"every","hours":["nine"],` + action + `}`,
			`schedules[0].hours[0]: want integer, got "nine"`},
		{"weekday 8", `{"type":"every","weekdays":[8],` + action + `}`,
			`schedules[0].weekdays[0]: want 0..7, got 8`},
		{"month 0 in monthes", `{"type":"every","monthes":[0],` + action + `}`,
			`schedules[0].monthes[0]: want 1..12, got 0`},
		{"empty list", `{"type":"every","minutes":[],` + action + `}`,
			`schedules[0].minutes: want "all" or a non-empty array of 0..59, got []`},
		{"list of wrong kind", `{"type":"every","hours":{"a":1},` + action + `}`,
			`schedules[0].hours: want "all" or an array of 0..23, got object`},
		{"monthes and months", `{"type":"every","monthes":[1],"months":[2],` + action + `}`,
			`schedules[0].months: both monthes`},
		{"day never in month", `{"type":"every","month_days":[30,31],"monthes":[2],` + action + `}`,
			`schedules[0].month_days: [30 31] never occur in monthes [2]`},
		{"once month 13", `{"type":"once","month":13,` + action + `}`,
			`schedules[0].month: want 1..12, got 13`},
		{"once fraction", `{"type":"once","minute":1.5,` + action + `}`,
			`schedules[0].minute: want integer, got 1.5`},
		{"once February 30", `{"type":"once","day":30,"month":2,"year":2024,` + action + `}`,
			`schedules[0].day: 2024-02 has no day 30`},
		{"periodic zero", `{"type":"periodic",` + action + `}`,
			`schedules[0]: periodic: want seconds+minutes+hours+days > 0, got 0`},
		{"periodic negative", `{"type":"periodic","seconds":-5,` + action + `}`,
			`schedules[0].seconds: want 0..2147483648, got -5`},
		{"periodic bad string", `{"type":"periodic","seconds":"soon",` + action + `}`,
			`schedules[0].seconds: want integer, got "soon"`},
		{"no action", `{"type":"periodic","seconds":5}`, `schedules[0].action: missing`},
		{"action not object", `{"type":"periodic","seconds":5,"action":"call"}`,
			`schedules[0].action: want object, got "call"`},
		{"other action", `{"type":"periodic","seconds":5,"action":{"type":"send_fax","account_id":"a","vmbox_id":"v"}}`,
			`schedules[0].action.type: want check_voicemail, got "send_fax"`},
		{"no vmbox", `{"type":"periodic","seconds":5,"action":{"type":"check_voicemail","account_id":"a"}}`,
			`schedules[0].action.vmbox_id: missing`},
		{"empty account", `{"type":"periodic","seconds":5,"action":{"type":"check_voicemail","account_id":" ","vmbox_id":"v"}}`,
			`schedules[0].action.account_id: want a non-empty string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, errs := ParseSchedules(json.RawMessage("[" + tt.entry + "]"))
			if len(entries) != 0 {
				t.Errorf("bad entry returned: %+v", entries)
			}
			var msgs []string
			for _, err := range errs {
				msgs = append(msgs, err.Error())
			}
			if !slices.ContainsFunc(msgs, func(m string) bool { return strings.HasPrefix(m, tt.want) }) {
				t.Errorf("errs %q, want one starting with %q", msgs, tt.want)
			}
		})
	}
}

func TestBadEntrySkippedOthersKept(t *testing.T) {
	raw := `[{"type":"periodic","seconds":60,` + action + `},
	         {"type":"every","hours":[25],` + action + `},
	         {"type":"weekly",` + action + `},
	         {"type":"once","year":2030,` + action + `}]`
	entries, errs := ParseSchedules(json.RawMessage(raw))
	if len(entries) != 2 || entries[0].Index != 0 || entries[1].Index != 3 {
		t.Fatalf("entries %+v, want indexes 0 and 3", entries)
	}
	want := []string{
		"schedules[1].hours[0]: want 0..23, got 25",
		`schedules[2].type: want once, periodic or every, got "weekly"`,
	}
	if len(errs) != len(want) {
		t.Fatalf("errs %v, want %q", errs, want)
	}
	for i, err := range errs {
		if err.Error() != want[i] {
			t.Errorf("errs[%d] = %q, want %q", i, err, want[i])
		}
	}
}

func TestParseWholeValue(t *testing.T) {
	for _, raw := range []string{"", "  ", "null", "[]"} {
		entries, errs := ParseSchedules(json.RawMessage(raw))
		if len(entries) != 0 || len(errs) != 0 {
			t.Errorf("%q: %v %v", raw, entries, errs)
		}
	}
	for raw, want := range map[string]string{
		`{"type":"once"}`: "schedules: want array, got object",
		`[{"type":`:       "schedules: unexpected EOF",
	} {
		_, errs := ParseSchedules(json.RawMessage(raw))
		if len(errs) != 1 || errs[0].Error() != want {
			t.Errorf("%s: errs %v, want %q", raw, errs, want)
		}
	}
}

func TestID(t *testing.T) {
	id := func(raw string) string {
		t.Helper()
		entries, errs := ParseSchedules(json.RawMessage("[" + raw + "]"))
		if len(errs) > 0 || len(entries) != 1 {
			t.Fatalf("%s: %v", raw, errs)
		}
		return entries[0].ID
	}
	base := id(`{"type":"every","minutes":[23,24],"hours":[9],"action":{"type":"check_voicemail","account_id":"a","vmbox_id":"v"}}`)
	reordered := id(`{
		"action": {"vmbox_id": "v", "account_id": "a", "type": "check_voicemail"},
		"hours":  [ 9 ],
		"minutes": [23, 24],
		"type": "every"
	}`)
	if base != reordered {
		t.Errorf("ID changed under key reordering and whitespace: %s vs %s", base, reordered)
	}
	for _, changed := range []string{
		`{"type":"every","minutes":[23,25],"hours":[9],"action":{"type":"check_voicemail","account_id":"a","vmbox_id":"v"}}`,
		`{"type":"every","minutes":[23,24],"hours":[9],"action":{"type":"check_voicemail","account_id":"a","vmbox_id":"v2"}}`,
		`{"type":"every","minutes":[23,24],"hours":[9],"weekdays":[1],"action":{"type":"check_voicemail","account_id":"a","vmbox_id":"v"}}`,
	} {
		if id(changed) == base {
			t.Errorf("ID unchanged after an edit: %s", changed)
		}
	}

	// The ID does not depend on the position, and an exact duplicate is
	// reported and skipped rather than ticking twice.
	entry := `{"type":"periodic","seconds":60,` + action + `}`
	entries, errs := ParseSchedules(json.RawMessage(fmt.Sprintf(`[{"type":"once",%s},%s,%s]`, action, entry, entry)))
	if len(entries) != 2 || entries[1].ID != id(entry) {
		t.Fatalf("entries %+v", entries)
	}
	if len(errs) != 1 || errs[0].Error() != "schedules[2]: same as schedules[1]; skipped" {
		t.Errorf("errs %v", errs)
	}
}
