package lines

// Fuzz target for the decoder of cti_line@<domain> values: whoever writes
// that hash decides what redial writes into its INVITEs. `make test` runs
// it on its seed corpus; scripts/fuzz.sh (make chaos) fuzzes it.

import (
	"fmt"
	"strings"
	"testing"
	"unicode"

	"redial/internal/testenv"
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

// FuzzParseLine decodes line definitions: never a panic, errors naming the
// field, and an accepted line whose SIP-facing text (URI, username,
// prefix, variables) cannot write its own header and whose Request-URI
// is one token.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		// DESIGN.md's example and the unit tests' lines.
		`{"params": {"group": "g1", "uri": "sip:carrier.example.com:5060", "transport": "udp", "username": "", "password": "", "limit": 30, "cps": 10, "prefix": "", "enable": true}, "variables": {}}`,
		`{"params": {"group": "g1", "uri": "sip:carrier.example.com:5060", "transport": "TCP",
		"username": "u", "password": "p", "limit": 30, "cps": "10", "prefix": 9, "enable": true,
		"codec_hint": {"x": 1}},
		"variables": {"a": "x", "n": 60, "f": 1.50, "b": false, "gone": null}, "owner": "ops"}`,
		`{"params": {"group": "g", "uri": "sip:10.0.0.1;transport=tcp"}}`,
		`{"params": {"group": "g", "uri": "sip:h", "limit": 0, "enable": "false"}}`,
		`{"params": {"group": "g", "uri": "sip:user@[2001:db8::1]:5080;lr?X-H=1"}}`,
		`{"params": {"group": "g", "uri": "SIP:h:5060", "prefix": "0049"}, "variables": {"origination_caller_id_number": "15550001111", "sip_h_X-Line": "a"}}`,
		// Errors of the unit tests.
		`{"params": {"group": "g", "uri": "sip:h", "limit": "ten"}}`,
		`{"params": {"group": "g", "uri": "sip:h", "cps": 2.5}}`,
		`{"params": {"group": "g", "uri": "sip:h", "limit": -1}}`,
		`{"params": {"group": "g", "uri": "sip:h", "limit": 1e12}}`,
		`{"params": {"group": "g"}}`,
		`{"params": {"group": "g", "uri": "http://h"}}`,
		`{"params": {"group": "g", "uri": "sip:h:99999"}}`,
		`{"params": {"group": "g", "uri": "sip:"}}`,
		`{"params": {"group": "g", "uri": "sip:h", "transport": "sctp"}}`,
		`{"params": {"uri": "sip:h"}}`,
		`{"params": {"group": "g", "uri": "sip:h", "enable": "perhaps"}}`,
		`{"params": {"group": "g", "uri": "sip:h"}, "variables": {"x": [1]}}`,
		`{"params": {"group": "g", "uri": "sip:h"}, "variables": []}`,
		`{"params": []}`, `{"variables": {}}`, `{"params": {"group": "g", "uri": "sip:h"`, `null`,
		// Hostile: CR/LF/NUL in everything that reaches SIP, huge values,
		// invalid UTF-8, deep nesting, numbers as strings, nulls.
		`{"params": {"group": "g", "uri": "sip:h\r\nX-Evil: 1"}}`,
		`{"params": {"group": "g", "uri": "sip:h", "username": "u\r\nX-Evil: 1", "password": "p\n"}}`,
		`{"params": {"group": "g", "uri": "sip:h", "prefix": "9\r\n"}}`,
		`{"params": {"group": "g", "uri": "sip:h", "prefix": "` + strings.Repeat("9", 100) + `"}}`,
		`{"params": {"group": "g", "uri": "sip:h"}, "variables": {"sip_h_X-Evil": "a\r\nInjected: 1"}}`,
		`{"params": {"group": "g", "uri": "sip:h"}, "variables": {"bad name": "x", "nul": "\u0000"}}`,
		`{"params": {"group": "g", "uri": "sip:h"}, "variables": {"big": "` + strings.Repeat("v", 5000) + `"}}`,
		`{"params": {"group": "g\u0000", "uri": "sip:` + strings.Repeat("h", 1100) + `"}}`,
		`{"params": {"group": "g", "uri": "sip:[::1", "limit": "1e9", "cps": 1000000001}}`,
		`{"params": {"group": "g", "uri": "sip:h:", "limit": 100000000000000000000000000}}`,
		"{\"params\": {\"group\": \"g\xff\", \"uri\": \"sip:h\xfe\"}}",
		`{"params": {"group": "g", "uri": "sip:h", "x": ` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}}`,
		`{"params": {"group": null, "uri": null, "limit": null, "cps": null, "enable": null}, "variables": null}`,
		`{"params": {"group": 5, "uri": 5}}`,
		// Found by fuzzing: a space in the URI reached the request line.
		`{"params":{"group":"0","uri":"sip:0; 00000000"}}`,
		`{"params":{"group":"g","uri":"sip:h;x=a b"}}`,
		`{"params":{"group":"g","uri":"sip:h;x=a\tb"}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var l Line
		var err error
		testenv.FuzzRun(t, "parseLine", func() { l, err = parseLine("l1", raw) })
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("parseLine(%s): empty error", testenv.FuzzQuote(raw))
			}
			if testenv.FuzzJSONObject(raw) && !testenv.FuzzNamesField(err.Error(), "params", "variables") {
				t.Errorf("parseLine(%s): error %s names no field of the JSON object", testenv.FuzzQuote(raw), testenv.FuzzQuote(err.Error()))
			}
			return
		}
		what := fmt.Sprintf("parseLine(%s)", testenv.FuzzQuote(raw))
		testenv.FuzzVarsSafe(t, what, l.Variables)
		for field, v := range map[string]string{"params.uri": l.URI, "params.username": l.Username, "params.prefix": l.Prefix, "params.group": l.Group} {
			if strings.ContainsAny(v, "\r\n\x00") {
				t.Errorf("%s: accepted %s = %s holding CR, LF or NUL; it would write its own SIP header", what, field, testenv.FuzzQuote(v))
			}
		}
		if l.Group == "" || l.URI == "" || (l.Transport != "udp" && l.Transport != "tcp") {
			t.Errorf("%s: Group %q, URI %q, Transport %q", what, l.Group, l.URI, l.Transport)
		}
		for _, n := range []int{l.Limit, l.CPS} {
			if n != Unlimited && (n < 0 || n > 1e9) {
				t.Errorf("%s: Limit %d, CPS %d out of range", what, l.Limit, l.CPS)
			}
		}
		if _, err := parseSIPURI(l.URI); err != nil {
			t.Errorf("%s: accepted URI %s that parseSIPURI refuses: %v", what, testenv.FuzzQuote(l.URI), err)
		}
		// The Request-URI of every call on the line is one token of
		// printable characters: a space or control character would break
		// the request line or start another header.
		for _, n := range []string{"13800000000", "+4930123", "*86#", "alice"} {
			uri := l.DialURI(n)
			if i := strings.IndexFunc(uri, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
				t.Errorf("%s: DialURI(%q) = %s holds %q at byte %d", what, n, testenv.FuzzQuote(uri), uri[i], i)
			}
			if !strings.HasPrefix(uri, "sip:") {
				t.Errorf("%s: DialURI(%q) = %s", what, n, testenv.FuzzQuote(uri))
			}
		}
	})
}
