package jsonfield

// Fuzz target for the field decoders every config and queue decoder is
// built on. `make test` runs it on its seed corpus; scripts/fuzz.sh (make
// chaos) fuzzes it.

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"redial/internal/testenv"
	"redial/internal/validate"
)

// FuzzDecoders runs every decoder on every value of a JSON object: never a
// panic, errors of type *Error naming the field and quoting at most a
// short prefix of the value, and values taken exactly as written.
func FuzzDecoders(f *testing.F) {
	for _, s := range []string{
		`{"s": "8888", "n": 8888, "big": 123456789012345678901234567890, "frac": 0.1, "neg": -5, "e": 1.38e10, "t": true, "f": false, "z": null}`,
		`{"b1": "true", "b2": "false", "b3": 1, "b4": 0, "b5": " TRUE ", "b6": "maybe", "b7": 2}`,
		`{"o": {"a": 1}, "a": [1], "emptyo": {}, "emptya": []}`,
		`{"v": {"origination_caller_id_number": 13800000000, "big": 123456789012345678901234567890, "frac": 0.1, "neg": -5, "s": "x", "b": true, "n": null}}`,
		`{"v": {"x": {"y": 1}}}`,
		`{"long": "` + strings.Repeat("0123456789", 20) + `", "v": {"long": [` + strings.Repeat(`"x",`, 100) + `1]}}`,
		`{"crlf": "a\r\nb", "nul": "\u0000", "esc": "\u2028\ud800", "html": "<&>"}`,
		"{\"bad\": \"\xff\xfe\", \"v\": {\"k\xff\": \"\xc3\x28\"}}",
		`{"deep": ` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`,
		`{"num": 1e400, "neg0": -0, "exp": 1E+2}`,
		// A Variables error used to name the whole variable name.
		`{"v": {"` + strings.Repeat("k", 3000) + `": [1]}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		var top map[string]json.RawMessage
		if json.Unmarshal([]byte(doc), &top) != nil {
			return
		}
		for k, raw := range top {
			field := "params." + k
			testenv.FuzzRun(t, "decoders", func() { fuzzCheckValue(t, field, raw) })
		}
	})
}

// fuzzCheckValue checks every decoder on one JSON value raw.
func fuzzCheckValue(t *testing.T, field string, raw json.RawMessage) {
	what := fmt.Sprintf("%s = %s", testenv.FuzzQuote(field), testenv.FuzzQuote(string(raw)))
	// checkErr: an *Error naming field (or field.<key> for Variables) and
	// quoting at most 60 bytes of the value.
	checkErr := func(fn string, err error, sub bool) {
		t.Helper()
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s(%s): error %v is not a *jsonfield.Error", fn, what, err)
			return
		}
		if e.Msg == "" || (e.Field != field && !(sub && strings.HasPrefix(e.Field, field+"."))) {
			t.Errorf("%s(%s): error %q names field %q, want %q", fn, what, e.Error(), e.Field, field)
		}
		// The message quotes at most a short prefix of the value; the
		// field path holds the caller's key as it is (callers bound the
		// whole error with validate.Short) and at most a short prefix of
		// a variable name.
		if len(e.Msg) > 120 {
			t.Errorf("%s(%s): error message of %d bytes quotes too much of the value", fn, what, len(e.Msg))
		}
		if sub && len(e.Field) > len(field)+1+validate.MaxVariableNameLen+32 {
			t.Errorf("%s(%s): error field of %d bytes quotes too much of the variable name", fn, what, len(e.Field))
		}
	}
	null := IsNull(raw)
	var str string
	isStr := !null && json.Unmarshal(raw, &str) == nil
	num, isNum := Number(raw)
	var b bool
	isBool := !null && json.Unmarshal(raw, &b) == nil

	if isNum {
		// A number is kept exactly as written: 13800000000 never becomes
		// 1.38e+10.
		if got := num.String(); got != strings.TrimSpace(string(raw)) {
			t.Errorf("Number(%s) = %q, want the literal", what, got)
		}
	}

	s, err := String(field, raw, true)
	switch {
	case null && (err != nil || s != ""):
		t.Errorf("String(%s) = %q, %v; want \"\" for null", what, s, err)
	case isStr && (err != nil || s != str):
		t.Errorf("String(%s) = %q, %v; want %q", what, s, err, str)
	case isNum && (err != nil || s != num.String()):
		t.Errorf("String(%s) = %q, %v; want the number as written", what, s, err)
	case !null && !isStr && !isNum && err == nil:
		t.Errorf("String(%s) = %q; want an error", what, s)
	case err != nil:
		checkErr("String", err, false)
	}
	if isStr && utf8.ValidString(str) {
		enc, _ := json.Marshal(str)
		if back, err := String(field, enc, false); err != nil || back != str {
			t.Errorf("String(Marshal(%q)) = %q, %v", str, back, err)
		}
	}

	v, set, err := Scalar(field, raw)
	switch {
	case null && (err != nil || set):
		t.Errorf("Scalar(%s) = %q, %v, %v; want unset", what, v, set, err)
	case (isStr || isNum || isBool) && (err != nil || !set):
		t.Errorf("Scalar(%s) = %q, %v, %v; want a value", what, v, set, err)
	case isNum && v != num.String(), isStr && v != str:
		t.Errorf("Scalar(%s) = %q; want the value as written", what, v)
	case err != nil:
		checkErr("Scalar", err, false)
	}

	got, err := Bool(field, raw, true)
	switch {
	case null && (err != nil || !got):
		t.Errorf("Bool(%s) = %v, %v; want the default", what, got, err)
	case isBool && (err != nil || got != b):
		t.Errorf("Bool(%s) = %v, %v; want %v", what, got, err, b)
	case err != nil:
		checkErr("Bool", err, false)
	}

	obj, err := Object(field, raw)
	if err != nil {
		checkErr("Object", err, false)
	} else if null != (obj == nil) {
		t.Errorf("Object(%s) = %v", what, obj)
	}

	vars, err := Variables(field, raw)
	if err != nil {
		checkErr("Variables", err, true)
		return
	}
	for k, val := range obj {
		want, set, err := Scalar(field+"."+k, val)
		if err != nil {
			t.Errorf("Variables(%s) accepted %q whose Scalar fails: %v", what, k, err)
		}
		if got, ok := vars[k]; ok != set || got != want {
			t.Errorf("Variables(%s)[%q] = %q, %v; want %q, %v", what, k, got, ok, want, set)
		}
	}
}
