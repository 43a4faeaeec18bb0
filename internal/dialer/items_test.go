package dialer

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseItem(t *testing.T) {
	cases := []struct {
		raw  string
		want Item // Raw is filled in from raw
		zone string
	}{
		{"13800000000", Item{Numbers: []string{"13800000000"}}, ""},
		{"  +8613800000000\n", Item{Numbers: []string{"+8613800000000"}}, ""},
		{"*86#", Item{Numbers: []string{"*86#"}}, ""},
		{"alice.smith_1-2", Item{Numbers: []string{"alice.smith_1-2"}}, ""},
		{`"13800000000"`, Item{Numbers: []string{"13800000000"}}, ""}, // pushed JSON-encoded
		// The seed's JSON form.
		{`{"params": {"number": "13800000000"}, "variables": {"origination_caller_id_number": "15550001111", "absolute_codec_string": "pcma,pcmu,g729"}}`,
			Item{Numbers: []string{"13800000000"}, Variables: map[string]string{"origination_caller_id_number": "15550001111", "absolute_codec_string": "pcma,pcmu,g729"}}, ""},
		// An array is tried in order; integers are taken as written.
		{`{"params": {"number": [" 13800000000 ", 13900000000, "+15550002222"]}}`, Item{Numbers: []string{"13800000000", "13900000000", "+15550002222"}}, ""},
		{`{"params": {"number": 13800000000}}`, Item{Numbers: []string{"13800000000"}}, ""},
		{`{"params": {"number": "1001", "contact_ref": "c-1", "timezone": "America/New_York", "redial_attempt": 2, "redial_retries": {"BUSY": 1, "NO_ANSWER": "1"}, "future": [1]},
			"variables": {"n": 1, "b": false, "skip": null}, "extra": {"kept": true}}`,
			Item{Numbers: []string{"1001"}, ContactRef: "c-1", Attempt: 2, RetryCount: map[string]int{"BUSY": 1, "NO_ANSWER": 1},
				Variables: map[string]string{"n": "1", "b": "false"}}, "America/New_York"},
		// Top-level contact_ref and timezone; params wins when both are given.
		{`{"params": {"number": "1001"}, "contact_ref": 42, "timezone": "Asia/Tokyo"}`, Item{Numbers: []string{"1001"}, ContactRef: "42"}, "Asia/Tokyo"},
		{`{"params": {"number": "1001", "contact_ref": "p", "timezone": "Europe/Paris"}, "contact_ref": "top", "timezone": "Asia/Tokyo"}`,
			Item{Numbers: []string{"1001"}, ContactRef: "p"}, "Europe/Paris"},
	}
	for _, c := range cases {
		got, err := ParseItem(c.raw)
		if err != nil {
			t.Errorf("%s: %v", c.raw, err)
			continue
		}
		c.want.Raw = c.raw
		loc := got.Location
		got.Location = nil
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.raw, got, c.want)
		}
		if name := ""; loc != nil {
			name = loc.String()
			if name != c.zone {
				t.Errorf("%s: Location = %s, want %q", c.raw, name, c.zone)
			}
		} else if c.zone != "" {
			t.Errorf("%s: Location = nil, want %s", c.raw, c.zone)
		}
	}
}

func TestParseItemErrors(t *testing.T) {
	cases := []struct{ raw, want string }{
		{"", "empty item"},
		{"   ", "empty item"},
		{`" "`, "empty item"},
		{`"1001`, `invalid JSON string "1001`},
		{"138 0000 0000", `number: "138 0000 0000": character ' ' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{"1001@evil.example", `number: "1001@evil.example": character '@' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{"1001;transport=tcp", `number: "1001;transport=tcp": character ';' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{`<sip:1001>`, `number: "<sip:1001>": character '<' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{"../../etc", `number: "../../etc": may not start with '.'`},
		{"a/../../etc", `number: "a/../../etc": character '/' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{`["1001"]`, "want a number or a JSON object, got an array"},
		{`{"params": {"number": "1001"}`, "invalid JSON: unexpected end of JSON input"},
		{`{"params": {}}`, "params.number: missing"},
		{`{"number": "1001"}`, "params.number: missing"},
		{`{"params": "1001"}`, `params: want object, got "1001"`},
		{`{"params": {"number": 1.5}}`, "params.number: want string or array of strings, got 1.5"},
		{`{"params": {"number": -5}}`, "params.number: want string or array of strings, got -5"},
		{`{"params": {"number": 1.38e10}}`, "params.number: want string or array of strings, got 1.38e10"},
		{`{"params": {"number": true}}`, "params.number: want string or array of strings, got true"},
		{`{"params": {"number": {"n": "1"}}}`, `params.number: want string or array of strings, got {"n": "1"}`},
		{`{"params": {"number": []}}`, "params.number: empty array"},
		{`{"params": {"number": " "}}`, "params.number: empty"},
		{`{"params": {"number": ["1001", ""]}}`, "params.number[1]: empty"},
		{`{"params": {"number": ["1001", "a b"]}}`, `params.number[1]: "a b": character ' ' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{`{"params": {"number": ["1001", "../etc"]}}`, `params.number[1]: "../etc": may not start with '.'`},
		{`{"params": {"number": "1001", "timezone": "Nowhere/City"}}`, `params.timezone: unknown time zone "Nowhere/City"`},
		{`{"params": {"number": "1001"}, "timezone": 8}`, `timezone: want string, got 8`},
		{`{"params": {"number": "1001", "contact_ref": {}}}`, `params.contact_ref: want string, got {}`},
		{`{"params": {"number": "1001"}, "variables": {"v": [1]}}`, `variables.v: want string, number or bool, got [1]`},
		{`{"params": {"number": "1001", "redial_attempt": -1}}`, `params.redial_attempt: want number >= 0, got -1`},
		{`{"params": {"number": "1001", "redial_retries": {"BUSY": "x"}}}`, `params.redial_retries.BUSY: want number, got "x"`},
	}
	for _, c := range cases {
		_, err := ParseItem(c.raw)
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: error %v, want %s", c.raw, err, c.want)
		}
	}
}

func TestItemWithRetry(t *testing.T) {
	decode := func(s string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		return m
	}

	// Plain text becomes the JSON form.
	it, err := ParseItem(" 13800000000 ")
	if err != nil {
		t.Fatal(err)
	}
	again := it.WithRetry("BUSY")
	if want := `{"params":{"number":"13800000000","redial_attempt":1,"redial_retries":{"BUSY":1}}}`; again != want {
		t.Errorf("plain: %s, want %s", again, want)
	}

	// JSON keeps every field, numbers exactly as written, and counts up.
	raw := `{"params": {"number": [13800000000, "+15550002222"], "contact_ref": "c&1", "weight": 1.50, "custom": {"deep": [1, "x"]}},
		"variables": {"origination_caller_id_number": "15550001111", "absolute_codec_string": "pcma,pcmu,g729"}, "meta": {"batch": 7}}`
	it, err = ParseItem(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"BUSY", "NO_ANSWER", "BUSY"} {
		next, err := ParseItem(it.WithRetry(d))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		it = next
	}
	if it.Attempt != 3 || !reflect.DeepEqual(it.RetryCount, map[string]int{"BUSY": 2, "NO_ANSWER": 1}) {
		t.Errorf("after 3 retries: Attempt %d, RetryCount %v", it.Attempt, it.RetryCount)
	}
	if !reflect.DeepEqual(it.Numbers, []string{"13800000000", "+15550002222"}) || it.ContactRef != "c&1" || it.Variables["absolute_codec_string"] != "pcma,pcmu,g729" {
		t.Errorf("fields lost: %+v", it)
	}
	got := decode(it.Raw)
	want := decode(`{"params": {"number": [13800000000, "+15550002222"], "contact_ref": "c&1", "weight": 1.50, "custom": {"deep": [1, "x"]},
		"redial_attempt": 3, "redial_retries": {"BUSY": 2, "NO_ANSWER": 1}},
		"variables": {"origination_caller_id_number": "15550001111", "absolute_codec_string": "pcma,pcmu,g729"}, "meta": {"batch": 7}}`)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %s\nwant %v", it.Raw, want)
	}
	// Numbers stay as written (no 1.38e+10), HTML characters unescaped.
	for _, s := range []string{`[13800000000,"+15550002222"]`, `"weight":1.50`, `"c&1"`} {
		if !strings.Contains(it.Raw, s) {
			t.Errorf("re-encoded item %s lacks %s", it.Raw, s)
		}
	}
}

// Issue 9: CR/LF in channel variables reached the INVITE, and a 1 MB
// number was dialed. Both are refused with a short error naming the
// field, whatever the size of the item.
func TestParseItemRefusesInjectionAndHugeInput(t *testing.T) {
	many := make([]string, 33)
	for i := range many {
		many[i] = `"1"`
	}
	cases := []struct{ raw, want string }{
		{`{"params":{"number":"1001"},"variables":{"sip_h_X-Evil":"a\r\nVia: SIP/2.0/UDP 6.6.6.6"}}`, "variables.sip_h_X-Evil: contains CR/LF"},
		{`{"params":{"number":"1001"},"variables":{"origination_caller_id_name":"Bob\nX-Evil: 1"}}`, "variables.origination_caller_id_name: contains CR/LF"},
		{`{"params":{"number":"1001"},"variables":{"x":"a\u0000b"}}`, "variables.x: contains NUL"},
		{`{"params":{"number":"1001"},"variables":{"sip_h_X\r\nVia":"1"}}`, `variables: name "sip_h_X\r\nVia": character '\r' not allowed (allowed: letters, digits, _ . -)`},
		{`{"params":{"number":"1001","contact_ref":"c\r\n"}}`, "params.contact_ref: contains CR/LF"},
		{`{"params":{"number":[` + strings.Join(many, ",") + `]}}`, "params.number: 33 numbers, at most 32"},
		{strings.Repeat("1", 1<<20), "number: 1048576 characters, at most 64"},
		{`{"params":{"number":"` + strings.Repeat("1", 1<<20) + `"}}`, "item: 1048600 bytes, at most 262144"},
		{`{"params":{"number":"` + strings.Repeat("1", 65) + `"}}`, "params.number: 65 characters, at most 64"},
		{`{"params":{"number":"1"},"variables":{"v":"` + strings.Repeat("x", 5000) + `"}}`, "variables.v: 5000 bytes, at most 4096"},
	}
	for _, c := range cases {
		_, err := ParseItem(c.raw)
		if err == nil || err.Error() != c.want {
			t.Errorf("%.80q: error %v, want %s", c.raw, err, c.want)
		}
	}
	// A binary item of 1 MB: the error is short.
	bin := make([]byte, 1<<20)
	for i := range bin {
		bin[i] = byte(i*7 + 3)
	}
	if _, err := ParseItem(string(bin)); err == nil || len(err.Error()) > 300 {
		t.Fatalf("binary item: error of %d bytes", len(err.Error()))
	}
}
