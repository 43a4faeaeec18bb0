package callback

// Fuzz targets for the voicemail callback decoders: events on
// redial:events, the documents of seed 000 (vmbox, owner, account, system
// config, callflows) and the plans redial keeps in Redis. `make test` runs
// them on their seed corpus; scripts/fuzz.sh (make chaos) fuzzes them.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

// FuzzParseEvent decodes events: never a panic, short errors naming the
// field (the event's :invalid reason), and accepted ids within bounds.
func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{
		`{"event_name":"voicemail_saved","account_id":"72fabca989b3102c28482c60070aac5b","vmbox_id":"b2f1c691e3e733f52c7c8b4b621289bc"}`,
		`{"Event-Name":"voicemail_saved","Account-ID":"a1","Voicemail-Box":"v1","extra":{"x":1}}`,
		`{"name":"other","account_id":"a","vmbox_id":"v"}`,
		`{"account_id":"a"}`, `{"vmbox_id":"v"}`, `{"account_id":5,"vmbox_id":"v"}`, `{}`, `null`, `[]`, `not json`,
		`{"event_name":null,"account_id":null,"vmbox_id":"v"}`,
		`{"account_id":"a\r\nb","vmbox_id":"v"}`,
		`{"account_id":"a","vmbox_id":"` + strings.Repeat("v", 3000) + `"}`,
		`{"account_id":"a","vmbox_id":"v","event_name":"` + strings.Repeat("e", 3000) + `"}`,
		"{\"account_id\":\"a\xff\",\"vmbox_id\":\"v\"}",
		`{"account_id":"a","vmbox_id":"v","x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var e Event
		var err error
		testenv.FuzzRun(t, "ParseEvent", func() { e, err = ParseEvent(raw) })
		if err != nil {
			testenv.FuzzShortErr(t, fmt.Sprintf("ParseEvent(%s)", testenv.FuzzQuote(raw)), err)
			if testenv.FuzzJSONObject(raw) && !testenv.FuzzNamesField(err.Error(), "event_name", "Event-Name", "name", "account_id", "Account-ID", "vmbox_id", "Voicemail-Box") {
				t.Errorf("ParseEvent(%s): error %s names no field", testenv.FuzzQuote(raw), testenv.FuzzQuote(err.Error()))
			}
			return
		}
		for k, v := range map[string]string{"event_name": e.Name, "account_id": e.AccountID, "vmbox_id": e.VmboxID} {
			if v == "" {
				t.Errorf("ParseEvent(%s): empty %s accepted", testenv.FuzzQuote(raw), k)
			}
			if err := validate.Ref(k, v); err != nil {
				t.Errorf("ParseEvent(%s): accepted %s %s: %v", testenv.FuzzQuote(raw), k, testenv.FuzzQuote(v), err)
			}
		}
	})
}

// fuzzDoc decodes a document the way the runner does (plain
// json.Unmarshal); nil when it is not a JSON object.
func fuzzDoc(s string) map[string]any {
	var m map[string]any
	if json.Unmarshal([]byte(s), &m) != nil {
		return nil
	}
	return m
}

// FuzzResolve resolves callback policies from four documents: never a
// panic, every error line naming its document and path, and an accepted
// policy whose number is dialable and whose schedule is bounded.
func FuzzResolve(f *testing.F) {
	vm := func(opts string) string { return `{"notify":{"callback":{` + opts + `}}}` }
	vn := func(opts string) string { return `{"voicemail":{"notify":{"callback":{` + opts + `}}}}` }
	for _, d := range [][4]string{
		{"", "", "", ""},
		{vm(`"number":"15550001111","attempts":3,"interval_s":60,"timeout_s":30`), "", "", ""},
		{vm(`"disabled":false`), vn(`"number":"1001","disabled":true,"schedule":[0,60,"120.5"]`), vn(`"schedule":[10]`), vn(`"attempts":5,"interval_s":300,"timeout_s":20`)},
		{`{"notify.callback.number":"2000","owner_id":"u1","messages":[{"folder":"new"}]}`, `{"voicemail":{"notify.callback.number":"3000"}}`, "", ""},
		{vm(`"number":13800000000`), "", vn(`"attempts":"2"`), vn(`"interval_s":"1e3"`)},
		// Errors of the unit tests.
		{vm(`"number":true,"attempts":"many","interval_s":0,"timeout_s":-1,"schedule":[1,"soon"]`), "", "", ""},
		{vm(`"schedule":"60"`), vn(`"disabled":"perhaps"`), vn(`"attempts":1000`), vn(`"timeout_s":1e300`)},
		// Hostile.
		{vm(`"number":"1001\r\nVia: x"`), "", "", ""},
		{vm(`"number":"../../etc"`), "", "", ""},
		{"", vn(`"number":"` + strings.Repeat("1", 3000) + `"`), "", ""},
		{vm(`"number":1e300,"schedule":[` + strings.Repeat("1,", 150) + `1]`), "", "", ""},
		{vm(`"number":"` + strings.Repeat("x", 3000) + `\u0000"`), "", "", ""},
		{vm(`"schedule":[1e-300, 315360000, 316224001]`), "", "", ""},
		{`{"notify":{"callback":null},"notify.callback":{"number":"5"}}`, "null", "[]", `"x"`},
		{vm(`"x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300)), "", "", ""},
	} {
		f.Add(d[0], d[1], d[2], d[3])
	}
	f.Fuzz(func(t *testing.T, vmbox, owner, account, system string) {
		docs := Docs{Vmbox: fuzzDoc(vmbox), Owner: fuzzDoc(owner), Account: fuzzDoc(account), System: fuzzDoc(system)}
		var p Policy
		var err error
		testenv.FuzzRun(t, "Resolve", func() { p, err = Resolve(docs) })
		what := fmt.Sprintf("Resolve(%s, %s, %s, %s)", testenv.FuzzQuote(vmbox), testenv.FuzzQuote(owner), testenv.FuzzQuote(account), testenv.FuzzQuote(system))
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				ok := false
				for _, pre := range []string{"vmbox notify.callback.", "owner voicemail.notify.callback.",
					"account voicemail.notify.callback.", "system voicemail.notify.callback."} {
					ok = ok || strings.HasPrefix(line, pre)
				}
				if !ok {
					t.Errorf("%s: error line %s names no document and path", what, testenv.FuzzQuote(line))
				}
				testenv.FuzzShortErr(t, what, fmt.Errorf("%s", line))
			}
			return
		}
		if p.Number != "" {
			testenv.FuzzNumberSafe(t, what+" number", p.Number)
		}
		if p.Attempts < 0 || p.Attempts > MaxAttempts || len(p.Schedule) > MaxAttempts {
			t.Errorf("%s: %d attempts, schedule of %d", what, p.Attempts, len(p.Schedule))
		}
		for i, d := range p.Schedule {
			if d < 0 || d > maxSeconds*time.Second {
				t.Errorf("%s: schedule[%d] = %v", what, i, d)
			}
		}
		if p.Interval <= 0 || p.Timeout <= 0 || p.Interval > maxSeconds*time.Second || p.Timeout > maxSeconds*time.Second {
			t.Errorf("%s: interval %v, timeout %v", what, p.Interval, p.Timeout)
		}
		for _, k := range []string{"number", "disabled", "schedule", "attempts", "interval_s", "timeout_s"} {
			switch p.Sources[k] {
			case SourceVmbox, SourceOwner, SourceAccount, SourceSystem, SourceDefault, SourceDerived:
			default:
				t.Errorf("%s: source of %s = %q", what, k, p.Sources[k])
			}
		}
	})
}

// FuzzCheckCallflowNumber searches callflow documents (a JSON object of
// id -> callflow) for the voicemail-check number: never a panic, and a
// number found is dialable.
func FuzzCheckCallflowNumber(f *testing.F) {
	for _, s := range []string{
		`{"cf1":{"numbers":["100"],"flow":{"module":"user","data":{"id":"u1"},"children":{}}},
		  "cf3":{"numbers":["*97","5000"],"flow":{"module":"temporal_route","data":{},"children":{
			"t1":{"module":"play","data":{"id":"closed"}},
			"_":{"module":"play","data":{"id":"hello"},"children":{"_":{"module":"voicemail","data":{"action":"check"},"children":{}}}}}}}}`,
		`{"b":{"numbers":["*98"],"flow":{"module":"voicemail","data":{"action":"check","single_mailbox_login":false}}}}`,
		`{"a":{"patterns":["^\\*97(\\d+)$"],"numbers":[],"flow":{"module":"voicemail","data":{"action":"check"}}}}`,
		`{"a":{"numbers":["1\r\nVia: x","../x"," 777 "],"flow":{"module":"voicemail","data":{"action":"check"}}}}`,
		`{"a":{"numbers":["` + strings.Repeat("9", 3000) + `"],"flow":{"module":"voicemail","data":{"action":"check"},"children":[{"module":"voicemail"}]}}}`,
		`{"a":{"numbers":["1"],"flow":` + strings.Repeat(`{"module":"x","children":{"_":`, 100) + `{"module":"voicemail","data":{"action":"check"}}` + strings.Repeat("}}", 100) + `}}`,
		`{"a":null,"b":{"numbers":null,"flow":null}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var cfs map[string]map[string]any
		if json.Unmarshal([]byte(raw), &cfs) != nil {
			return
		}
		var num, id string
		testenv.FuzzRun(t, "CheckCallflowNumber", func() { num, id = CheckCallflowNumber(cfs) })
		if num == "" {
			if id != "" {
				t.Fatalf("CheckCallflowNumber(%s) = %q, %q", testenv.FuzzQuote(raw), num, id)
			}
			return
		}
		if _, ok := cfs[id]; !ok {
			t.Errorf("CheckCallflowNumber(%s): id %q is no callflow", testenv.FuzzQuote(raw), id)
		}
		testenv.FuzzNumberSafe(t, fmt.Sprintf("CheckCallflowNumber(%s)", testenv.FuzzQuote(raw)), num)
	})
}

// FuzzPlanCodec decodes stored plans: what decodes re-encodes to the same
// JSON, and a plan the runner builds survives encoding unchanged.
func FuzzPlanCodec(f *testing.F) {
	for _, s := range []string{
		`{"account_id":"a1","vmbox_id":"v1","number":"15550001111","check_number":"*97","schedule_s":[0,300,300.5],"timeout_s":20,"attempt":1,"created":"2024-01-02T03:04:05.123456789Z","line_group":["callback"],"destination_context":"default","sources":{"number":"vmbox"}}`,
		`{"created":"2024-01-02T03:04:05+01:00","sources":{}}`,
		`{"schedule_s":[1e308,-0,5e-324],"attempt":-1}`,
		`{"created":"0000-01-01T00:00:00Z"}`, `{}`, `null`, `{"created":"not a time"}`, `{"number":"\u0000\r\n"}`,
	} {
		f.Add(s, "a1", "v1", "15550001111", 300.5, int64(1704164645123456789))
	}
	f.Fuzz(func(t *testing.T, raw, account, vmbox, number string, sched float64, created int64) {
		// Stored JSON: decode, encode, decode again; both encodings agree.
		var p Plan
		if json.Unmarshal([]byte(raw), &p) == nil {
			b1, err := json.Marshal(p)
			if err != nil {
				t.Fatalf("Marshal of decoded plan %s: %v", testenv.FuzzQuote(raw), err)
			}
			var p2 Plan
			if err := json.Unmarshal(b1, &p2); err != nil {
				t.Fatalf("plan %s re-encoded as %s does not decode: %v", testenv.FuzzQuote(raw), b1, err)
			}
			if b2, _ := json.Marshal(p2); !bytes.Equal(b1, b2) {
				t.Errorf("plan %s: encodings differ:\n %s\n %s", testenv.FuzzQuote(raw), b1, b2)
			}
		}
		// A plan as the runner builds it: decode(encode(x)) == x.
		if sched != sched || sched > 1e300 || sched < -1e300 {
			return
		}
		fix := func(s string) string {
			if utf8.ValidString(s) {
				return s
			}
			return strings.ToValidUTF8(s, "")
		}
		p = Plan{AccountID: fix(account), VmboxID: fix(vmbox), Number: fix(number), CheckNumber: "*97",
			Schedule: []float64{0, sched}, TimeoutS: 20, Attempt: 1, Created: time.Unix(0, created).UTC(),
			LineGroups: []string{"callback"}, Context: "default", Sources: map[string]string{"number": SourceVmbox}}
		if p.Created.Year() > 9999 || p.Created.Year() < 0 {
			return
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", p, err)
		}
		var back Plan
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("plan %s does not decode: %v", b, err)
		}
		if !back.Created.Equal(p.Created) {
			t.Errorf("created %v came back as %v", p.Created, back.Created)
		}
		back.Created = p.Created
		if !reflect.DeepEqual(back, p) || !maps.Equal(back.Sources, p.Sources) {
			t.Errorf("plan round trip:\n %+v\n %+v", p, back)
		}
	})
}
