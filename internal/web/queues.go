package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"redial/internal/acd"
	"redial/internal/auth"
	"redial/internal/jsonfield"
	"redial/internal/store"
	"redial/internal/validate"
)

// maxAgentStateBody bounds POST /api/v1/agents/{ext}/state.
const maxAgentStateBody = 4 << 10

// queueRoutes adds the inbound queues' routes (capability rest); New
// calls it.
func (s *Server) queueRoutes() {
	s.Handle("GET /api/v1/queues", auth.Rest, http.HandlerFunc(s.getQueues))
	s.Handle("POST /api/v1/agents/{ext}/state", auth.Rest, http.HandlerFunc(s.postAgentState))
}

// getQueues is GET /api/v1/queues: every queue of cti_acd_queue@<domain>
// with its line, agents and service level, cluster-wide, and the entries
// skipped because they do not decode.
func (s *Server) getQueues(w http.ResponseWriter, r *http.Request) {
	if s.deps.ACD == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "inbound queues are not running on this node"})
		return
	}
	qs, bad, err := s.deps.ACD.Status(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	if qs == nil {
		qs = []acd.QueueStatus{}
	}
	if bad == nil {
		bad = map[string]string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"queues": qs, "invalid": bad})
}

// agentStateBody is POST /api/v1/agents/{ext}/state, and its answer.
type agentStateBody struct {
	Ext    string `json:"ext"`
	State  string `json:"state"`
	Reason string `json:"reason"`
}

// postAgentState is POST /api/v1/agents/{ext}/state {"state","reason"}:
// an agent of this node's domain becomes available, paused (with a
// reason) or logged_out. {ext} is "1001" or "1001@<domain>".
func (s *Server) postAgentState(w http.ResponseWriter, r *http.Request) {
	if s.deps.ACD == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "inbound queues are not running on this node"})
		return
	}
	ext, domain, hasDomain := strings.Cut(r.PathValue("ext"), "@")
	if mine := s.deps.Store.Domain(); hasDomain && domain != mine {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": fmt.Sprintf(
			"ext: domain %q is not this node's (%q): a state change for another domain's agent", validate.Truncate(domain, 64), mine)})
		return
	}
	if err := store.ValidateExtension(ext); err != nil {
		s.badRequest(w, r, validate.Short(fmt.Errorf("ext: %w", err)))
		return
	}
	body, err := readBody(w, r, maxAgentStateBody)
	if err != nil {
		s.writeBodyError(w, r, err)
		return
	}
	state, reason, err := decodeAgentState(body)
	if err != nil {
		s.badRequest(w, r, validate.Short(err))
		return
	}
	_, found, err := s.deps.Store.User(r.Context(), ext)
	if err != nil {
		// An entry that does not decode is still an agent of the domain
		// (its state can be set; its REGISTERs are refused); only a
		// failed lookup stops here.
		var bad *jsonfield.Error
		if !errors.As(err, &bad) {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		found = true
	}
	if !found {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("ext: no agent %q in %s", ext, s.deps.Store.UsersKey())})
		return
	}
	if err := s.deps.ACD.SetAgentState(r.Context(), ext, state, reason); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	st, err := s.deps.ACD.AgentState(r.Context(), ext)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	s.log.Info("web: agent state set", "ext", ext, "state", st.State, "reason", st.Reason)
	writeJSON(w, http.StatusOK, agentStateBody{Ext: ext, State: st.State, Reason: st.Reason})
}

// decodeAgentState reads {"state","reason"}; errors name the field and
// unknown fields are refused. The values follow store.SetAgentState's
// rules, checked here so that what the store refuses afterwards is its
// own failure (503), not the caller's.
func decodeAgentState(body []byte) (state, reason string, err error) {
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return "", "", fmt.Errorf("body: malformed JSON: %w", err)
	}
	if err := onlyValue(dec); err != nil {
		return "", "", err
	}
	if m == nil {
		return "", "", errors.New("body: want a JSON object {state, reason}")
	}
	haveState := false
	for k, raw := range m {
		switch k {
		case "state":
			haveState = true
			err = jsonString(raw, &state)
		case "reason":
			err = jsonString(raw, &reason)
		default:
			err = errors.New("unknown field (want state, reason)")
		}
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", fieldName(k), err)
		}
	}
	if !haveState {
		return "", "", errors.New("state: required")
	}
	return state, reason, validate.AgentState(state, reason)
}
