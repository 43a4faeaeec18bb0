package callback

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// doc decodes a JSON document the way a plain json.Unmarshal would (numbers
// as float64).
func doc(t *testing.T, s string) map[string]any {
	t.Helper()
	if s == "" {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad test document %s: %v", s, err)
	}
	return m
}

// docNum decodes with UseNumber, as a store that keeps numbers exact would.
func docNum(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("bad test document %s: %v", s, err)
	}
	return m
}

// vm and vn build documents with callback options at the vmbox path
// (notify.callback) and at the owner/account/system path
// (voicemail.notify.callback).
func vm(opts string) string { return `{"notify":{"callback":{` + opts + `}}}` }
func vn(opts string) string { return `{"voicemail":{"notify":{"callback":{` + opts + `}}}}` }

func resolve(t *testing.T, vmbox, owner, account, system string) Policy {
	t.Helper()
	p, err := Resolve(Docs{Vmbox: doc(t, vmbox), Owner: doc(t, owner), Account: doc(t, account), System: doc(t, system)})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	return p
}

func secs(s ...float64) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, v := range s {
		out[i] = time.Duration(v * float64(time.Second))
	}
	return out
}

func TestDefaults(t *testing.T) {
	p := resolve(t, "", "", "", "")
	want := Policy{
		Number:   "",
		Disabled: false,
		Schedule: secs(300, 300, 300, 300, 300),
		Attempts: 5, Interval: 300 * time.Second, Timeout: 20 * time.Second,
		Sources: map[string]string{"number": "default", "disabled": "default", "schedule": SourceDerived,
			"attempts": "default", "interval_s": "default", "timeout_s": "default"},
	}
	if p.Number != want.Number || p.Disabled != want.Disabled || !slices.Equal(p.Schedule, want.Schedule) ||
		p.Attempts != want.Attempts || p.Interval != want.Interval || p.Timeout != want.Timeout ||
		!maps.Equal(p.Sources, want.Sources) {
		t.Errorf("got %+v\nwant %+v", p, want)
	}
}

// TestNumericPrecedence covers every row of the seed's attempts, interval_s
// and timeout_s lists: each level wins over all the levels below it.
func TestNumericPrecedence(t *testing.T) {
	type row struct {
		vmbox, owner, account, system string
		wantSource                    string
		want                          float64
	}
	for _, key := range []string{"attempts", "interval_s", "timeout_s"} {
		def := map[string]float64{"attempts": 5, "interval_s": 300, "timeout_s": 20}[key]
		opt := func(v string) string { return `"` + key + `":` + v }
		rows := []row{
			{vm(opt("1")), vn(opt("2")), vn(opt("3")), vn(opt("4")), "vmbox", 1},
			{vm(""), vn(opt("2")), vn(opt("3")), vn(opt("4")), "owner", 2},
			{"", "", vn(opt("3")), vn(opt("4")), "account", 3},
			{vm(""), vn(""), vn(""), vn(opt("4")), "system", 4},
			{vm(""), vn(""), vn(""), vn(""), "default", def},
			// The vmbox path is notify.callback, not voicemail.notify.callback.
			{vn(opt("1")), "", "", "", "default", def},
		}
		for i, r := range rows {
			p := resolve(t, r.vmbox, r.owner, r.account, r.system)
			var got float64
			switch key {
			case "attempts":
				got = float64(p.Attempts)
			case "interval_s":
				got = p.Interval.Seconds()
			case "timeout_s":
				got = p.Timeout.Seconds()
			}
			if got != r.want || p.Sources[key] != r.wantSource {
				t.Errorf("%s row %d: got %v from %q, want %v from %q", key, i, got, p.Sources[key], r.want, r.wantSource)
			}
		}
	}
}

func TestSchedulePrecedence(t *testing.T) {
	tests := []struct {
		name                          string
		vmbox, owner, account, system string
		want                          []time.Duration
		wantSource                    string
	}{
		{"vmbox", vm(`"schedule":[1,1,1]`), vn(`"schedule":[2]`), vn(`"schedule":[3]`), "",
			secs(1, 1, 1), "vmbox"},
		{"owner", vm(`"attempts":9`), vn(`"schedule":[2,20]`), vn(`"schedule":[3]`), "",
			secs(2, 20), "owner"},
		{"account", "", "", vn(`"schedule":[0,60.5,"120"]`), "",
			secs(0, 60.5, 120), "account"},
		// The seed lists no schedule in the system config: it is not read.
		{"system schedule ignored", "", "", "", vn(`"schedule":[7]`),
			secs(300, 300, 300, 300, 300), SourceDerived},
		{"derived from mixed levels", vm(`"timeout_s":30`), vn(`"attempts":3`), "", vn(`"interval_s":60`),
			secs(60, 60, 60), SourceDerived},
		{"empty schedule counts as not set", vm(`"schedule":[]`), vn(`"schedule":[5]`), "", "",
			secs(5), "owner"},
		{"attempts 0 plans nothing", vm(`"attempts":0`), "", "", "",
			[]time.Duration{}, SourceDerived},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := resolve(t, tt.vmbox, tt.owner, tt.account, tt.system)
			if !slices.Equal(p.Schedule, tt.want) || p.Sources["schedule"] != tt.wantSource {
				t.Errorf("schedule %v from %q, want %v from %q", p.Schedule, p.Sources["schedule"], tt.want, tt.wantSource)
			}
		})
	}
}

func TestNumberAndDisabled(t *testing.T) {
	tests := []struct {
		name                  string
		vmbox, owner, account string
		number, numberSource  string
		disabled              bool
		disabledSource        string
	}{
		{"vmbox number wins", vm(`"number":"+15550001"`), vn(`"number":"+15550002"`), "",
			"+15550001", "vmbox", false, "default"},
		{"owner number", vm(`"attempts":2`), vn(`"number":" 5550002 "`), "",
			"5550002", "owner", false, "default"},
		{"blank vmbox number falls through", vm(`"number":""`), vn(`"number":"5550002"`), "",
			"5550002", "owner", false, "default"},
		{"number stored as a JSON number", vm(`"number":4915550001`), "", "",
			"4915550001", "vmbox", false, "default"},
		{"no number is not an error", "", "", "",
			"", "default", false, "default"},
		{"account number is not read", "", "", vn(`"number":"5550003"`),
			"", "default", false, "default"},
		{"vmbox disabled", vm(`"disabled":true`), vn(`"disabled":false`), "",
			"", "default", true, "vmbox"},
		{"owner disabled", vm(`"number":"1"`), vn(`"disabled":true`), "",
			"1", "vmbox", true, "owner"},
		// Seed note: owner disabled=true and vmbox disabled=false allows callbacks.
		{"vmbox false overrides owner true", vm(`"disabled":false`), vn(`"disabled":true`), "",
			"", "default", false, "vmbox"},
		{"disabled as string", vm(`"disabled":"TRUE"`), "", "",
			"", "default", true, "vmbox"},
		{"account disabled is not read", "", "", vn(`"disabled":true`),
			"", "default", false, "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := resolve(t, tt.vmbox, tt.owner, tt.account, "")
			if p.Number != tt.number || p.Sources["number"] != tt.numberSource {
				t.Errorf("number %q from %q, want %q from %q", p.Number, p.Sources["number"], tt.number, tt.numberSource)
			}
			if p.Disabled != tt.disabled || p.Sources["disabled"] != tt.disabledSource {
				t.Errorf("disabled %v from %q, want %v from %q", p.Disabled, p.Sources["disabled"], tt.disabled, tt.disabledSource)
			}
		})
	}
}

func TestFlatKeys(t *testing.T) {
	p := resolve(t,
		`{"notify.callback.number":"100","notify.callback.schedule":["1",2]}`,
		`{"voicemail.notify.callback.attempts":"3","voicemail":{"notify.callback.disabled":"false"}}`,
		`{"voicemail":{"notify":{"callback.timeout_s":45}}}`,
		`{"voicemail.notify.callback.interval_s":90}`)
	if p.Number != "100" || !slices.Equal(p.Schedule, secs(1, 2)) || p.Attempts != 3 ||
		p.Disabled || p.Sources["disabled"] != "owner" || p.Timeout != 45*time.Second || p.Interval != 90*time.Second {
		t.Errorf("got %+v", p)
	}

	// Both spellings present: the nested value wins.
	p = resolve(t, `{"notify":{"callback":{"number":"nested"}},"notify.callback.number":"flat"}`, "", "", "")
	if p.Number != "nested" {
		t.Errorf("number %q, want nested", p.Number)
	}
	// A nested object without the key does not hide a flat key beside it.
	p = resolve(t, `{"notify":{"callback":{}},"notify.callback.number":"flat"}`, "", "", "")
	if p.Number != "flat" {
		t.Errorf("number %q, want flat", p.Number)
	}
}

func TestUseNumberDocuments(t *testing.T) {
	p, err := Resolve(Docs{
		Vmbox:  docNum(t, vm(`"schedule":[1.5,30],"number":4915550001`)),
		System: docNum(t, vn(`"attempts":2,"timeout_s":25`)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Number != "4915550001" || !slices.Equal(p.Schedule, secs(1.5, 30)) || p.Attempts != 2 || p.Timeout != 25*time.Second {
		t.Errorf("got %+v", p)
	}
}

func TestBadValues(t *testing.T) {
	tests := []struct {
		name                          string
		vmbox, owner, account, system string
		want                          []string
	}{
		{"schedule element", vm(`"schedule":[60,"soon"]`), "", "", "",
			[]string{`vmbox notify.callback.schedule[1]: want seconds, got "soon"`}},
		{"negative schedule element", "", vn(`"schedule":[-1]`), "", "",
			[]string{`owner voicemail.notify.callback.schedule[0]: want seconds >= 0, got -1`}},
		{"schedule not an array", "", "", vn(`"schedule":"60,120"`), "",
			[]string{`account voicemail.notify.callback.schedule: want array of seconds, got "60,120"`}},
		{"attempts word", "", vn(`"attempts":"many"`), "", "",
			[]string{`owner voicemail.notify.callback.attempts: want integer, got "many"`}},
		{"attempts fraction", vm(`"attempts":2.5`), "", "", "",
			[]string{`vmbox notify.callback.attempts: want integer, got 2.5`}},
		{"attempts too many", "", "", "", vn(`"attempts":1000`),
			[]string{`system voicemail.notify.callback.attempts: want 0..100, got 1000`}},
		{"interval zero", vm(`"interval_s":0`), "", "", "",
			[]string{`vmbox notify.callback.interval_s: want seconds > 0, got 0`}},
		{"timeout zero", "", "", "", vn(`"timeout_s":"0"`),
			[]string{`system voicemail.notify.callback.timeout_s: want seconds > 0, got "0"`}},
		{"disabled yes", vm(`"disabled":"yes"`), "", "", "",
			[]string{`vmbox notify.callback.disabled: want true or false, got "yes"`}},
		{"disabled number", "", vn(`"disabled":1`), "", "",
			[]string{`owner voicemail.notify.callback.disabled: want true or false, got 1`}},
		{"number object", vm(`"number":{"e164":"1"}`), "", "", "",
			[]string{`vmbox notify.callback.number: want phone number, got object`}},
		// Issue 9: the callback number follows the one number rule.
		{"number with CR/LF", vm(`"number":"1001\r\nVia: x"`), "", "", "",
			[]string{`vmbox notify.callback.number: "1001\r\nVia: x": character '\r' not allowed (allowed: digits, letters, * # . _ - and a leading +)`}},
		{"number a path", "", vn(`"number":"../../etc"`), "", "",
			[]string{`owner voicemail.notify.callback.number: "../../etc": may not start with '.'`}},
		{"number huge", vm(`"number":"` + strings.Repeat("5", 100000) + `"`), "", "", "",
			[]string{`vmbox notify.callback.number: 100000 characters, at most 64`}},
		{"disabled huge", vm(`"disabled":"` + strings.Repeat("y", 100000) + `"`), "", "", "",
			[]string{`vmbox notify.callback.disabled: want true or false, got "` + strings.Repeat("y", 63) + `... (100002 bytes)`}},
		// A bad value does not fall through to a lower level, and every bad
		// value is reported at once.
		{"all reported", vm(`"timeout_s":true`), vn(`"timeout_s":30,"attempts":-1`), "", "",
			[]string{
				`vmbox notify.callback.timeout_s: want seconds, got true`,
				`owner voicemail.notify.callback.attempts: want 0..100, got -1`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve(Docs{Vmbox: doc(t, tt.vmbox), Owner: doc(t, tt.owner), Account: doc(t, tt.account), System: doc(t, tt.system)})
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.Split(err.Error(), "\n")
			slices.Sort(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("errors %q, want %q", got, want)
			}
		})
	}

	// A bad value at a level below the winning one is never read.
	if _, err := Resolve(Docs{Vmbox: doc(t, vm(`"attempts":2`)), Owner: doc(t, vn(`"attempts":"many"`))}); err != nil {
		t.Errorf("unused lower level reported: %v", err)
	}
}

func TestUnreadCount(t *testing.T) {
	tests := []struct {
		name, doc string
		want      int
	}{
		{"mixed folders", `{"messages":[{"folder":"new"},{"folder":"saved"},{"folder":"new","media_id":"m2"},
			{"folder":"deleted"},{"media_id":"no folder"},"junk",{"folder":"NEW"}]}`, 2},
		{"all saved", `{"messages":[{"folder":"saved"}]}`, 0},
		{"no messages", `{"name":"box"}`, 0},
		{"messages not an array", `{"messages":{"folder":"new"}}`, 0},
		{"nil document", ``, 0},
	}
	for _, tt := range tests {
		if got := UnreadCount(doc(t, tt.doc)); got != tt.want {
			t.Errorf("%s: UnreadCount = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestCheckCallflowNumber(t *testing.T) {
	user := `{"numbers":["100"],"flow":{"module":"user","data":{"id":"u1"},"children":{}}}`
	compose := `{"numbers":["2000"],"flow":{"module":"voicemail","data":{"id":"vb1","single_mailbox_login":true}}}`
	nestedCheck := `{"numbers":["*97","5000"],"flow":{"module":"temporal_route","data":{},"children":{
		"t1":{"module":"play","data":{"id":"closed"}},
		"_":{"module":"play","data":{"id":"hello"},"children":{
			"_":{"module":"voicemail","data":{"action":"check"},"children":{}}}}}}}`
	checkWithLogin := `{"numbers":["*98"],"flow":{"module":"voicemail","data":{"action":"check","single_mailbox_login":false}}}`
	patternOnly := `{"patterns":["^\\*97(\\d+)$"],"numbers":[],"flow":{"module":"voicemail","data":{"action":"check"}}}`

	cfs := func(pairs ...string) map[string]map[string]any {
		out := make(map[string]map[string]any)
		for i := 0; i < len(pairs); i += 2 {
			out[pairs[i]] = doc(t, pairs[i+1])
		}
		return out
	}
	tests := []struct {
		name            string
		callflows       map[string]map[string]any
		wantNum, wantID string
	}{
		{"nested under another module", cfs("cf1", user, "cf2", compose, "cf3", nestedCheck), "*97", "cf3"},
		{"single_mailbox_login irrelevant", cfs("a", compose, "b", checkWithLogin), "*98", "b"},
		{"lowest id wins among several", cfs("z", nestedCheck, "m", checkWithLogin), "*98", "m"},
		{"callflow without numbers passed over", cfs("a", patternOnly, "b", nestedCheck), "*97", "b"},
		{"none", cfs("cf1", user, "cf2", compose, "p", patternOnly), "", ""},
		{"undialable numbers passed over", cfs("a", `{"numbers":["1\r\nVia: x","../x"],"flow":{"module":"voicemail","data":{"action":"check"}}}`, "b", checkWithLogin), "*98", "b"},
		{"empty", nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			num, id := CheckCallflowNumber(tt.callflows)
			if num != tt.wantNum || id != tt.wantID {
				t.Errorf("got (%q, %q), want (%q, %q)", num, id, tt.wantNum, tt.wantID)
			}
		})
	}
}

// Issue 9: event ids become key names and channel variables; CR/LF and
// huge ids are refused with the field named, and the error stays short.
func TestParseEventBoundsIDs(t *testing.T) {
	for raw, want := range map[string]string{
		`{"event_name":"voicemail_saved","account_id":"a\r\nVia: x","vmbox_id":"v"}`:                           "account_id: contains CR/LF",
		`{"Event-Name":"voicemail_saved","Account-ID":"a","Voicemail-Box":"` + strings.Repeat("v", 300) + `"}`: "vmbox_id: 300 bytes, at most 256",
		`{"event_name":"` + strings.Repeat("n", 100000) + `","account_id":"a","vmbox_id":"v"}`:                 "event_name: 100000 bytes, at most 256",
	} {
		if _, err := ParseEvent(raw); err == nil || err.Error() != want {
			t.Errorf("%.60q: %v, want %s", raw, err, want)
		}
	}
	if e, err := ParseEvent(`{"event_name":"voicemail_saved","account_id":"72fabca989b3102c28482c60070aac5b","vmbox_id":"b2f1"}`); err != nil || e.VmboxID != "b2f1" {
		t.Fatalf("good event: %+v %v", e, err)
	}
}
