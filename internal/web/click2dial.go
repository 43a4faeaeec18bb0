package web

import (
	"encoding/json"
	"errors"
	"net/http"

	"redial/internal/call"
	"redial/internal/validate"
)

// decodeClick reads the body of POST /api/v1/click2dial field by field, so
// an error names the field at fault, with the bounds POST /api/v1/calls
// applies.
func decodeClick(body []byte) (call.ClickRequest, error) {
	var ext string
	r, oneNumber, oneGroup, err := decodeCallBody(body, "ext, number, line_group, variables, call_ref, contact_ref, campaign_ref", map[string]func(json.RawMessage) error{
		"ext": func(raw json.RawMessage) error { return jsonString(raw, &ext) },
	})
	req := call.ClickRequest{Ext: ext, Numbers: r.Numbers, LineGroups: r.LineGroups, CallRef: r.CallRef,
		ContactRef: r.ContactRef, CampaignRef: r.CampaignRef, Variables: r.Variables}
	if err != nil {
		return req, err
	}
	if req.Ext == "" {
		return req, errors.New("ext: required")
	}
	if err := validate.NumberField("ext", req.Ext); err != nil {
		return req, err
	}
	if err := checkOriginate(r, oneNumber, oneGroup); err != nil {
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
