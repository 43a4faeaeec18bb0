package jsonfield

import (
	"encoding/json"
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
