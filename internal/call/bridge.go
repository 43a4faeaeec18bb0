package call

import (
	"context"
	"strings"
	"time"

	"redial/internal/media"
	"redial/internal/sip"
)

// SIPBridge connects an answered call to a SIP URI as a B2BUA: it calls the
// target, anchors the media (RTP relayed through this node both ways) and
// ends both legs when either side hangs up.
type SIPBridge struct {
	Engine *sip.Engine
}

// Connect implements Connector.
func (b *SIPBridge) Connect(ctx context.Context, s *Session) TargetResult {
	bleg, failed := b.dial(ctx, s)
	if bleg == nil {
		return failed
	}
	connected := b.bridged(s, bleg)
	tr := relayUntilHangup(ctx, s, bleg, "destination")
	tr.ConnectedAt = connected
	return tr
}

// ConnectThen implements HandoffConnector: the call's goroutine dials,
// and a new goroutine, started small, waits for the hangup. The dialing
// goroutine's stack (the attempts, the dial, the manager's frames) is
// gone while the call is held, where keeping it cost every held call 8
// KiB.
func (b *SIPBridge) ConnectThen(ctx context.Context, s *Session, then func(TargetResult)) {
	bleg, failed := b.dial(ctx, s)
	if bleg == nil {
		then(failed)
		return
	}
	connected := b.bridged(s, bleg)
	br := startBridge(ctx, s, bleg, "destination")
	go br.hold(ctx, connected, then)
}

// bridged records the destination's leg on the call: the bridge starts.
func (b *SIPBridge) bridged(s *Session, bleg *sip.Leg) time.Time {
	s.Call.addLeg("destination", bleg)
	connected := time.Now()
	s.Call.enter(StateBridged, nil)
	return connected
}

// dial calls the destination: its leg, or nil and the failure. It is kept
// out of Connect (and out of line) because the call's goroutine stays in
// Connect for the whole bridge: the dial's locals (the request, the
// result) in Connect's frame would keep every held call's stack above the
// size it can shrink to.
//
//go:noinline
func (b *SIPBridge) dial(ctx context.Context, s *Session) (*sip.Leg, TargetResult) {
	a := s.Leg
	// Offer the destination the codec the callee already speaks first, so
	// the relay passes packets through untouched.
	codecs := []media.Codec{a.Codec}
	for _, c := range []media.Codec{media.PCMU, media.PCMA} {
		if c.Name != a.Codec.Name {
			codecs = append(codecs, c)
		}
	}
	transport := "udp"
	if i := strings.Index(strings.ToLower(s.Target.URI), ";transport="); i >= 0 {
		transport = strings.ToLower(strings.SplitN(s.Target.URI[i+len(";transport="):], ";", 2)[0])
	}
	// Ringing the destination ends as soon as the callee hangs up. The
	// watcher ends with dial (Dial keeps nothing of dctx), not with the
	// bridge: a held call would keep it waiting for its whole life.
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-a.Done():
			cancel()
		case <-dctx.Done():
		}
	}()
	res := b.Engine.Dial(dctx, sip.DialRequest{
		CallRef: s.Call.Ref(), Target: s.Target.URI, Transport: transport,
		FromUser: s.ClientNumber, Codecs: codecs, RingTimeout: s.Params.BridgeTimeout,
		Headers: map[string]string{"X-Redial-Call-Ref": s.Call.Ref()},
	})
	if res.Leg == nil {
		if a.HungUpByRemote() {
			return nil, TargetResult{Cause: OriginatorCancel, Reason: "callee hung up while the destination rang"}
		}
		_, cause := FromSIP(res.Code, res.TimedOut)
		reason := "destination " + s.Target.URI + " failed: " + res.Reason
		switch {
		case res.AckErr != nil:
			// The destination answered but could not be confirmed.
			cause, reason = DestinationOutOfOrder, res.AckErr.Error()
		case res.TransportErr != nil:
			reason = res.TransportErr.Error()
		}
		s.Log.Warn("call: destination leg failed", "uri", s.Target.URI, "sip_code", res.Code, "reason", reason)
		return nil, TargetResult{Cause: cause, Reason: reason}
	}
	return res.Leg, TargetResult{}
}

// byeGrace is how long a relay that ended by itself waits for the BYE that
// may have ended it to mark its leg done.
const byeGrace = 200 * time.Millisecond

// bridge is the relay between a session's answered leg and bleg (the
// destination or agent, named side in redial_hangup_side), from its start
// to the hangup of both.
type bridge struct {
	s     *Session
	bleg  *sip.Leg
	side  string
	rec   *media.StereoRecorder
	relay *media.RelayRun
}

// hangupBy is what ended a bridge.
type hangupBy uint8

const (
	byCallee hangupBy = iota
	bySide
	byAPI
	byRelay
)

// relayUntilHangup relays media between the answered leg and bleg until
// either hangs up or the call is ended, then hangs both up, on the
// caller's goroutine. Agent bridges (side "agent") are recorded unless
// record_call=false, others when record_call=true (see startRecording);
// the recording's store path is in the result and in the variable
// redial_recording, which the CDR turns into its recording field.
func relayUntilHangup(ctx context.Context, s *Session, bleg *sip.Leg, side string) TargetResult {
	br := startBridge(ctx, s, bleg, side)
	return br.end(ctx, br.wait(ctx))
}

// startBridge starts recording (when asked) and relaying.
func startBridge(ctx context.Context, s *Session, bleg *sip.Leg, side string) *bridge {
	rec := startRecording(s, side, time.Now())
	// No goroutine waits for the relay: the bridge's waiter does (a held
	// call's goroutines are most of its memory), and it stops the relay on
	// ctx itself, so the relay needs no watch on ctx.
	relay := media.StartRelay(context.WithoutCancel(ctx), s.Leg.Media, bleg.Media, rec)
	return &bridge{s: s, bleg: bleg, side: side, rec: rec, relay: relay}
}

// hold is a handed-off bridge's goroutine. Its frames while it waits are
// hold's, wait's and the select's, well under the 1 KiB that lets the
// runtime keep its stack at the 2 KiB minimum.
func (br *bridge) hold(ctx context.Context, connected time.Time, then func(TargetResult)) {
	br.finish(ctx, br.wait(ctx), connected, then)
}

// finish ends a handed-off bridge and hands its result on. Out of line so
// that its frame, and end's, are not part of hold's while it waits.
//
//go:noinline
func (br *bridge) finish(ctx context.Context, by hangupBy, connected time.Time, then func(TargetResult)) {
	tr := br.end(ctx, by)
	tr.ConnectedAt = connected
	then(tr)
}

// wait parks until either leg hangs up, the call is ended, or the relay
// ends by itself.
//
//go:noinline
func (br *bridge) wait(ctx context.Context) hangupBy {
	select {
	case <-br.s.Leg.Done():
		return byCallee
	case <-br.bleg.Done():
		return bySide
	case <-ctx.Done():
		return byAPI
	case <-br.relay.Done():
		return byRelay
	}
}

// end hangs both legs up and says how the bridge went.
func (br *bridge) end(ctx context.Context, by hangupBy) TargetResult {
	s, a, bleg, side := br.s, br.s.Leg, br.bleg, br.side
	tr := TargetResult{Connected: true, Cause: NormalClearing}
	var st media.RelayStats
	switch by {
	case byCallee:
		s.Vars["redial_hangup_side"] = "callee"
	case bySide:
		s.Vars["redial_hangup_side"] = side
	case byAPI:
		s.Vars["redial_hangup_side"] = "api"
	case byRelay:
		st = br.relay.Wait()
		// A BYE closes its leg's media just before it marks the leg done,
		// so the relay may end first: give the BYE its moment. Without
		// one, a leg's media ended by itself: a browser that was closed or
		// lost its network (WebRTC legs end with their DTLS session).
		select {
		case <-a.Done():
			s.Vars["redial_hangup_side"] = "callee"
		case <-bleg.Done():
			s.Vars["redial_hangup_side"] = side
		case <-time.After(byeGrace):
			s.Vars["redial_hangup_side"] = side + "_media"
		}
	}
	// The bridge ends here, whatever the hangups below take.
	bridgeEnd := time.Now()
	br.relay.Stop()
	bleg.Hangup(context.WithoutCancel(ctx))
	a.Hangup(context.WithoutCancel(ctx))
	if by != byRelay {
		st = br.relay.Wait()
	}
	if br.rec != nil {
		tr.Recording = finishRecording(s, br.rec, bridgeEnd)
	}
	s.Log.Info("call: bridge ended", "side", s.Vars["redial_hangup_side"], "rtp_a_to_b", st.AtoB, "rtp_b_to_a", st.BtoA)
	return tr
}

// hangupConnector ends the answered call at once with NORMAL_CLEARING.
type hangupConnector struct{}

// Connect implements Connector.
func (hangupConnector) Connect(ctx context.Context, s *Session) TargetResult {
	return TargetResult{Connected: true, ConnectedAt: time.Now(), Cause: NormalClearing}
}
