package call

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"redial/internal/dialplan"
	"redial/internal/notify"
	"redial/internal/sip"
)

// attemptRecord collects what one attempt's CDR says.
type attemptRecord struct {
	number      string
	line        string
	vars        map[string]string
	dialNumber  string
	start       time.Time
	answer      time.Time
	end         time.Time
	disposition Disposition
	sipCode     int
	cause       Cause
	holdTime    time.Duration
	ext         *string
	reason      string
}

// run takes an originate request through its steps: attempt the callee
// leg, connect it to the destination, end it with its CDR; then done.
//
// A connector that can hand off (HandoffConnector) lets this goroutine
// go once the call is connected, and done runs on the connector's own
// goroutine when the call is over: a held call then keeps only that
// goroutine's small stack, not this one's (the attempts, the dial and the
// manager's frames).
func (m *Manager) run(ctx context.Context, c *Call, done func()) {
	m.runCall(ctx, c, true, done)
}

// runHere is run for a caller that waits for the call anyway (Place): its
// goroutine holds the call, and a second one would only cost memory.
func (m *Manager) runHere(ctx context.Context, c *Call, done func()) {
	m.runCall(ctx, c, false, done)
}

func (m *Manager) runCall(ctx context.Context, c *Call, handoff bool, done func()) {
	r := m.newRun(c)
	a := r.attemptCallee(ctx)
	if a == nil {
		r.end()
		done()
		return
	}
	m.connect(ctx, c, a, r.log, handoff, func(tr TargetResult) {
		r.endLeg(ctx, a, tr)
		r.end()
		done()
	})
}

// attemptCallee rings the request's numbers: the answered leg, or nil
// with every attempt recorded.
//
//go:noinline
func (r *callRun) attemptCallee(ctx context.Context) *answeredLeg {
	req := &r.c.req
	res := r.attemptLeg(ctx, legPlan{numbers: req.Numbers, groups: req.LineGroups, vars: req.Variables,
		onInvite: req.OnInvite, returnOnNoLine: req.ReturnOnNoLine})
	if res.answered != nil {
		return res.answered
	}
	if !res.notDialed && len(r.out.CDRs) == 0 && ctx.Err() != nil {
		// Hung up before any attempt: still leave a record.
		number := ""
		if len(req.Numbers) > 0 {
			number = req.Numbers[0]
		}
		now := r.m.now()
		r.record(ctx, 1, attemptRecord{number: number, vars: req.Variables, start: now, end: now,
			disposition: Cancelled, cause: OriginatorCancel, reason: fmt.Sprint(context.Cause(ctx))})
	}
	return nil
}

// TargetResult is how a connector's part of the call went.
type TargetResult struct {
	// Connected is true when the call reached its target (the destination
	// answered, the IVR ran).
	Connected   bool
	ConnectedAt time.Time
	Cause       Cause
	// Reason explains a failure, for the CDR's variables and the log.
	Reason string
	// Ext is the agent extension, for queue and user targets.
	Ext *string
	// HoldSet makes Hold the CDR's hold_time (a queue: the time in line);
	// otherwise hold_time runs from the answer to ConnectedAt.
	HoldSet bool
	Hold    time.Duration
	// Disposition, when set, is the CDR's disposition in place of
	// ANSWERED or FAILED (ABANDONED: the caller hung up in a queue).
	Disposition Disposition
	// Recording is the store path of the bridge's recording ("" when it
	// was not recorded); the CDR gets it through the variable
	// redial_recording, which relayUntilHangup sets.
	Recording string
}

// Session is what a connector gets: the answered leg and its context.
type Session struct {
	Call         *Call
	Leg          *sip.Leg
	Target       dialplan.Target
	ClientNumber string
	Vars         map[string]string
	Params       DialParams
	Log          *slog.Logger
	// Records records the bridge and keeps the call record; nil records
	// nothing.
	Records CallRecorder
}

// Connector connects an answered call to one type of target. Connect
// returns when the call is over; the manager then hangs up the leg.
type Connector interface {
	Connect(ctx context.Context, s *Session) TargetResult
}

// HandoffConnector is a Connector that can hold a connected call on a
// goroutine of its own, so that the goroutine that set the call up can
// end. ConnectThen calls then exactly once with what Connect would have
// returned: before it returns when the call never connected, otherwise
// from that goroutine when the call is over.
type HandoffConnector interface {
	Connector
	ConnectThen(ctx context.Context, s *Session, then func(TargetResult))
}

// connect connects the answered leg a to the call's destination and calls
// then with the result once the call is over; with handoff, possibly from
// a goroutine of the connector's.
func (m *Manager) connect(ctx context.Context, c *Call, a *answeredLeg, log *slog.Logger, handoff bool, then func(TargetResult)) {
	// The session is the call's own: resolved in place, not copied (a held
	// call keeps it).
	s := &Session{Call: c, Leg: a.leg, ClientNumber: a.number, Vars: a.vars, Params: a.params, Log: log,
		Records: m.deps.Records}
	conn, failed := m.resolveTarget(ctx, s, c.req.Destination)
	if conn == nil {
		then(failed)
		return
	}
	if h, ok := conn.(HandoffConnector); ok && handoff {
		h.ConnectThen(ctx, s, then)
		return
	}
	then(conn.Connect(ctx, s))
}

// connectTo resolves dest and connects the answered call of s there: an
// answered call's destination, or a queue's overflow.
func (m *Manager) connectTo(ctx context.Context, s *Session, dest dialplan.Destination) TargetResult {
	sub := *s
	conn, failed := m.resolveTarget(ctx, &sub, dest)
	if conn == nil {
		return failed
	}
	return conn.Connect(ctx, &sub)
}

// resolveTarget finds dest's target, sets it as s.Target and returns its
// connector; with a nil connector, the failure. Out of line for its
// callers' frames: a connector that cannot hand off keeps them for the
// whole call.
//
//go:noinline
func (m *Manager) resolveTarget(ctx context.Context, s *Session, dest dialplan.Destination) (Connector, TargetResult) {
	target, err := m.deps.Dialplan.Resolve(ctx, dest)
	if err != nil {
		s.Log.Warn("call: destination not resolved", "error", err)
		cause := NoRouteDestination
		if !errors.Is(err, dialplan.ErrNoRoute) {
			cause = NormalTemporaryFailure
		}
		return nil, TargetResult{Cause: cause, Reason: err.Error()}
	}
	m.connMu.RLock()
	conn := m.connectors[target.Type]
	m.connMu.RUnlock()
	if conn == nil {
		reason := fmt.Sprintf("call: dialplan entry %q: target type %q is not available on this node", target.Key, target.Type)
		s.Log.Warn(reason)
		return nil, TargetResult{Cause: NoRouteDestination, Reason: reason}
	}
	s.Target = target
	return conn, TargetResult{}
}

func (m *Manager) writeCDR(ctx context.Context, c *Call, attempt int, r attemptRecord) notify.CDR {
	cdr, _ := m.publishCDR(ctx, c, attempt, r)
	return cdr
}

// publishCDR builds and publishes one attempt's CDR; the error is set only
// when even the local spool could not take it.
func (m *Manager) publishCDR(ctx context.Context, c *Call, attempt int, r attemptRecord) (notify.CDR, error) {
	vars := make(map[string]string, len(r.vars)+1)
	for k, v := range r.vars {
		vars[k] = v
	}
	if r.reason != "" {
		vars["redial_reason"] = r.reason
	}
	recording := vars[VarRecording]
	delete(vars, VarRecording) // published as the CDR's recording field
	cdr := notify.CDR{
		CallRef: c.req.CallRef, ContactRef: c.req.ContactRef, CampaignRef: c.req.CampaignRef,
		ClientNumber: r.number, DialNumber: r.dialNumber, Ext: r.ext,
		Disposition: r.disposition, SIPCode: r.sipCode, HangupCause: r.cause.Name,
		Line: r.line, Attempt: attempt, Start: r.start.UTC(), End: r.end.UTC(),
		Duration: secs(r.end.Sub(r.start)), HoldTime: secs(r.holdTime), Variables: vars, Recording: recording,
	}
	if !r.answer.IsZero() {
		a := r.answer.UTC()
		cdr.Answer = &a
		cdr.Billsec = secs(r.end.Sub(r.answer))
	}
	// The record goes first: an integration that sees the CDR may at once
	// download the recording or post a disposition, both found through it.
	m.saveCallRecord(ctx, c, &cdr, vars)
	var err error
	if !c.req.noCDR {
		err = m.deps.Notify.PublishCDR(uncancelled(ctx), &cdr)
	}
	if err != nil {
		m.log.Error("call: CDR lost: spool write failed", "call_ref", c.req.CallRef, "error", err)
	}
	m.mCalls.WithLabelValues(string(r.disposition)).Inc()
	c.update(func(i *Info) {
		i.CDRs = append(i.CDRs, cdr)
		i.Disposition, i.SIPCode, i.HangupCause = cdr.Disposition, cdr.SIPCode, cdr.HangupCause
		e := cdr.End
		i.End = &e
	})
	return cdr, err
}

// uncancelled is context.WithoutCancel(ctx), or ctx itself when it cannot
// be cancelled (Done nil) anyway: wrapping it again cost an allocation
// per call on the way from a hangup to its CDR.
func uncancelled(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

// secs rounds a duration to whole seconds, as CDR consumers expect.
func secs(d time.Duration) int {
	if d < 0 {
		return 0
	}
	return int(math.Round(d.Seconds()))
}
