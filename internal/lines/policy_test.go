package lines

import (
	"reflect"
	"testing"
)

func TestTrunkFailure(t *testing.T) {
	cases := []struct {
		code                     int
		provisional, trans, none bool
		want                     bool
	}{
		{408, false, false, false, true}, // timeout, trunk silent
		{408, true, false, false, false}, // ring timeout / callee side after 1xx
		{500, false, false, false, true},
		{502, true, false, false, true},
		{503, false, false, false, true},
		{503, true, false, false, true},
		{504, false, false, false, true},
		{0, false, true, false, true},   // transport error, no 1xx
		{0, true, true, false, false},   // transport error after 1xx
		{0, false, false, true, true},   // no free line
		{0, false, false, false, false}, // nothing happened
		{404, false, false, false, false},
		{404, false, true, false, false},
		{480, false, false, false, false},
		{486, true, false, false, false},
		{487, true, false, false, false},
		{600, false, false, false, false},
		{603, false, false, false, false},
		{200, true, false, false, false},
		{202, false, false, false, false},
		{501, false, false, false, false},
		{403, false, false, false, false},
	}
	for _, c := range cases {
		if got := TrunkFailure(c.code, c.provisional, c.trans, c.none); got != c.want {
			t.Errorf("TrunkFailure(%d, provisional=%v, transportErr=%v, noLine=%v) = %v, want %v",
				c.code, c.provisional, c.trans, c.none, got, c.want)
		}
	}
}

func TestMergeVariables(t *testing.T) {
	number := map[string]string{"a": "number", "b": "number", "n": "1"}
	host := map[string]string{"a": "host", "h": "1"}
	template := map[string]string{"a": "template", "b": "template"}
	line := map[string]string{"a": "line"}
	got := MergeVariables(number, host, nil, template, line)
	want := map[string]string{"a": "line", "b": "template", "n": "1", "h": "1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	got["z"] = "x"
	if _, ok := line["z"]; ok {
		t.Fatal("result aliases a layer")
	}
	if MergeVariables() == nil {
		t.Fatal("nil result")
	}
}
