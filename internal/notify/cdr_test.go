package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
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

// Issue 9: a 1 MB number made a 3 MB CDR. A CDR is at most MaxCDRBytes:
// outsider text is cut with its size noted, never dropped, and a CDR
// under the limit is written unchanged.
func TestCDRSizeIsBounded(t *testing.T) {
	vars := map[string]string{"small": "kept whole", "origination_caller_id_number": "15550001111"}
	for i := 0; i < 300; i++ {
		vars[fmt.Sprintf("v%03d", i)] = strings.Repeat("<", 4096) // escaped 6x by encoding/json
	}
	in := CDR{CDRID: NewID(), CallRef: "c1", ClientNumber: strings.Repeat("1", 1<<20), ContactRef: strings.Repeat("é", 1<<19),
		Disposition: "FAILED", Start: time.Now(), End: time.Now(), Variables: vars}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxCDRBytes {
		t.Fatalf("CDR of %d bytes, limit %d", len(b), MaxCDRBytes)
	}
	var out CDR
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.ClientNumber, "... (1048576 bytes)") || !strings.HasPrefix(out.ClientNumber, "1111") {
		t.Errorf("client_number %.80q", out.ClientNumber)
	}
	if !utf8.ValidString(out.ContactRef) || !strings.HasSuffix(out.ContactRef, "... (1048576 bytes)") {
		t.Errorf("contact_ref cut inside a character: %.80q", out.ContactRef)
	}
	if out.Variables["small"] != "kept whole" || out.Variables["origination_caller_id_number"] != "15550001111" {
		t.Errorf("short values cut: %q %q", out.Variables["small"], out.Variables["origination_caller_id_number"])
	}
	if v := out.Variables["v000"]; !strings.HasSuffix(v, "... (4096 bytes)") {
		t.Errorf("long value not cut with its size: %.80q", v)
	}
	if len(out.Variables) != len(vars)+1 || !strings.Contains(out.Variables[TruncatedVariable], "300 of 302 values cut") {
		t.Errorf("%d variables, note %q", len(out.Variables), out.Variables[TruncatedVariable])
	}
	if len(in.Variables) != 302 || len(in.Variables["v000"]) != 4096 {
		t.Errorf("the caller's variables were changed")
	}

	// Names alone over the limit: some are left out, and the note says how many.
	many := map[string]string{}
	for i := 0; i < 2000; i++ {
		many[fmt.Sprintf("%0100d", i)] = "x"
	}
	b, _ = json.Marshal(CDR{Variables: many})
	if len(b) > MaxCDRBytes || json.Unmarshal(b, &out) != nil || !strings.Contains(out.Variables[TruncatedVariable], "left out") {
		t.Fatalf("many names: %d bytes, note %q", len(b), out.Variables[TruncatedVariable])
	}

	// Under the limit: byte for byte what encoding/json writes.
	small := CDR{CallRef: "c", Variables: map[string]string{"a": strings.Repeat("b", 4096)}}
	b, _ = json.Marshal(small)
	if !strings.Contains(string(b), `"a":"`+strings.Repeat("b", 4096)+`"`) || strings.Contains(string(b), TruncatedVariable) {
		t.Fatalf("small CDR changed: %.200s", b)
	}
}

// The CDR's own encoder writes what encoding/json writes for its wire
// form, byte for byte, whatever the strings hold.
func TestCDRJSONMatchesEncodingJSON(t *testing.T) {
	odd := []string{"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "ctl \x00\x01\b\f\n\r\t\x1f\x7f",
		"bad utf8 \xff\xfe tail", "sep \u2028 \u2029 done", "üñíçødé 中文 🎉", "\xe2\x80", strings.Repeat("x", 300)}
	ans := time.Date(2024, 3, 1, 10, 0, 5, 0, time.UTC)
	for i, s := range odd {
		ext := s
		w := cdrWire{
			CDRID: s, CallRef: s, ContactRef: s, CampaignRef: s, ClientNumber: s, DialNumber: s,
			Disposition: Disposition(s), SIPCode: 200 + i, HangupCause: s, Line: s, Attempt: -i,
			Start: wireTime(ans), End: s, Duration: i * 1000, Billsec: 7, HoldTime: 1 << 40,
			Variables: map[string]string{s: s, "z": s, "a" + s: "v"}, Recording: s,
		}
		if i%2 == 0 {
			w.Ext, w.Answer = &ext, &ext
		}
		if i == 3 {
			w.Variables = nil
		}
		if i == 4 {
			w.Variables = map[string]string{}
		}
		want, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.appendJSON(nil); string(got) != string(want) {
			t.Errorf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func BenchmarkCDRMarshal(b *testing.B) {
	ext := "1001"
	ans := time.Now()
	c := CDR{CDRID: NewID(), CallRef: "c1", Ext: &ext, Disposition: "ANSWERED", SIPCode: 200, HangupCause: "NORMAL_CLEARING",
		Attempt: 1, Start: ans, Answer: &ans, End: ans, Variables: map[string]string{"a": "b", "origination_uuid": "x"}}
	b.Run("own", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.MarshalJSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
	// What PublishCDR did before: encoding/json on the wire form, then
	// again over MarshalJSON's output.
	b.Run("encoding/json", func(b *testing.B) {
		w := cdrWire{CDRID: c.CDRID, CallRef: c.CallRef, Ext: c.Ext, Disposition: c.Disposition, SIPCode: c.SIPCode,
			HangupCause: c.HangupCause, Attempt: c.Attempt, Start: wireTime(c.Start), End: wireTime(c.End), Variables: c.Variables}
		b.ReportAllocs()
		for b.Loop() {
			raw, err := json.Marshal(w)
			if err != nil {
				b.Fatal(err)
			}
			var buf bytes.Buffer
			if err := json.Compact(&buf, raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A usual CDR is encoded in one buffer, not grown on the way.
func TestCDRJSONSizeHint(t *testing.T) {
	ext := "1001"
	now := time.Now()
	vars := map[string]string{}
	for i := 0; i < 20; i++ {
		vars[fmt.Sprintf("var_%d", i)] = strings.Repeat("v", i*10)
	}
	c := CDR{CDRID: NewID(), CallRef: "c1", Ext: &ext, Disposition: "ANSWERED", SIPCode: 200, HangupCause: "NORMAL_CLEARING",
		Attempt: 1, Start: now, Answer: &now, End: now, Variables: vars, Recording: "rec/x.wav"}
	b, err := c.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if cap(b) < len(b) || cap(b) > len(b)+400 {
		t.Errorf("JSON of %d bytes in a buffer of %d", len(b), cap(b))
	}
	// The buffer, the sorted names, the three times, the answer's
	// pointer and the wire form: none per variable or per grown buffer.
	if allocs := testing.AllocsPerRun(100, func() { c.MarshalJSON() }); allocs > 7 {
		t.Errorf("MarshalJSON: %.0f allocations, want at most 7", allocs)
	}
}
