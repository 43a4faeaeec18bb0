package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"

	"redial/internal/call"
	"redial/internal/dialplan"
	"redial/internal/validate"
)

// decodeOriginate reads the body of POST /api/v1/calls field by field, so
// an error names the field at fault, and checks it with package validate
// as the queue dialer checks its items.
func decodeOriginate(body []byte) (call.Request, error) {
	var dest dialplan.Destination
	req, oneNumber, oneGroup, err := decodeCallBody(body, "number, line_group, destination, variables, call_ref, contact_ref, campaign_ref", map[string]func(json.RawMessage) error{
		"destination": func(raw json.RawMessage) error { return decodeDestination(raw, &dest) },
	})
	if err != nil {
		return req, err
	}
	req.Destination = dest
	if err := checkOriginate(req, oneNumber, oneGroup); err != nil {
		return req, err
	}
	return req, call.Validate(req)
}

// decodeCallBody reads the fields every call request shares (number,
// line_group, variables, call_ref, contact_ref, campaign_ref) and hands the
// others named in extra to their decoders; any other field is refused,
// naming the fields the request takes. A
// single string names its field as sent ("number", not "number[0]"): one*
// say so.
func decodeCallBody(body []byte, fields string, extra map[string]func(json.RawMessage) error) (req call.Request, oneNumber, oneGroup bool, err error) {
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return req, false, false, fmt.Errorf("body: malformed JSON: %w", err)
	}
	if err := onlyValue(dec); err != nil {
		return req, false, false, err
	}
	if m == nil {
		return req, false, false, errors.New("body: want a JSON object")
	}
	for k, raw := range m {
		var err error
		switch k {
		case "number":
			req.Numbers, oneNumber, err = stringOrArray(raw)
		case "line_group":
			req.LineGroups, oneGroup, err = stringOrArray(raw)
		case "variables":
			req.Variables, err = StringMap(raw)
		case "call_ref":
			err = jsonString(raw, &req.CallRef)
		case "contact_ref":
			err = jsonString(raw, &req.ContactRef)
		case "campaign_ref":
			err = jsonString(raw, &req.CampaignRef)
		default:
			if f, ok := extra[k]; ok {
				err = f(raw)
				break
			}
			err = fmt.Errorf("unknown field (want %s)", fields)
		}
		if err != nil {
			return req, false, false, fmt.Errorf("%s: %w", fieldName(k), err)
		}
	}
	if req.Variables == nil {
		req.Variables = map[string]string{}
	}
	return req, oneNumber, oneGroup, nil
}

// checkOriginate applies the bounds every entry point shares.
func checkOriginate(req call.Request, oneNumber, oneGroup bool) error {
	var err error
	switch {
	case len(req.Numbers) == 0:
		return errors.New("number: required")
	case oneNumber:
		err = validate.NumberField("number", req.Numbers[0])
	default:
		err = validate.Numbers("number", req.Numbers)
	}
	if err != nil {
		return err
	}
	switch {
	case len(req.LineGroups) == 0:
		return errors.New("line_group: required")
	case oneGroup && req.LineGroups[0] == "":
		return errors.New("line_group: empty")
	case oneGroup:
		err = validate.Text("line_group", req.LineGroups[0], validate.MaxNameLen)
	default:
		err = validate.LineGroups("line_group", req.LineGroups)
	}
	if err != nil {
		return err
	}
	if err := validate.Variables(req.Variables); err != nil {
		return err
	}
	d := req.Destination
	if d.Extension != "" {
		if err := validate.NumberField("destination.extension", d.Extension); err != nil {
			return err
		}
	}
	for _, f := range [...]struct{ name, v string }{{"destination.context", d.Context}, {"destination.dialplan", d.Dialplan}} {
		if err := validate.Text(f.name, f.v, validate.MaxNameLen); err != nil {
			return err
		}
	}
	for _, f := range [...]struct{ name, v string }{{"call_ref", req.CallRef}, {"contact_ref", req.ContactRef}, {"campaign_ref", req.CampaignRef}} {
		if err := validate.Ref(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}

// fieldName renders a JSON key from a request for an error: at most a
// short prefix of it.
func fieldName(k string) string { return validate.Truncate(k, 64) }

func decodeDestination(raw json.RawMessage, d *dialplan.Destination) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return fmt.Errorf("want object {extension, dialplan, context}, got %s", jsonKind(raw))
	}
	for k, v := range m {
		var err error
		switch k {
		case "extension":
			err = jsonString(v, &d.Extension)
		case "dialplan":
			err = jsonString(v, &d.Dialplan)
		case "context":
			err = jsonString(v, &d.Context)
		default:
			err = errors.New("unknown field (want extension, dialplan, context)")
		}
		if err != nil {
			return fmt.Errorf("%s: %w", fieldName(k), err)
		}
	}
	return nil
}

func jsonString(raw json.RawMessage, dst *string) error {
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("want string, got %s", jsonKind(raw))
	}
	return nil
}

// stringOrArray decodes a string (one is true) or an array of strings.
func stringOrArray(raw json.RawMessage) (list []string, one bool, err error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, true, nil
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, false, fmt.Errorf("want string or array of strings, got %s", jsonKind(raw))
	}
	return list, false, nil
}

// StringMap decodes a JSON object of channel variables; numbers and bools
// are turned into their text, as FreeSWITCH variables are all strings.
func StringMap(raw json.RawMessage) (map[string]string, error) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("want object of strings, got %s", jsonKind(raw))
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case string:
			out[k] = x
		case json.Number:
			out[k] = x.String()
		case bool:
			out[k] = strconv.FormatBool(x)
		case nil:
			out[k] = ""
		default:
			return nil, fmt.Errorf("%s: want string, number or bool, got %T", fieldName(k), v)
		}
	}
	return out, nil
}

func jsonKind(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

func (s *Server) postCall(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, maxBody)
	if err != nil {
		s.writeBodyError(w, r, err)
		return
	}
	req, err := decodeOriginate(body)
	if err != nil {
		s.badRequest(w, r, validate.Short(err))
		return
	}
	c, err := s.deps.Calls.Originate(r.Context(), req)
	if errors.Is(err, call.ErrDuplicateRef) {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "call_ref: " + err.Error()})
		return
	}
	if errors.Is(err, call.ErrStopped) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	if err != nil {
		s.badRequest(w, r, validate.Short(err))
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"call_ref": c.Ref()})
}

func (s *Server) listCalls(w http.ResponseWriter, r *http.Request) {
	list := s.deps.Calls.Calls()
	sort.Slice(list, func(i, j int) bool { return list[i].Start.Before(list[j].Start) })
	writeJSON(w, http.StatusOK, map[string]any{"calls": list})
}

func (s *Server) deleteCall(w http.ResponseWriter, r *http.Request) {
	if !s.deps.Calls.Hangup(r.PathValue("ref")) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "call_ref: no such call in progress"})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"call_ref": r.PathValue("ref"), "status": "hanging up"})
}
