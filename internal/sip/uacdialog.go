package sip

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
)

// uacDialog is what an established outbound leg keeps of its dialog: just
// enough to send the BYE (RFC 3261 12.2.1.1) and to answer the callee's.
//
// sipgo's DialogClientSession would do, but it holds the whole INVITE
// client transaction for the call's life: the INVITE with its SDP, the
// parsed 2xx and the ACK template, some 6 KiB per leg, against well under
// 1 KiB here (issue 14). Once Dial has confirmed the dialog, only this is
// kept, and sipgo's objects go with the transaction at Timer M
// (acceptedHold).
type uacDialog struct {
	client    *sipgo.Client
	contact   *gosip.ContactHeader // ours, shared by the engine's legs
	from      *gosip.FromHeader    // ours, with our tag
	to        *gosip.ToHeader      // the callee's, with its tag
	callID    gosip.CallIDHeader
	target    gosip.Uri // the remote target: the 2xx's Contact
	routes    []string  // the route set: the 2xx's Record-Route, reversed
	cseq      uint32    // the INVITE's
	transport string
	// dest is the WebSocket the INVITE went down (WS/WSS only).
	dest string
	// ended is set by the callee's BYE: a hangup racing with it sends
	// none (as sipgo's dialog state did).
	ended atomic.Bool
	// timers, when set, recycles the timer of bye's deadline.
	timers *timerPool
	// pending, when set, takes the final responses to a BYE sent without
	// a sipgo transaction (byeUDP).
	pending *pendingTx
	// raw, when set, writes the ACK and BYE as bytes where rawTo allows;
	// rendered keeps what they share, written once (rawreq.go).
	raw      *rawSender
	rendered atomic.Pointer[renderedDialog]
	// laddr is the local address the INVITE went from: the dialog's
	// requests go from the same socket, whatever sipgo's pool of UDP
	// peers holds.
	laddr gosip.Addr
}

// timerPool recycles the timers of the engine's own client transactions
// (a hangup's BYE, an INVITE's retransmissions), a timer and its channel
// per call otherwise. A nil pool makes new timers and drops them.
type timerPool struct{ p sync.Pool }

// get returns a timer that fires after d, recycled when there is one.
func (tp *timerPool) get(d time.Duration) *time.Timer {
	if tp != nil {
		if t, _ := tp.p.Get().(*time.Timer); t != nil {
			t.Reset(d)
			return t
		}
	}
	return time.NewTimer(d)
}

// put stops t and keeps it for the next transaction. Since Go 1.23 a
// stopped or reset timer delivers no stale tick, so a recycled one is as
// good as a new one.
func (tp *timerPool) put(t *time.Timer) {
	t.Stop()
	if tp != nil {
		tp.p.Put(t)
	}
}

// newUACDialog keeps what the BYE of a confirmed dialog needs. It shares
// the INVITE's From, the 2xx's To and the remote target with them rather
// than copying: nothing changes a parsed or sent header, and a copy would
// keep the same strings (the message's text) alive anyway.
func newUACDialog(dua *sipgo.DialogUA, inv *gosip.Request, res *gosip.Response) *uacDialog {
	u := &uacDialog{client: dua.Client, contact: &dua.ContactHDR, transport: inv.Transport(), target: inv.Recipient,
		from: inv.From(), to: res.To(), laddr: inv.Laddr}
	if h := inv.CallID(); h != nil {
		u.callID = *h
	}
	if h := inv.CSeq(); h != nil {
		u.cseq = h.SeqNo
	}
	if c := res.Contact(); c != nil {
		u.target = c.Address
	}
	rr := res.GetHeaders("record-route")
	for i := len(rr) - 1; i >= 0; i-- {
		u.routes = append(u.routes, rr[i].Value())
	}
	if t := strings.ToUpper(u.transport); t == "WS" || t == "WSS" {
		u.dest = inv.Destination()
	}
	return u
}

// request builds a request of the dialog (RFC 3261 12.2.1.1) with CSeq
// number cseq. A leg sends one ACK and at most one BYE (Leg.Hangup), so the
// dialog's own headers go into them as they are, not copied: nothing
// changes a header once sent.
func (u *uacDialog) request(method gosip.RequestMethod, cseq uint32) *gosip.Request {
	req := gosip.NewRequest(method, u.target)
	if u.from != nil {
		req.AppendHeader(u.from)
	}
	if u.to != nil {
		req.AppendHeader(u.to)
	}
	callID := u.callID
	req.AppendHeader(&callID)
	req.AppendHeader(&gosip.CSeqHeader{SeqNo: cseq, MethodName: method})
	mf := gosip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	for _, r := range u.routes {
		req.AppendHeader(gosip.NewHeader("Route", r))
	}
	if len(u.routes) > 0 {
		if rh := req.Route(); rh != nil && !rh.Address.UriParams.Has("lr") {
			req.Recipient = rh.Address // strict routing
		}
	}
	// Shared by the engine's legs, as sipgo shares it in every INVITE.
	req.AppendHeader(u.contact)
	req.SetTransport(u.transport)
	if u.dest != "" {
		req.SetDestination(u.dest)
	} else {
		pinRoute(req)
	}
	req.Laddr = u.laddr
	req.SetBody(nil)
	return req
}

// ack sends the ACK of the dialog's 2xx (RFC 3261 13.2.2.4) straight to
// the transport, with a Via of its own: as bytes where rawTo allows, else
// built as a sipgo request. No transaction replays it: a retransmitted 2xx
// of an established leg is ACKed again by ackStray2xx.
func (u *uacDialog) ack() error {
	if to, ok := u.rawTo(); ok && u.raw != nil {
		return u.sendRaw(to, gosip.ACK, u.cseq, newBranch())
	}
	return u.client.WriteRequest(u.request(gosip.ACK, u.cseq), sipgo.ClientRequestAddVia)
}

// bye sends BYE and waits for its final response: nil on 200, an
// ErrDialogResponse on any other, as sipgo's DialogClientSession.Bye. It
// gives up with context.DeadlineExceeded at deadline (none when zero), as
// it would with a context of that deadline.
func (u *uacDialog) bye(ctx context.Context, deadline time.Time) error {
	if u.ended.Load() {
		return nil
	}
	if to, ok := u.rawTo(); ok && u.raw != nil && u.pending != nil {
		branch := newBranch()
		return u.byeUDP(ctx, branch, deadline, func() error { return u.sendRaw(to, gosip.BYE, u.cseq+1, branch) })
	}
	req := u.request(gosip.BYE, u.cseq+1)
	atOnce := sendsAtOnce(req)
	if u.pending != nil && atOnce {
		if err := sipgo.ClientRequestAddVia(u.client, req); err != nil {
			return err
		}
		branch, _ := req.Via().Params.Get("branch")
		return u.byeUDP(ctx, branch, deadline, func() error { return u.client.WriteRequest(req, sendAsBuilt) })
	}
	txCtx := ctx
	if !deadline.IsZero() && !atOnce {
		// Finding the destination may block (a DNS lookup, a TCP or TLS
		// connection): that too is bounded by the deadline.
		c, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		txCtx = c
	}
	tx, err := u.client.TransactionRequest(txCtx, req, sipgo.ClientRequestAddVia)
	if err != nil {
		return err
	}
	defer tx.Terminate()
	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := u.timers.get(time.Until(deadline))
		defer u.timers.put(t)
		expired = t.C
	}
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			if res.StatusCode != 200 {
				return sipgo.ErrDialogResponse{Res: res}
			}
			return nil
		case <-tx.Done():
			return tx.Err()
		case <-ctx.Done():
			return ctx.Err()
		case <-expired:
			return context.DeadlineExceeded
		}
	}
}

// byeUDP is bye over UDP to an IP address, as its own non-INVITE client
// transaction (RFC 3261 17.1.2): sent at once, sent again at T1, 2×T1...
// up to T2 apart (Timer E) until a final response matches its Via branch
// or Timer F (64×T1) or the deadline passes. sipgo's client transaction
// would do the same with a transaction object, a key and a map entry,
// three timers and a state machine stepped by every response, and keep it
// all until a Timer D of 32 s that its Terminate races with (issue 14);
// here it is a map entry, one recycled timer and a channel. A final
// response matches no sipgo transaction, so it reaches the unhandled-
// response handler, which passes it here (pendingTx.deliver).
func (u *uacDialog) byeUDP(ctx context.Context, branch string, deadline time.Time, send func() error) error {
	key := txKey{branch: branch, method: gosip.BYE}
	ch := make(finalResponse, 1)
	u.pending.add(key, ch)
	defer u.pending.remove(key)
	if err := send(); err != nil {
		return err
	}
	now := time.Now()
	giveUp := now.Add(gosip.Timer_F)
	if !deadline.IsZero() && deadline.Before(giveUp) {
		giveUp = deadline
	}
	interval := gosip.Timer_E
	t := u.timers.get(min(interval, giveUp.Sub(now)))
	defer u.timers.put(t)
	for {
		select {
		case res := <-ch:
			if res.StatusCode != 200 {
				return sipgo.ErrDialogResponse{Res: res}
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			now := time.Now()
			if !now.Before(giveUp) {
				if giveUp.Equal(deadline) {
					return context.DeadlineExceeded
				}
				return fmt.Errorf("BYE: Timer F: %w", gosip.ErrTransactionTimeout)
			}
			if err := send(); err != nil {
				return err
			}
			interval = min(2*interval, gosip.T2)
			t.Reset(min(interval, giveUp.Sub(now)))
		}
	}
}

// sendsAtOnce reports whether sipgo sends req without anything that could
// block on its context: over UDP to an IP address, nothing to look up and
// no connection to open.
func sendsAtOnce(req *gosip.Request) bool {
	_, ok := udpIPDestination(req)
	return ok
}

// udpIPDestination returns where req goes when that is an IP address over
// UDP (sendsAtOnce).
func udpIPDestination(req *gosip.Request) (netip.AddrPort, bool) {
	if !strings.EqualFold(req.Transport(), "udp") {
		return netip.AddrPort{}, false
	}
	host, port, err := gosip.ParseAddr(req.Destination())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return ipAddrPort(host, port)
}

// readBye answers the callee's BYE.
func (u *uacDialog) readBye(req *gosip.Request, tx gosip.ServerTransaction) error {
	u.ended.Store(true)
	return tx.Respond(gosip.NewResponseFromRequest(req, 200, "OK", nil))
}
