package call

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"redial/internal/dialplan"
	"redial/internal/media"
	"redial/internal/notify"
	"redial/internal/sip"
)

// Agents finds where an agent is registered.
type Agents interface {
	Bindings(ctx context.Context, ext string, now time.Time) ([]sip.Binding, error)
}

// Nodes tells other nodes' SIP addresses, and whether an INVITE's source
// is one of them: nodes reach each other's agents through each other, and
// accept each other's SIP by the addresses in the node directory, never by
// a header.
type Nodes interface {
	// SIPAddr is node host's UDP SIP address ("ip:port"), false when the
	// node is not alive.
	SIPAddr(ctx context.Context, host string) (string, bool)
	// NodeAt is the live node whose UDP SIP address is source.
	NodeAt(ctx context.Context, source string) (string, bool)
}

// varRelayed marks an inbound call relayed by another node to this node's
// agents: it rings only the bindings held here, and its CDR is the
// originating node's.
const varRelayed = "redial_relayed_from"

// UserConnector rings an agent on every binding, on this node or through
// the node that holds it, bridges the first to answer (the others get
// CANCEL) and reports the agent as the CDR's ext.
type UserConnector struct {
	Engine *sip.Engine
	Agents Agents
	Nodes  Nodes
	// Self is this node's name (a binding's Node).
	Self string
	Now  func() time.Time
	// Notify, when set, gets the "call" notification of an outbound call
	// (campaign, schedule, API) connected to the agent (DESIGN.md).
	Notify *notify.Publisher

	// phones are the legs this node holds with agents' phones, which a
	// queue's offer waits for (phones.go).
	phones phones
}

// queueRingHeader marks a relayed INVITE as a queue's offer, so the node
// holding the agent waits for its last call with the agent to be hung up
// first (phones.go). Only nodes' INVITEs are relayed calls: the header
// means nothing from anyone else.
const queueRingHeader = "X-Redial-Queue-Offer"

// notRegistered is the reason of a user target nobody can answer.
const notRegistered = "user not registered"

// route is one way to ring the agent.
type route struct {
	req  sip.DialRequest
	desc string
}

// routes lists the ways to ring ext: its bindings on this node directly,
// and one INVITE to every other node holding a binding.
func (u *UserConnector) routes(ctx context.Context, ext string, localOnly bool) ([]route, error) {
	now := time.Now()
	if u.Now != nil {
		now = u.Now()
	}
	list, err := u.Agents.Bindings(ctx, ext, now)
	if err != nil {
		return nil, err
	}
	var out []route
	remote := map[string]bool{}
	for _, b := range list {
		if b.Node == u.Self {
			r := sip.DialRequest{Target: b.Contact, Transport: b.Transport}
			if b.Transport == "ws" || b.Transport == "wss" {
				r.Socket, r.WebRTC = b.Source, true
			}
			out = append(out, route{req: r, desc: b.Transport + " " + b.Source})
			continue
		}
		if localOnly || remote[b.Node] || u.Nodes == nil {
			continue
		}
		addr, ok := u.Nodes.SIPAddr(ctx, b.Node)
		if !ok {
			continue
		}
		remote[b.Node] = true
		out = append(out, route{req: sip.DialRequest{Target: "sip:" + ext + "@" + addr, Transport: "udp"}, desc: "via node " + b.Node})
	}
	return out, nil
}

// Precheck refuses an inbound call to a user nobody can answer with 480
// before it is answered.
func (u *UserConnector) Precheck(ctx context.Context, t dialplan.Target, relayed bool) (int, string) {
	routes, err := u.routes(ctx, t.User, relayed)
	if err != nil {
		return 503, "Service Unavailable"
	}
	if len(routes) == 0 {
		return 480, "Temporarily Unavailable"
	}
	return 0, ""
}

// Connect implements Connector.
func (u *UserConnector) Connect(ctx context.Context, s *Session) TargetResult {
	ext := s.Target.User
	agent := ext
	tr := TargetResult{Ext: &agent}
	a := s.Leg
	codecs := []media.Codec{a.Codec}
	for _, c := range []media.Codec{media.PCMU, media.PCMA} {
		if c.Name != a.Codec.Name {
			codecs = append(codecs, c)
		}
	}
	// Ringing ends as soon as the caller hangs up.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-a.Done():
			cancel()
		case <-rctx.Done():
		}
	}()
	res := u.ringAgent(rctx, agentRing{ext: ext, callRef: s.Call.Ref(), fromUser: s.ClientNumber, codecs: codecs,
		timeout: s.Params.BridgeTimeout, localOnly: s.Vars[varRelayed] != "", log: s.Log})
	if res.leg == nil {
		tr.Cause, tr.Reason = res.cause, res.reason
		if res.rang {
			if a.HungUpByRemote() {
				tr.Cause, tr.Reason = OriginatorCancel, "caller hung up while the agent rang"
				return tr
			}
			_, tr.Cause = FromSIP(res.code, false)
		}
		return tr
	}
	bleg := res.leg
	s.Call.addLeg("agent", bleg)
	connected := time.Now()
	s.Call.enter(StateBridged, nil)
	if s.Call.req.CampaignRef != InboundCampaignRef {
		notifyAgentCall(ctx, u.Notify, s, agent, 0, false)
	}
	out := relayUntilHangup(ctx, s, bleg, "agent")
	out.Ext, out.ConnectedAt = &agent, connected
	return out
}

// agentRing is what ringAgent rings: an agent's bindings, presenting
// fromUser, offering codecs, for at most timeout.
type agentRing struct {
	ext      string
	callRef  string
	fromUser string
	codecs   []media.Codec
	timeout  time.Duration
	// localOnly rings only the bindings held on this node (a call another
	// node relayed here).
	localOnly bool
	// queue marks a queue's offer: it waits for this node's last call
	// with the agent to be hung up, and says so to the node it relays to.
	queue bool
	log   *slog.Logger
}

// agentRingResult is the agent's answered leg, or why there is none.
type agentRingResult struct {
	leg *sip.Leg
	// rang is true when at least one binding was rung; code is then the
	// most telling final SIP code of the forks and timedOut whether the
	// ring timeout ended one.
	rang     bool
	code     int
	timedOut bool
	// reached is true when a binding's phone got the INVITE (it answered
	// something, or rang until the timeout): only then does an agent's
	// miss count against max_no_answer.
	reached bool
	// cause and reason explain a missing leg (not registered, bindings
	// unreadable, the forks' responses).
	cause  Cause
	reason string
}

// ringAgent rings every binding of an agent, on this node or through the
// node that holds it, until the first answers (the other forks get
// CANCEL), ctx ends or the ring timeout passes. It is the agent step of
// both an inbound call to a user and a click-to-dial call.
func (u *UserConnector) ringAgent(ctx context.Context, ar agentRing) agentRingResult {
	ext := ar.ext
	if ar.queue && !u.phones.settle(ctx, ext, phoneSettleLimit) && ctx.Err() == nil {
		ar.log.Warn("call: offering a queue call to an agent this node still has a call with", "ext", ext)
	}
	routes, err := u.routes(ctx, ext, ar.localOnly)
	if err != nil {
		return agentRingResult{cause: NormalTemporaryFailure, reason: "agent " + ext + ": " + err.Error()}
	}
	if len(routes) == 0 {
		return agentRingResult{cause: SubscriberAbsent, reason: notRegistered}
	}
	// Every fork rings until the first answers, ctx ends or the ring
	// timeout; the losers are cancelled.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan sip.DialResult, len(routes))
	var wg sync.WaitGroup
	for _, r := range routes {
		req := r.req
		req.CallRef, req.FromUser, req.Codecs, req.RingTimeout = ar.callRef, ar.fromUser, ar.codecs, ar.timeout
		req.Headers = map[string]string{"X-Redial-Call-Ref": ar.callRef}
		if ar.queue {
			req.Headers[queueRingHeader] = "1"
		}
		// The fork is this node's business with the phone until its INVITE
		// is over, and then until its leg, if any, is hung up.
		ringing := make(chan struct{})
		u.phones.hold(ext, ringing)
		wg.Add(1)
		go func(desc string) {
			defer wg.Done()
			res := u.Engine.Dial(rctx, req)
			if res.Leg != nil {
				u.phones.hold(ext, res.Leg.Done())
			}
			close(ringing)
			if res.Leg == nil {
				ar.log.Info("call: agent binding did not answer", "ext", ext, "binding", desc, "sip_code", res.Code, "reason", res.Reason)
			}
			results <- res
		}(r.desc)
	}
	go func() { wg.Wait(); close(results) }()
	out := agentRingResult{rang: true}
	var reason []string
	for res := range results {
		switch {
		case res.Leg != nil && out.leg == nil:
			out.leg = res.Leg
			cancel() // CANCEL the other forks
		case res.Leg != nil:
			// Answered at the same moment as the winner: not this call's.
			res.Leg.Hangup(context.WithoutCancel(ctx))
		default:
			if out.code == 0 || res.Code == 486 || res.Code == 600 || res.Code == 603 {
				out.code = res.Code
			}
			out.timedOut = out.timedOut || res.TimedOut
			out.reached = out.reached || res.Provisional || res.TimedOut || (res.TransportErr == nil && res.Code > 400)
			reason = append(reason, fmt.Sprintf("%d %s", res.Code, res.Reason))
		}
	}
	if out.leg == nil {
		_, out.cause = FromSIP(out.code, out.timedOut)
		out.reason = "agent " + ext + ": " + strings.Join(reason, "; ")
	}
	return out
}

// contactRef is the call's contact_ref: set by an IVR in front (the
// variable contact_ref) or given with the call. One that could not travel
// in a SIP header is left out rather than fail the call.
func (s *Session) contactRef() string {
	ref := s.Vars["contact_ref"]
	if ref == "" {
		ref = s.Call.req.ContactRef
	}
	if !validRef(ref) {
		return ""
	}
	return ref
}
