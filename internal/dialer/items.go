package dialer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"redial/internal/jsonfield"
	"redial/internal/validate"
)

// MaxItemBytes bounds a JSON queue item: one that carries the most
// numbers and variables redial accepts stays far below it, so a larger one
// is refused before it is decoded.
const MaxItemBytes = 256 << 10

// Item is one entry of a number queue: plain text "13800000000" or
// {"params": {"number": ...}, "variables": {...}}.
type Item struct {
	// Raw is the entry exactly as found in the queue; claims and acks
	// name it by this value.
	Raw string
	// Numbers are tried in order, stopping at the first that connects.
	Numbers []string
	// ContactRef is the integrator's reference, copied into CDRs.
	ContactRef string
	// Location is the callee's zone (params.timezone); nil when not given.
	Location *time.Location
	// Variables are the number's channel variables, the lowest in
	// precedence.
	Variables map[string]string
	// Attempt counts the retries so far (params.redial_attempt, written by
	// WithRetry).
	Attempt int
	// RetryCount counts the retries so far per disposition
	// (params.redial_retries, written by WithRetry).
	RetryCount map[string]int
}

// ParseItem decodes a queue entry. A plain-text entry is one number; a
// JSON object needs params.number, a string, a JSON integer (taken as
// written: integrators often send 13800000000 unquoted) or an array of
// them. contact_ref and timezone may sit in params or at the top level
// (params wins). Unknown fields are ignored. Numbers, variables and
// contact_ref are checked with package validate, as every other entry
// point checks them. Errors name the field at fault and stay short
// whatever the item holds.
func ParseItem(raw string) (Item, error) {
	it, err := parseItem(raw)
	return it, validate.Short(err)
}

func parseItem(raw string) (Item, error) {
	it := Item{Raw: raw}
	s := strings.TrimSpace(raw)
	switch {
	case s == "":
		return it, &jsonfield.Error{Msg: "empty item"}
	case s[0] == '"':
		// A JSON-encoded string: someone pushed json.dumps("1380...").
		var n string
		if json.Unmarshal([]byte(s), &n) != nil {
			return it, &jsonfield.Error{Msg: "invalid JSON string " + validate.Truncate(s, 64)}
		}
		s = strings.TrimSpace(n)
		fallthrough
	case s[0] != '{' && s[0] != '[':
		if s == "" {
			return it, &jsonfield.Error{Msg: "empty item"}
		}
		if err := validate.Number(s); err != nil {
			return it, err
		}
		it.Numbers = []string{s}
		return it, nil
	case s[0] == '[':
		return it, &jsonfield.Error{Msg: "want a number or a JSON object, got an array"}
	}
	if len(s) > MaxItemBytes {
		return it, &jsonfield.Error{Msg: fmt.Sprintf("item: %d bytes, at most %d", len(s), MaxItemBytes)}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &top); err != nil {
		return it, &jsonfield.Error{Msg: "invalid JSON: " + err.Error()}
	}
	params, err := jsonfield.Object("params", top["params"])
	if err != nil {
		return it, err
	}
	if it.Numbers, err = numbers("params.number", params["number"]); err != nil {
		return it, err
	}
	for _, f := range []string{"params.contact_ref", "contact_ref"} {
		src := top
		if strings.HasPrefix(f, "params.") {
			src = params
		}
		v, err := jsonfield.String(f, src[strings.TrimPrefix(f, "params.")], true)
		if err != nil {
			return it, err
		}
		if err := validate.Ref(f, v); err != nil {
			return it, err
		}
		if v != "" {
			it.ContactRef = v
			break
		}
	}
	for _, f := range []string{"params.timezone", "timezone"} {
		src := top
		if strings.HasPrefix(f, "params.") {
			src = params
		}
		loc, err := zone(f, src[strings.TrimPrefix(f, "params.")], nil)
		if err != nil {
			return it, err
		}
		if loc != nil {
			it.Location = loc
			break
		}
	}
	if it.Variables, err = jsonfield.Variables("variables", top["variables"]); err != nil {
		return it, err
	}
	if err := validate.VariablesField("variables", it.Variables); err != nil {
		return it, err
	}
	attempt, _, err := count("params.redial_attempt", params["redial_attempt"])
	if err != nil {
		return it, err
	}
	it.Attempt = attempt
	retries, err := jsonfield.Object("params.redial_retries", params["redial_retries"])
	if err != nil {
		return it, err
	}
	for k, v := range retries {
		n, _, err := count("params.redial_retries."+k, v)
		if err != nil {
			return it, err
		}
		if it.RetryCount == nil {
			it.RetryCount = map[string]int{}
		}
		it.RetryCount[k] = n
	}
	return it, nil
}

// numbers decodes params.number.
func numbers(field string, raw json.RawMessage) ([]string, error) {
	if jsonfield.IsNull(raw) {
		return nil, &jsonfield.Error{Field: field, Msg: "missing"}
	}
	if t := bytes.TrimSpace(raw); t[0] != '[' {
		n, err := oneNumber(field, raw)
		if err != nil {
			return nil, err
		}
		return []string{n}, nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil, jsonfield.WantGot(field, "string or array of strings", raw)
	}
	if len(items) == 0 {
		return nil, &jsonfield.Error{Field: field, Msg: "empty array"}
	}
	if len(items) > validate.MaxNumbers {
		return nil, &jsonfield.Error{Field: field, Msg: fmt.Sprintf("%d numbers, at most %d", len(items), validate.MaxNumbers)}
	}
	out := make([]string, 0, len(items))
	for i, r := range items {
		n, err := oneNumber(fmt.Sprintf("%s[%d]", field, i), r)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// oneNumber decodes a number given as a string or a JSON integer.
func oneNumber(field string, raw json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		n, ok := jsonfield.Number(raw)
		if !ok || strings.Trim(n.String(), "0123456789") != "" {
			// Not a plain integer: 1.38e10 or -5 is not a phone number.
			return "", jsonfield.WantGot(field, "string or array of strings", raw)
		}
		s = n.String()
	}
	if s = strings.TrimSpace(s); s == "" {
		return "", &jsonfield.Error{Field: field, Msg: "empty"}
	}
	if err := validate.NumberField(field, s); err != nil {
		return "", err
	}
	return s, nil
}

// WithRetry returns the entry to queue again after a call that ended with
// disposition: the original JSON object with every field kept (numbers as
// written) and params.redial_attempt and
// params.redial_retries[disposition] incremented. A plain-text entry
// becomes {"params": {"number": "..."}}.
func (it Item) WithRetry(disposition string) string {
	var obj map[string]any
	if s := strings.TrimSpace(it.Raw); strings.HasPrefix(s, "{") {
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		if d.Decode(&obj) != nil {
			obj = nil
		}
	}
	if obj == nil {
		var n any = it.Numbers
		if len(it.Numbers) == 1 {
			n = it.Numbers[0]
		}
		obj = map[string]any{"params": map[string]any{"number": n}}
	}
	params, ok := obj["params"].(map[string]any)
	if !ok {
		params = map[string]any{}
		obj["params"] = params
	}
	params["redial_attempt"] = it.Attempt + 1
	retries, ok := params["redial_retries"].(map[string]any)
	if !ok {
		retries = map[string]any{}
		params["redial_retries"] = retries
	}
	retries[disposition] = it.RetryCount[disposition] + 1
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(obj); err != nil {
		// Only unencodable values fail, and decoded JSON has none.
		panic("dialer: re-encoding a queue item: " + err.Error())
	}
	return strings.TrimSuffix(b.String(), "\n")
}
