package call

import (
	"context"
	"errors"
	"fmt"
	"time"

	"redial/internal/dialplan"
	"redial/internal/media"
	"redial/internal/notify"
	"redial/internal/validate"
)

// ClickRequest is a click-to-dial request (POST /api/v1/click2dial): ring
// the agent Ext first, then the customer's numbers through the line groups,
// and bridge them.
type ClickRequest struct {
	Ext string
	// Numbers are the customer's numbers, tried in order.
	Numbers    []string
	LineGroups []string
	// CallRef is the call's reference; generated when empty.
	CallRef    string
	ContactRef string
	// CampaignRef names the call in its CDRs and notification;
	// DefaultClickCampaign when empty.
	CampaignRef string
	Variables   map[string]string
}

// DefaultClickCampaign is the campaign_ref of click-to-dial calls that name
// none.
const DefaultClickCampaign = "click2dial"

// VarAgentRingTimeout is the variable bounding how long the agent's phone
// rings (seconds, default 30): the customer's ring time is
// originate_timeout, as for any outbound call.
const VarAgentRingTimeout = "agent_ring_timeout"

// ErrNoAgents is returned by ClickToDial on a node that cannot ring agents
// (no user connector registered).
var ErrNoAgents = errors.New("agents are not available on this node")

// ValidateClick checks a click-to-dial request; errors name the field.
func ValidateClick(req ClickRequest) error {
	if err := validate.NumberField("ext", req.Ext); err != nil {
		return err
	}
	if err := Validate(Request{Numbers: req.Numbers, LineGroups: req.LineGroups,
		Destination: dialplan.Destination{Extension: req.Ext}}); err != nil {
		return err
	}
	if err := validate.Variables(req.Variables); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"call_ref", req.CallRef}, {"contact_ref", req.ContactRef}, {"campaign_ref", req.CampaignRef}} {
		if err := validate.Ref(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}

// ClickToDial validates req and starts a click-to-dial call in the
// background: the agent's bindings ring first; once the agent answers they
// hear ringback while the customer is dialed through the line groups (with
// their failover), and the first customer leg to answer is bridged to the
// agent. Every customer attempt gets a CDR naming the agent as ext; an
// agent who does not answer gets one CDR and no customer is dialed. It
// returns the call's call_ref (req.CallRef when given).
func (m *Manager) ClickToDial(ctx context.Context, req ClickRequest) (string, error) {
	if err := ValidateClick(req); err != nil {
		return "", err
	}
	m.connMu.RLock()
	u, _ := m.connectors[dialplan.TypeUser].(*UserConnector)
	m.connMu.RUnlock()
	if u == nil {
		return "", fmt.Errorf("call: click2dial: %w", ErrNoAgents)
	}
	if req.CallRef == "" {
		req.CallRef = NewRef()
	}
	if req.CampaignRef == "" {
		req.CampaignRef = DefaultClickCampaign
	}
	vars := make(map[string]string, len(req.Variables)+1)
	for k, v := range req.Variables {
		vars[k] = v
	}
	vars["redial_click2dial_ext"] = req.Ext
	creq := Request{Numbers: req.Numbers, LineGroups: req.LineGroups, CallRef: req.CallRef,
		ContactRef: req.ContactRef, CampaignRef: req.CampaignRef, Variables: vars,
		Destination: dialplan.Destination{Extension: req.Ext}}
	c := m.newCall(creq)
	if err := m.start(ctx, c, waited(func(ctx context.Context, c *Call) { m.runClick(ctx, c, u, req.Ext) })); err != nil {
		return "", err
	}
	return creq.CallRef, nil
}

// runClick takes a click-to-dial call through its steps: ring the agent,
// dial the customer while the agent hears ringback, bridge, write the
// CDRs.
func (m *Manager) runClick(ctx context.Context, c *Call, u *UserConnector, ext string) {
	req := c.req
	r := m.newRun(c)
	agent := ext
	r.ext = &agent
	defer r.end()
	log := r.log.With("ext", ext)
	params := ParseDialParams(req.Variables, log, req.CallRef)
	timeout := seconds(req.Variables, VarAgentRingTimeout, 30*time.Second, log, req.CallRef)

	c.update(func(i *Info) { i.Number = req.Numbers[0]; i.State = StateDialing })
	start := m.now()
	// The agent sees whom they are about to call.
	ring := u.ringAgent(ctx, agentRing{ext: ext, callRef: req.CallRef, fromUser: req.Numbers[0], codecs: params.Codecs,
		timeout: timeout, log: log})
	if ring.leg == nil {
		rec := attemptRecord{number: req.Numbers[0], vars: req.Variables, start: start, end: m.now(),
			sipCode: ring.code, dialNumber: params.CallerIDNumber, reason: ring.reason}
		rec.disposition, rec.cause = FromSIP(ring.code, ring.timedOut)
		switch {
		case ctx.Err() != nil:
			rec.disposition, rec.cause, rec.reason = Cancelled, OriginatorCancel, fmt.Sprint(context.Cause(ctx))
		case !ring.rang:
			rec.disposition, rec.cause = Failed, ring.cause
		}
		r.attempt++
		r.record(ctx, r.attempt, rec)
		log.Info("call: click2dial: agent did not answer; customer not dialed", "disposition", rec.disposition, "reason", rec.reason)
		return
	}
	aleg := ring.leg
	defer aleg.Hangup(context.WithoutCancel(ctx))
	c.addLeg("agent", aleg)
	log.Info("call: click2dial: agent answered; dialing the customer")

	// The customer's attempts end when the agent hangs up.
	dctx, stopDial := context.WithCancelCause(ctx)
	defer stopDial(nil)
	go func() {
		select {
		case <-aleg.Done():
			stopDial(errors.New("agent hung up while the customer rang"))
		case <-dctx.Done():
		}
	}()
	rbctx, stopRingback := context.WithCancel(dctx)
	ringbackDone := make(chan struct{})
	go func() {
		defer close(ringbackDone)
		aleg.Media.Play(rbctx, newRingback())
	}()
	res := r.attemptLeg(dctx, legPlan{numbers: req.Numbers, groups: req.LineGroups, vars: req.Variables})
	stopRingback()
	<-ringbackDone
	a := res.answered
	if a == nil {
		return
	}
	if aleg.HungUpByRemote() || dctx.Err() != nil {
		// The agent left as the customer answered.
		r.endLeg(ctx, a, TargetResult{Cause: OriginatorCancel, Reason: "agent hung up before the customer answered", Ext: &agent})
		return
	}
	connected := m.now()
	// Consumers unpack the notification before the CDR that follows it.
	if err := m.deps.Notify.PublishCall(context.WithoutCancel(ctx), notify.CallNotification{
		Number: a.number, DialNumber: a.rec.dialNumber, HoldTime: 0, CallRef: req.CallRef, ContactRef: req.ContactRef,
		CallDir: notify.CallDirOutbound, CampaignRef: req.CampaignRef, Ref: ext,
	}); err != nil {
		log.Error("call: click2dial: call notification lost", "error", err)
	}
	c.enter(StateBridged, nil)
	tr := relayUntilHangup(ctx, &Session{Call: c, Leg: a.leg, ClientNumber: a.number, Vars: a.vars, Params: a.params, Log: log,
		Records: m.deps.Records}, aleg, "agent")
	tr.Ext, tr.ConnectedAt = &agent, connected
	r.endLeg(ctx, a, tr)
}

// ringback is the ringing tone the agent hears while the customer is
// dialed: 425 Hz, 1 s on, 4 s off (ITU-T E.180), one endless RTP stream.
type ringback struct {
	tone media.Source
	pos  int // samples into the 5 s cadence
}

func newRingback() *ringback { return &ringback{tone: media.NewTone(425, 6000, 0)} }

// ReadFrame implements media.Source.
func (r *ringback) ReadFrame(pcm []int16) (int, error) {
	const on, period = media.SampleRate, 5 * media.SampleRate
	n, err := r.tone.ReadFrame(pcm)
	for i := range pcm[:n] {
		if (r.pos+i)%period >= on {
			pcm[i] = 0
		}
	}
	r.pos = (r.pos + n) % period
	return n, err
}
