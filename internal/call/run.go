package call

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"redial/internal/dialplan"
	"redial/internal/lines"
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

func (m *Manager) run(ctx context.Context, c *Call) {
	req := c.req
	log := m.log.With("call_ref", req.CallRef)
	attempt := 0
	invited := false
	var out Outcome
	defer func() {
		c.mu.Lock()
		c.out = out
		c.info.State = StateEnded
		c.legs = nil // the legs' sockets and dialogs are done; let them go
		c.mu.Unlock()
	}()

numbers:
	for _, number := range req.Numbers {
		c.update(func(i *Info) { i.Number = number; i.State = StateDialing })
		var noLineErr error
		sent := false
		for _, group := range req.LineGroups {
			lease, err := m.deps.Lines.Acquire(ctx, group, req.CallRef)
			if err != nil {
				if ctx.Err() != nil {
					break numbers
				}
				// No free line is a trunk-side failure: try the next group.
				noLineErr = err
				log.Info("call: no line", "group", group, "number", number, "error", err)
				continue
			}
			vars := lines.MergeVariables(req.Variables, lease.Line.Variables)
			params := ParseDialParams(vars, log, req.CallRef)
			rec := attemptRecord{number: number, line: lease.Line.Name, vars: vars, dialNumber: params.CallerIDNumber}
			target := lease.Line.DialURI(number)
			if !invited && req.OnInvite != nil {
				if err := req.OnInvite(); err != nil {
					lease.Release(context.WithoutCancel(ctx))
					out.NotDialed, out.NotDialedErr = true, err
					log.Warn("call: not dialed", "error", err)
					return
				}
			}
			invited, sent = true, true
			attempt++
			out.Invites++
			c.update(func(i *Info) { i.Line = lease.Line.Name; i.Attempt = attempt })
			rec.start = m.now()
			res := m.deps.SIP.Dial(ctx, sip.DialRequest{
				CallRef: req.CallRef, Target: target, Transport: lease.Line.Transport,
				FromUser: params.CallerIDNumber, FromName: params.CallerIDName, FromHost: params.FromHost,
				Headers: params.Headers, Codecs: params.Codecs, RingTimeout: params.RingTimeout,
				IgnoreEarlyMedia: params.IgnoreEarlyMedia, Username: lease.Line.Username, Password: lease.Line.Password,
				OnRinging: func() { c.update(func(i *Info) { i.State = StateRinging }) },
			})
			if res.Leg == nil {
				lease.Release(context.WithoutCancel(ctx))
				rec.end = m.now()
				rec.sipCode = res.Code
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
				out.Disposition = rec.disposition
				out.CDRs = append(out.CDRs, m.writeCDR(ctx, c, attempt, rec))
				log.Info("call: attempt failed", "number", number, "line", lease.Line.Name, "sip_code", res.Code,
					"disposition", rec.disposition, "provisional", res.Provisional, "timed_out", res.TimedOut)
				if res.Cancelled || ctx.Err() != nil {
					break numbers
				}
				if lines.TrunkFailure(res.Code, res.Provisional, res.TransportErr != nil, false) {
					continue
				}
				break
			}

			// Answered.
			m.mSetup.Observe(res.AnswerAt.Sub(res.InviteAt).Seconds())
			rec.answer = m.now()
			out.Answered = true
			c.update(func(i *Info) {
				a := rec.answer.UTC()
				i.Answer, i.State, i.SIPCode = &a, StateAnswered, res.Code
			})
			c.addLeg("callee", res.Leg)
			tr := m.connect(ctx, c, res.Leg, number, vars, params, log)
			res.Leg.Hangup(context.WithoutCancel(ctx))
			lease.Release(context.WithoutCancel(ctx))
			rec.end = m.now()
			rec.sipCode = res.Code
			rec.ext = tr.Ext
			rec.cause = tr.Cause
			rec.reason = tr.Reason
			if !tr.ConnectedAt.IsZero() {
				rec.holdTime = tr.ConnectedAt.Sub(rec.answer)
			}
			if tr.Connected {
				rec.disposition = Answered
				out.Connected = true
			} else {
				// The callee answered but never reached its target: count
				// it as failed so a campaign does not take it for a
				// contact, and say why.
				rec.disposition = Failed
			}
			out.Disposition = rec.disposition
			out.CDRs = append(out.CDRs, m.writeCDR(ctx, c, attempt, rec))
			break numbers
		}
		if !sent && noLineErr != nil && req.ReturnOnNoLine && !invited {
			out.NoLine, out.NotDialed = true, true
			break
		}
		if !sent && noLineErr != nil {
			attempt++
			now := m.now()
			rec := attemptRecord{number: number, vars: req.Variables, start: now, end: now,
				disposition: NoLine, cause: CircuitCongestion, reason: noLineErr.Error(),
				dialNumber: req.Variables["origination_caller_id_number"]}
			out.Disposition = NoLine
			out.CDRs = append(out.CDRs, m.writeCDR(ctx, c, attempt, rec))
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(out.CDRs) == 0 && ctx.Err() != nil {
		// Hung up before any attempt: still leave a record.
		now := m.now()
		number := ""
		if len(req.Numbers) > 0 {
			number = req.Numbers[0]
		}
		out.Disposition = Cancelled
		out.CDRs = append(out.CDRs, m.writeCDR(ctx, c, 1, attemptRecord{number: number, vars: req.Variables,
			start: now, end: now, disposition: Cancelled, cause: OriginatorCancel, reason: fmt.Sprint(context.Cause(ctx))}))
	}
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
}

// Connector connects an answered call to one type of target. Connect
// returns when the call is over; the manager then hangs up the leg.
type Connector interface {
	Connect(ctx context.Context, s *Session) TargetResult
}

func (m *Manager) connect(ctx context.Context, c *Call, leg *sip.Leg, number string, vars map[string]string, params DialParams, log *slog.Logger) TargetResult {
	target, err := m.deps.Dialplan.Resolve(ctx, c.req.Destination)
	if err != nil {
		log.Warn("call: destination not resolved", "error", err)
		cause := NoRouteDestination
		if !errors.Is(err, dialplan.ErrNoRoute) {
			cause = NormalTemporaryFailure
		}
		return TargetResult{Cause: cause, Reason: err.Error()}
	}
	m.connMu.RLock()
	conn := m.connectors[target.Type]
	m.connMu.RUnlock()
	if conn == nil {
		reason := fmt.Sprintf("call: dialplan entry %q: target type %q is not available on this node", target.Key, target.Type)
		log.Warn(reason)
		return TargetResult{Cause: NoRouteDestination, Reason: reason}
	}
	return conn.Connect(ctx, &Session{Call: c, Leg: leg, Target: target, ClientNumber: number, Vars: vars, Params: params, Log: log})
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
	cdr := notify.CDR{
		CallRef: c.req.CallRef, ContactRef: c.req.ContactRef, CampaignRef: c.req.CampaignRef,
		ClientNumber: r.number, DialNumber: r.dialNumber, Ext: r.ext,
		Disposition: r.disposition, SIPCode: r.sipCode, HangupCause: r.cause.Name,
		Line: r.line, Attempt: attempt, Start: r.start.UTC(), End: r.end.UTC(),
		Duration: secs(r.end.Sub(r.start)), HoldTime: secs(r.holdTime), Variables: vars,
	}
	if !r.answer.IsZero() {
		a := r.answer.UTC()
		cdr.Answer = &a
		cdr.Billsec = secs(r.end.Sub(r.answer))
	}
	err := m.deps.Notify.PublishCDR(context.WithoutCancel(ctx), &cdr)
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

// secs rounds a duration to whole seconds, as CDR consumers expect.
func secs(d time.Duration) int {
	if d < 0 {
		return 0
	}
	return int(math.Round(d.Seconds()))
}
