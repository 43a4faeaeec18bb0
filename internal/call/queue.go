package call

import (
	"context"
	"sync"
	"time"

	"redial/internal/acd"
	"redial/internal/dialplan"
	"redial/internal/media"
	"redial/internal/notify"
	"redial/internal/sip"
)

// QueueConnector puts an answered call in an inbound queue
// (`{"type":"queue","queue":"sales"}`): the ACD decides which agent rings
// and when; this rings them (through UserConnector's agent ringing, across
// nodes), bridges the one who answers, tells the integrator, and sends the
// caller to the queue's overflow when the ACD says so.
type QueueConnector struct {
	ACD   *acd.Service
	Users *UserConnector
	// Manager connects overflows to their dialplan target.
	Manager *Manager
	// Legacy writes inbound notifications in the format before v3
	// ("campaign_ref":"inbound" in place of "call_dir").
	Legacy bool
}

// maxOverflows bounds a chain of queues overflowing into each other.
const maxOverflows = 5

// varOverflows counts the overflows a call went through.
const varOverflows = "redial_queue_overflows"

// Connect implements Connector.
func (q *QueueConnector) Connect(ctx context.Context, s *Session) TargetResult {
	queue := s.Target.Queue
	s.Vars["redial_queue"] = queue
	a := s.Leg
	codecs := []media.Codec{a.Codec}
	for _, c := range []media.Codec{media.PCMU, media.PCMA} {
		if c.Name != a.Codec.Name {
			codecs = append(codecs, c)
		}
	}
	var (
		mu  sync.Mutex
		won *sip.Leg
	)
	ring := func(rctx context.Context, exts []string, timeout time.Duration, ended func(string)) (string, []string, []string) {
		return q.ring(rctx, s, exts, timeout, codecs, func(l *sip.Leg) { mu.Lock(); won = l; mu.Unlock() }, ended)
	}
	res := q.ACD.Wait(ctx, acd.Caller{Queue: queue, CallRef: s.Call.Ref(), Media: a.Media, Gone: a.Done(), Log: s.Log}, ring)
	tr := TargetResult{HoldSet: true, Hold: res.Hold, Reason: res.Reason}
	switch res.Outcome {
	case acd.Connected:
		mu.Lock()
		bleg := won
		mu.Unlock()
		agent := res.Ext
		s.Call.addLeg("agent", bleg)
		connected := time.Now()
		s.Call.enter(StateBridged, nil)
		q.notifyConnected(ctx, s, agent, res.Hold)
		out := relayUntilHangup(ctx, s, bleg, "agent")
		q.ACD.Ended(ctx, queue, s.Call.Ref(), agent)
		out.Ext, out.ConnectedAt, out.HoldSet, out.Hold = &agent, connected, true, res.Hold
		return out
	case acd.Abandoned:
		tr.Cause, tr.Disposition = OriginatorCancel, Abandoned
		s.Vars["redial_hangup_side"] = "callee"
		return tr
	case acd.Overflow:
		n := 0
		if v, ok := s.Vars[varOverflows]; ok && len(v) == 1 && v[0] >= '0' && v[0] <= '9' {
			n = int(v[0] - '0')
		}
		if n >= maxOverflows {
			tr.Cause, tr.Reason = NormalTemporaryFailure, "queue "+queue+": too many overflows in a row ("+res.Reason+")"
			return tr
		}
		s.Vars[varOverflows] = string(rune('0' + n + 1))
		s.Vars["redial_queue_overflow_reason"] = res.Reason
		dest := dialplan.Destination{Extension: res.Overflow.Extension, Dialplan: "XML", Context: res.Overflow.Context}
		if dest.Context == "" {
			dest.Context = "default"
		}
		s.Log.Info("call: queue overflow", "queue", queue, "to", dest.Context+":"+dest.Extension, "reason", res.Reason)
		out := q.Manager.connectTo(ctx, s, dest)
		if !out.HoldSet {
			out.HoldSet, out.Hold = true, res.Hold
		}
		return out
	case acd.Refused:
		tr.Cause = NormalTemporaryFailure
		return tr
	}
	tr.Cause = NormalTemporaryFailure
	return tr
}

// ring rings every binding of every ext at once; the first to answer wins
// (won gets its leg) and the others are cancelled. It returns that ext,
// the exts whose phones were reached (an agent whose INVITE could not even
// be sent did not miss the call), and the losers still being ended: those
// are waited for in the background of the call manager (a CANCEL that
// crossed an answer may take up to 64*T1), hanging up any that answered
// all the same and then calling ended with each, while the winner is
// bridged and the call's CDR does not wait for them.
func (q *QueueConnector) ring(ctx context.Context, s *Session, exts []string, timeout time.Duration, codecs []media.Codec,
	won func(*sip.Leg), ended func(string)) (string, []string, []string) {
	rctx, cancel := context.WithCancel(ctx)
	type result struct {
		ext string
		res agentRingResult
	}
	results := make(chan result, len(exts))
	// Read before the goroutines start: the winner's bridge writes the
	// session's variables while a loser's goroutine may still be starting.
	localOnly := s.Vars[varRelayed] != ""
	for _, ext := range exts {
		go func() {
			results <- result{ext, q.Users.ringAgent(rctx, agentRing{ext: ext, callRef: s.Call.Ref(), fromUser: s.ClientNumber,
				codecs: codecs, timeout: timeout, localOnly: localOnly, queue: true, log: s.Log})}
		}()
	}
	answered := ""
	var rung []string
	left := map[string]bool{}
	for _, e := range exts {
		left[e] = true
	}
	for len(left) > 0 && answered == "" {
		r := <-results
		delete(left, r.ext)
		if r.res.reached || r.res.leg != nil {
			rung = append(rung, r.ext)
		}
		if r.res.leg != nil {
			answered = r.ext
			won(r.res.leg)
		}
	}
	cancel() // CANCEL the other agents
	if len(left) == 0 {
		return answered, rung, nil
	}
	pending := make([]string, 0, len(left))
	for e := range left {
		pending = append(pending, e)
	}
	q.Manager.background(func() {
		for range pending {
			r := <-results
			if r.res.leg != nil {
				// Answered at the same moment as the winner: not this call's.
				r.res.leg.Hangup(context.WithoutCancel(ctx))
			}
			ended(r.ext)
		}
	})
	return answered, rung, pending
}

// notifyConnected sends seed 001's "call" notification for a call the
// queue connected to agent.
func (q *QueueConnector) notifyConnected(ctx context.Context, s *Session, agent string, hold time.Duration) {
	notifyAgentCall(ctx, q.Manager.deps.Notify, s, agent, hold, q.Legacy)
}

// notifyAgentCall sends seed 001's "call" notification for a call
// connected to agent: inbound calls on <prefix>:inbound, outbound ones (a
// campaign, a schedule, an API call) on <prefix>:campaigns, before the
// CDR, so one unpacking function serves both.
func notifyAgentCall(ctx context.Context, p *notify.Publisher, s *Session, agent string, hold time.Duration, legacy bool) {
	if p == nil || s.Call.req.noCDR {
		return // a relayed call: the originating node tells
	}
	n := notify.CallNotification{Number: s.ClientNumber, HoldTime: secs(hold), CallRef: s.Call.Ref(),
		ContactRef: s.contactRef(), Ref: agent}
	if s.Call.req.CampaignRef == InboundCampaignRef {
		n.DialNumber = s.Vars["destination_number"]
		if legacy {
			n.CampaignRef = InboundCampaignRef
		} else {
			n.CallDir = notify.CallDirInbound
		}
	} else {
		n.CallDir, n.CampaignRef = notify.CallDirOutbound, s.Call.req.CampaignRef
		n.DialNumber = s.Params.CallerIDNumber
	}
	if err := p.PublishCall(context.WithoutCancel(ctx), n); err != nil {
		s.Log.Error("call: call notification lost", "ext", agent, "error", err)
	}
}

// settle applies what a connector said about the CDR beyond ANSWERED or
// FAILED: the queue's hold time and ABANDONED.
func (tr TargetResult) settle(rec *attemptRecord) {
	if tr.HoldSet {
		rec.holdTime = tr.Hold
	}
	if tr.Disposition != "" {
		rec.disposition = tr.Disposition
	}
}

// background runs f as part of the calls in progress: shutdown waits for
// it as for a call.
func (m *Manager) background(f func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
}
