package ivr

// Fuzz targets for the decoders of IVR scripts (ivr_script@<domain>) and
// of components an external owner applies through ivrapi. The ivrapi
// frames themselves have no decoder yet (internal/ivrapi does not exist),
// so they have no target. `make test` runs these on their seed corpus;
// scripts/fuzz.sh (make chaos) fuzzes them.

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"redial/internal/files"
	"redial/internal/store"
	"redial/internal/testenv"
)

// fuzzEngine is an engine that only parses: its store's client points at
// a closed port (parsing never reads Redis) and its file stores live in a
// temporary folder.
func fuzzEngine(f *testing.F) *Engine {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	f.Cleanup(func() { rdb.Close() })
	st := store.NewWithClient(rdb, store.Config{Domain: "default", Host: "n1"})
	fs, err := files.New(files.Config{Root: f.TempDir(), Domain: "default"})
	if err != nil {
		f.Fatal(err)
	}
	e, err := New(Config{Domain: "default", Host: "n1"}, Deps{Store: st, Files: fs})
	if err != nil {
		f.Fatal(err)
	}
	return e
}

// fuzzScriptErr is the shape of every error about a script that is a JSON
// object: the script and hash, then the start field, the components
// array, an element of it, or a component by oId and oType followed by
// its property ("component 3 (oType 204): file: required").
var fuzzScriptErr = regexp.MustCompile(`^ivr: script "main" in ivr_script@default: (start: |components: |components\[\d+\]: |component -?\d+ \(oType -?\d+\): (?s).+?: )`)

// FuzzParseScript decodes IVR scripts: never a panic, errors naming the
// script, the component and the field, and an accepted script whose every
// route leads to a component of it.
func FuzzParseScript(f *testing.F) {
	e := fuzzEngine(f)
	for _, s := range []string{
		// The unit tests' scripts.
		`{"start":1,"extra":{"kept":true},"components":[
		{"oId":1,"oType":304,"name":"vars","variables":{"ok":"yes"},"transfer":"2","ui":{"x":10}},
		{"oId":"2","oType":"201"}]}`,
		`{"start":1,"components":[{"oId":1,"oType":204,"mode":0,"file":":GS_PUB/a.wav","transfer":3},{"oId":3,"oType":204,"mode":0}]}`,
		`{"start":2,"components":[{"oId":2,"oType":208,"recTimeSec":"ten"}]}`,
		`{"start":2,"components":[{"oId":2,"oType":208,"maxSymbolCount":1.5}]}`,
		`{"start":2,"components":[{"oId":2,"oType":208,"interruptSymbols":"4, x"}]}`,
		`{"start":4,"components":[{"oId":4,"oType":999999}]}`,
		`{"start":1,"components":[{"oId":1,"oType":201,"transfer":9}]}`,
		`{"start":1,"components":[{"oId":1,"oType":301,"transfers":{"1":1,"2":8}}]}`,
		`{"start":1,"components":[{"oId":1,"oType":301,"transfers":{"x":1}}]}`,
		`{"start":7,"components":[{"oId":1,"oType":201}]}`,
		`{"start":1,"components":[{"oId":1,"oType":201},{"oType":201}]}`,
		`{"start":1,"components":[{"oId":1,"oType":201},{"oId":1,"oType":201}]}`,
		`{"start":1,`,
		`{"start":1,"components":[{"oId":1,"oType":304,"variables":[1]}]}`,
		`{"start":1,"components":[{"oId":1,"oType":305,"timeoutSec":5}]}`,
		`{"start":1,"components":[{"oId":1,"oType":306,"account_id":"a"}]}`,
		// Every component type, routed.
		`{"start":1,"components":[
		{"oId":1,"oType":204,"mode":0,"file":":GS_PUB/hello.wav","transfer":2},
		{"oId":2,"oType":301,"file":":GS_PUB/menu.wav","timeoutSec":5,"retries":2,"transfers":{"1":3,"2":4,"a":5,"timeout":6,"error":6}},
		{"oId":3,"oType":302,"maxSymbolCount":4,"terminator":"#","timeoutSec":5,"interDigitSec":3,"transfer":7},
		{"oId":4,"oType":203,"number":"13","reinviteMode":2},
		{"oId":5,"oType":305,"key":"abc","params":{"x":1},"timeoutSec":30,"transfer":6},
		{"oId":6,"oType":201},
		{"oId":7,"oType":303,"timeSec":0.5,"transfer":8},
		{"oId":8,"oType":208,"recTimeSec":"10","maxSymbolCount":"3","interruptSymbols":"4, 5, 6","abortOnSilence":0,"transfer":9},
		{"oId":9,"oType":306,"account_id":"acc","vmbox_id":"box","beep":1,"transfer":10},
		{"oId":10,"oType":307,"account_id":"acc","vmbox_id":"box"}]}`,
		// Hostile.
		`null`, `[]`, `{}`, `{"start":null,"components":null}`,
		`{"start":1e300,"components":[{"oId":1e300,"oType":201}]}`,
		`{"start":"-0","components":[{"oId":-0,"oType":201,"transfer":" "}]}`,
		`{"start":1,"components":[{"oId":1,"oType":304,"variables":{"":1}}]}`,
		`{"start":1,"components":[{"oId":1,"oType":304,"variables":{"a":{"b":[1,2]},"c":null,"d":"x\r\ny"}}]}`,
		`{"start":1,"components":[{"oId":1,"oType":301,"transfers":{"1":1,"1 ":1}}]}`,
		`{"start":1,"components":[{"oId":1,"oType":201,"name":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}]}`,
		"{\"start\":1,\"components\":[{\"oId\":1,\"oType\":204,\"mode\":0,\"file\":\":GS_PUB/\xff.wav\"}]}",
		`{"start":1,"components":[{"oId":1,"oType":204,"mode":0,"file":":GS_PUB/../../../etc/passwd"}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var s *Script
		var err error
		testenv.FuzzRun(t, "parseScript", func() { s, err = e.parseScript("main", raw) })
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, `ivr: script "main" in ivr_script@default: `) {
				t.Fatalf("parseScript(%s): error %s does not name the script and its hash", testenv.FuzzQuote(raw), testenv.FuzzQuote(msg))
			}
			if testenv.FuzzJSONObject(raw) {
				if !fuzzScriptErr.MatchString(msg) {
					t.Errorf("parseScript(%s): error %s names no field", testenv.FuzzQuote(raw), testenv.FuzzQuote(msg))
				}
			}
			return
		}
		what := fmt.Sprintf("parseScript(%s)", testenv.FuzzQuote(raw))
		if s.ID != "main" || len(s.Components) == 0 {
			t.Fatalf("%s: %+v", what, s)
		}
		if _, ok := s.Components[s.Start]; !ok {
			t.Errorf("%s: start %d is no component", what, s.Start)
		}
		for oid, spec := range s.Components {
			if spec.OID != oid || spec.comp == nil || spec.Applied {
				t.Errorf("%s: component %d: %+v", what, oid, spec)
			}
			if _, ok := s.Components[spec.Next]; spec.HasNext && !ok {
				t.Errorf("%s: component %d: transfer to missing %d", what, oid, spec.Next)
			}
			for k, to := range spec.Transfers {
				if _, ok := s.Components[to]; !ok {
					t.Errorf("%s: component %d: transfers.%s to missing %d", what, oid, k, to)
				}
			}
		}
	})
}

// FuzzParseAppliedComponent decodes a component an external owner applies
// (ivrapi_component_apply's data): never a panic, errors naming the
// property, and an accepted component of a type owners may apply.
func FuzzParseAppliedComponent(f *testing.F) {
	e := fuzzEngine(f)
	for _, s := range []string{
		// The seed's examples.
		`{"oType": 204, "mode": 0, "file": ":GS_PUB/x/y/14.mp3"}`,
		`{"oType": 208, "recTimeSec": "10", "maxSymbolCount": "3", "interruptSymbols": "4, 5, 6", "abortOnSilence": 0}`,
		`{"oType":203, "number": "13", "reinviteMode":2}`,
		`{"oType":201}`,
		`{"oType":204, "mode":0, "file":":TEMP/14.mp3"}`,
		`{"oType":301, "file":":TEMP/menu.wav", "transfers":{"1":0,"2":0}}`,
		`{"oType":301}`,
		`{"oType":302, "maxSymbolCount": 4}`,
		`{"oType":304, "variables": {"a": 1}}`,
		`{"oType":305, "key": "abc"}`,
		`{"oType":307, "account_id": "a", "vmbox_id": "b"}`,
		// Hostile.
		`{"oType": 204, "mode": 1}`, `{"oType": "x"}`, `{"oId": 1}`, `{}`, `null`, `[]`, `"x"`,
		`{"oType": 203, "number": "13\r\nX-Evil: 1", "reinviteMode": 1e9}`,
		`{"oType": 208, "recTimeSec": 1e308, "abortOnSilence": "-1"}`,
		`{"oType": 302, "terminator": "\u0000", "timeoutSec": "NaN"}`,
		`{"oType": 304, "variables": {"sip_h_X": "a\r\nb"}, "transfer": "x"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var spec *Spec
		var err error
		testenv.FuzzRun(t, "parseSpec", func() { spec, err = e.parseSpec(json.RawMessage(raw), false) })
		if err != nil {
			var fe *FieldError
			if err.Error() == "" || (!errors.As(err, &fe) && err.Error() != "not a JSON object") {
				t.Errorf("parseSpec(%s): error %q names no property", testenv.FuzzQuote(raw), err)
			}
			if fe != nil && (fe.Field == "" || fe.Msg == "") {
				t.Errorf("parseSpec(%s): error %q", testenv.FuzzQuote(raw), err)
			}
			return
		}
		if !spec.Applied || spec.comp == nil {
			t.Errorf("parseSpec(%s): %+v", testenv.FuzzQuote(raw), spec)
		}
		if spec.OType == TypeExtControl {
			t.Errorf("parseSpec(%s): an owner may not apply external control", testenv.FuzzQuote(raw))
		}
		if reg, ok := e.factory(spec.OType); !ok || !reg.applicable {
			t.Errorf("parseSpec(%s): accepted oType %d, not applicable", testenv.FuzzQuote(raw), spec.OType)
		}
	})
}
