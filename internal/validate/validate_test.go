package validate

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestNumberAccepts(t *testing.T) {
	for _, n := range []string{"15557770001", "+4930123", "1001", "alice", "alice.smith_1-2", "*86#", "#31#1001",
		"8888", "A", strings.Repeat("9", MaxNumberLen)} {
		if err := Number(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
}

func TestNumberRefuses(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", "number: empty"},
		{strings.Repeat("1", 1<<20), "number: 1048576 characters, at most 64"},
		{strings.Repeat("1", MaxNumberLen+1), "number: 65 characters, at most 64"},
		{"../../etc", `number: "../../etc": may not start with '.'`},
		{"a../etc", `number: "a../etc": ".." not allowed`},
		{"1/2", `number: "1/2": character '/' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{"1001@evil.example", `number: "1001@evil.example": character '@' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{"1001;transport=tcp", `number: "1001;transport=tcp": character ';' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{"sip:1001", `number: "sip:1001": character ':' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{"138 0000", `number: "138 0000": character ' ' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{"1001\r\nVia: x", `number: "1001\r\nVia: x": character '\r' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{"10\x0001", `number: "10\x0001": character '\x00' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{"1001é", `number: "1001é": character 'é' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{"1+2", `number: "1+2": '+' only as the first character`},
		{"-5", `number: "-5": may not start with '-'`},
		{"*#", `number: "*#": no digit or letter`},
		{"+", `number: "+": no digit or letter`},
	}
	for _, c := range cases {
		err := Number(c.in)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: got %v, want %s", quote(c.in), err, c.want)
		}
	}
}

func TestNumberErrorsStayShort(t *testing.T) {
	// A long value with a bad character within the length bound: quoted
	// only in part.
	err := NumberField("params.number[3]", strings.Repeat("1", 63)+"/")
	if err == nil || len(err.Error()) > 200 || !strings.HasPrefix(err.Error(), "params.number[3]: ") {
		t.Fatalf("error %v", err)
	}
	err = Number(strings.Repeat("é", 40))
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("error %v", err)
	}
}

func TestNumbersBounds(t *testing.T) {
	ok := make([]string, MaxNumbers)
	for i := range ok {
		ok[i] = fmt.Sprint(1000 + i)
	}
	if err := Numbers("number", ok); err != nil {
		t.Fatal(err)
	}
	if err := Numbers("number", append(ok, "1")); err == nil || err.Error() != "number: 33 numbers, at most 32" {
		t.Fatalf("33 numbers: %v", err)
	}
	if err := Numbers("params.number", []string{"1", "a/b"}); err == nil || !strings.HasPrefix(err.Error(), `params.number[1]: "a/b"`) {
		t.Fatalf("bad second: %v", err)
	}
	if err := Numbers("number", nil); err == nil || err.Error() != "number: empty" {
		t.Fatalf("none: %v", err)
	}
}

func TestLineGroupsBounds(t *testing.T) {
	if err := LineGroups("line_group", []string{"g1", "g2"}); err != nil {
		t.Fatal(err)
	}
	many := make([]string, MaxLineGroups+1)
	for i := range many {
		many[i] = "g"
	}
	for _, c := range []struct {
		in   []string
		want string
	}{
		{many, "line_group: 33 groups, at most 32"},
		{nil, "line_group: empty"},
		{[]string{"g1", ""}, "line_group[1]: empty"},
		{[]string{"g1\r\nX: y"}, "line_group[0]: contains CR/LF"},
		{[]string{strings.Repeat("g", 200)}, "line_group[0]: 200 bytes, at most 128"},
	} {
		if err := LineGroups("line_group", c.in); err == nil || err.Error() != c.want {
			t.Errorf("got %v, want %s", err, c.want)
		}
	}
}

func TestVariables(t *testing.T) {
	good := map[string]string{"origination_caller_id_number": "15550001111", "origination_caller_id_name": "Sales Desk",
		"sip_h_X-Campaign": "spring; q=1", "absolute_codec_string": "pcma,pcmu", "a.b-c_d": "", "sip_from_host": "[::1]:5060",
		"note": "tab\tis fine"}
	if err := Variables(good); err != nil {
		t.Fatal(err)
	}
	many := map[string]string{}
	for i := 0; i <= MaxVariables; i++ {
		many[fmt.Sprint("v", i)] = "x"
	}
	big := map[string]string{}
	for i := 0; i < 10; i++ {
		big[fmt.Sprint("v", i)] = strings.Repeat("x", 4000)
	}
	cases := []struct {
		in   map[string]string
		want string
	}{
		{map[string]string{"sip_h_X-Evil": "a\r\nVia: SIP/2.0/UDP evil"}, "variables.sip_h_X-Evil: contains CR/LF"},
		{map[string]string{"origination_caller_id_name": "Bob\nX-Evil: 1"}, "variables.origination_caller_id_name: contains CR/LF"},
		{map[string]string{"x": "a\x00b"}, "variables.x: contains NUL"},
		{map[string]string{"sip_h_X\r\nVia": "v"}, `variables: name "sip_h_X\r\nVia": character '\r' not allowed (allowed: letters, digits, _ . -)`},
		{map[string]string{"sip_h_X: y": "v"}, `variables: name "sip_h_X: y": character ':' not allowed (allowed: letters, digits, _ . -)`},
		{map[string]string{"": "v"}, "variables: empty name"},
		{map[string]string{strings.Repeat("n", 129): "v"}, `variables: name "` + strings.Repeat("n", 64) + `"... (129 bytes): 129 bytes, at most 128`},
		{map[string]string{"x": strings.Repeat("v", 4097)}, "variables.x: 4097 bytes, at most 4096"},
		{many, "variables: 257 names, at most 256"},
		{big, "variables: 40020 bytes of names and values, at most 32768"},
		{map[string]string{"origination_caller_id_number": "1000@evil>"}, `variables.origination_caller_id_number: "1000@evil>": character '@' not allowed (allowed: digits, letters, * # . _ - and a leading +)`},
		{map[string]string{"sip_from_host": "evil>;x"}, `variables.sip_from_host: "evil>;x" is not a host name or address`},
		// The first bad name in order is reported.
		{map[string]string{"b": "\n", "a": "\r"}, "variables.a: contains CR/LF"},
	}
	for _, c := range cases {
		if err := Variables(c.in); err == nil || err.Error() != c.want {
			t.Errorf("got %v\nwant %s", err, c.want)
		}
	}
}

func TestHeaderValue(t *testing.T) {
	for _, s := range []string{"plain", "with\ttab", "ünïcode"} {
		if err := HeaderValue(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for s, want := range map[string]string{"a\rb": "contains CR/LF", "a\nb": "contains CR/LF", "a\x00": "contains NUL"} {
		if err := HeaderValue(s); err == nil || err.Error() != want {
			t.Errorf("%q: %v", s, err)
		}
	}
	if err := HeaderValueField("sip_h_X", "\r\n"); err == nil || err.Error() != "sip_h_X: contains CR/LF" {
		t.Errorf("field: %v", err)
	}
}

func TestTextAndRef(t *testing.T) {
	if err := Ref("contact_ref", strings.Repeat("c", MaxRefLen)); err != nil {
		t.Fatal(err)
	}
	if err := Ref("contact_ref", strings.Repeat("c", MaxRefLen+1)); err == nil || err.Error() != "contact_ref: 257 bytes, at most 256" {
		t.Fatalf("long ref: %v", err)
	}
	if err := Ref("call_ref", "x\r\nVia: y"); err == nil || err.Error() != "call_ref: contains CR/LF" {
		t.Fatalf("CR/LF ref: %v", err)
	}
}

func TestTruncate(t *testing.T) {
	if got := Truncate("short", 10); got != "short" {
		t.Fatal(got)
	}
	if got := Truncate("abcdefghij", 4); got != "abcd... (10 bytes)" {
		t.Fatal(got)
	}
	// Never cuts a character in two.
	if got := Truncate("ééé", 3); got != "é... (6 bytes)" {
		t.Fatal(got)
	}
}

func TestShort(t *testing.T) {
	if Short(nil) != nil {
		t.Fatal("nil")
	}
	small := fmt.Errorf("x: %w", io.EOF)
	if Short(small) != small {
		t.Fatal("short error changed")
	}
	long := fmt.Errorf("variables.%s: want string: %w", strings.Repeat("k", 1<<20), io.EOF)
	got := Short(long)
	if len(got.Error()) > MaxErrorLen+32 || !strings.HasSuffix(got.Error(), fmt.Sprintf("(%d bytes)", len(long.Error()))) || !errors.Is(got, io.EOF) {
		t.Fatalf("%d bytes: %.80q", len(got.Error()), got)
	}
}

func TestSIPURI(t *testing.T) {
	for _, s := range []string{"sip:8888@10.0.0.5:5060", "sips:a@b", "SIP:carrier.example.com", "sip:user@[2001:db8::1]:5080;lr?X-H=1",
		"sip:%2331%23100@h;transport=tcp", "sip:" + strings.Repeat("h", MaxSIPURILen-4)} {
		if err := SIPURI("uri", s); err != nil {
			t.Errorf("%s: %v", quote(s), err)
		}
	}
	cases := []struct{ in, want string }{
		{"", "uri: empty"},
		{"sip:" + strings.Repeat("h", MaxSIPURILen-3), "uri: 513 bytes, at most 512"},
		{"sip:8888@10.0.0.5\r\nX-Evil:1", "uri: contains CR/LF"},
		{"sip:h\x00", "uri: contains NUL"},
		{"sip:0; 00000000", `uri: "sip:0; 00000000": character ' ' not allowed (a SIP URI is printable ASCII without spaces, < > or ")`},
		{"sip:h\t", `uri: "sip:h\t": character '\t' not allowed (a SIP URI is printable ASCII without spaces, < > or ")`},
		{"sip:h\x7f", `uri: "sip:h\x7f": character '\x7f' not allowed (a SIP URI is printable ASCII without spaces, < > or ")`},
		{"sip:hé", `uri: "sip:hé": character 'é' not allowed (a SIP URI is printable ASCII without spaces, < > or ")`},
		{"sip:a@b>;tag=1", `uri: "sip:a@b>;tag=1": character '>' not allowed (a SIP URI is printable ASCII without spaces, < > or ")`},
		{`sip:"a"@b`, `uri: "sip:\"a\"@b": character '"' not allowed (a SIP URI is printable ASCII without spaces, < > or ")`},
		{"http://h", `uri: want a sip: URI, got scheme "http"`},
		{"carrier.example.com", `uri: want a sip: URI, got "carrier.example.com"`},
		{"sip:", `uri: no host in "sip:"`},
		{"sips:", `uri: no host in "sips:"`},
	}
	for _, c := range cases {
		if err := SIPURI("uri", c.in); err == nil || err.Error() != c.want {
			t.Errorf("%s: got %v\nwant %s", quote(c.in), err, c.want)
		}
	}
	// A long refused URI is quoted only in part.
	if err := SIPURI("params.uri", "sip:"+strings.Repeat("h", 400)+" x"); err == nil || len(err.Error()) > 250 {
		t.Fatalf("error %v", err)
	}
}

// A number's user part keeps its characters where RFC 3261 allows them and
// percent-encodes the rest; a line's dial string escapes '%' too, a caller
// ID keeps an escape already made.
func TestEscapeURIUser(t *testing.T) {
	for _, tc := range []struct {
		in   string
		keep bool
		want string
	}{
		{"15551230001", false, "15551230001"},
		{"*72#1", false, "*72%231"},
		{"%23", false, "%2523"},
		{"%23", true, "%23"},
		{"%2", true, "%252"},
		{"a@b>c d", true, "a%40b%3Ec%20d"},
	} {
		if got := EscapeURIUser(tc.in, tc.keep); got != tc.want {
			t.Errorf("EscapeURIUser(%q, %v) = %q, want %q", tc.in, tc.keep, got, tc.want)
		}
	}
}
