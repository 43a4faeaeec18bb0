package lines

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseLine(t *testing.T) {
	full := `{"params": {"group": "g1", "uri": "sip:carrier.example.com:5060", "transport": "TCP",
		"username": "u", "password": "p", "limit": 30, "cps": "10", "prefix": 9, "enable": true,
		"codec_hint": {"x": 1}},
		"variables": {"a": "x", "n": 60, "f": 1.50, "b": false, "gone": null}, "owner": "ops"}`
	l, err := parseLine("l1", full)
	if err != nil {
		t.Fatal(err)
	}
	want := Line{
		Name: "l1", Group: "g1", URI: "sip:carrier.example.com:5060", Transport: "tcp",
		Username: "u", Password: "p", Prefix: "9", Limit: 30, CPS: 10, Enable: true,
		Variables: map[string]string{"a": "x", "n": "60", "f": "1.50", "b": "false"},
		Extra:     map[string]json.RawMessage{"codec_hint": json.RawMessage(`{"x": 1}`)},
	}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("got  %+v\nwant %+v", l, want)
	}

	min, err := parseLine("l2", `{"params": {"group": "g", "uri": "sip:10.0.0.1;transport=tcp"}}`)
	if err != nil {
		t.Fatal(err)
	}
	if min.Limit != Unlimited || min.CPS != Unlimited || !min.Enable || min.Transport != "tcp" || !min.Usable() {
		t.Fatalf("defaults: %+v", min)
	}

	zero, err := parseLine("l3", `{"params": {"group": "g", "uri": "sip:h", "limit": 0, "enable": "false"}}`)
	if err != nil {
		t.Fatal(err)
	}
	if zero.Limit != 0 || zero.Enable || zero.Usable() {
		t.Fatalf("explicit zero: %+v", zero)
	}
}

func TestParseLineErrorsNameTheField(t *testing.T) {
	cases := []struct{ raw, want string }{
		{`{"params": {"group": "g", "uri": "sip:h", "limit": "ten"}}`, `params.limit: want number, got "ten"`},
		{`{"params": {"group": "g", "uri": "sip:h", "cps": 2.5}}`, `params.cps: want whole number, got 2.5`},
		{`{"params": {"group": "g", "uri": "sip:h", "limit": -1}}`, `params.limit: want number >= 0, got -1`},
		{`{"params": {"group": "g", "uri": "sip:h", "limit": 1e12}}`, `params.limit: want`},
		{`{"params": {"group": "g"}}`, `params.uri: missing`},
		{`{"params": {"group": "g", "uri": "http://h"}}`, `params.uri: want a sip: URI, got scheme "http"`},
		{`{"params": {"group": "g", "uri": "sip:h:99999"}}`, `params.uri: bad port "99999"`},
		{`{"params": {"group": "g", "uri": "sip:"}}`, `params.uri: no host`},
		{`{"params": {"group": "g", "uri": "sip:h", "transport": "sctp"}}`, `params.transport: want "udp" or "tcp", got "sctp"`},
		{`{"params": {"uri": "sip:h"}}`, `params.group: missing`},
		{`{"params": {"group": "g", "uri": "sip:h", "enable": "perhaps"}}`, `params.enable: want bool, got "perhaps"`},
		{`{"params": {"group": "g", "uri": "sip:h"}, "variables": {"x": [1]}}`, `variables.x: want string, number or bool, got [1]`},
		{`{"params": {"group": "g", "uri": "sip:h"}, "variables": []}`, `variables: want object, got []`},
		{`{"params": []}`, `params: want object, got []`},
		{`{"variables": {}}`, `params: missing`},
		{`{"params": {"group": "g", "uri": "sip:h"`, `invalid JSON`},
		{`null`, `want a JSON object`},
		// Issue 9: nothing of a line may write a SIP header of its own.
		{`{"params": {"group": "g", "uri": "sip:h"}, "variables": {"sip_h_X-Evil": "1\r\nVia: x"}}`, `variables.sip_h_X-Evil: contains CR/LF`},
		{`{"params": {"group": "g", "uri": "sip:h"}, "variables": {"origination_caller_id_name": "a\nb"}}`, `variables.origination_caller_id_name: contains CR/LF`},
		{`{"params": {"group": "g", "uri": "sip:h", "prefix": "9\r\n"}}`, `params.prefix: contains CR/LF`},
		{`{"params": {"group": "g", "uri": "sip:h", "username": "u\r\nVia: x"}}`, `params.username: contains CR/LF`},
		{`{"params": {"group": "g\n", "uri": "sip:h"}}`, `params.group: contains CR/LF`},
	}
	for _, c := range cases {
		_, err := parseLine("x", c.raw)
		if err == nil {
			t.Errorf("%s: accepted", c.raw)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got  %v\n want %s", c.raw, err, c.want)
		}
	}
}

func TestDialURI(t *testing.T) {
	cases := []struct {
		line   Line
		number string
		want   string
	}{
		{Line{URI: "sip:carrier.example.com:5060", Transport: "udp"}, "13800000000", "sip:13800000000@carrier.example.com:5060"},
		{Line{URI: "sip:trunk@10.0.0.1;user=phone", Transport: "udp", Prefix: "0086"}, "138", "sip:0086138@10.0.0.1;user=phone"},
		{Line{URI: "sip:10.0.0.1", Transport: "tcp"}, "#31#100", "sip:%2331%23100@10.0.0.1;transport=tcp"},
		{Line{URI: "sip:10.0.0.1;transport=TCP", Transport: "tcp"}, "1", "sip:1@10.0.0.1;transport=TCP"},
		{Line{URI: "sip:[2001:db8::1]:5080", Transport: "udp"}, "+4930", "sip:+4930@[2001:db8::1]:5080"},
	}
	for _, c := range cases {
		if got := c.line.DialURI(c.number); got != c.want {
			t.Errorf("DialURI(%q) on %q = %q, want %q", c.number, c.line.URI, got, c.want)
		}
	}
}

// Fuzzing found line URIs with a space after the host part: DialURI kept
// it and sipgo wrote "INVITE sip:1@0; 00000000 SIP/2.0", a request line
// of four words. A line URI is one token of printable ASCII.
func TestParseLineRefusesURIThatBreaksTheRequestLine(t *testing.T) {
	cases := []struct{ raw, want string }{
		{`{"params":{"group":"0","uri":"sip:0; 00000000"}}`, `params.uri: "sip:0; 00000000": character ' ' not allowed`},
		{`{"params":{"group":"g","uri":"sip:h;x=a b"}}`, `params.uri: "sip:h;x=a b": character ' ' not allowed`},
		{`{"params":{"group":"g","uri":"sip:h;x=a\tb"}}`, `params.uri: "sip:h;x=a\tb": character '\t' not allowed`},
		{`{"params":{"group":"g","uri":"sip:h;x=a\u0085b"}}`, `params.uri: "sip:h;x=a\u0085b": character '\u0085' not allowed`},
		{`{"params":{"group":"g","uri":"sip:h>;tag=1"}}`, `params.uri: "sip:h>;tag=1": character '>' not allowed`},
		{`{"params":{"group":"g","uri":"sip:h\r\nX-Evil: 1"}}`, `params.uri: contains CR/LF`},
		{`{"params":{"group":"g","uri":"sip:` + strings.Repeat("h", 600) + `"}}`, `params.uri: 604 bytes, at most 512`},
	}
	for _, c := range cases {
		_, err := parseLine("x", c.raw)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%.80s:\n got  %v\n want %s", c.raw, err, c.want)
		}
	}
	// Surrounding blanks are trimmed, as before.
	if l, err := parseLine("x", `{"params":{"group":"g","uri":" sip:h;x=a "}}`); err != nil || l.DialURI("1") != "sip:1@h;x=a" {
		t.Fatalf("trimmed URI: %q %v", l.DialURI("1"), err)
	}
}
