package schedule

// Fuzz targets for the scheduled dialer's decoders: members of
// cti_schedule_dialer_number@<domain> (anyone who can ZADD writes them),
// configs of cti_schedule_dialer_config@<domain>, and the cron
// `schedules` of system_config ananke. `make test` runs them on their seed
// corpus; scripts/fuzz.sh (make chaos) fuzzes them.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
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
	// fuzzMaxReason bounds an error about outsider input: it becomes a
	// reason stored in Redis, a 400 body or a log line ("a short reason").
	fuzzMaxReason = 1 << 10
)

// FuzzParseMember decodes scheduled members: never a panic, short errors
// naming the field (the reason the member is moved aside with), accepted
// numbers and variables within issue 9's limits, and an expiry that keeps
// its sign.
func FuzzParseMember(f *testing.F) {
	for _, s := range []string{
		// The seed's member and the unit tests'.
		`{"params": {"number": "13800000000", "expires": 0, "config": "remind"}, "variables": {"origination_caller_id_number": "15550001111", "absolute_codec_string": "pcma,pcmu,g729"}}`,
		`{"params":{"number":"15551234567","config":"remind"},"variables":{"origination_caller_id_number":13800000001}}`,
		`{"params":{"number":["1001","1002"],"config":"remind","expires":"1700000000","contact_ref":"c-1"}}`,
		`{"params":{"number":13800000000,"config":"remind","expires":1700000000.5}}`,
		// Errors.
		`{"params":{"number":"1001"}}`, `{"params":{"config":"remind"}}`, `{"variables":{}}`, `{"params":"x"}`,
		`{"params":{"number":1.5,"config":"c"}}`, `{"params":{"number":[],"config":"c"}}`, `{"params":{"number":"1001","config":"c","expires":"soon"}}`,
		`{"params":{"number":"1001","config":"c"},"variables":{"v":[1]}}`, `{"params":{"number":"1001","config":5}}`,
		`not json`, `null`, `[]`, `{"params":{"number":"1001","config":"c"}} trailing`,
		// Hostile: huge numbers, CR/LF/NUL, huge expiry, invalid UTF-8,
		// deep nesting, nulls, numbers as strings.
		`{"params":{"number":"` + strings.Repeat("1", 3000) + `","config":"c"}}`,
		`{"params":{"number":` + strings.Repeat("1", 3000) + `,"config":"c"}}`,
		`{"params":{"number":"1001\r\nX-Evil: 1","config":"c"}}`,
		`{"params":{"number":"../../etc","config":"c"}}`,
		`{"params":{"number":"1001","config":"c\u0000"}}`,
		`{"params":{"number":"1001","config":"c","contact_ref":"r\r\n"}}`,
		`{"params":{"number":"1001","config":"c"},"variables":{"sip_h_X-Evil":"a\r\nInjected: 1"}}`,
		`{"params":{"number":"1001","config":"c"},"variables":{"big":"` + strings.Repeat("v", 5000) + `"}}`,
		`{"params":{"number":"1001","config":"c"},"variables":{"` + strings.Repeat("k", 300) + `":"x"}}`,
		`{"params":{"number":"1001","config":"c","expires":4102444800}}`,
		`{"params":{"number":"1001","config":"c","expires":-1}}`,
		"{\"params\":{\"number\":\"10\xff01\",\"config\":\"c\"}}",
		`{"params":{"number":"1001","config":"c","x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}}`,
		`{"params":{"number":null,"config":null,"expires":null},"variables":null}`,
		// Found by fuzzing: expiries past int64 read as the past.
		`{"params":{"number":"1001","config":"c","expires":1e300}}`,
		`{"params":{"number":"1001","config":"c","expires":"9223372036854775808"}}`,
		`{"params":{"number":"1001","config":"c","expires":"NaN"}}`,
		`{"pArAms":{"number":"0","config":"0","eXpirEs":1}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var m member
		var err error
		testenv.FuzzRun(t, "parseMember", func() { m, err = parseMember(raw) })
		if err != nil {
			testenv.FuzzShortErr(t, fmt.Sprintf("parseMember(%s)", testenv.FuzzQuote(raw)), err)
			msg := err.Error()
			// A JSON object whose params is not an object fails in
			// encoding/json, whose message names it ("Go struct field
			// .params").
			if testenv.FuzzJSONObject(raw) && !testenv.FuzzNamesField(msg, "params", "variables") && !strings.Contains(msg, "params") {
				t.Errorf("parseMember(%s): error %s names no field of the JSON object", testenv.FuzzQuote(raw), testenv.FuzzQuote(msg))
			}
			return
		}
		what := fmt.Sprintf("parseMember(%s)", testenv.FuzzQuote(raw))
		if len(m.Numbers) == 0 {
			t.Fatalf("%s: accepted without a number", what)
		}
		for i, n := range m.Numbers {
			testenv.FuzzNumberSafe(t, fmt.Sprintf("%s number[%d]", what, i), n)
		}
		testenv.FuzzVarsSafe(t, what, m.Variables)
		if m.Config == "" || strings.ContainsAny(m.Config, "\r\n\x00") || strings.ContainsAny(m.Contact, "\r\n\x00") {
			t.Errorf("%s: Config %s, Contact %s", what, testenv.FuzzQuote(m.Config), testenv.FuzzQuote(m.Contact))
		}
		// An expiry in the future must not read as one in the past (a
		// member would then be dropped as EXPIRED instead of dialed).
		// Keys inside params are matched exactly, as the decoder reads
		// them ("eXpirEs" is an extra field, not the expiry).
		var doc struct {
			Params map[string]json.RawMessage `json:"params"`
		}
		if json.Unmarshal([]byte(raw), &doc) == nil {
			expires := doc.Params["expires"]
			var f float64
			var s string
			if json.Unmarshal(expires, &s) == nil {
				f, _ = strconv.ParseFloat(s, 64)
			} else {
				json.Unmarshal(expires, &f)
			}
			if f >= 1 && m.Expires < 1 {
				t.Errorf("%s: expires %s decoded as %d", what, testenv.FuzzQuote(string(expires)), m.Expires)
			}
		}
		// An accepted expiry is none (0) or a unix time up to year 9999.
		if m.Expires < 0 || m.Expires > maxExpires {
			t.Errorf("%s: Expires %d out of range", what, m.Expires)
		}
	})
}

// FuzzParseConfig decodes schedule configs: never a panic, errors naming
// the config, its hash and the field, and an accepted config with line
// groups, a valid extension and safe variables.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"params": {"line_group": ["g1"], "destination_extension":"8888", "destination_dialplan":"XML", "destination_context":"default"}, "variables": {"origination_caller_id_number": "15550001111", "absolute_codec_string": "pcma,pcmu,g729"}}`,
		`{"params":{"line_group":["g1"],"destination_extension":8888},"variables":{"origination_caller_id_number":13800000000,"ignore_early_media":true}}`,
		`{"params":{"line_group":"g1","destination_extension":"1"}}`,
		`{"params":{"line_group":["g1"],"destination_extension":"1"},"variables":{"v":[1]}}`,
		`{"params":{"line_group":[],"destination_extension":"1"}}`,
		`{"params":{"line_group":[""],"destination_extension":"1"}}`,
		`{"params":{"line_group":["g1"]}}`,
		`{"params":{"line_group":["g1"],"destination_extension":"1","destination_context":5}}`,
		`{"params":{"line_group":["g1"],"destination_extension":{}}}`,
		`not json`, `null`, `{}`, `[]`,
		`{"params":{"line_group":["g\r\n"],"destination_extension":"88\u000088"}}`,
		`{"params":{"line_group":["g1"],"destination_extension":"1"},"variables":{"sip_h_X":"a\r\nb","big":"` + strings.Repeat("v", 5000) + `"}}`,
		`{"params":{"line_group":["g1"],"destination_extension":"` + strings.Repeat("8", 3000) + `"}}`,
		`{"params":{"line_group":["g1"],"destination_extension":"1","destination_dialplan":null,"destination_context":null},"variables":null}`,
	} {
		f.Add(s)
	}
	const prefix = `schedule: config "remind" in cti_schedule_dialer_config@default: `
	f.Fuzz(func(t *testing.T, raw string) {
		var c scheduleConfig
		testenv.FuzzRun(t, "parseConfig", func() { c = parseConfig("cti_schedule_dialer_config@default", "remind", raw) })
		if c.Err != nil {
			rest, ok := strings.CutPrefix(c.Err.Error(), prefix)
			if !ok || rest == "" {
				t.Fatalf("parseConfig(%s): error %s does not name the config and its hash", testenv.FuzzQuote(raw), testenv.FuzzQuote(c.Err.Error()))
			}
			if testenv.FuzzJSONObject(raw) && !testenv.FuzzNamesField(rest, "params", "variables") && !strings.Contains(rest, "params") {
				t.Errorf("parseConfig(%s): error %s names no field", testenv.FuzzQuote(raw), testenv.FuzzQuote(c.Err.Error()))
			}
			return
		}
		what := fmt.Sprintf("parseConfig(%s)", testenv.FuzzQuote(raw))
		if err := validate.LineGroups("params.line_group", c.LineGroups); err != nil {
			t.Errorf("%s: accepted line groups %q: %v", what, c.LineGroups, err)
		}
		testenv.FuzzNumberSafe(t, what+" destination_extension", c.Destination.Extension)
		testenv.FuzzVarsSafe(t, what, c.Variables)
	})
}

// FuzzParseSchedules decodes the cron `schedules` array: never a panic,
// every error naming its entry and field, and accepted entries whose next
// tick is later than the time asked about and satisfies the entry.
func FuzzParseSchedules(f *testing.F) {
	act := `"action":{"type":"check_voicemail","account_id":"a1","vmbox_id":"v1"}`
	for _, s := range []string{
		seedExample,
		`[{"type":"every","minutes":[23,24],"hours":[9],` + act + `}]`,
		`[{"type":"every","month_days":[29],"monthes":[2],"weekdays":[1],` + act + `}]`,
		`[{"type":"every","month_days":[31],"months":[4,6],` + act + `}]`,
		`[{"type":"every","minutes":"all","hours":"ALL","weekdays":7,` + act + `}]`,
		`[{"type":"once","second":59,"minute":59,"hour":23,"day":31,"month":12,"year":9999,` + act + `}]`,
		`[{"type":"once","day":29,"month":2,"year":2023,` + act + `}]`,
		`[{"type":"periodic","days":2147483648,"hours":2147483648,` + act + `}]`,
		`[{"type":"periodic","seconds":"60",` + act + `},{"type":"periodic","seconds":60,` + act + `}]`,
		`[{"type":"weekly",` + act + `}]`, `["every"]`, `[{"type":"every","minutes":[],` + act + `}]`,
		`[{"type":"every","hours":["nine"],` + act + `}]`, `[{"type":"periodic","seconds":5,"action":"call"}]`,
		`[{"type":"periodic","seconds":5,"action":{"type":"check_voicemail","account_id":"a\r\n","vmbox_id":"v"}}]`,
		`{"type":"once"}`, `[{"type":`, ``, `null`, `[]`,
		`[{"type":"every","minutes":[1e300, -0, "5", 5.0, 9007199254740993],` + act + `}]`,
		`[{"type":"every",` + act + `,"x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}]`,
	} {
		f.Add(s)
	}
	froms := []time.Time{
		time.Date(2024, 2, 28, 23, 59, 30, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 999, time.UTC),
		time.Date(2099, 12, 31, 23, 59, 0, 0, time.UTC),
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var entries []CronEntry
		var errs []error
		testenv.FuzzRun(t, "ParseSchedules", func() { entries, errs = ParseSchedules(json.RawMessage(raw)) })
		for _, err := range errs {
			if msg := err.Error(); !strings.HasPrefix(msg, "schedules") || !strings.Contains(msg, ": ") {
				t.Errorf("ParseSchedules(%s): error %s names no entry", testenv.FuzzQuote(raw), testenv.FuzzQuote(msg))
			}
		}
		in := func(l []int, v int) bool { return l == nil || slices.Contains(l, v) }
		for _, e := range entries {
			what := fmt.Sprintf("ParseSchedules(%s) entry %d", testenv.FuzzQuote(raw), e.Index)
			if e.ID == "" || e.Action.Type != ActionCheckVoicemail || e.Action.AccountID == "" || e.Action.VmboxID == "" {
				t.Errorf("%s: %+v", what, e)
			}
			for _, id := range []string{e.Action.AccountID, e.Action.VmboxID} {
				if err := validate.Ref("id", id); err != nil {
					t.Errorf("%s: accepted id %s: %v", what, testenv.FuzzQuote(id), err)
				}
			}
			for _, from := range froms {
				var next time.Time
				testenv.FuzzRun(t, "Next", func() { next = e.Next(from) })
				if next.IsZero() {
					continue
				}
				if !next.After(from) {
					t.Errorf("%s: Next(%v) = %v, not after", what, from, next)
				}
				switch e.Type {
				case TypeOnce:
					if !next.Equal(e.At) {
						t.Errorf("%s: Next(%v) = %v, want %v", what, from, next, e.At)
					}
				case TypePeriodic:
					if e.Period <= 0 || next.Unix()%int64(e.Period/time.Second) != 0 || next.Sub(from) > e.Period {
						t.Errorf("%s: Next(%v) = %v with period %v", what, from, next, e.Period)
					}
				case TypeEvery:
					if next.Second() != 0 || !in(e.Minutes, next.Minute()) || !in(e.Hours, next.Hour()) || !in(e.MonthDays, next.Day()) ||
						!in(e.Months, int(next.Month())) || !in(e.Weekdays, int(next.Weekday())) {
						t.Errorf("%s: Next(%v) = %v does not satisfy the entry", what, from, next)
					}
				default:
					t.Errorf("%s: type %q", what, e.Type)
				}
			}
		}
	})
}
