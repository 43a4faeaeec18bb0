package notify

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewIDIsRandomUUIDv4(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := NewID()
		if !uuidRE.MatchString(id) {
			t.Fatalf("NewID() = %q, not a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestCDRJSONRoundTrip(t *testing.T) {
	sast := time.FixedZone("SAST", 2*3600)
	ext := "1001"
	ans := time.Date(2024, 3, 1, 10, 0, 5, 0, sast)
	in := CDR{
		CDRID: "x", CallRef: "c1", Ext: &ext, Disposition: "ANSWERED", SIPCode: 200,
		HangupCause: "NORMAL_CLEARING", Attempt: 2,
		Start: time.Date(2024, 3, 1, 10, 0, 0, 700e6, sast), Answer: &ans,
		End:      time.Date(2024, 3, 1, 10, 1, 5, 0, sast),
		Duration: 65, Billsec: 60, Variables: map[string]string{"a": "b"},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out CDR
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	// Times are written in whole seconds.
	if want := time.Date(2024, 3, 1, 8, 0, 0, 0, time.UTC); !out.Start.Equal(want) {
		t.Errorf("start = %v, want %v", out.Start, want)
	}
	if out.Answer == nil || !out.Answer.Equal(ans) || !out.End.Equal(in.End) {
		t.Errorf("answer/end = %v/%v, want %v/%v", out.Answer, out.End, ans, in.End)
	}
	if out.Ext == nil || *out.Ext != "1001" || out.Variables["a"] != "b" || out.Billsec != 60 || out.Attempt != 2 {
		t.Errorf("round trip lost fields: %s", b)
	}
}
