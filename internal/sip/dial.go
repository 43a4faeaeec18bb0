package sip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"

	"redial/internal/media"
	"redial/internal/validate"
)

// DialRequest describes one outbound INVITE.
type DialRequest struct {
	CallRef string
	// Target is the Request-URI, e.g. "sip:15551234@carrier.example.com:5060".
	Target string
	// Transport is "udp" (default) or "tcp".
	Transport string
	FromUser  string
	FromName  string
	// FromHost defaults to the node's public IP.
	FromHost string
	// Headers are extra headers (from sip_h_<Name> variables).
	Headers map[string]string
	// Codecs is the audio offer in preference order; telephone-event is
	// always added.
	Codecs []media.Codec
	// RingTimeout ends an unanswered call: CANCEL when something was
	// received, or abandoning the transaction when nothing was.
	RingTimeout time.Duration
	// IgnoreEarlyMedia makes 183 Session Progress SDP be ignored.
	IgnoreEarlyMedia bool
	// Username and Password answer 401/407 digest challenges.
	Username, Password string
	// OnRinging, if set, is called once at the first 180 or 183.
	OnRinging func()
	// Socket, when set, sends the INVITE down the WebSocket whose source
	// this is (an agent registered over WS or WSS: its Contact is a
	// made-up address); Transport is then the socket's.
	Socket string
	// WebRTC offers browser media (ICE-lite, DTLS-SRTP, rtcp-mux, BUNDLE)
	// instead of plain RTP.
	WebRTC bool
}

// DialResult is the outcome of one INVITE.
type DialResult struct {
	// Leg is the established call; nil unless Code is 2xx and the call
	// was confirmed (ACK sent).
	Leg *Leg
	// Code is the final SIP status: the response code, 408 when nothing at
	// all came back, 487 when the call was cancelled by us, 400 when the
	// INVITE was refused before sending (a header value holding CR, LF or
	// NUL; TransportErr names it), 503 when an ICMP error said the
	// destination is unreachable (TransportErr says which).
	Code   int
	Reason string
	// Answered is true when a 2xx arrived, even if the ACK could then not
	// be sent (Leg nil, AckErr set): the callee has picked up, so the
	// caller must not take this for a trunk failure and ring them again
	// elsewhere.
	Answered bool
	// AckErr is why the ACK to the 2xx could not be sent; a BYE was then
	// tried, best effort.
	AckErr error
	// Provisional is true once any 1xx arrived (the trunk is alive).
	Provisional bool
	// TimedOut is true when the ring timeout ended the call.
	TimedOut bool
	// Cancelled is true when the caller's context ended the call.
	Cancelled bool
	// TransportErr is set when the request could not be sent or the
	// transaction died without any response.
	TransportErr error
	EarlyMedia   bool
	CallID       string
	InviteAt     time.Time
	AnswerAt     time.Time
}

// silentCancelWait is how long a call given up before any response waits
// for one, to CANCEL it properly, before it is abandoned.
const silentCancelWait = 2 * time.Second

// errRingTimeout is why our CANCEL went out when the ring timeout expired
// after a provisional response; the wait goes on for the 487.
var errRingTimeout = errors.New("ring timeout")

// errAbandoned ends the wait for a final response without one: nothing
// came back to CANCEL, an ICMP error came, or the CANCEL went unanswered.
var errAbandoned = errors.New("INVITE abandoned")

// dialState is what Dial's callbacks share, in one object: captured as
// separate variables, each was an allocation of its own for every call.
type dialState struct {
	// provisional is set at the first 1xx: a CANCEL may go out.
	provisional atomic.Bool
	// responded is set at the first response: the destination is alive
	// and no ICMP error can be about this INVITE any more.
	responded  atomic.Bool
	earlyMedia atomic.Bool
	// unreachable is the ICMP error that ended the INVITE.
	unreachable atomic.Pointer[string]
	// invite is the INVITE as last sent (with credentials after a
	// challenge), for its CANCEL.
	invite atomic.Pointer[gosip.Request]
	// sendCancel sends the CANCEL once, with why; hangup is what a
	// hangup request does while the INVITE is pending.
	sendCancel func(cause error)
	hangup     func()
	// gaveUp is why our CANCEL went out; wantCancel why one is to go out
	// at the first provisional response.
	gaveUp     atomic.Pointer[error]
	wantCancel atomic.Pointer[error]
}

// Dial sends an INVITE and waits for the final response. Cancelling ctx
// cancels the call (CANCEL once a provisional response arrived).
func (e *Engine) Dial(ctx context.Context, r DialRequest) DialResult {
	res := DialResult{InviteAt: time.Now()}
	transport := strings.ToLower(r.Transport)
	if transport == "" {
		transport = "udp"
	}
	if r.Socket != "" {
		c := e.ws.lookup(r.Socket)
		if c == nil {
			// The agent's browser went away since it registered.
			res.Code, res.Reason = 480, "Temporarily Unavailable"
			res.TransportErr = fmt.Errorf("sip: call %s: INVITE to %s: %w", r.CallRef, r.Socket, ErrSocketClosed)
			return res
		}
		transport = c.network()
	}
	dua := e.dlg[transport]
	if dua == nil {
		res.Code, res.Reason = 503, "no "+transport+" listener"
		res.TransportErr = fmt.Errorf("sip: call %s: no %s listener configured", r.CallRef, transport)
		return res
	}
	if err := checkDialRequest(&r); err != nil {
		// Nothing was sent: 400 keeps the failover policy from trying the
		// same unsafe header on every other line.
		res.Code, res.Reason = 400, "refused before sending"
		res.TransportErr = fmt.Errorf("sip: call %s: INVITE not sent: %w", r.CallRef, err)
		e.log.Warn("sip: INVITE refused before sending", "call_ref", r.CallRef, "error", err)
		return res
	}
	var recipient gosip.Uri
	if err := gosip.ParseUri(r.Target, &recipient); err != nil {
		res.Code, res.Reason = 484, "bad target"
		res.TransportErr = fmt.Errorf("sip: call %s: target %q: %w", r.CallRef, r.Target, err)
		return res
	}

	// Room for telephone-event, added below.
	codecs := append(make([]media.Codec, 0, len(r.Codecs)+1), r.Codecs...)
	if len(codecs) == 0 {
		codecs = append(make([]media.Codec, 0, 3), media.PCMU, media.PCMA)
	}
	var (
		sess  *media.Session
		rtc   *media.WebRTCLeg
		offer []byte
		err   error
	)
	if r.WebRTC {
		var sdp string
		rtc, sdp, err = media.NewWebRTCOffer(ctx, media.WebRTCConfig{PublicIP: e.cfg.PublicIP, BindIP: e.mediaBindIP(),
			Ports: e.ports, Codecs: codecs, Logger: e.log.With("call_ref", r.CallRef)})
		if err == nil {
			sess, offer = rtc.Session(), []byte(sdp)
		}
	} else {
		sess, err = media.NewSession(e.mediaBindIP(), e.ports)
	}
	if err == nil {
		sess.SetClock(e.clock)
	}
	if err != nil {
		res.Code, res.Reason = 503, "no media port"
		res.TransportErr = fmt.Errorf("sip: call %s: media: %w", r.CallRef, err)
		return res
	}
	keepSession := false
	defer func() {
		if !keepSession {
			sess.Close()
		}
	}()

	codecs = append(codecs, media.TelephoneEvent)
	if offer == nil {
		offer = media.BuildSDP(media.SDPOffer{IP: e.cfg.PublicIP, Port: sess.LocalPort(), Codecs: codecs})
	}

	req := gosip.NewRequest(gosip.INVITE, recipient)
	if transport != "udp" {
		req.SetTransport(strings.ToUpper(transport))
	}
	// Our own Call-ID, placed first (sipgo puts only its Via, CSeq and
	// Max-Forwards before it): an ICMP error quotes the start of the
	// INVITE, and the Call-ID in that quote says which INVITE failed.
	callID := gosip.CallIDHeader(newCallID())
	req.AppendHeader(&callID)
	fromHost := r.FromHost
	if fromHost == "" {
		fromHost = e.cfg.PublicIP
	}
	fromUser := r.FromUser
	if fromUser == "" {
		fromUser = "redial"
	}
	from := &gosip.FromHeader{DisplayName: quoteDisplayName(r.FromName), Address: gosip.Uri{Scheme: "sip", User: validate.EscapeURIUser(fromUser, true), Host: fromHost},
		Params: gosip.HeaderParams{{K: "tag", V: gosip.GenerateTagN(16)}}}
	req.AppendHeader(from)
	// No parameters: sipgo writes and copies a To without them as one
	// with none.
	req.AppendHeader(&gosip.ToHeader{Address: gosip.Uri{Scheme: "sip", User: recipient.User, Host: recipient.Host, Port: recipient.Port}})
	// Shared by the engine's calls, as sipgo's DialogUA shares it: nothing
	// changes it once built.
	req.AppendHeader(&dua.ContactHDR)
	for name, value := range r.Headers {
		req.AppendHeader(gosip.NewHeader(name, value))
	}
	req.AppendHeader(gosip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(offer)

	if r.Socket != "" {
		// Down the agent's WebSocket: the socket it registered from, which
		// the Request-URI (a made-up host) does not say.
		req.SetDestination(r.Socket)
	} else {
		pinRoute(req)
	}

	// ringCtx ends only through cancel: were it a child of ctx, a hangup
	// would end the wait with ctx, before the CANCEL's 487 (or a 200 that
	// crossed it) could come.
	ringCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	st := new(dialState)
	if transport == "udp" {
		remove := e.icmp.add(&pendingInvite{callID: string(callID), dest: ipDestination(recipient), fail: func(reason string) {
			if !st.responded.Load() && st.unreachable.CompareAndSwap(nil, &reason) {
				cancel(errAbandoned)
			}
		}})
		defer remove()
	}
	timeout := r.RingTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	// Once something rang, giving up is a CANCEL while the loop below goes
	// on reading: the final response is then the 487, or a 200 that
	// crossed the CANCEL, which is ACKed and ended instead of dropped.
	callRef := r.CallRef // for the closures: r itself would move to the heap
	client := dua.Client
	sendCancel := func(cause error) {
		inv := st.invite.Load()
		if inv == nil || !st.gaveUp.CompareAndSwap(nil, &cause) {
			return
		}
		// RFC 3261 9.1: without a final response 64*T1 after the CANCEL
		// the INVITE is over all the same.
		time.AfterFunc(64*gosip.T1, func() { cancel(errAbandoned) })
		cctx, ccancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer ccancel()
		if cres, err := client.Do(cctx, sameTransaction(gosip.CANCEL, inv, nil), sendAsBuilt); err != nil || cres.StatusCode != 200 {
			// The INVITE was answered or ended meanwhile (481): its final
			// response still reaches the loop.
			e.log.Debug("sip: CANCEL not taken", "call_ref", callRef, "error", err)
		}
	}
	timer := time.AfterFunc(timeout, func() {
		if st.provisional.Load() {
			sendCancel(errRingTimeout)
		} else {
			// Nothing came back: a CANCEL cannot be sent before a provisional
			// response (RFC 3261 9.1), and waiting for Timer B would hold the
			// line for 32 s more.
			cancel(errAbandoned)
		}
	})
	defer timer.Stop()
	// A hangup request while nothing has come back waits a moment for the
	// first provisional response, so that the CANCEL can go out (or a 200
	// already on its way can be ACKed and ended): dropping the INVITE at
	// once would leave a phone that answers right then in a call nobody
	// ACKs (a ring_all loser). A peer that stays silent is abandoned.
	// awaitFinal runs it when ctx ends (a context.AfterFunc on ctx cost
	// every call half a kilobyte and a registration with ctx's parent).
	hangup := func() {
		cause := context.Cause(ctx)
		if st.provisional.Load() {
			sendCancel(cause)
			return
		}
		if st.wantCancel.CompareAndSwap(nil, &cause) {
			time.AfterFunc(silentCancelWait, func() {
				if !st.provisional.Load() {
					cancel(errAbandoned)
				}
			})
			if st.provisional.Load() {
				sendCancel(cause) // the provisional came meanwhile
			}
		}
	}
	st.sendCancel, st.hangup = sendCancel, hangup

	tx, err := e.startInvite(ringCtx, client, req)
	if err != nil {
		res.Code, res.Reason = 503, "transport error"
		res.TransportErr = fmt.Errorf("sip: call %s: send INVITE to %s: %w", r.CallRef, r.Target, err)
		return res
	}
	res.CallID = string(callID)
	st.invite.Store(req)
	final, late, err := e.awaitFinal(ctx, ringCtx, client, &tx, st, &r, sess, codecs)
	tx.Terminate()
	res.Provisional, res.EarlyMedia = st.provisional.Load(), st.earlyMedia.Load()
	inv := st.invite.Load()
	if late != nil {
		// The callee answered as the call was given up (its 200 OK
		// crossed our CANCEL, or came after the ring timeout): confirm
		// and end that call, or the phone stays in it (and retransmits
		// its 200) while the caller went elsewhere.
		e.endUnwanted(e.legDialog(dua, inv, late), r.CallRef)
	}
	if st.gaveUp.Load() != nil || st.wantCancel.Load() != nil {
		res.Cancelled = ctx.Err() != nil
		res.TimedOut = !res.Cancelled
	}
	switch {
	case final != nil && final.IsSuccess():
	case final != nil:
		res.Code, res.Reason = final.StatusCode, final.Reason
		return res
	case st.unreachable.Load() != nil && ctx.Err() == nil:
		// A trunk failure: 503 fails over to the next line at once
		// (lines.TrunkFailure).
		u := *st.unreachable.Load()
		res.Code, res.Reason = 503, u
		res.TransportErr = fmt.Errorf("sip: call %s: INVITE to %s: %s", r.CallRef, r.Target, u)
		e.log.Info("sip: INVITE ended by an ICMP error", "call_ref", r.CallRef, "target", r.Target, "reason", u)
		return res
	case ringCtx.Err() != nil:
		res.Cancelled = ctx.Err() != nil
		res.TimedOut = !res.Cancelled
		if res.Provisional || res.Cancelled || context.Cause(ringCtx) == errRingTimeout {
			res.Code, res.Reason = 487, "Request Terminated"
		} else {
			res.Code, res.Reason = 408, "Request Timeout"
		}
		return res
	default:
		// The transaction died without a final response: Timer B, or a
		// transport failure (TCP refused, a WebSocket closed).
		res.Code, res.Reason = 408, "Request Timeout"
		if !res.Provisional {
			res.TransportErr = fmt.Errorf("sip: call %s: INVITE to %s: %w", r.CallRef, r.Target, err)
		}
		return res
	}

	// The leg keeps its own small copy of the dialog; the ACK is built
	// from it and written to the transport at once.
	ud := e.legDialog(dua, inv, final)
	if st.gaveUp.Load() != nil || st.wantCancel.Load() != nil {
		// Answered as our CANCEL went out: confirm and end it at once.
		res.Code, res.Reason = 487, "Request Terminated"
		e.endUnwanted(ud, r.CallRef)
		return res
	}
	res.AnswerAt = time.Now()
	res.Answered = true
	res.Code, res.Reason = final.StatusCode, final.Reason
	if err := ud.ack(); err != nil {
		// Keep the 2xx code: the callee answered, and a made-up 5xx here
		// would read as a trunk failure and fail over to the next trunk.
		res.AckErr = fmt.Errorf("sip: call %s: ACK to %s: %w", r.CallRef, ud.target.String(), err)
		// The BYE follows the same route as the ACK and will likely fail
		// too; it is still worth a try (RFC 3261 13.2.2.4 ends an answered
		// call that cannot be kept with BYE).
		if berr := ud.bye(context.Background(), time.Now().Add(2*time.Second)); berr != nil {
			e.log.Debug("sip: BYE after failed ACK", "call_ref", r.CallRef, "error", berr)
		}
		return res
	}
	dialogID, _ := gosip.DialogIDFromResponse(final) // awaitFinal checked it
	leg := &Leg{e: e, CallRef: r.CallRef, CallID: res.CallID, Media: sess, done: make(chan struct{}), id: legKey(true, dialogID),
		uac: ud, localSDP: offer}
	e.addLeg(leg.id, leg)
	var codec media.Codec
	var rm media.RemoteMedia
	if rtc != nil {
		// The WebRTC leg sets the Session's codec and telephone-event
		// type from the answer itself.
		if err = rtc.Answer(string(final.Body())); err == nil {
			codec, leg.DTMF = sess.Codec(), sess.DTMF()
		}
	} else if rm, err = media.ParseSDP(final.Body()); err == nil {
		codec, leg.DTMF, err = media.Negotiate(rm, codecs)
	}
	if err != nil {
		// RFC 3261 13.2.2.4: an unusable answer is still ACKed, then BYE.
		leg.Hangup(context.Background())
		res.Code, res.Reason = 488, "Not Acceptable Here"
		res.TransportErr = nil
		// Reported as the 488 it always was (not a trunk failure either).
		res.Answered = false
		res.AnswerAt = time.Time{}
		e.log.Warn("sip: answer SDP unusable, hung up", "call_ref", r.CallRef, "error", err)
		return res
	}
	if rtc == nil {
		sess.SetRemote(rm.Addr)
		sess.SetCodec(codec)
		sess.SetDTMF(leg.DTMF)
	}
	leg.Codec = codec
	keepSession = true
	res.Leg = leg
	return res
}

// maxAuthAttempts is how many challenges an INVITE answers: a second one
// may come when the first credentials used a nonce that went stale.
const maxAuthAttempts = 2

// awaitFinal reads the INVITE's responses until a final one (running
// st.hangup when ctx ends meanwhile), and returns
// it: a 2xx (with a dialog ID) or the final failure. A 401 or 407 is
// answered with credentials when r has them, in a new transaction that
// replaces *tx. With no final response it returns the error that ended
// the wait (the transaction's, or ringCtx's), and any 2xx that was already
// there as late.
func (e *Engine) awaitFinal(ctx, ringCtx context.Context, client *sipgo.Client, txp *inviteTx, st *dialState, r *DialRequest,
	sess *media.Session, codecs []media.Codec) (final, late *gosip.Response, err error) {
	tx := *txp
	defer func() { *txp = tx }()
	hangup := ctx.Done()
	onRinging := r.OnRinging
	authAttempts := 0
	for {
		select {
		case resp := <-tx.Responses():
			st.responded.Store(true)
			if resp.IsProvisional() {
				e.provisional(resp, st, &onRinging, r.IgnoreEarlyMedia, sess, codecs)
				continue
			}
			if resp.IsSuccess() {
				if _, err := gosip.DialogIDFromResponse(resp); err != nil {
					// No To tag: not a dialog we can confirm or end.
					return nil, nil, fmt.Errorf("2xx: %w", err)
				}
				return resp, nil, nil
			}
			challenged := (resp.StatusCode == 401 || resp.StatusCode == 407) && r.Password != ""
			if !challenged || authAttempts >= maxAuthAttempts || st.gaveUp.Load() != nil || st.wantCancel.Load() != nil {
				return resp, nil, nil
			}
			authAttempts++
			next, aerr := withCredentials(st.invite.Load(), resp, r.Username, r.Password)
			if aerr != nil {
				e.log.Warn("sip: challenge not answered", "call_ref", r.CallRef, "sip_code", resp.StatusCode, "error", aerr)
				return resp, nil, nil
			}
			tx.Terminate()
			if tx, err = e.startInvite(ringCtx, client, next); err != nil {
				return nil, nil, fmt.Errorf("INVITE with credentials: %w", err)
			}
			st.invite.Store(next)
		case <-hangup:
			// The CANCEL's answer is not waited for here: the loop goes on
			// reading the INVITE's.
			hangup = nil
			e.background(st.hangup)
		case <-tx.Done():
			return nil, nil, tx.Err()
		case <-tx.Timer():
			if err := tx.Tick(); err != nil {
				return nil, nil, err
			}
		case <-ringCtx.Done():
			select {
			case resp := <-tx.Responses():
				if resp.IsSuccess() {
					if _, err := gosip.DialogIDFromResponse(resp); err == nil {
						late = resp
					}
				}
			default:
			}
			return nil, late, ringCtx.Err()
		}
	}
}

// provisional takes a 1xx: the CANCEL asked for before it may go out now,
// the first 180 or 183 rings, and a 183's SDP starts early media.
func (e *Engine) provisional(resp *gosip.Response, st *dialState, onRinging *func(), ignoreEarlyMedia bool,
	sess *media.Session, codecs []media.Codec) {
	st.provisional.Store(true)
	if c := st.wantCancel.Load(); c != nil && st.gaveUp.Load() == nil {
		e.background(func() { st.sendCancel(*c) })
	}
	if resp.StatusCode >= 180 && *onRinging != nil {
		(*onRinging)()
		*onRinging = nil
	}
	if resp.StatusCode == 183 && !ignoreEarlyMedia && len(resp.Body()) > 0 {
		if rm, err := media.ParseSDP(resp.Body()); err == nil {
			sess.SetRemote(rm.Addr)
			if c, _, err := media.Negotiate(rm, codecs); err == nil {
				sess.SetCodec(c)
			}
			st.earlyMedia.Store(true)
		}
	}
}

// mediaBindIP is where RTP sockets bind: all interfaces, so the advertised
// public IP may be a NAT address.
func (e *Engine) mediaBindIP() string { return "0.0.0.0" }

// Leg is one established outbound call (a confirmed UAC dialog) with its
// RTP session.
type Leg struct {
	e       *Engine
	CallRef string
	CallID  string
	Media   *media.Session
	Codec   media.Codec
	DTMF    *media.Codec

	// bye and readBye are an inbound leg's BYE handling. An outbound leg
	// has uac instead, called directly: method values in these fields
	// cost every call two closures, and its BYE is bounded by a deadline
	// rather than by a context with a timeout, which cost a timer, a
	// context and a channel (issue 14).
	bye      func(ctx context.Context) error
	readBye  func(req *gosip.Request, tx gosip.ServerTransaction) error
	uac      *uacDialog
	ack      func(req *gosip.Request, tx gosip.ServerTransaction) error
	localSDP []byte
	id       string
	done     chan struct{}
	once     sync.Once
	byRemote atomic.Bool
	byeMu    sync.Mutex
}

// Done is closed when the leg has ended, by either side.
func (l *Leg) Done() <-chan struct{} { return l.done }

// HungUpByRemote reports whether the far end sent BYE.
func (l *Leg) HungUpByRemote() bool { return l.byRemote.Load() }

// byeTimeout bounds a hangup's BYE, so a dead peer cannot hold the call.
const byeTimeout = 4 * time.Second

// Hangup sends BYE (bounded to a few seconds so a dead peer cannot hold the
// call) and frees the RTP port. It is idempotent and safe after a remote
// BYE.
func (l *Leg) Hangup(ctx context.Context) error {
	l.byeMu.Lock()
	defer l.byeMu.Unlock()
	select {
	case <-l.done:
		return nil
	default:
	}
	var err error
	if l.uac != nil {
		err = l.uac.bye(ctx, time.Now().Add(byeTimeout))
	} else {
		bctx, cancel := context.WithTimeout(ctx, byeTimeout)
		err = l.bye(bctx)
		cancel()
	}
	l.end()
	if err != nil {
		return fmt.Errorf("sip: call %s: BYE: %w", l.CallRef, err)
	}
	return nil
}

func (l *Leg) remoteBye(req *gosip.Request, tx gosip.ServerTransaction) {
	l.byRemote.Store(true)
	readBye := l.readBye
	if l.uac != nil {
		readBye = l.uac.readBye
	}
	if err := readBye(req, tx); err != nil {
		l.e.log.Debug("sip: BYE handling", "call_ref", l.CallRef, "error", err)
	}
	l.end()
}

func (l *Leg) end() {
	l.once.Do(func() {
		l.e.removeLeg(l.id)
		l.Media.Close()
		close(l.done)
	})
}

// newCallID returns a random Call-ID.
func newCallID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ipDestination is where an INVITE to u goes when u's host is an IP
// address (no DNS, no Route); the zero AddrPort otherwise.
func ipDestination(u gosip.Uri) netip.AddrPort {
	ap, _ := ipAddrPort(u.Host, u.Port)
	return ap
}

// ipAddrPort is host (an IP address, brackets allowed) and port (5060 when
// not given), or false when host is no IP address or port no UDP port.
func ipAddrPort(host string, port int) (netip.AddrPort, bool) {
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return netip.AddrPort{}, false
	}
	if port <= 0 {
		port = 5060
	}
	if port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), true
}

// legDialog is newUACDialog with the engine's own ways of sending: the
// recycled timers, its client transactions, the raw writer.
func (e *Engine) legDialog(dua *sipgo.DialogUA, inv *gosip.Request, res *gosip.Response) *uacDialog {
	ud := newUACDialog(dua, inv, res)
	ud.timers, ud.pending, ud.raw = &e.byeTimers, &e.pending, e.raw.Load()
	return ud
}

// endUnwanted ACKs a 2xx that is no longer wanted (it came as the call
// was given up, or crossed our CANCEL) and ends its call with BYE. The
// BYE's answer is not waited for: whoever gave the call up (a ring_all's
// winner waiting to be bridged) must not wait on a phone that may never
// answer it.
func (e *Engine) endUnwanted(ud *uacDialog, callRef string) {
	if err := ud.ack(); err != nil {
		e.log.Debug("sip: ACK of an unwanted answer failed", "call_ref", callRef, "error", err)
		return
	}
	e.background(func() {
		if err := ud.bye(context.Background(), time.Now().Add(byeTimeout)); err != nil {
			e.log.Debug("sip: BYE of an unwanted answer failed", "call_ref", callRef, "error", err)
			return
		}
		e.log.Info("sip: unwanted answer ended", "call_ref", callRef, "call_id", string(ud.callID))
	})
}

// background runs f on a goroutine that Run waits for when it stops.
func (e *Engine) background(f func()) {
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		f()
	}()
}

// pinRoute sets a request's transport and destination to what sipgo would
// work out from its headers. sipgo works them out again at each step of
// sending (transaction, Via, connection, write), parsing a Route header
// that is not there at an allocation each time; once set, they are read.
// Call it once the request's Request-URI and Route headers are final.
func pinRoute(req *gosip.Request) {
	tp := req.Transport()
	req.SetTransport(tp)
	if req.GetHeader("route") != nil {
		req.SetDestination(req.Destination())
		return
	}
	// What Destination gives without a Route header, without looking for
	// one.
	port := req.Recipient.Port
	if port <= 0 {
		port = gosip.DefaultPort(tp)
	}
	// One allocation, where concatenating with strconv.Itoa took two.
	var buf [64]byte
	b := append(buf[:0], req.Recipient.Host...)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(port), 10)
	req.SetDestination(string(b))
}

// sendAsBuilt is a client request option that sends a request with the
// headers it has (sipgo would otherwise add its own Via, which a CANCEL
// must not have).
func sendAsBuilt(*sipgo.Client, *gosip.Request) error { return nil }
