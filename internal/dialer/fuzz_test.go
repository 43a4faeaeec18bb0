package dialer

// Fuzz targets for the queue dialer's decoders of outside input: number
// queue items (anyone who can LPUSH onto a queue writes them) and task
// configs (cti_queue_dialer_task@template / @<host>). `make test` runs them
// on their seed corpus; scripts/fuzz.sh (make chaos) fuzzes them.

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
	"redial/internal/validate"
)

// Limits of issue 9's one validation of numbers and variables
// (internal/validate): what a decoder accepts must stay within them.
const (
	fuzzMaxNumber   = 64
	fuzzMaxVarValue = 4 << 10
	// fuzzMaxReason bounds an error about a queue item: it becomes the
	// item's :invalid reason and a log line ("a short reason").
	fuzzMaxReason = 1 << 10
)

// fuzzNumberSafe checks an accepted number against issue 9's limits.
func fuzzNumberSafe(t *testing.T, what, n string) {
	t.Helper()
	if n == "" {
		t.Errorf("%s: accepted an empty number", what)
	}
	if len(n) > fuzzMaxNumber {
		t.Errorf("%s: accepted number %s of %d bytes; issue 9 validation (internal/validate) must refuse numbers longer than %d",
			what, testenv.FuzzQuote(n), len(n), fuzzMaxNumber)
	}
	if strings.ContainsAny(n, "\r\n\x00") {
		t.Errorf("%s: accepted number %s holding CR, LF or NUL; issue 9 validation (internal/validate) must refuse it", what, testenv.FuzzQuote(n))
	}
	// One rule at every entry point: what this decoder accepts, the API
	// and the other queues accept too.
	if err := validate.Number(n); err != nil {
		t.Errorf("%s: accepted number %s that validate.Number refuses (%v): entry points check numbers differently", what, testenv.FuzzQuote(n), err)
	}
}

// fuzzItemSeeds are queue entries: the seed's forms, the unit tests' cases
// and hostile ones.
func fuzzItemSeeds() []string {
	big := strings.Repeat("1", 3000)
	return []string{
		"13800000000",
		"  +8613800000000\n",
		"*86#",
		"alice.smith_1-2",
		`"13800000000"`,
		`{"params": {"number": "13800000000"}, "variables": {"origination_caller_id_number": "15550001111", "absolute_codec_string": "pcma,pcmu,g729"}}`,
		`{"params": {"number": [" 13800000000 ", 13900000000, "+15550002222"]}}`,
		`{"params": {"number": 13800000000}}`,
		`{"params": {"number": "1001", "contact_ref": "c-1", "timezone": "America/New_York", "redial_attempt": 2, "redial_retries": {"BUSY": 1, "NO_ANSWER": "1"}, "future": [1]},
			"variables": {"n": 1, "b": false, "skip": null}, "extra": {"kept": true}}`,
		`{"params": {"number": "1001"}, "contact_ref": 42, "timezone": "Asia/Tokyo"}`,
		`{"params": {"number": [13800000000, "+15550002222"], "contact_ref": "c&1", "weight": 1.50, "custom": {"deep": [1, "x"]}}, "meta": {"batch": 7}}`,
		// Errors of the unit tests.
		"", "   ", `" "`, `"1001`, "138 0000 0000", "1001@evil.example", "1001;transport=tcp", "<sip:1001>", `["1001"]`,
		`{"params": {"number": "1001"}`, `{"params": {}}`, `{"number": "1001"}`, `{"params": "1001"}`,
		`{"params": {"number": 1.5}}`, `{"params": {"number": -5}}`, `{"params": {"number": 1.38e10}}`, `{"params": {"number": true}}`,
		`{"params": {"number": {"n": "1"}}}`, `{"params": {"number": []}}`, `{"params": {"number": ["1001", ""]}}`,
		`{"params": {"number": "1001", "timezone": "Nowhere/City"}}`, `{"params": {"number": "1001", "timezone": "../../../etc/passwd"}}`,
		`{"params": {"number": "1001", "contact_ref": {}}}`, `{"params": {"number": "1001"}, "variables": {"v": [1]}}`,
		`{"params": {"number": "1001", "redial_attempt": -1}}`, `{"params": {"number": "1001", "redial_retries": {"BUSY": "x"}}}`,
		`{"params": {"number": "1001", "redial_attempt": 999999999, "redial_retries": {"BUSY": 1e9}}}`,
		// Hostile: huge numbers (issue 9: a 1 MB number was dialed), CR/LF
		// and NUL, invalid UTF-8, deep nesting, nulls, numbers as strings.
		big,
		big + "x",
		`"` + big,
		`{"params": {"number": "` + big + `"}}`,
		`{"params": {"number": ` + big + `}}`,
		`{"params": {"number": ["1001", "` + big + `"]}}`,
		"1001\r\nVia: evil",
		"1001\x00",
		`{"params": {"number": "1001\r\nX-Evil: 1"}}`,
		`{"params": {"number": "1001\u0000"}}`,
		`{"params": {"number": "1001"}, "variables": {"sip_h_X-Evil": "a\r\nInjected: 1"}}`,
		`{"params": {"number": "1001"}, "variables": {"bad\nname": "x"}}`,
		`{"params": {"number": "1001"}, "variables": {"nul": "a\u0000b"}}`,
		`{"params": {"number": "1001"}, "variables": {"big": "` + strings.Repeat("v", 5000) + `"}}`,
		`{"params": {"number": "1001"}, "variables": {"` + strings.Repeat("k", 5000) + `": [1]}}`,
		"\xff\xfe1001",
		`{"params": {"number": "10\xff01"}, "variables": {"v": "\xc3\x28"}}`,
		strings.Repeat(`{"params":`, 300) + strings.Repeat("}", 300),
		`{"params": {"number": "1001", "custom": ` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}}`,
		`null`, `{"params": null}`, `{"params": {"number": null}}`, `{"params": {"number": "1001"}, "variables": null}`,
		`{"params": {"number": "1001", "redial_attempt": "3", "redial_retries": {"BUSY": "2"}}}`,
		`{"params": {"number": "../../etc"}}`,
	}
}

// FuzzParseItem decodes number queue entries: never a panic, errors short
// and naming the field, accepted numbers and variables within issue 9's
// limits, and WithRetry's re-encoding decoded back to the same item.
func FuzzParseItem(f *testing.F) {
	for _, s := range fuzzItemSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var it Item
		var err error
		testenv.FuzzRun(t, "ParseItem", func() { it, err = ParseItem(raw) })
		if err != nil {
			msg := err.Error()
			if msg == "" {
				t.Fatalf("ParseItem(%s): empty error", testenv.FuzzQuote(raw))
			}
			if len(msg) > fuzzMaxReason {
				t.Errorf("ParseItem(%s): error of %d bytes (%s); an item's :invalid reason must be short (issue 9)", testenv.FuzzQuote(raw), len(msg), testenv.FuzzQuote(msg))
			}
			if testenv.FuzzJSONObject(strings.TrimSpace(raw)) && !testenv.FuzzNamesField(msg, "item", "params", "variables", "contact_ref", "timezone") {
				t.Errorf("ParseItem(%s): error %s names no field of the JSON object", testenv.FuzzQuote(raw), testenv.FuzzQuote(msg))
			}
			return
		}
		if it.Raw != raw {
			t.Errorf("Raw = %s, want the entry as queued", testenv.FuzzQuote(it.Raw))
		}
		if len(it.Numbers) == 0 {
			t.Fatalf("ParseItem(%s): accepted without a number", testenv.FuzzQuote(raw))
		}
		for i, n := range it.Numbers {
			fuzzNumberSafe(t, fmt.Sprintf("ParseItem(%s) number[%d]", testenv.FuzzQuote(raw), i), n)
		}
		testenv.FuzzVarsSafe(t, fmt.Sprintf("ParseItem(%s)", testenv.FuzzQuote(raw)), it.Variables)
		if it.Attempt < 0 {
			t.Errorf("Attempt = %d", it.Attempt)
		}

		// Round trip: the entry WithRetry queues again decodes to the same
		// item with the counters one higher. Counters at the decoder's
		// ceiling (1e9) cannot count further; skip those.
		const ceiling = 1e9
		if it.Attempt >= ceiling || it.RetryCount["BUSY"] >= ceiling {
			return
		}
		again := it.WithRetry("BUSY")
		next, err := ParseItem(again)
		if err != nil {
			t.Fatalf("ParseItem(WithRetry(%s)) = %v; re-encoded entry %s", testenv.FuzzQuote(raw), err, testenv.FuzzQuote(again))
		}
		if !slices.Equal(next.Numbers, it.Numbers) || next.ContactRef != it.ContactRef || !maps.Equal(next.Variables, it.Variables) {
			t.Errorf("WithRetry lost fields:\n before %+v\n after  %+v", it, next)
		}
		if fuzzLoc(next.Location) != fuzzLoc(it.Location) {
			t.Errorf("WithRetry changed the zone from %s to %s", fuzzLoc(it.Location), fuzzLoc(next.Location))
		}
		want := maps.Clone(it.RetryCount)
		if want == nil {
			want = map[string]int{}
		}
		want["BUSY"]++
		if next.Attempt != it.Attempt+1 || !maps.Equal(next.RetryCount, want) {
			t.Errorf("after WithRetry: Attempt %d, RetryCount %v; want %d, %v", next.Attempt, next.RetryCount, it.Attempt+1, want)
		}
	})
}

func fuzzLoc(l *time.Location) string {
	if l == nil {
		return "<nil>"
	}
	return l.String()
}

const (
	fuzzTmplKey = "cti_queue_dialer_task@template"
	fuzzHostKey = "cti_queue_dialer_task@node1"
)

// FuzzParseTask decodes and merges task configs: never a panic, errors
// naming the hash and the field, and an accepted task that is consistent
// (limits in range, sorted week days, ranges that make sense) with
// variables within issue 9's limits.
func FuzzParseTask(f *testing.F) {
	base := func(extra string) string {
		return `{"params": {"line_group": ["g1"], "limit": 1, "number_queue": "q1", "destination_extension": "8888"` + extra + `}}`
	}
	pairs := [][2]string{
		{seedTask, ""},
		{"", seedTask},
		{minimal, ""},
		{`{"params": {"enable": "false", "line_group": ["g1", "g2"], "limit": "20", "global_limit": 50, "cps": "2.5",
		"timezone": "America/New_York", "start_time": "2024-03-01T09:00:00", "stop_time": "2024-04-01 18:00:05",
		"work_week": [0, "6", 7, 6], "number_queue": "{q1}", "destination_extension": "100",
		"retry": {"BUSY": {"attempts": 2, "delay_s": 300}, "no_answer": {"attempts": "1", "delay_s": 0.5}, "FAILED": {"attempts": 0}},
		"redial_interrupted": true, "some_future_field": {"x": 1}},
		"variables": {"n": 5, "b": true, "s": "x", "gone": null}, "extra": [1, 2]}`, ""},
		{`{"params": {"enable": true, "line_group": ["g1"], "limit": 10, "number_queue": "q1", "destination_extension": "8888",
		"work_hour": [{"begin": "8:00", "end": "18:00"}], "cps": 5},
		"variables": {"origination_caller_id_number": "100", "absolute_codec_string": "PCMA", "from_template": "t"}}`,
			`{"params": {"limit": "3", "line_group": "g2", "work_time": [{"begin": "9:00", "end": "10:00"}], "cps": null},
		"variables": {"origination_caller_id_number": "200", "from_host": "h"}}`},
		{base(`, "start_time": "2024-01-01 08:00"`), `{"params": {"timezone": "Asia/Tokyo"}}`},
		{base(`, "work_hour": [{"begin": "22:00", "end": "06:00"}, {"begin": "0:00", "end": "24:00"}]`), ""},
		{base(`, "holiday": [{"begin": "2020-10-01", "end": "2020-10-08"}], "start_time": ""`), ""},
		{base(`, "start_time": "2020-01-02T00:05:00Z"`), ""},
		// Errors of the unit tests.
		{base(`, "limit": "ten"`), ""},
		{base(""), `{"params": {"limit": "ten"}}`},
		{base(`, "limit": 1.5`), ""},
		{base(`, "line_group": ["g1", ""]`), ""},
		{base(`, "timezone": "Mars/Olympus"`), ""},
		{base(`, "start_time": "2020-1-22 12:00", "stop_time": "2020-1-20 12:00"`), ""},
		{base(`, "work_hour": [{"begin": "8:00", "end": "08:00"}]`), ""},
		{base(`, "work_week": [1, 8]`), ""},
		{base(`, "holiday": [{"begin": "2020-1-21 12:00", "end": "2020-1-20 12:00"}]`), ""},
		{base(`, "retry": {"ANSWERED": {"attempts": 1}}`), ""},
		{base(`, "retry": {"BUSY": {"attempts": 1}, "busy": {"attempts": 2}}`), ""},
		{base(""), `{"params": 5}`},
		{`{"params": `, ""},
		{`null`, ""},
		{"", ""},
		// Hostile: huge and odd numbers, CR/LF/NUL in variables, invalid
		// UTF-8, deep nesting, nulls, numbers as strings.
		{base(`, "limit": 1e400, "cps": "NaN"`), ""},
		{base(`, "limit": "1e9", "global_limit": "1000000000", "cps": 1e9`), ""},
		{base(`, "limit": 100000000000000000000000000000000000000`), ""},
		{base(`, "cps": "Inf"`), ""},
		{base(`, "retry": {"BUSY": {"attempts": 1, "delay_s": 1e300}}`), ""},
		{base(`, "start_time": "99999-1-1 8:00"`), ""},
		{base(`, "start_time": "0000-01-01T00:00:00+23:59", "stop_time": "9999-12-31T23:59:59-23:59"`), ""},
		{base(`, "work_hour": [{"begin": "+8:00", "end": "-9:00"}]`), ""},
		{base(`, "timezone": "../../../../etc/localtime"`), ""},
		{`{"params": {"line_group": ["g1"], "limit": 1, "number_queue": "q1", "destination_extension": "8888"},
			"variables": {"sip_h_X-Evil": "a\r\nInjected: 1", "origination_caller_id_number": "1\n2"}}`, ""},
		{base(""), `{"variables": {"bad\u0000name": "x"}}`},
		{base(""), `{"variables": {"big": "` + strings.Repeat("v", 5000) + `"}}`},
		{base(`, "destination_extension": "88\r\n88", "number_queue": "q\u0000"`), ""},
		{"\xff" + base(""), "{\"params\": {\"line_group\": \"g\xff\"}}"},
		{base(`, "x": ` + strings.Repeat("[", 300) + strings.Repeat("]", 300)), ""},
		{`{"params": null, "variables": null}`, `{"params": {"limit": null}}`},
		{base(`, "work_week": "all", "holiday": {}`), ""},
	}
	for _, p := range pairs {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, tmpl, host string) {
		var tk *Task
		var err error
		testenv.FuzzRun(t, "ParseTask", func() { tk, err = ParseTask(fuzzHostKey, fuzzTmplKey, "sales", tmpl, host, time.UTC) })
		if err != nil {
			msg := err.Error()
			rest, ok := "", false
			for _, key := range []string{fuzzTmplKey, fuzzHostKey} {
				if r, found := strings.CutPrefix(msg, `dialer: task "sales" in `+key+": "); found {
					rest, ok = r, true
				}
			}
			if !ok {
				if strings.TrimSpace(tmpl) == "" && strings.TrimSpace(host) == "" && strings.HasPrefix(msg, `dialer: task "sales": in neither`) {
					return
				}
				t.Fatalf("ParseTask: error %s does not name the task and its hash", testenv.FuzzQuote(msg))
			}
			if rest == "" {
				t.Fatalf("ParseTask: error %s says nothing after the hash", testenv.FuzzQuote(msg))
			}
			objects := true
			for _, v := range []string{tmpl, host} {
				if strings.TrimSpace(v) != "" && !testenv.FuzzJSONObject(v) {
					objects = false
				}
			}
			if objects && !testenv.FuzzNamesField(rest, "params", "variables") {
				t.Errorf("ParseTask: error %s names no field of the JSON objects", testenv.FuzzQuote(msg))
			}
			return
		}
		what := fmt.Sprintf("ParseTask(%s, %s)", testenv.FuzzQuote(tmpl), testenv.FuzzQuote(host))
		testenv.FuzzVarsSafe(t, what, tk.Variables)
		if tk.Name != "sales" || tk.Location == nil {
			t.Errorf("%s: Name %q, Location %v", what, tk.Name, tk.Location)
		}
		if len(tk.LineGroups) == 0 || slices.Contains(tk.LineGroups, "") {
			t.Errorf("%s: LineGroups %q", what, tk.LineGroups)
		}
		if tk.Limit < 0 || tk.Limit > 1e9 || tk.GlobalLimit < 0 || tk.GlobalLimit > 1e9 || tk.CPS < 0 || tk.CPS > 1e9 || tk.CPS != tk.CPS {
			t.Errorf("%s: Limit %d, GlobalLimit %d, CPS %v out of range", what, tk.Limit, tk.GlobalLimit, tk.CPS)
		}
		if strings.TrimSpace(tk.Queue) == "" || tk.Destination.Extension == "" || tk.Destination.Dialplan == "" || tk.Destination.Context == "" {
			t.Errorf("%s: Queue %q, Destination %+v", what, tk.Queue, tk.Destination)
		}
		if tk.Start != nil && tk.Stop != nil && !tk.Stop.After(*tk.Start) {
			t.Errorf("%s: Stop %v not after Start %v", what, tk.Stop, tk.Start)
		}
		for _, r := range tk.WorkHours {
			if r.Begin < 0 || r.Begin >= 24*time.Hour || r.End <= 0 || r.End > 24*time.Hour || r.Begin == r.End {
				t.Errorf("%s: work hour %v", what, r)
			}
		}
		if !slices.IsSorted(tk.WorkWeek) || len(slices.Compact(slices.Clone(tk.WorkWeek))) != len(tk.WorkWeek) {
			t.Errorf("%s: WorkWeek %v not sorted and unique", what, tk.WorkWeek)
		}
		for _, d := range tk.WorkWeek {
			if d < time.Sunday || d > time.Saturday {
				t.Errorf("%s: week day %d", what, d)
			}
		}
		for _, h := range tk.Holidays {
			if !h.End.After(h.Begin) {
				t.Errorf("%s: holiday %v", what, h)
			}
		}
		for d, r := range tk.Retry {
			if !slices.Contains(RetryDispositions, d) || r.Attempts < 0 || r.Delay < 0 {
				t.Errorf("%s: retry %s %+v", what, d, r)
			}
		}
	})
}
