package sip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/validate"
)

// Agents' queue states over SIP. The agent page has no API token: it
// proves who it is with SIP digest only, so it reads and changes its own
// queue state with a MESSAGE to itself (sip:<ext>@<server>) over the
// socket it registered on:
//
//	MESSAGE sip:1001@node SIP/2.0
//	Content-Type: application/vnd.redial.agent-state+json
//
//	{"state":"paused","reason":"lunch"}   (change; {} only asks)
//
// The MESSAGE is challenged exactly as a REGISTER (same realm, nonces and
// failure throttle); the digest username must be the From user, and the
// To user the same extension: an agent reads and changes its own state
// only. The answer is 200 with {"state","reason"} in the same content
// type; a body that does not decode is 400 with a Warning (and a JSON
// body {"error"}) naming the field; any other content type is 415.

// AgentStateContentType is the content type of MESSAGE bodies about an
// agent's queue state, asked and answered.
const AgentStateContentType = "application/vnd.redial.agent-state+json"

// AgentStates reads and changes agents' queue states (the inbound queues,
// behind an adapter in internal/app).
type AgentStates interface {
	// Get returns ext's state (logged_out, available, ringing, on_call,
	// wrapup, paused) and, when paused, why.
	Get(ctx context.Context, ext string) (state, reason string, err error)
	// Set sets ext's state by hand: available, paused (with a reason) or
	// logged_out.
	Set(ctx context.Context, ext, state, reason string) error
}

// Bounds and names of the agent state requests.
const (
	maxAgentStateBody  = 4 << 10
	maxWarningTextLen  = 200
	agentStateMetric   = "redial_sip_agent_state_requests_total"
	stateUnsupported   = "unsupported"
	stateNotConfigured = "not_configured"
)

func newAgentStateCounter() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: agentStateMetric,
		Help: "MESSAGE requests about an agent's queue state by outcome: ok, challenged, forbidden, blocked, bad_request, unsupported, not_configured, error."},
		[]string{"result"})
	for _, res := range []string{regOK, regChallenged, regForbidden, regBlocked, regBadRequest, stateUnsupported, stateNotConfigured, regError} {
		c.WithLabelValues(res)
	}
	return c
}

// SetAgentStates makes the registrar answer agents' MESSAGEs about their
// queue state with s. Without it such a MESSAGE is answered 501.
func (r *Registrar) SetAgentStates(s AgentStates) { r.states.Store(&s) }

func (r *Registrar) agentStates() AgentStates {
	if p := r.states.Load(); p != nil {
		return *p
	}
	return nil
}

// handleMessage serves MESSAGE: only agents' queue states are taken.
func (e *Engine) handleMessage(req *gosip.Request, tx gosip.ServerTransaction) {
	r := e.registrar.Load()
	if r == nil {
		res := gosip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil)
		res.AppendHeader(gosip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"))
		if err := tx.Respond(res); err != nil {
			e.log.Debug("sip: MESSAGE response failed", "error", err)
		}
		return
	}
	r.serveAgentState(e, req, tx)
}

// agentStateBody is the JSON of a MESSAGE about an agent's state, asked
// and answered.
type agentStateBody struct {
	State  string `json:"state"`
	Reason string `json:"reason"`
}

func (r *Registrar) serveAgentState(e *Engine, req *gosip.Request, tx gosip.ServerTransaction) {
	ctx, cancel := context.WithTimeout(context.Background(), registerTimeout)
	defer cancel()
	g := &regRequest{r: r, e: e, req: req, tx: tx, source: req.Source(), transport: strings.ToLower(req.Transport()), results: r.mStates}
	if !isAgentStateType(req.ContentType()) {
		g.reply(415, "Unsupported Media Type", stateUnsupported, []gosip.Header{gosip.NewHeader("Accept", AgentStateContentType)})
		return
	}
	states := r.agentStates()
	if states == nil {
		g.reply(501, "Agent States Not Configured", stateNotConfigured, nil)
		return
	}
	from := req.From()
	if from == nil || req.To() == nil {
		g.reply(400, "Bad Request", regBadRequest, nil)
		return
	}
	// authenticate checks the digest username against g.ext: the From
	// user, the one sending.
	g.ext = from.Address.User
	if !g.authenticate(ctx) {
		return
	}
	if req.To().Address.User != g.ext || (req.Recipient.User != "" && req.Recipient.User != g.ext) {
		g.reply(403, "Forbidden: Own State Only", regForbidden, nil)
		return
	}
	set, err := decodeAgentState(req.Body())
	if err != nil {
		g.badBody(err)
		return
	}
	if set != nil {
		if err := states.Set(ctx, g.ext, set.State, set.Reason); err != nil {
			g.failed(fmt.Errorf("agent %s: set state %s: %w", quoteShort(g.ext), set.State, err))
			return
		}
		e.log.Info("sip: agent state set by the agent", "ext", g.ext, "state", set.State, "reason", set.Reason, "source", g.source)
	}
	state, reason, err := states.Get(ctx, g.ext)
	if err != nil {
		g.failed(fmt.Errorf("agent %s: read state: %w", quoteShort(g.ext), err))
		return
	}
	body, _ := json.Marshal(agentStateBody{State: state, Reason: reason})
	g.respondBody(200, "OK", regOK, AgentStateContentType, body, nil)
}

// badBody answers 400 naming what was wrong, in a Warning (RFC 3261
// 20.43, code 399 "miscellaneous") and a JSON body.
func (g *regRequest) badBody(err error) {
	msg := err.Error()
	body, _ := json.Marshal(map[string]string{"error": msg})
	warn := fmt.Sprintf(`399 %s "%s"`, g.e.cfg.PublicIP, warningText(msg))
	g.respondBody(400, "Bad Request", regBadRequest, "application/json", body, []gosip.Header{gosip.NewHeader("Warning", warn)})
}

// respondBody sends a final response with a body and counts result.
func (g *regRequest) respondBody(code int, reason, result, ctype string, body []byte, hdrs []gosip.Header) {
	g.results.WithLabelValues(result).Inc()
	res := gosip.NewResponseFromRequest(g.req, code, reason, body)
	ct := gosip.ContentTypeHeader(ctype)
	res.AppendHeader(&ct)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := g.tx.Respond(res); err != nil {
		g.e.log.Debug("sip: MESSAGE response failed", "code", code, "error", err)
	}
}

// isAgentStateType reports whether a Content-Type names
// AgentStateContentType (parameters and case aside).
func isAgentStateType(h *gosip.ContentTypeHeader) bool {
	if h == nil {
		return false
	}
	mt, _, err := mime.ParseMediaType(h.Value())
	return err == nil && mt == AgentStateContentType
}

// decodeAgentState reads a MESSAGE body: {} (or no body) asks and returns
// nil; {"state", "reason"} is a change, checked by store.SetAgentState's
// rules. Errors name the field; unknown fields are refused.
func decodeAgentState(body []byte) (*agentStateBody, error) {
	if len(body) > maxAgentStateBody {
		return nil, fmt.Errorf("body: %d bytes, at most %d", len(body), maxAgentStateBody)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return nil, errors.New("body: want a JSON object {state, reason}")
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("body: trailing data after the JSON value")
	}
	if m == nil {
		return nil, errors.New("body: want a JSON object {state, reason}")
	}
	var b agentStateBody
	_, hasState := m["state"]
	for k, raw := range m {
		var dst *string
		switch k {
		case "state":
			dst = &b.State
		case "reason":
			dst = &b.Reason
		default:
			return nil, fmt.Errorf("%s: unknown field (want state, reason)", quoteShort(k))
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return nil, fmt.Errorf("%s: want string", k)
		}
	}
	if !hasState {
		if len(m) == 0 {
			return nil, nil
		}
		return nil, errors.New("state: required with reason")
	}
	if err := validate.AgentState(b.State, b.Reason); err != nil {
		return nil, err
	}
	return &b, nil
}

// warningText makes msg fit a Warning's quoted string: printable ASCII
// without quotes or backslashes, shortened.
func warningText(msg string) string {
	var b strings.Builder
	for _, c := range msg {
		if b.Len() >= maxWarningTextLen {
			b.WriteString("...")
			break
		}
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\'')
		case c < 0x20 || c >= 0x7f:
			b.WriteByte('?')
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}
