package call

import (
	"context"
	"log/slog"
	"time"

	"redial/internal/media"
	"redial/internal/sip"
)

// relayRingLimit bounds how long a relayed call rings this node's
// bindings; the originating node's ring timeout (its CANCEL) normally ends
// it much sooner.
const relayRingLimit = 2 * time.Minute

// runRelayed serves a call another node relayed to an agent registered
// here: it rings the agent's bindings on this node while the relay INVITE
// rings (180), and answers the relay only when a binding answers, so the
// originating node learns the agent's own answer, refusal or silence (and
// its ring timeout and the queues' max_no_answer mean what they say).
// The originating node writes the CDR.
func (m *Manager) runRelayed(ctx context.Context, in *sip.Inbound, c *Call, u *UserConnector, log *slog.Logger) {
	in.Ringing()
	// A CANCEL from the originating node (its caller left, another agent
	// won, its ring timeout) ends the ringing, and the answer too when it
	// crosses the agent's: the agent's phone is then hung up at once
	// rather than left in a call nobody will ACK.
	rctx, cancelRing := context.WithCancel(ctx)
	defer cancelRing()
	actx, cancelAnswer := context.WithCancel(ctx)
	defer cancelAnswer()
	cancelled := in.Cancelled()
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-cancelled:
			cancelRing()
			cancelAnswer()
		case <-in.TxDone():
			cancelRing()
		case <-stopWatch:
		}
	}()
	defer func() { close(stopWatch); <-watchDone }()
	codecs := []media.Codec{media.PCMU, media.PCMA}
	if in.OfferErr == nil {
		if cd, _, err := media.Negotiate(in.Offer, codecs); err == nil && cd.Name == media.PCMA.Name {
			codecs = []media.Codec{media.PCMA, media.PCMU}
		}
	}
	ring := u.ringAgent(rctx, agentRing{ext: in.Dialed(), callRef: c.Ref(), fromUser: in.Caller(), codecs: codecs,
		timeout: relayRingLimit, localOnly: true, queue: in.Req.GetHeader(queueRingHeader) != nil, log: log})
	if ring.leg != nil && actx.Err() != nil {
		ring.leg.Hangup(context.WithoutCancel(ctx))
		ring.leg = nil
	}
	if ring.leg == nil {
		code := ring.code
		switch {
		case rctx.Err() != nil:
			code = 487
		case code < 400:
			code = 480
		}
		log.Info("call: relayed call not answered here", "ext", in.Dialed(), "sip_code", code, "reason", ring.reason)
		in.Reject(code, "Not Answered")
		c.update(func(i *Info) { i.State = StateEnded })
		return
	}
	agentLeg := ring.leg
	leg, err := in.Answer(actx, c.Ref())
	if err != nil {
		if actx.Err() != nil {
			// Another agent won, or the caller left, as this one answered.
			log.Info("call: relayed call cancelled as the agent answered; the agent is hung up", "ext", in.Dialed())
		} else {
			log.Warn("call: relayed call's answer failed; the agent is hung up", "error", err)
		}
		agentLeg.Hangup(context.WithoutCancel(ctx))
		c.update(func(i *Info) { i.State = StateEnded })
		return
	}
	c.addLeg("caller", leg)
	c.addLeg("agent", agentLeg)
	c.enter(StateBridged, nil)
	// The originating node records the bridge it holds; a second copy
	// here would hold the same audio.
	c.req.Variables["record_call"] = "false"
	relayUntilHangup(ctx, &Session{Call: c, Leg: leg, ClientNumber: in.Caller(), Vars: c.req.Variables,
		Params: ParseDialParams(c.req.Variables, log, c.Ref()), Log: log}, agentLeg, "agent")
	c.mu.Lock()
	c.info.State = StateEnded
	c.legs = nil
	c.mu.Unlock()
}
