package call

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"redial/internal/lines"
	"redial/internal/sip"
)

// callRun is one call on its way through the steps of a call: attempting
// a leg (attemptLeg), connecting it (Manager.connect), ending it (endLeg)
// and recording attempts (record). The steps share the attempt count and
// the outcome, so a caller that chains them (ring an agent, then a
// customer) still gets one CDR per INVITE, numbered across the whole call.
type callRun struct {
	m   *Manager
	c   *Call
	log *slog.Logger
	// attempt counts INVITEs and NO_LINE records so far: each CDR's
	// "attempt".
	attempt int
	// invited is set once an INVITE went out (OnInvite has run).
	invited bool
	out     Outcome
	// ext, when set, is the agent every CDR of the run names (a
	// click-to-dial call's customer attempts).
	ext *string
}

func (m *Manager) newRun(c *Call) *callRun {
	return &callRun{m: m, c: c, log: withCallRef(m.log, c.req.CallRef)}
}

// end publishes the outcome on the call; the call is over.
func (r *callRun) end() {
	r.c.mu.Lock()
	r.c.out = r.out
	r.c.info.State = StateEnded
	r.c.legs = nil // the legs' sockets and dialogs are done; let them go
	r.c.mu.Unlock()
}

// legPlan is what attemptLeg dials: each number in order, each on the line
// groups in order.
type legPlan struct {
	numbers []string
	groups  []string
	// vars are the request's channel variables; each line's variables are
	// merged over them.
	vars map[string]string
	// onInvite runs before the call's first INVITE (Request.OnInvite).
	onInvite func() error
	// returnOnNoLine: see Request.ReturnOnNoLine.
	returnOnNoLine bool
}

// answeredLeg is a leg that answered and the line it holds. The caller
// connects it and then ends it with endLeg, which writes its CDR.
type answeredLeg struct {
	leg     *sip.Leg
	lease   *lines.Lease
	number  string
	vars    map[string]string
	params  DialParams
	attempt int
	rec     attemptRecord // start, answer, line and number filled in
}

// legResult is how attemptLeg ended: an answered leg, or no leg with every
// attempt's CDR already written (r.out has them).
type legResult struct {
	answered *answeredLeg
	// notDialed: nothing was sent and no CDR written (OnInvite failed, or
	// no free line with returnOnNoLine); r.out says which.
	notDialed bool
	// stopped: ctx ended the attempts (hangup, shutdown).
	stopped bool
}

// next is what attemptLeg does after one INVITE.
type next int

const (
	nextAnswered next = iota
	// nextGroup: the trunk failed; the same number on the next line group.
	nextGroup
	// nextNumber: the callee's answer (busy, rejected, no answer); the
	// next number.
	nextNumber
	// nextStop: no more attempts: hung up, cancelled, or the callee
	// answered on a dialog that could not be confirmed.
	nextStop
)

// attemptLeg rings one leg: the numbers × line groups of p, with the
// failover policy of lines.TrunkFailure, one CDR per failed attempt, until
// a number answers or every attempt failed. An answered leg comes back
// holding its line lease; the caller must end it with endLeg.
func (r *callRun) attemptLeg(ctx context.Context, p legPlan) legResult {
	for _, number := range p.numbers {
		r.c.update(func(i *Info) { i.Number = number; i.State = StateDialing })
		var noLineErr error
		sent := false
	groups:
		for _, group := range p.groups {
			lease, err := r.m.deps.Lines.Acquire(ctx, group, r.c.req.CallRef)
			if err != nil {
				if ctx.Err() != nil {
					return legResult{stopped: true}
				}
				// No free line is a trunk-side failure: try the next group.
				noLineErr = err
				r.log.Info("call: no line", "group", group, "number", number, "error", err)
				continue
			}
			if !r.invited && p.onInvite != nil {
				if err := p.onInvite(); err != nil {
					lease.Release(context.WithoutCancel(ctx))
					r.out.NotDialed, r.out.NotDialedErr = true, err
					r.log.Warn("call: not dialed", "error", err)
					return legResult{notDialed: true}
				}
			}
			r.invited, sent = true, true
			a, step := r.dial(ctx, number, lease, p.vars)
			switch step {
			case nextAnswered:
				return legResult{answered: a}
			case nextStop:
				return legResult{stopped: ctx.Err() != nil}
			case nextNumber:
				break groups
			}
		}
		if !sent && noLineErr != nil {
			if p.returnOnNoLine && !r.invited {
				r.out.NoLine, r.out.NotDialed = true, true
				return legResult{notDialed: true}
			}
			r.attempt++
			now := r.m.now()
			r.record(ctx, r.attempt, attemptRecord{number: number, vars: p.vars, start: now, end: now,
				disposition: NoLine, cause: CircuitCongestion, reason: noLineErr.Error(),
				dialNumber: p.vars["origination_caller_id_number"]})
		}
		if ctx.Err() != nil {
			return legResult{stopped: true}
		}
	}
	return legResult{}
}

// dial sends one INVITE on a leased line. A failed attempt releases the
// line and writes its CDR; an answered one keeps the line for the caller.
func (r *callRun) dial(ctx context.Context, number string, lease *lines.Lease, reqVars map[string]string) (*answeredLeg, next) {
	req := r.c.req
	vars := lines.MergeVariables(reqVars, lease.Line.Variables)
	params := ParseDialParams(vars, r.log, req.CallRef)
	rec := attemptRecord{number: number, line: lease.Line.Name, vars: vars, dialNumber: params.CallerIDNumber}
	r.attempt++
	attempt := r.attempt
	r.out.Invites++
	r.c.update(func(i *Info) { i.Line = lease.Line.Name; i.Attempt = attempt })
	rec.start = r.m.now()
	res := r.m.deps.SIP.Dial(ctx, sip.DialRequest{
		CallRef: req.CallRef, Target: lease.Line.DialURI(number), Transport: lease.Line.Transport,
		FromUser: params.CallerIDNumber, FromName: params.CallerIDName, FromHost: params.FromHost,
		Headers: params.Headers, Codecs: params.Codecs, RingTimeout: params.RingTimeout,
		IgnoreEarlyMedia: params.IgnoreEarlyMedia, Username: lease.Line.Username, Password: lease.Line.Password,
		OnRinging: func() { r.c.enter(StateRinging, nil) },
	})
	if res.Leg != nil {
		r.m.mSetup.Observe(res.AnswerAt.Sub(res.InviteAt).Seconds())
		rec.answer = r.m.now()
		rec.sipCode = res.Code
		r.answered(rec.answer, res.Code)
		r.c.addLeg("callee", res.Leg)
		return &answeredLeg{leg: res.Leg, lease: lease, number: number, vars: vars, params: params,
			attempt: attempt, rec: rec}, nextAnswered
	}

	lease.Release(context.WithoutCancel(ctx))
	rec.end = r.m.now()
	rec.sipCode = res.Code
	if res.Answered {
		// The callee answered but the dialog could not be confirmed (our
		// ACK could not be sent; sip.Dial already tried a BYE). Whoever
		// answered must not be rung again on another trunk or number, and
		// the call never reached its target: FAILED, like any answered
		// call that did not connect, with sip_code 200 and the reason.
		r.m.mSetup.Observe(res.AnswerAt.Sub(res.InviteAt).Seconds())
		rec.answer = rec.start.Add(res.AnswerAt.Sub(res.InviteAt))
		r.answered(rec.answer, res.Code)
		rec.disposition, rec.cause = Failed, DestinationOutOfOrder
		rec.reason = fmt.Sprintf("answered, but the call could not be confirmed: %v", res.AckErr)
		r.record(ctx, attempt, rec)
		r.log.Warn("call: answered but not confirmed; no further attempts", "number", number,
			"line", lease.Line.Name, "sip_code", res.Code, "error", res.AckErr)
		return nil, nextStop
	}
	rec.disposition, rec.cause = FromSIP(res.Code, res.TimedOut)
	switch {
	case res.Cancelled:
		rec.disposition, rec.cause = Cancelled, OriginatorCancel
	case res.TransportErr != nil && !res.Provisional:
		rec.disposition, rec.cause = Failed, DestinationOutOfOrder
		rec.reason = res.TransportErr.Error()
	case res.TimedOut && !res.Provisional:
		rec.reason = "no response before originate_timeout"
	}
	r.record(ctx, attempt, rec)
	r.log.Info("call: attempt failed", "number", number, "line", lease.Line.Name, "sip_code", res.Code,
		"disposition", rec.disposition, "provisional", res.Provisional, "timed_out", res.TimedOut)
	switch {
	case res.Cancelled || ctx.Err() != nil:
		return nil, nextStop
	case lines.TrunkFailure(res.Code, res.Provisional, res.TransportErr != nil, false):
		return nil, nextGroup
	default:
		return nil, nextNumber
	}
}

// answered marks the call answered at t with the given SIP code.
func (r *callRun) answered(t time.Time, code int) {
	r.out.Answered = true
	r.c.enter(StateAnswered, func(i *Info) {
		a := t.UTC()
		i.Answer, i.SIPCode = &a, code
	})
}

// endLeg ends an answered leg after its connector returned: it hangs the
// leg up, frees its line and writes its CDR, ANSWERED when the call
// reached its target and FAILED (with the reason) when it did not.
func (r *callRun) endLeg(ctx context.Context, a *answeredLeg, tr TargetResult) {
	// The hangup, the release and the CDR are done whatever happens to
	// ctx now; one context for the three.
	ctx = uncancelled(ctx)
	a.leg.Hangup(ctx)
	a.lease.Release(ctx)
	rec := a.rec
	rec.end = r.m.now()
	rec.ext, rec.cause, rec.reason = tr.Ext, tr.Cause, tr.Reason
	if !tr.ConnectedAt.IsZero() {
		rec.holdTime = tr.ConnectedAt.Sub(rec.answer)
	}
	if tr.Connected {
		rec.disposition = Answered
		r.out.Connected = true
	} else {
		// The callee answered but never reached its target: count it as
		// failed so a campaign does not take it for a contact, and say why.
		rec.disposition = Failed
	}
	tr.settle(&rec)
	r.record(ctx, a.attempt, rec)
}

// record writes one attempt's CDR and makes it the outcome's last.
func (r *callRun) record(ctx context.Context, attempt int, rec attemptRecord) {
	if rec.ext == nil {
		rec.ext = r.ext
	}
	r.out.Disposition = rec.disposition
	r.out.CDRs = append(r.out.CDRs, r.m.writeCDR(ctx, r.c, attempt, rec))
}
