package sip

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// inviteTx is an INVITE client transaction as Dial drives it: sipgo's
// (TCP, TLS, WebSocket, host names) or the engine's own (UDP to an IP
// address, inviteUDP).
type inviteTx interface {
	// Responses delivers the transaction's responses.
	Responses() <-chan *gosip.Response
	// Done is closed when the transaction died without a final response
	// (nil when it never closes).
	Done() <-chan struct{}
	// Err says why Done closed.
	Err() error
	// Timer fires when Tick is due (nil when the transaction keeps its
	// own timers).
	Timer() <-chan time.Time
	// Tick retransmits the INVITE, or reports Timer B.
	Tick() error
	// Terminate ends the transaction; responses after it match nothing.
	Terminate()
}

// sipgoInviteTx is sipgo's client transaction, which keeps its own timers.
type sipgoInviteTx struct{ gosip.ClientTransaction }

func (sipgoInviteTx) Timer() <-chan time.Time { return nil }
func (sipgoInviteTx) Tick() error             { return nil }

// startInvite sends req, whose Via (and CSeq, the first time) the
// transaction adds, as a new INVITE
// client transaction: the engine's own when req goes over UDP to an IP
// address, sipgo's otherwise (ctx then bounds finding the destination and
// opening a connection).
func (e *Engine) startInvite(ctx context.Context, client *sipgo.Client, req *gosip.Request) (inviteTx, error) {
	if to, ok := udpIPDestination(req); ok {
		t := &inviteUDP{client: client, pending: &e.pending, timers: &e.byeTimers, req: req}
		if raw := e.raw.Load(); raw != nil && client == e.client["udp"] {
			t.raw, t.to = raw, to
		}
		if err := t.start(); err != nil {
			return nil, err
		}
		return t, nil
	}
	tx, err := client.TransactionRequest(ctx, req, sipgo.ClientRequestBuild)
	if err != nil {
		return nil, err
	}
	return sipgoInviteTx{tx}, nil
}

// inviteUDP is an INVITE client transaction over UDP to an IP address
// (RFC 3261 17.1.1): the INVITE is sent again T1, 2×T1, 4×T1... later
// (Timer A) until a response comes, and given up 64×T1 after it was sent
// if none does (Timer B); a non-2xx final response is ACKed within the
// transaction, a 2xx is left to the dialog (Dial). sipgo's transaction
// would do the same with a transaction object and key, four timers, a
// state machine stepped by every response and a goroutine handing each
// one over (issue 14); here it is a map entry in pendingTx, one recycled
// timer run by Dial's own loop, and a buffered channel. Responses match
// no sipgo transaction, so they reach the unhandled-response handler,
// which passes them here by Via branch (pendingTx.deliver).
type inviteUDP struct {
	client  *sipgo.Client
	pending *pendingTx
	timers  *timerPool
	req     *gosip.Request
	// raw writes the INVITE and to is where, when the engine's UDP
	// listener sends it (nil raw: sipgo's client does).
	raw   *rawSender
	to    netip.AddrPort
	key   txKey
	ch    chan *gosip.Response
	timer *time.Timer
	// interval is Timer A's current value; giveUp is when Timer B fires.
	interval time.Duration
	giveUp   time.Time
	// responded stops the retransmissions (and Timer B) at the first
	// response of any kind.
	responded atomic.Bool
	// ack is the ACK of the non-2xx final response, sent again for each
	// retransmission of it.
	ack atomic.Pointer[gosip.Request]
}

// inviteResponses is how many responses wait for Dial's loop: a 100, a
// 180 and a final one with room to spare. A response that finds the
// buffer full is dropped; over UDP the final ones are retransmitted.
const inviteResponses = 4

func (t *inviteUDP) start() error {
	// As sipgo builds a request: a Via, and the CSeq, Max-Forwards and
	// local address where they are missing.
	if t.raw == nil || !t.raw.buildInvite(t.req) {
		t.raw = nil
		if err := sipgo.ClientRequestBuild(t.client, t.req); err != nil {
			return err
		}
	}
	branch, _ := t.req.Via().Params.Get("branch")
	t.key = txKey{branch: branch, method: gosip.INVITE}
	t.ch = make(chan *gosip.Response, inviteResponses)
	t.pending.add(t.key, t)
	if err := t.send(); err != nil {
		t.pending.remove(t.key)
		return err
	}
	t.interval = gosip.Timer_A
	t.giveUp = time.Now().Add(gosip.Timer_B)
	t.timer = t.timers.get(t.interval)
	return nil
}

// send writes the INVITE, as built.
func (t *inviteUDP) send() error {
	if t.raw != nil {
		return t.raw.send(t.req, t.to)
	}
	return t.client.WriteRequest(t.req, sendAsBuilt)
}

func (t *inviteUDP) Responses() <-chan *gosip.Response { return t.ch }
func (t *inviteUDP) Done() <-chan struct{}             { return nil }
func (t *inviteUDP) Err() error                        { return nil }
func (t *inviteUDP) Timer() <-chan time.Time           { return t.timer.C }

func (t *inviteUDP) Tick() error {
	if t.responded.Load() {
		// Proceeding: the ring timeout bounds the rest, not Timer B.
		return nil
	}
	now := time.Now()
	if !now.Before(t.giveUp) {
		return fmt.Errorf("INVITE: Timer B: %w", gosip.ErrTransactionTimeout)
	}
	if err := t.send(); err != nil {
		return fmt.Errorf("INVITE: retransmission: %w", err)
	}
	t.interval *= 2
	t.timer.Reset(min(t.interval, t.giveUp.Sub(now)))
	return nil
}

func (t *inviteUDP) Terminate() {
	if t.timer == nil {
		return
	}
	t.pending.remove(t.key)
	if ack := t.ack.Load(); ack != nil {
		t.pending.keepAck(t.key.branch, t.client, ack)
	}
	t.timers.put(t.timer)
	t.timer = nil
}

// receive takes a response matched to the transaction (on the response's
// own goroutine).
func (t *inviteUDP) receive(r *gosip.Response) {
	t.responded.Store(true)
	if r.StatusCode >= 300 {
		// RFC 3261 17.1.1.3: ACK it, and ACK each retransmission of it.
		ack := t.ack.Load()
		if ack == nil {
			ack = sameTransaction(gosip.ACK, t.req, r.To())
			if !t.ack.CompareAndSwap(nil, ack) {
				ack = t.ack.Load()
			}
		}
		_ = t.client.WriteRequest(ack, sendAsBuilt) // a lost ACK brings the response again
	}
	select {
	case t.ch <- r:
	default:
	}
}

// txKey names a client transaction of the engine's own: a response
// matches it by its top Via's branch and its CSeq method (RFC 3261
// 17.1.3), so a CANCEL's responses, which carry the INVITE's branch, are
// not taken for the INVITE's.
type txKey struct {
	branch string
	method gosip.RequestMethod
}

// mapKey is k as pendingTx keys its map: one string, which a lookup can
// build from the bytes of a datagram without allocating (lookup).
func (k txKey) mapKey() string { return k.branch + "\x00" + string(k.method) }

// txReceiver takes the responses of one of the engine's own client
// transactions.
type txReceiver interface{ receive(r *gosip.Response) }

// pendingTx are the client transactions the engine runs without sipgo's
// transaction layer (inviteUDP, uacDialog.byeUDP).
type pendingTx struct {
	mu sync.Mutex
	m  map[string]txReceiver // by txKey.mapKey
	// acks are the ACKs of INVITEs ended by a non-2xx final response,
	// kept for Timer D (RFC 3261 17.1.1.2: 32 s) to answer the
	// retransmissions of that response. Two generations of at least
	// Timer D each: the older is dropped whole when the newer is that old,
	// so no ACK needs a timer of its own.
	acks     [2]map[string]keptAck
	acksFrom time.Time
}

// keptAck is an ACK to send again, with the client that sent it.
type keptAck struct {
	client *sipgo.Client
	req    *gosip.Request
}

func (p *pendingTx) add(k txKey, r txReceiver) {
	mk := k.mapKey()
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]txReceiver{}
	}
	p.m[mk] = r
	p.mu.Unlock()
}

func (p *pendingTx) remove(k txKey) {
	var buf [96]byte
	p.mu.Lock()
	delete(p.m, string(appendMapKey(buf[:0], k.branch, string(k.method))))
	p.mu.Unlock()
}

// lookup returns the transaction with Via branch branch and CSeq method
// method, or nil.
func (p *pendingTx) lookup(branch string, method gosip.RequestMethod) txReceiver {
	var buf [96]byte
	k := appendMapKey(buf[:0], branch, string(method))
	p.mu.Lock()
	rc := p.m[string(k)] // no copy of k: the compiler looks it up in place
	p.mu.Unlock()
	return rc
}

// appendMapKey appends txKey{branch, method}.mapKey() to b.
func appendMapKey(b []byte, branch, method string) []byte {
	return append(append(append(b, branch...), 0), method...)
}

// keepAck keeps the ACK of the INVITE with Via branch branch for Timer D.
func (p *pendingTx) keepAck(branch string, c *sipgo.Client, ack *gosip.Request) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.acks[0] == nil || now.Sub(p.acksFrom) >= gosip.Timer_D {
		p.acks[1], p.acks[0] = p.acks[0], map[string]keptAck{}
		p.acksFrom = now
	}
	p.acks[0][branch] = keptAck{client: c, req: ack}
}

// deliver hands r to the transaction it answers, or ACKs it again if it
// repeats the non-2xx final response of an INVITE that has ended, and
// reports whether it did either.
func (p *pendingTx) deliver(r *gosip.Response) bool {
	cseq, via := r.CSeq(), r.Via()
	if cseq == nil || via == nil {
		return false
	}
	branch, _ := via.Params.Get("branch")
	var buf [96]byte
	k := appendMapKey(buf[:0], branch, string(cseq.MethodName))
	p.mu.Lock()
	rc := p.m[string(k)]
	var ack keptAck
	if rc == nil && cseq.MethodName == gosip.INVITE && r.StatusCode >= 300 {
		if a, ok := p.acks[0][branch]; ok {
			ack = a
		} else {
			ack = p.acks[1][branch]
		}
	}
	p.mu.Unlock()
	switch {
	case rc != nil:
		rc.receive(r)
	case ack.req != nil:
		_ = ack.client.WriteRequest(ack.req, sendAsBuilt)
	default:
		return false
	}
	return true
}

// finalResponse is where a non-INVITE transaction of the engine's own
// (byeUDP) waits for its final response; provisional ones are left
// (Timer E keeps its pace), as are final ones after the first (the
// retransmissions of our retransmissions).
type finalResponse chan *gosip.Response

func (c finalResponse) receive(r *gosip.Response) {
	if r.IsProvisional() {
		return
	}
	select {
	case c <- r:
	default:
	}
}

// sameTransaction builds a request that belongs to the INVITE client
// transaction of inv: its CANCEL (RFC 3261 9.1), or the ACK of a non-2xx
// final response (17.1.1.3), which carries that response's To. Both take
// the INVITE's Request-URI, top Via, From, Call-ID, Route and CSeq number,
// and go where it went.
func sameTransaction(method gosip.RequestMethod, inv *gosip.Request, to *gosip.ToHeader) *gosip.Request {
	if to == nil {
		to = inv.To()
	}
	c := gosip.NewRequest(method, inv.Recipient)
	c.AppendHeader(gosip.HeaderClone(inv.Via()))
	c.AppendHeader(gosip.HeaderClone(inv.From()))
	c.AppendHeader(gosip.HeaderClone(to))
	c.AppendHeader(gosip.HeaderClone(inv.CallID()))
	mf := gosip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	gosip.CopyHeaders("Route", inv, c)
	if cs := inv.CSeq(); cs != nil {
		c.AppendHeader(&gosip.CSeqHeader{SeqNo: cs.SeqNo, MethodName: method})
	}
	c.SetTransport(inv.Transport())
	c.SetSource(inv.Source())
	c.SetDestination(inv.Destination())
	c.Laddr = inv.Laddr
	c.SetBody(nil)
	return c
}

// withCredentials is inv again, answering the digest challenge in res (a
// 401 or 407) for user and password: a copy with the Authorization or
// Proxy-Authorization header, the next CSeq number and no Via (the new
// transaction adds its own). inv itself is left as it was sent, for a
// CANCEL or ACK racing with this.
func withCredentials(inv *gosip.Request, res *gosip.Response, user, password string) (*gosip.Request, error) {
	challengeHdr, credHdr := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		challengeHdr, credHdr = "Proxy-Authenticate", "Proxy-Authorization"
	}
	h := res.GetHeader(challengeHdr)
	if h == nil {
		return nil, fmt.Errorf("%d without %s", res.StatusCode, challengeHdr)
	}
	chal, err := digest.ParseChallenge(h.Value())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", challengeHdr, err)
	}
	// Some servers write the algorithm in lower case.
	chal.Algorithm = gosip.ASCIIToUpper(chal.Algorithm)
	cred, err := digest.Digest(chal, digest.Options{Method: string(gosip.INVITE), URI: inv.Recipient.Addr(),
		Username: user, Password: password})
	if err != nil {
		return nil, fmt.Errorf("digest for %s: %w", challengeHdr, err)
	}
	next := inv.Clone()
	next.RemoveHeader("Via")
	next.RemoveHeader(credHdr)
	next.AppendHeader(gosip.NewHeader(credHdr, cred.String()))
	if cs := next.CSeq(); cs != nil {
		cs.SeqNo++
	}
	return next, nil
}
