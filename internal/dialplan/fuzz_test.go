package dialplan

// Fuzz target for the decoder of cti_dialplan@<domain> entries. `make
// test` runs it on its seed corpus; scripts/fuzz.sh (make chaos) fuzzes
// it.

import (
	"fmt"
	"strings"
	"testing"

	"redial/internal/testenv"
	"redial/internal/validate"
)

// FuzzParse decodes dialplan entries: never a panic, errors naming the
// entry, the hash and the JSON key, and an accepted target complete for
// its type whose SIP URI cannot write its own header.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		// DESIGN.md's examples and the unit tests' entries.
		`{"type": "sip", "uri": "sip:8888@10.0.0.5:5060"}`,
		`{"type": "ivr", "script": "main"}`,
		`{"type": "queue", "queue": "sales"}`,
		`{"type": "user", "user": "1001"}`,
		`{"type": "hangup"}`,
		`{"type": "sips", "uri": "sips:a@b"}`,
		`{"type":"sip","uri":"sip:8888@127.0.0.1:5099","extra":{"kept":true}}`,
		`{"type":"sip"}`, `{"type":"sip","uri":"http://x"}`, `{"type":"fax"}`, `{"type":7}`, `{"type":"ivr"}`,
		`not json`, `{}`, `null`, `[]`, `{"type":"sip","uri":5}`,
		// Hostile.
		`{"type": "sip", "uri": "sip:` + strings.Repeat("8", 300) + `@h"}`,
		"{\"type\": \"ivr\", \"script\": \"m\xffain\"}",
		`{"type": "queue", "queue": ` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`,
		`{"type": null, "uri": null}`,
		`{"type": "SIP", "uri": "SIP:x"}`,
		// Found by fuzzing: a URI and a user that wrote their own header.
		`{"type":"sip","uri":"sip:8888@10.0.0.5\r\nX-Evil:1"}`,
		`{"type":"user","user":"1001\u0000"}`,
		`{"type":"sip","uri":"sip:8888@10.0.0.5 SIP/2.0"}`,
		`{"type":"sip","uri":"sip:a@b>;tag=x"}`,
		`{"type":"sip","uri":"sip:"}`,
	} {
		f.Add(s)
	}
	const prefix = `dialplan: entry "default:8888" in cti_dialplan@default: `
	f.Fuzz(func(t *testing.T, raw string) {
		var tg Target
		var err error
		testenv.FuzzRun(t, "Parse", func() { tg, err = Parse("cti_dialplan@default", "default:8888", raw) })
		if err != nil {
			rest, ok := strings.CutPrefix(err.Error(), prefix)
			if !ok || rest == "" {
				t.Fatalf("Parse(%s): error %s does not name the entry and the hash", testenv.FuzzQuote(raw), testenv.FuzzQuote(err.Error()))
			}
			if testenv.FuzzJSONObject(raw) {
				named := false
				for _, k := range []string{"type", "uri", "script", "queue", "user"} {
					named = named || strings.HasPrefix(rest, k+": ")
				}
				if !named {
					t.Errorf("Parse(%s): error %s names no key of the entry", testenv.FuzzQuote(raw), testenv.FuzzQuote(err.Error()))
				}
			}
			return
		}
		what := fmt.Sprintf("Parse(%s)", testenv.FuzzQuote(raw))
		if tg.Key != "default:8888" {
			t.Errorf("%s: Key %q", what, tg.Key)
		}
		var need string
		switch tg.Type {
		case TypeSIP:
			need = tg.URI
			if !strings.HasPrefix(tg.URI, "sip:") && !strings.HasPrefix(tg.URI, "sips:") {
				t.Errorf("%s: URI %s is not a sip: URI", what, testenv.FuzzQuote(tg.URI))
			}
		case TypeIVR:
			need = tg.Script
		case TypeQueue:
			need = tg.Queue
		case TypeUser:
			need = tg.User
		case TypeHangup:
			need = "-"
		default:
			t.Fatalf("%s: accepted type %q", what, tg.Type)
		}
		if need == "" {
			t.Errorf("%s: accepted type %q without its target", what, tg.Type)
		}
		// The URI becomes the Request-URI and To of the INVITE; the user
		// becomes a Request-URI user part.
		for k, v := range map[string]string{"uri": tg.URI, "user": tg.User} {
			if strings.ContainsAny(v, "\r\n\x00") {
				t.Errorf("%s: accepted %s %s holding CR, LF or NUL; it would write its own SIP header", what, k, testenv.FuzzQuote(v))
			}
		}
		// The URI is one token of the request line, of bounded length.
		if tg.Type == TypeSIP {
			if i := strings.IndexFunc(tg.URI, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune("<>\"", r) }); i >= 0 {
				t.Errorf("%s: accepted URI %s holding %q at byte %d", what, testenv.FuzzQuote(tg.URI), tg.URI[i], i)
			}
			if len(tg.URI) > validate.MaxSIPURILen {
				t.Errorf("%s: accepted URI of %d bytes", what, len(tg.URI))
			}
		}
		if tg.Type == TypeUser {
			if err := validate.NumberField("user", tg.User); err != nil {
				t.Errorf("%s: accepted user %s that validate refuses: %v", what, testenv.FuzzQuote(tg.User), err)
			}
		}
	})
}
