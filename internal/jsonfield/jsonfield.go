// Package jsonfield decodes the loosely typed JSON that integrators write
// into Redis (numbers as strings, bare numbers for strings, null for
// absent) one field at a time, with errors that name the field.
package jsonfield

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"redial/internal/validate"
)

// Error names the JSON field at fault; Field is empty for the whole value.
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// WantGot is the error for a value of the wrong type, quoting (at most 60
// bytes of) what was found.
func WantGot(field, want string, raw json.RawMessage) *Error {
	got := string(bytes.TrimSpace(raw))
	if len(got) > 60 {
		got = got[:57] + "..."
	}
	return &Error{Field: field, Msg: "want " + want + ", got " + got}
}

// IsNull reports an absent or null value.
func IsNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// Object decodes an optional JSON object; nil when absent or null.
func Object(field string, raw json.RawMessage) (map[string]json.RawMessage, error) {
	if IsNull(raw) {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, WantGot(field, "object", raw)
	}
	return m, nil
}

// Number returns a JSON number exactly as written.
func Number(raw json.RawMessage) (json.Number, bool) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "", false
	}
	n, ok := v.(json.Number)
	return n, ok
}

// String decodes an optional string ("" when absent); a number is taken as
// written when allowNumber (extensions and prefixes are often bare: 8888).
func String(field string, raw json.RawMessage, allowNumber bool) (string, error) {
	if IsNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	if allowNumber {
		if n, ok := Number(raw); ok {
			return n.String(), nil
		}
	}
	return "", WantGot(field, "string", raw)
}

// Bool decodes true/false, "true"/"false" or 1/0; def when absent or null.
func Bool(field string, raw json.RawMessage, def bool) (bool, error) {
	if IsNull(raw) {
		return def, nil
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return b, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if v, err := strconv.ParseBool(strings.TrimSpace(s)); err == nil {
			return v, nil
		}
	}
	if n, ok := Number(raw); ok {
		switch n.String() {
		case "0":
			return false, nil
		case "1":
			return true, nil
		}
	}
	return false, WantGot(field, "bool", raw)
}

// Describe renders a decoded value for an error message: scalars as JSON
// (strings quoted), containers by kind, so a message stays one short line.
func Describe(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case nil:
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}

// Scalar decodes a channel variable's value: a string as it is, a number
// exactly as written (13800000000 stays 13800000000, never 1.38e+10), a
// bool as "true"/"false"; set is false for absent or null.
func Scalar(field string, raw json.RawMessage) (s string, set bool, err error) {
	if IsNull(raw) {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, true, nil
	}
	if n, ok := Number(raw); ok {
		return n.String(), true, nil
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return strconv.FormatBool(b), true, nil
	}
	return "", false, WantGot(field, "string, number or bool", raw)
}

// Variables decodes a channel variables object into strings with Scalar;
// null values are left out, nil when absent or empty. An error names the
// variable with at most validate.MaxVariableNameLen bytes of its name (a
// longer name is invalid anyway), so it stays short.
func Variables(field string, raw json.RawMessage) (map[string]string, error) {
	m, err := Object(field, raw)
	if err != nil || len(m) == 0 {
		return nil, err
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		s, set, err := Scalar(field+"."+validate.Truncate(k, validate.MaxVariableNameLen), v)
		if err != nil {
			return nil, err
		}
		if set {
			out[k] = s
		}
	}
	return out, nil
}
