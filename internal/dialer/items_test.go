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
		{"138 0000 0000", `"138 0000 0000" is not a dialable number (character ' '; allowed: digits, letters, + * # . _ -)`},
		{"1001@evil.example", `"1001@evil.example" is not a dialable number (character '@'; allowed: digits, letters, + * # . _ -)`},
		{"1001;transport=tcp", `"1001;transport=tcp" is not a dialable number (character ';'; allowed: digits, letters, + * # . _ -)`},
		{`<sip:1001>`, `"<sip:1001>" is not a dialable number (character '<'; allowed: digits, letters, + * # . _ -)`},
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
		{`{"params": {"number": ["1001", "a b"]}}`, `params.number[1]: "a b" is not a dialable number (character ' '; allowed: digits, letters, + * # . _ -)`},
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
