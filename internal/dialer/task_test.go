package dialer

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	tmplKey = "cti_queue_dialer_task@template"
	hostKey = "cti_queue_dialer_task@node1"
)

// seedTask is the task JSON of seed 004 with its placeholder strings
// replaced by real names.
const seedTask = `{
"params": {
"enable": true,
"line_group": ["g1"],
"limit":100,
"start_time": "2020-1-20 12:00",
"stop_time": "2020-1-22 12:00",
"work_hour": [{
"begin": "8:00",
"end": "12:00"
}, {
"begin": "14:00",
"end": "18:00"
}],
"work_week": [1,2,3,4,5],
"holiday": [{
"begin": "2020-1-20 12:00",
"end": "2020-1-21 12:00"
}, {
"begin": "2020-1-21 12:00",
"end": "2020-1-22 8:00"
}],
"number_queue": "q1",
"destination_extension":"8888",
"destination_dialplan":"XML",
"destination_context":"default"

},
"variables": {
"origination_caller_id_number": "15550001111",
"absolute_codec_string": "pcma,pcmu,g729"
}
}`

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestParseTaskSeed(t *testing.T) {
	sh := mustZone(t, "Asia/Shanghai")
	tk, err := ParseTask(hostKey, tmplKey, "sales", seedTask, "", sh)
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, sh)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if tk.Name != "sales" || !tk.Enable || tk.Limit != 100 || tk.Queue != "q1" || tk.GlobalLimit != 0 || tk.CPS != 0 {
		t.Errorf("scalars: %+v", tk)
	}
	if !reflect.DeepEqual(tk.LineGroups, []string{"g1"}) {
		t.Errorf("LineGroups = %q", tk.LineGroups)
	}
	if tk.Destination.Extension != "8888" || tk.Destination.Dialplan != "XML" || tk.Destination.Context != "default" {
		t.Errorf("Destination = %+v", tk.Destination)
	}
	if tk.Location != sh {
		t.Errorf("Location = %v, want the default passed in", tk.Location)
	}
	if tk.Start == nil || !tk.Start.Equal(at("2020-01-20 12:00")) || tk.Stop == nil || !tk.Stop.Equal(at("2020-01-22 12:00")) {
		t.Errorf("Start, Stop = %v, %v", tk.Start, tk.Stop)
	}
	wantHours := []ClockRange{{8 * time.Hour, 12 * time.Hour}, {14 * time.Hour, 18 * time.Hour}}
	if !reflect.DeepEqual(tk.WorkHours, wantHours) {
		t.Errorf("WorkHours = %v", tk.WorkHours)
	}
	if !reflect.DeepEqual(tk.WorkWeek, []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}) {
		t.Errorf("WorkWeek = %v", tk.WorkWeek)
	}
	wantHol := []TimeRange{{at("2020-01-20 12:00"), at("2020-01-21 12:00")}, {at("2020-01-21 12:00"), at("2020-01-22 08:00")}}
	if len(tk.Holidays) != 2 {
		t.Fatalf("Holidays = %v", tk.Holidays)
	}
	for i, h := range tk.Holidays {
		if !h.Begin.Equal(wantHol[i].Begin) || !h.End.Equal(wantHol[i].End) {
			t.Errorf("Holidays[%d] = %v, want %v", i, h, wantHol[i])
		}
	}
	wantVars := map[string]string{"origination_caller_id_number": "15550001111", "absolute_codec_string": "pcma,pcmu,g729"}
	if !reflect.DeepEqual(tk.Variables, wantVars) {
		t.Errorf("Variables = %v", tk.Variables)
	}
	if tk.Retry != nil || tk.RedialInterrupted || len(tk.Warnings) != 0 {
		t.Errorf("Retry %v, RedialInterrupted %v, Warnings %q", tk.Retry, tk.RedialInterrupted, tk.Warnings)
	}

	// Host-only: the same value in the @host hash alone runs too.
	if _, err := ParseTask(hostKey, tmplKey, "sales", "", seedTask, sh); err != nil {
		t.Errorf("host-only task: %v", err)
	}
}

const minimal = `{"params": {"line_group": "g1", "limit": 5, "number_queue": "q1", "destination_extension": 8888}}`

func TestParseTaskDefaultsAndAdditions(t *testing.T) {
	tk, err := ParseTask(hostKey, tmplKey, "t", minimal, "", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if !tk.Enable || tk.Limit != 5 || !reflect.DeepEqual(tk.LineGroups, []string{"g1"}) || tk.Destination.Extension != "8888" ||
		tk.Destination.Dialplan != "XML" || tk.Destination.Context != "default" || tk.Start != nil || tk.Stop != nil ||
		tk.WorkHours != nil || tk.WorkWeek != nil || tk.Holidays != nil || tk.Variables != nil {
		t.Errorf("defaults: %+v", tk)
	}

	full := `{"params": {"enable": "false", "line_group": ["g1", "g2"], "limit": "20", "global_limit": 50, "cps": "2.5",
		"timezone": "America/New_York", "start_time": "2024-03-01T09:00:00", "stop_time": "2024-04-01 18:00:05",
		"work_week": [0, "6", 7, 6], "number_queue": "{q1}", "destination_extension": "100",
		"retry": {"BUSY": {"attempts": 2, "delay_s": 300}, "no_answer": {"attempts": "1", "delay_s": 0.5}, "FAILED": {"attempts": 0}},
		"redial_interrupted": true, "some_future_field": {"x": 1}},
		"variables": {"n": 5, "b": true, "s": "x", "gone": null}, "extra": [1, 2]}`
	tk, err = ParseTask(hostKey, tmplKey, "t", full, "", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	ny := mustZone(t, "America/New_York")
	if tk.Enable || tk.Limit != 20 || tk.GlobalLimit != 50 || tk.CPS != 2.5 || !tk.RedialInterrupted || tk.Queue != "{q1}" {
		t.Errorf("scalars: %+v", tk)
	}
	if tk.Location.String() != "America/New_York" {
		t.Errorf("Location = %v", tk.Location)
	}
	if want := time.Date(2024, 3, 1, 9, 0, 0, 0, ny); !tk.Start.Equal(want) {
		t.Errorf("Start = %v, want %v", tk.Start, want)
	}
	if want := time.Date(2024, 4, 1, 18, 0, 5, 0, ny); !tk.Stop.Equal(want) {
		t.Errorf("Stop = %v, want %v", tk.Stop, want)
	}
	if !reflect.DeepEqual(tk.WorkWeek, []time.Weekday{time.Sunday, time.Saturday}) {
		t.Errorf("WorkWeek = %v (7 is Sunday; duplicates dropped)", tk.WorkWeek)
	}
	wantRetry := map[string]RetryRule{"BUSY": {2, 300 * time.Second}, "NO_ANSWER": {1, 500 * time.Millisecond}, "FAILED": {0, 0}}
	if !reflect.DeepEqual(tk.Retry, wantRetry) {
		t.Errorf("Retry = %v", tk.Retry)
	}
	if want := map[string]string{"n": "5", "b": "true", "s": "x"}; !reflect.DeepEqual(tk.Variables, want) {
		t.Errorf("Variables = %v", tk.Variables)
	}
}

func TestParseTaskDateTimeForms(t *testing.T) {
	sh := mustZone(t, "Asia/Shanghai")
	want := time.Date(2020, 1, 2, 8, 5, 0, 0, sh)
	for _, s := range []string{"2020-1-2 8:05", "2020-01-02 08:05", "2020-01-02 08:05:00", "2020-01-02T08:05:00", "2020-01-02T08:05", " 2020-1-2 8:05 ", "2020-01-02T00:05:00Z"} {
		tk, err := ParseTask(hostKey, tmplKey, "t", `{"params": {"line_group": "g1", "limit": 1, "number_queue": "q", "destination_extension": "1",
			"start_time": "`+s+`"}}`, "", sh)
		if err != nil {
			t.Errorf("%q: %v", s, err)
			continue
		}
		if !tk.Start.Equal(want) {
			t.Errorf("%q: Start = %v, want %v", s, tk.Start, want)
		}
	}
	// A date alone is its midnight; "" means no start.
	tk, err := ParseTask(hostKey, tmplKey, "t", `{"params": {"line_group": "g1", "limit": 1, "number_queue": "q", "destination_extension": "1",
		"start_time": "", "holiday": [{"begin": "2020-10-01", "end": "2020-10-08"}]}}`, "", sh)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Start != nil || !tk.Holidays[0].Begin.Equal(time.Date(2020, 10, 1, 0, 0, 0, 0, sh)) || !tk.Holidays[0].End.Equal(time.Date(2020, 10, 8, 0, 0, 0, 0, sh)) {
		t.Errorf("Start %v, Holidays %v", tk.Start, tk.Holidays)
	}
}

func TestParseTaskWorkHours(t *testing.T) {
	cases := []struct {
		json string
		want []ClockRange
		warn string
	}{
		{`"work_hour": [{"begin": "08:00", "end": "8:00:30"}]`, []ClockRange{{8 * time.Hour, 8*time.Hour + 30*time.Second}}, ""},
		{`"work_hour": [{"begin": "22:00", "end": "06:00"}, {"begin": "0:00", "end": "24:00"}]`, []ClockRange{{22 * time.Hour, 6 * time.Hour}, {0, 24 * time.Hour}}, ""},
		// The seed's field list calls it work_time.
		{`"work_time": [{"begin": "9:00", "end": "17:00"}]`, []ClockRange{{9 * time.Hour, 17 * time.Hour}}, ""},
		{`"work_time": [{"begin": "9:00", "end": "17:00"}], "work_hour": [{"begin": "10:00", "end": "11:00"}]`, []ClockRange{{10 * time.Hour, 11 * time.Hour}},
			tmplKey + ": params.work_time ignored: params.work_hour is also set"},
		{`"work_hour": []`, nil, ""},
	}
	for _, c := range cases {
		tk, err := ParseTask(hostKey, tmplKey, "t", `{"params": {"line_group": "g1", "limit": 1, "number_queue": "q", "destination_extension": "1", `+c.json+`}}`, "", time.UTC)
		if err != nil {
			t.Errorf("%s: %v", c.json, err)
			continue
		}
		if !reflect.DeepEqual(tk.WorkHours, c.want) {
			t.Errorf("%s: WorkHours = %v, want %v", c.json, tk.WorkHours, c.want)
		}
		if got := strings.Join(tk.Warnings, "; "); got != c.warn {
			t.Errorf("%s: Warnings = %q, want %q", c.json, got, c.warn)
		}
	}
}

func TestParseTaskMerge(t *testing.T) {
	tmpl := `{"params": {"enable": true, "line_group": ["g1"], "limit": 10, "number_queue": "q1", "destination_extension": "8888",
		"work_hour": [{"begin": "8:00", "end": "18:00"}], "cps": 5},
		"variables": {"origination_caller_id_number": "100", "absolute_codec_string": "PCMA", "from_template": "t"}}`
	host := `{"params": {"limit": "3", "line_group": "g2", "work_time": [{"begin": "9:00", "end": "10:00"}], "cps": null},
		"variables": {"origination_caller_id_number": "200", "from_host": "h"}}`
	tk, err := ParseTask(hostKey, tmplKey, "sales", tmpl, host, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	// Params: the host overrides key by key; work_time counts as work_hour;
	// null leaves the template's value.
	if tk.Limit != 3 || !reflect.DeepEqual(tk.LineGroups, []string{"g2"}) || tk.Queue != "q1" || tk.Destination.Extension != "8888" || tk.CPS != 5 {
		t.Errorf("params: %+v", tk)
	}
	if !reflect.DeepEqual(tk.WorkHours, []ClockRange{{9 * time.Hour, 10 * time.Hour}}) {
		t.Errorf("WorkHours = %v, want the host's", tk.WorkHours)
	}
	// Variables: number < @host < @template, so the template wins.
	want := map[string]string{"origination_caller_id_number": "100", "absolute_codec_string": "PCMA", "from_template": "t", "from_host": "h"}
	if !reflect.DeepEqual(tk.Variables, want) {
		t.Errorf("Variables = %v, want %v", tk.Variables, want)
	}
	// A host value may carry only variables.
	tk, err = ParseTask(hostKey, tmplKey, "sales", tmpl, `{"variables": {"x": "1"}}`, time.UTC)
	if err != nil || tk.Limit != 10 || tk.Variables["x"] != "1" {
		t.Errorf("variables-only host: %v %+v", err, tk)
	}
	// The host's timezone decides how the template's times are read.
	tk, err = ParseTask(hostKey, tmplKey, "sales", strings.Replace(tmpl, `"cps": 5`, `"start_time": "2024-01-01 08:00"`, 1),
		`{"params": {"timezone": "Asia/Tokyo"}}`, time.UTC)
	if err != nil || !tk.Start.Equal(time.Date(2023, 12, 31, 23, 0, 0, 0, time.UTC)) {
		t.Errorf("start in host zone: %v %v", err, tk.Start)
	}
}

func TestParseTaskErrors(t *testing.T) {
	base := func(extra string) string {
		return `{"params": {"line_group": ["g1"], "limit": 1, "number_queue": "q1", "destination_extension": "8888"` + extra + `}}`
	}
	prefix := `dialer: task "sales" in ` + tmplKey + `: `
	cases := []struct {
		tmpl, host string
		want       string
	}{
		{base(`, "limit": "ten"`), "", prefix + `params.limit: want number, got "ten"`},
		{base(""), `{"params": {"limit": "ten"}}`, `dialer: task "sales" in ` + hostKey + `: params.limit: want number, got "ten"`},
		{base(`, "limit": -1`), "", prefix + `params.limit: want number >= 0, got -1`},
		{base(`, "limit": 1.5`), "", prefix + `params.limit: want whole number, got 1.5`},
		{`{"params": {"line_group": ["g1"], "number_queue": "q1", "destination_extension": "8888"}}`, "", prefix + `params.limit: missing`},
		{`{"params": {"limit": 1, "line_group": ["g1"], "destination_extension": "8888"}}`, "", prefix + `params.number_queue: missing`},
		{`{"params": {"limit": 1, "line_group": ["g1"], "number_queue": " ", "destination_extension": "8888"}}`, "", prefix + `params.number_queue: missing`},
		{`{"params": {"limit": 1, "number_queue": "q1", "destination_extension": "8888"}}`, "", prefix + `params.line_group: missing`},
		{base(`, "line_group": []`), "", prefix + `params.line_group: missing`},
		{base(`, "line_group": ["g1", ""]`), "", prefix + `params.line_group[1]: empty`},
		{base(`, "line_group": [1]`), "", prefix + `params.line_group[0]: want string, got 1`},
		{`{"params": {"limit": 1, "line_group": ["g1"], "number_queue": "q1"}}`, "", prefix + `params.destination_extension: missing`},
		{base(`, "timezone": "Mars/Olympus"`), "", prefix + `params.timezone: unknown time zone "Mars/Olympus"`},
		{base(`, "start_time": "2020/1/20 12:00"`), "", prefix + `params.start_time: want date-time like "2020-01-20 12:00" or "2020-01-20 12:00:05", got "2020/1/20 12:00"`},
		{base(`, "stop_time": 12`), "", prefix + `params.stop_time: want date-time like "2020-01-20 12:00" or "2020-01-20 12:00:05", got 12`},
		{base(`, "start_time": "2020-1-22 12:00", "stop_time": "2020-1-20 12:00"`), "", prefix + `params.stop_time: 2020-01-20 12:00:00 is not after params.start_time 2020-01-22 12:00:00`},
		{base(`, "work_hour": [{"begin": "8:00", "end": "25:00"}]`), "", prefix + `params.work_hour[0].end: want time of day like "18:00" or "24:00", got "25:00"`},
		{base(`, "work_hour": [{"begin": "24:00", "end": "8:00"}]`), "", prefix + `params.work_hour[0].begin: want time of day like "8:00" or "08:00:30", got "24:00"`},
		{base(`, "work_hour": [{"begin": "8:00", "end": "9:00"}, {"begin": "8", "end": "9:00"}]`), "", prefix + `params.work_hour[1].begin: want time of day like "8:00" or "08:00:30", got "8"`},
		{base(`, "work_hour": [{"begin": "8:60", "end": "9:00"}]`), "", prefix + `params.work_hour[0].begin: want time of day like "8:00" or "08:00:30", got "8:60"`},
		{base(`, "work_hour": [{"begin": "8:00"}]`), "", prefix + `params.work_hour[0].end: missing`},
		{base(`, "work_hour": [{"begin": "8:00", "end": "08:00"}]`), "", prefix + `params.work_hour[0]: begin "8:00" equals end "08:00" (use 0:00-24:00 for the whole day)`},
		{base(`, "work_time": {"begin": "8:00", "end": "9:00"}`), "", prefix + `params.work_hour: want array of {"begin", "end"}, got {"begin": "8:00", "end": "9:00"}`},
		{base(`, "work_week": [1, 8]`), "", prefix + `params.work_week[1]: want week day 0-6 (0 = Sunday), got 8`},
		{base(`, "work_week": [-1]`), "", prefix + `params.work_week[0]: want week day 0-6 (0 = Sunday), got -1`},
		{base(`, "work_week": ["mon"]`), "", prefix + `params.work_week[0]: want week day 0-6 (0 = Sunday), got "mon"`},
		{base(`, "work_week": "1-5"`), "", prefix + `params.work_week: want array of week days 0-6 (0 = Sunday), got "1-5"`},
		{base(`, "holiday": [{"begin": "2020-1-21 12:00", "end": "2020-1-20 12:00"}]`), "", prefix + `params.holiday[0].end: "2020-1-20 12:00" is not after begin "2020-1-21 12:00"`},
		{base(`, "holiday": [{"begin": "tomorrow", "end": "2020-1-20 12:00"}]`), "", prefix + `params.holiday[0].begin: want date-time like "2020-01-20 12:00" or "2020-01-20 12:00:05", got "tomorrow"`},
		{base(`, "retry": {"BUSY": {"attempts": -1, "delay_s": 300}}`), "", prefix + `params.retry.BUSY.attempts: want number >= 0, got -1`},
		{base(`, "retry": {"BUSY": {"delay_s": 300}}`), "", prefix + `params.retry.BUSY.attempts: missing`},
		{base(`, "retry": {"BUSY": {"attempts": 1, "delay_s": "soon"}}`), "", prefix + `params.retry.BUSY.delay_s: want number, got "soon"`},
		{base(`, "retry": {"ANSWERED": {"attempts": 1}}`), "", prefix + `params.retry.ANSWERED: not a retryable disposition (want one of BUSY, NO_ANSWER, FAILED, CONGESTION, CANCELLED, INVALID_NUMBER, NO_LINE)`},
		{base(`, "retry": [1]`), "", prefix + `params.retry: want object, got [1]`},
		{base(`, "cps": -1`), "", prefix + `params.cps: want number between 0 and 1000000000, got -1`},
		{base(`, "global_limit": "many"`), "", prefix + `params.global_limit: want number, got "many"`},
		{base(`, "enable": "yes please"`), "", prefix + `params.enable: want bool, got "yes please"`},
		{base(`, "redial_interrupted": 2`), "", prefix + `params.redial_interrupted: want bool, got 2`},
		{base(`, "destination_context": 5`), "", prefix + `params.destination_context: want string, got 5`},
		{base(""), `{"params": 5}`, `dialer: task "sales" in ` + hostKey + `: params: want object, got 5`},
		{`{"params": {}, "variables": {"v": {"x": 1}}}`, "", prefix + `variables.v: want string, number or bool, got {"x": 1}`},
		// Issue 9: header injection and unbounded lists.
		{`{"params": {}, "variables": {"sip_h_X-Evil": "a\r\nVia: x"}}`, "", prefix + `variables.sip_h_X-Evil: contains CR/LF`},
		{base(""), `{"variables": {"origination_caller_id_name": "a\nb"}}`, `dialer: task "sales" in ` + hostKey + `: variables.origination_caller_id_name: contains CR/LF`},
		{base(`, "line_group": [` + strings.TrimSuffix(strings.Repeat(`"g",`, 33), ",") + `]`), "", prefix + `params.line_group: 33 groups, at most 32`},
		{base(`, "destination_extension": "../../etc"`), "", prefix + `params.destination_extension: "../../etc": may not start with '.'`},
		{`{"params": `, "", prefix + `invalid JSON: unexpected end of JSON input`},
		{`null`, "", prefix + `want a JSON object, got null`},
		{"", "", `dialer: task "sales": in neither ` + tmplKey + ` nor ` + hostKey},
	}
	for _, c := range cases {
		_, err := ParseTask(hostKey, tmplKey, "sales", c.tmpl, c.host, time.UTC)
		if err == nil {
			t.Errorf("%s | %s: no error, want %s", c.tmpl, c.host, c.want)
			continue
		}
		if err.Error() != c.want {
			t.Errorf("%s | %s:\n got %s\nwant %s", c.tmpl, c.host, err, c.want)
		}
	}
}
