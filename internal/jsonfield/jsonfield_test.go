package jsonfield

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecoders(t *testing.T) {
	if s, err := String("p.x", json.RawMessage(`8888`), true); err != nil || s != "8888" {
		t.Fatalf("bare number as string: %q %v", s, err)
	}
	if _, err := String("p.x", json.RawMessage(`8888`), false); err == nil || err.Error() != "p.x: want string, got 8888" {
		t.Fatalf("number refused: %v", err)
	}
	for raw, want := range map[string]bool{`true`: true, `"false"`: false, `1`: true, `0`: false, `null`: true, ``: true} {
		if b, err := Bool("e", json.RawMessage(raw), true); err != nil || b != want {
			t.Errorf("Bool(%s) = %v %v, want %v", raw, b, err, want)
		}
	}
	if _, err := Bool("params.enable", json.RawMessage(`"maybe"`), true); err == nil || err.Error() != `params.enable: want bool, got "maybe"` {
		t.Fatalf("bad bool: %v", err)
	}
	if m, err := Object("params", json.RawMessage(`{"a":1}`)); err != nil || string(m["a"]) != "1" {
		t.Fatalf("object: %v %v", m, err)
	}
	if _, err := Object("params", json.RawMessage(`[1]`)); err == nil || err.Error() != "params: want object, got [1]" {
		t.Fatalf("bad object: %v", err)
	}
	long := `"` + string(make([]byte, 0)) + "0123456789012345678901234567890123456789012345678901234567890123456789" + `"`
	if err := WantGot("f", "number", json.RawMessage(long)); len(err.Msg) > 80 {
		t.Fatalf("long values are not shortened: %q", err.Msg)
	}
}

// Numbers keep every digit: a caller ID written as a JSON number must not
// reach an INVITE as 1.38e+10.
func TestVariablesKeepEveryDigit(t *testing.T) {
	raw := json.RawMessage(`{"origination_caller_id_number": 13800000000, "big": 123456789012345678901234567890,
		"frac": 0.1, "neg": -5, "s": "x", "b": true, "n": null}`)
	got, err := Variables("variables", raw)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"origination_caller_id_number": "13800000000", "big": "123456789012345678901234567890",
		"frac": "0.1", "neg": "-5", "s": "x", "b": "true"}
	if len(got) != len(want) {
		t.Fatalf("Variables = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, err := Variables("variables", json.RawMessage(`{"x": {"y": 1}}`)); err == nil || err.Error() != `variables.x: want string, number or bool, got {"y": 1}` {
		t.Fatalf("object value: %v", err)
	}
}

// The field of a Variables error held the whole variable name, so a line
// or task config with a 1 MB name had a 1 MB error; the name is now cut
// short (a valid name, at most 128 bytes, stays whole).
func TestVariablesErrorQuotesAShortName(t *testing.T) {
	long := strings.Repeat("k", 1<<20)
	_, err := Variables("variables", json.RawMessage(`{"`+long+`": [1]}`))
	var e *Error
	if !errors.As(err, &e) || !strings.HasPrefix(e.Field, "variables.kkkk") || len(e.Field) > 200 ||
		!strings.HasSuffix(e.Field, "... (1048576 bytes)") || e.Msg != "want string, number or bool, got [1]" {
		t.Fatalf("%d bytes: %.200v", len(err.Error()), err)
	}
	name := strings.Repeat("n", 128)
	if _, err := Variables("variables", json.RawMessage(`{"`+name+`": {}}`)); err == nil || err.Error() != "variables."+name+": want string, number or bool, got {}" {
		t.Fatalf("128-byte name: %v", err)
	}
}
