package schedule

import "testing"

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
