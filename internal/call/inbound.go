package call

import (
	"context"
	"errors"
	"time"

	"redial/internal/dialplan"
	"redial/internal/sip"
)

// InboundRealm is the digest realm of challenges to unknown callers.
const InboundRealm = "redial"

// InboundContext is the dialplan context inbound calls are routed in.
const InboundContext = "public"

// InboundCampaignRef is the campaign_ref of inbound calls' CDRs (and of
// the legacy inbound notification).
const InboundCampaignRef = "inbound"

// HandleInbound takes an INVITE the SIP engine received. Only trunks may
// call in: the INVITE must come from a line's address or carry digest
// credentials of a line; anything else is refused (no toll fraud). The
// dialed number is looked up in the dialplan context "public" and the call
// is answered and connected to its target (IVR, SIP destination).
func (m *Manager) HandleInbound(in *sip.Inbound) {
	// The INVITE is not tied to any caller's context: the setup is bounded
	// by inboundTimeout alone, and once the call is registered shutdown
	// reaches it through its cancel func like any other call.
	ctx, cancelSetup := context.WithTimeout(context.Background(), inboundTimeout)
	defer cancelSetup()
	log := m.log.With("sip_call_id", in.CallID(), "source", in.SourceIP(), "dialed", in.Dialed(), "caller", in.Caller())
	// Another node relaying a call to an agent registered here: known by
	// its address in the node directory, never by a header.
	var relayedFrom string
	if m.deps.Nodes != nil {
		relayedFrom, _ = m.deps.Nodes.NodeAt(ctx, in.Req.Source())
	}
	line, ok := m.deps.Lines.FromAddress(ctx, in.SourceIP())
	if relayedFrom != "" {
		ok, line.Name = true, "node:"+relayedFrom
	}
	if !ok {
		_, err := in.VerifyDigest(InboundRealm, func(user string) (string, bool) {
			pw, l, ok := m.deps.Lines.Credentials(ctx, user)
			if ok {
				line = l
			}
			return pw, ok
		})
		switch {
		case errors.Is(err, sip.ErrNoCredentials):
			in.Challenge(InboundRealm)
			return
		case err != nil:
			// Not a WARN per attempt: a guesser would write the log. The
			// SIP engine logs failures rate limited and warns once when it
			// blocks a source or user (sip.AuthLimits).
			log.Debug("call: inbound INVITE refused", "error", err)
			m.mInbound.WithLabelValues("forbidden").Inc()
			in.Reject(403, "Forbidden")
			return
		}
	}
	target, err := m.deps.Dialplan.Resolve(ctx, dialplan.Destination{Extension: in.Dialed(), Dialplan: "XML", Context: InboundContext})
	if relayedFrom != "" {
		target, err = dialplan.Target{Type: dialplan.TypeUser, User: in.Dialed(), Key: "relayed:" + in.Dialed()}, nil
	}
	if err != nil {
		log.Warn("call: inbound call has no route", "error", err)
		m.mInbound.WithLabelValues("no_route").Inc()
		if errors.Is(err, dialplan.ErrNoRoute) {
			in.Reject(404, "Not Found")
		} else {
			in.Reject(500, "Server Internal Error")
		}
		return
	}
	m.connMu.RLock()
	conn := m.connectors[target.Type]
	m.connMu.RUnlock()
	if conn == nil {
		log.Warn("call: inbound target type not available", "target", target.Key, "type", target.Type)
		in.Reject(503, "Service Unavailable")
		return
	}
	if pc, ok := conn.(Prechecker); ok {
		if code, reason := pc.Precheck(ctx, target, relayedFrom != ""); code != 0 {
			log.Info("call: inbound call refused before answer", "target", target.Key, "sip_code", code)
			m.mInbound.WithLabelValues("unavailable").Inc()
			in.Reject(code, reason)
			return
		}
	}
	callRef := NewRef()
	if relayedFrom != "" {
		// The originating node's call_ref, for one story in the logs.
		if ref := in.Req.GetHeader("X-Redial-Call-Ref"); ref != nil && validRef(ref.Value()) {
			callRef = ref.Value()
		}
	}
	req := Request{Numbers: []string{in.Caller()}, CallRef: callRef, CampaignRef: InboundCampaignRef,
		Destination: dialplan.Destination{Extension: in.Dialed(), Dialplan: "XML", Context: InboundContext},
		Variables:   map[string]string{"sip_call_id": in.CallID(), "redial_inbound_line": line.Name, "destination_number": in.Dialed()}}
	if relayedFrom != "" {
		req.Variables[varRelayed] = relayedFrom
		req.noCDR = true
	}
	c := m.newCall(req)
	c.info.Number, c.info.Line = in.Caller(), line.Name
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		in.Reject(503, "Service Unavailable")
		return
	}
	// The call outlives the setup timeout.
	cctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	c.cancel = cancel
	m.addLocked(c)
	m.wg.Add(1)
	m.mu.Unlock()
	m.mActive.Inc()
	c.emit(EventCreated)
	defer func() {
		cancel(nil)
		m.mActive.Dec()
		m.finish(c)
		m.wg.Done()
	}()
	log = log.With("call_ref", req.CallRef)
	if u, ok := conn.(*UserConnector); ok && relayedFrom != "" {
		m.runRelayed(cctx, in, c, u, log)
		return
	}
	start := m.now()
	leg, err := in.Answer(cctx, req.CallRef)
	if err != nil {
		log.Warn("call: inbound answer failed", "error", err)
		m.mInbound.WithLabelValues("failed").Inc()
		rec := attemptRecord{number: in.Caller(), dialNumber: in.Dialed(), line: line.Name, vars: req.Variables,
			start: start, end: m.now(), disposition: Failed, sipCode: 488, cause: IncompatibleDestination, reason: err.Error()}
		cdr := m.writeCDR(cctx, c, 1, rec)
		c.mu.Lock()
		c.out.CDRs = append(c.out.CDRs, cdr)
		c.out.Disposition = Failed
		c.info.Number, c.info.Line, c.info.State = in.Caller(), line.Name, StateEnded
		c.mu.Unlock()
		return
	}
	m.mInbound.WithLabelValues("answered").Inc()
	answer := m.now()
	c.enter(StateAnswered, func(i *Info) {
		a := answer.UTC()
		i.Number, i.Line, i.Attempt, i.Answer, i.SIPCode = in.Caller(), line.Name, 1, &a, 200
	})
	c.addLeg("caller", leg)
	params := ParseDialParams(req.Variables, log, req.CallRef)
	tr := conn.Connect(cctx, &Session{Call: c, Leg: leg, Target: target, ClientNumber: in.Caller(), Vars: req.Variables, Params: params, Log: log,
		Records: m.deps.Records})
	leg.Hangup(context.WithoutCancel(cctx))
	rec := attemptRecord{number: in.Caller(), dialNumber: in.Dialed(), line: line.Name, vars: req.Variables,
		start: start, answer: answer, end: m.now(), disposition: Answered, sipCode: 200, cause: tr.Cause, reason: tr.Reason, ext: tr.Ext}
	if !tr.Connected {
		rec.disposition = Failed
	}
	if !tr.ConnectedAt.IsZero() {
		rec.holdTime = tr.ConnectedAt.Sub(answer)
	}
	tr.settle(&rec)
	cdr := m.writeCDR(cctx, c, 1, rec)
	c.mu.Lock()
	c.out.CDRs = append(c.out.CDRs, cdr)
	c.out.Answered, c.out.Connected, c.out.Disposition = true, tr.Connected, rec.disposition
	c.info.State = StateEnded
	c.legs = nil
	c.mu.Unlock()
}

// Prechecker is a Connector that can tell before an inbound call is
// answered that it cannot be connected (a user nobody can answer: 480).
type Prechecker interface {
	Precheck(ctx context.Context, t dialplan.Target, relayed bool) (code int, reason string)
}

// validRef accepts a call_ref carried between nodes: printable, short.
func validRef(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// finish records an ended call for the API, tells subscribers and releases
// waiters. The ended event goes out before Done closes, so whoever waits
// for the call (Place) finds the event already delivered.
func (m *Manager) finish(c *Call) {
	c.emit(EventEnded)
	m.keepEnded(c)
	close(c.done)
}

// inboundTimeout bounds how long an unanswered inbound setup may take.
const inboundTimeout = 32 * time.Second
