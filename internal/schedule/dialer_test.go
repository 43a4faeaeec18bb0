package schedule

import (
	"strings"
	"testing"
)

// A schedule config or member with a numeric caller ID keeps every digit
// (it used to reach the INVITE as 1.38e+10).
func TestScheduleVariablesKeepEveryDigit(t *testing.T) {
	c := parseConfig("cti_schedule_dialer_config@default", "remind",
		`{"params":{"line_group":["g1"],"destination_extension":8888},"variables":{"origination_caller_id_number":13800000000,"ignore_early_media":true}}`)
	if c.Err != nil {
		t.Fatal(c.Err)
	}
	if got := c.Variables["origination_caller_id_number"]; got != "13800000000" {
		t.Fatalf("config caller ID = %q, want 13800000000", got)
	}
	if got := c.Variables["ignore_early_media"]; got != "true" {
		t.Fatalf("config bool = %q", got)
	}
	if c.Destination.Extension != "8888" {
		t.Fatalf("extension = %q", c.Destination.Extension)
	}
	m, err := parseMember(`{"params":{"number":"15551234567","config":"remind"},"variables":{"origination_caller_id_number":13800000001}}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Variables["origination_caller_id_number"]; got != "13800000001" {
		t.Fatalf("member caller ID = %q, want 13800000001", got)
	}
	bad := parseConfig("cti_schedule_dialer_config@default", "x", `{"params":{"line_group":["g1"],"destination_extension":"1"},"variables":{"v":[1]}}`)
	if bad.Err == nil || bad.Err.Error() != `schedule: config "x" in cti_schedule_dialer_config@default: variables.v: want string, number or bool, got [1]` {
		t.Fatalf("array variable: %v", bad.Err)
	}
}

// Issue 9: a member or config whose variables could write SIP headers, or
// whose number is huge or a path, is refused with the field named.
func TestScheduleRefusesInjectionAndHugeNumbers(t *testing.T) {
	for _, c := range []struct{ member, want string }{
		{`{"params":{"number":"1001","config":"c"},"variables":{"sip_h_X-Evil":"a\r\nVia: x"}}`, "variables.sip_h_X-Evil: contains CR/LF"},
		{`{"params":{"number":"1001","config":"c"},"variables":{"origination_caller_id_name":"a\nb"}}`, "variables.origination_caller_id_name: contains CR/LF"},
		{`{"params":{"number":"` + strings.Repeat("5", 1<<20) + `","config":"c"}}`, "params.number[0]: 1048576 characters, at most 64"},
		{`{"params":{"number":"../../etc","config":"c"}}`, `params.number[0]: "../../etc": may not start with '.'`},
		{`{"params":{"number":"1001","config":"c","contact_ref":"x\r\ny"}}`, "params.contact_ref: contains CR/LF"},
		{`{"params":{"number":` + strings.Repeat("x", 1000) + `,"config":"c"}}`, "malformed JSON: invalid character 'x' looking for beginning of value"},
		{`{"params":{"number":{"a":"` + strings.Repeat("x", 1000) + `"},"config":"c"}}`, `params.number: want string or array of strings, got {"a":"` + strings.Repeat("x", 58) + `... (1008 bytes)`},
	} {
		err := CheckMember(c.member)
		if err == nil || err.Error() != c.want {
			t.Errorf("%.60q: got %v\nwant %s", c.member, err, c.want)
		}
	}
	if err := CheckMember(`{"params":{"number":["+4930123","alice"],"config":"c"},"variables":{"sip_h_X-Campaign":"spring"}}`); err != nil {
		t.Fatal(err)
	}
	bad := parseConfig("cti_schedule_dialer_config@default", "x", `{"params":{"line_group":["g1"],"destination_extension":"1"},"variables":{"sip_h_X-Evil":"1\r\nVia: x"}}`)
	if bad.Err == nil || bad.Err.Error() != `schedule: config "x" in cti_schedule_dialer_config@default: variables.sip_h_X-Evil: contains CR/LF` {
		t.Fatalf("config CR/LF: %v", bad.Err)
	}
	bad = parseConfig("cti_schedule_dialer_config@default", "x", `{"params":{"line_group":[`+strings.TrimSuffix(strings.Repeat(`"g",`, 40), ",")+`],"destination_extension":"1"}}`)
	if bad.Err == nil || bad.Err.Error() != `schedule: config "x" in cti_schedule_dialer_config@default: params.line_group: 40 groups, at most 32` {
		t.Fatalf("config groups: %v", bad.Err)
	}
}

// Cron action ids become key names and channel variables: CR/LF and huge
// ids are refused naming the field.
func TestCronActionIDsBounded(t *testing.T) {
	for entry, want := range map[string]string{
		`{"type":"periodic","seconds":5,"action":{"type":"check_voicemail","account_id":"a\r\nb","vmbox_id":"v"}}`:                           "schedules[0].action.account_id: contains CR/LF",
		`{"type":"periodic","seconds":5,"action":{"type":"check_voicemail","account_id":"a","vmbox_id":"` + strings.Repeat("v", 300) + `"}}`: "schedules[0].action.vmbox_id: 300 bytes, at most 256",
	} {
		entries, errs := ParseSchedules([]byte("[" + entry + "]"))
		if len(entries) != 0 || len(errs) != 1 || errs[0].Error() != want {
			t.Errorf("%.80s: entries %d, errs %v, want %s", entry, len(entries), errs, want)
		}
	}
}
