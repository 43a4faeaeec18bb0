package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"

	"redial/internal/media"
)

// ErrNotAnswered is returned by Call when the callee answered with a
// failure (its status is in the error) or did not answer in time.
var ErrNotAnswered = errors.New("sim: call not answered")

// Call places a call from the simulator's socket, as a carrier's caller
// would: an INVITE to target (host:port) for number, from caller, offering
// PCMU, PCMA and telephone-event. Once answered it is the same as a call
// the simulator answered: the tone, the key press of the config, and a
// hang-up after the talk time (the caller's patience) unless the other
// side hangs up first, or when ctx ends. It returns when the call is over;
// answered tells whether it was answered.
func (s *Sim) Call(ctx context.Context, target, number, caller string, ringFor time.Duration) (answered bool, err error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return false, fmt.Errorf("sim: call %s: %w", target, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return false, fmt.Errorf("sim: call %s: port: %w", target, err)
	}
	if err := s.waitServing(ctx); err != nil {
		return false, err
	}
	sess, err := media.NewSession("0.0.0.0", s.ports)
	if err != nil {
		return false, fmt.Errorf("sim: call %s: %w", number, err)
	}
	defer sess.Close()
	lhost, _, _ := net.SplitHostPort(s.Addr())
	offer := media.BuildSDP(media.SDPOffer{IP: lhost, Port: sess.LocalPort(),
		Codecs: []media.Codec{media.PCMU, media.PCMA, media.TelephoneEvent}})
	req := gosip.NewRequest(gosip.INVITE, gosip.Uri{Scheme: "sip", User: number, Host: host, Port: p})
	from := &gosip.FromHeader{Address: gosip.Uri{Scheme: "sip", User: caller, Host: lhost}, Params: gosip.NewParams()}
	from.Params.Add("tag", gosip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&gosip.ToHeader{Address: gosip.Uri{Scheme: "sip", User: number, Host: host, Port: p}, Params: gosip.NewParams()})
	req.AppendHeader(gosip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(offer)
	s.invites.Add(1)
	d, err := s.dlc.WriteInvite(ctx, req)
	if err != nil {
		return false, fmt.Errorf("sim: call %s: INVITE: %w", number, err)
	}
	defer d.Close()
	rctx, cancel := context.WithTimeout(ctx, ringFor)
	err = d.WaitAnswer(rctx, sipgo.AnswerOptions{})
	cancel()
	if err != nil {
		var re *sipgo.ErrDialogResponse
		if errors.As(err, &re) {
			if re.Res.StatusCode == 486 || re.Res.StatusCode == 600 {
				s.busy.Add(1)
			}
			return false, fmt.Errorf("%w: %s: %d %s", ErrNotAnswered, number, re.Res.StatusCode, re.Res.Reason)
		}
		if rctx.Err() != nil && ctx.Err() == nil {
			s.cancelled.Add(1)
			return false, fmt.Errorf("%w: %s: no answer within %v", ErrNotAnswered, number, ringFor)
		}
		return false, fmt.Errorf("sim: call %s: %w", number, err)
	}
	if err := d.Ack(ctx); err != nil {
		return true, fmt.Errorf("sim: call %s: ACK: %w", number, err)
	}
	s.answered.Add(1)
	remote, err := media.ParseSDP(d.InviteResponse.Body())
	var codec media.Codec
	var dtmf *media.Codec
	if err == nil {
		codec, dtmf, err = media.Negotiate(remote, []media.Codec{media.PCMU, media.PCMA})
	}
	if err != nil {
		bctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		d.Bye(bctx)
		cancel()
		return true, fmt.Errorf("sim: call %s: answer SDP: %w", number, err)
	}
	sess.SetRemote(remote.Addr)
	sess.SetCodec(codec)
	if dtmf != nil {
		sess.SetDTMF(dtmf)
	}
	dctx := d.Context()
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-dctx.Done():
			stop()
		case <-cctx.Done():
		}
	}()
	s.converse(cctx, dctx, sess, dtmf, d.Bye)
	return true, nil
}
