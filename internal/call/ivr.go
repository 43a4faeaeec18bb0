package call

import (
	"context"
	"fmt"
	"maps"
	"time"

	"redial/internal/dialplan"
	"redial/internal/ivr"
	"redial/internal/media"
)

// IVRConnector runs an IVR script on an answered call: `{"type":"ivr",
// "script":"main"}` targets of inbound calls, campaigns, schedules and
// callbacks.
type IVRConnector struct {
	Engine *ivr.Engine
	// Manager resolves and connects transfers.
	Manager *Manager
}

// Connect implements Connector.
func (c *IVRConnector) Connect(ctx context.Context, s *Session) TargetResult {
	start := time.Now()
	ch := &ivrChannel{s: s, m: c.Manager}
	res := c.Engine.Run(ctx, ch, s.Target.Script)
	// The session's results (dtmfBuffer, recordFile, ...) travel into the
	// CDR's variables, where integrators read them.
	for k, v := range res.Variables {
		s.Vars[k] = v
	}
	s.Vars["redial_ivr_id"] = res.IVRID
	s.Vars["redial_ivr_ended"] = res.Ended
	// A session cut short by a hangup (the caller's, or DELETE through the
	// API) did run: only a script that could not run is a failure.
	interrupted := ctx.Err() != nil || res.Ended == ivr.EndedCallerHangup
	switch {
	case ctx.Err() != nil:
		s.Vars["redial_hangup_side"] = "api"
	case res.Ended == ivr.EndedCallerHangup:
		s.Vars["redial_hangup_side"] = "callee"
	}
	tr := TargetResult{Connected: res.Err == nil || interrupted, ConnectedAt: start, Cause: NormalClearing}
	if res.Err != nil && !interrupted {
		tr.Reason = fmt.Sprintf("ivr: script %q: %v", s.Target.Script, res.Err)
		tr.Cause = NormalTemporaryFailure
	}
	if ch.ext != nil {
		tr.Ext = ch.ext
	}
	// A transfer to a queue tells the CDR the time in line, or that the
	// caller gave up there.
	tr.HoldSet, tr.Hold, tr.Disposition = ch.transfer.HoldSet, ch.transfer.Hold, ch.transfer.Disposition
	return tr
}

// ivrChannel is the answered leg as the IVR engine sees it.
type ivrChannel struct {
	s   *Session
	m   *Manager
	ext *string
	// transfer is the last transfer's result.
	transfer TargetResult
}

func (c *ivrChannel) CallRef() string { return c.s.Call.Ref() }

func (c *ivrChannel) Media() *media.Session { return c.s.Leg.Media }

func (c *ivrChannel) Variables() map[string]string { return maps.Clone(c.s.Vars) }

func (c *ivrChannel) Done() <-chan struct{} { return c.s.Leg.Done() }

func (c *ivrChannel) Hangup(ctx context.Context) error { return c.s.Leg.Hangup(ctx) }

// Transfer resolves number in the caller's dialplan context (the variable
// ivr_transfer_context, else "default") and connects the call there, as an
// answered call would be connected to its destination.
func (c *ivrChannel) Transfer(ctx context.Context, number string, reinviteMode int) ivr.TransferResult {
	dctx := c.s.Vars["ivr_transfer_context"]
	if dctx == "" {
		dctx = "default"
	}
	target, err := c.m.deps.Dialplan.Resolve(ctx, dialplan.Destination{Extension: number, Dialplan: "XML", Context: dctx})
	if err != nil {
		return ivr.TransferResult{Reason: err.Error()}
	}
	c.m.connMu.RLock()
	conn := c.m.connectors[target.Type]
	c.m.connMu.RUnlock()
	if conn == nil {
		return ivr.TransferResult{Reason: fmt.Sprintf("target type %q not available", target.Type)}
	}
	sub := *c.s
	sub.Target = target
	tr := conn.Connect(ctx, &sub)
	c.transfer = tr
	if tr.Ext != nil {
		c.ext = tr.Ext
	}
	reason := tr.Reason
	if reason == "" {
		reason = tr.Cause.Name
	}
	return ivr.TransferResult{Connected: tr.Connected, Reason: reason}
}

// SetVariables implements ivr.VariableSetter: what the script set joins
// the call's variables before a transfer.
func (c *ivrChannel) SetVariables(vars map[string]string) {
	for k, v := range vars {
		c.s.Vars[k] = v
	}
}

var _ ivr.Channel = (*ivrChannel)(nil)
