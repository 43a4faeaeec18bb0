package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"redial/internal/call"
	"redial/internal/validate"
)

// decodeClick reads the body of POST /api/v1/click2dial field by field, so
// an error names the field at fault, with the bounds POST /api/v1/calls
// applies.
func decodeClick(body []byte) (call.ClickRequest, error) {
	var req call.ClickRequest
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return req, fmt.Errorf("body: malformed JSON: %w", err)
	}
	if err := onlyValue(dec); err != nil {
		return req, err
	}
	if m == nil {
		return req, errors.New("body: want a JSON object")
	}
	oneNumber, oneGroup := false, false
	for k, raw := range m {
		var err error
		switch k {
		case "ext":
			err = jsonString(raw, &req.Ext)
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
			err = errors.New("unknown field (want ext, number, line_group, variables, call_ref, contact_ref, campaign_ref)")
		}
		if err != nil {
			return req, fmt.Errorf("%s: %w", fieldName(k), err)
		}
	}
	if req.Variables == nil {
		req.Variables = map[string]string{}
	}
	if req.Ext == "" {
		return req, errors.New("ext: required")
	}
	if err := validate.NumberField("ext", req.Ext); err != nil {
		return req, err
	}
	if err := checkOriginate(call.Request{Numbers: req.Numbers, LineGroups: req.LineGroups, Variables: req.Variables,
		CallRef: req.CallRef, ContactRef: req.ContactRef, CampaignRef: req.CampaignRef}, oneNumber, oneGroup); err != nil {
		return req, err
	}
	return req, call.ValidateClick(req)
}

func (s *Server) postClick(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, maxBody)
	if err != nil {
		s.writeBodyError(w, r, err)
		return
	}
	req, err := decodeClick(body)
	if err != nil {
		s.badRequest(w, r, validate.Short(err))
		return
	}
	ref, err := s.deps.Calls.ClickToDial(r.Context(), req)
	switch {
	case errors.Is(err, call.ErrDuplicateRef):
		writeJSON(w, http.StatusConflict, map[string]string{"error": "call_ref: " + err.Error()})
	case errors.Is(err, call.ErrStopped), errors.Is(err, call.ErrNoAgents):
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	case err != nil:
		s.badRequest(w, r, validate.Short(err))
	default:
		writeJSON(w, http.StatusAccepted, map[string]string{"call_ref": ref})
	}
}
