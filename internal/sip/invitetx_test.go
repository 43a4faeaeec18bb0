package sip

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// rawUAS is a callee on a bare UDP socket, for what SIPp cannot be told
// to do: stay silent on purpose, or check a Via branch.
type rawUAS struct {
	t  *testing.T
	pc net.PacketConn
}

func newRawUAS(t *testing.T) *rawUAS {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &rawUAS{t: t, pc: pc}
}

func (u *rawUAS) target() string {
	return "sip:callee@127.0.0.1:" + strconv.Itoa(u.pc.LocalAddr().(*net.UDPAddr).Port)
}

// read returns the next request of method, skipping others, within wait.
func (u *rawUAS) read(method gosip.RequestMethod, wait time.Duration) (*gosip.Request, net.Addr, time.Time, error) {
	buf := make([]byte, 8192)
	deadline := time.Now().Add(wait)
	for {
		u.pc.SetReadDeadline(deadline)
		n, from, err := u.pc.ReadFrom(buf)
		if err != nil {
			return nil, nil, time.Time{}, fmt.Errorf("waiting for %s: %w", method, err)
		}
		msg, err := gosip.NewParser().ParseSIP(buf[:n])
		if err != nil {
			return nil, nil, time.Time{}, err
		}
		if req, ok := msg.(*gosip.Request); ok && req.Method == method {
			return req, from, time.Now(), nil
		}
	}
}

func (u *rawUAS) send(res *gosip.Response, to net.Addr) error {
	_, err := u.pc.WriteTo([]byte(res.String()), to)
	return err
}

// dialAsync runs Dial (bounded to 20 s) while the test plays the callee.
func dialAsync(e *Engine, r DialRequest) <-chan DialResult {
	done := make(chan DialResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- e.Dial(ctx, r)
	}()
	return done
}

// failure is a final failure response to inv carrying To tag tag.
func failure(inv *gosip.Request, code int, reason, tag string, headers ...gosip.Header) *gosip.Response {
	res := gosip.NewResponseFromRequest(inv, code, reason, nil)
	res.To().Params.Add("tag", tag)
	for _, h := range headers {
		res.AppendHeader(h)
	}
	return res
}

// expectAck reads the ACK of a failure to inv (RFC 3261 17.1.1.3): the
// INVITE's branch and CSeq number, the failure's To tag.
func (u *rawUAS) expectAck(inv *gosip.Request, tag, what string) {
	u.t.Helper()
	ack, _, _, err := u.read(gosip.ACK, 5*time.Second)
	if err != nil {
		u.t.Fatalf("%s not ACKed: %v", what, err)
	}
	got, _ := ack.To().Params.Get("tag")
	if branchOf(ack) != branchOf(inv) || got != tag || ack.CSeq().SeqNo != inv.CSeq().SeqNo || ack.CSeq().MethodName != gosip.ACK {
		u.t.Errorf("ACK of the %s: branch %q To tag %q CSeq %s, want %q %q %d ACK", what, branchOf(ack), got, ack.CSeq().Value(),
			branchOf(inv), tag, inv.CSeq().SeqNo)
	}
}

func branchOf(m gosip.Message) string {
	var via *gosip.ViaHeader
	switch m := m.(type) {
	case *gosip.Request:
		via = m.Via()
	case *gosip.Response:
		via = m.Via()
	}
	if via == nil {
		return ""
	}
	b, _ := via.Params.Get("branch")
	return b
}

// An INVITE over UDP that gets no answer is sent again T1 later (Timer A)
// with the same branch; a 486 is ACKed within its transaction (the
// INVITE's branch, the 486's To tag), and so is the 486 repeated after
// Dial has returned (Timer D), as a callee that lost the first ACK
// repeats it.
func TestInviteOverUDPRetransmittedAndFailureAcked(t *testing.T) {
	e := startEngineWith(t, engineOpts{})
	uas := newRawUAS(t)
	done := dialAsync(e, DialRequest{CallRef: "busy", Target: uas.target(), RingTimeout: 10 * time.Second})
	first, _, at1, err := uas.read(gosip.INVITE, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	again, from, at2, err := uas.read(gosip.INVITE, 5*time.Second)
	if err != nil {
		t.Fatalf("no retransmission of the unanswered INVITE: %v", err)
	}
	if gap := at2.Sub(at1); gap < 400*time.Millisecond || gap > 2*time.Second {
		t.Errorf("INVITE sent again after %v, want T1 (500 ms)", gap)
	}
	if branchOf(first) == "" || branchOf(again) != branchOf(first) || again.CSeq().SeqNo != first.CSeq().SeqNo {
		t.Errorf("retransmission branch %q CSeq %d, want the first's %q %d", branchOf(again), again.CSeq().SeqNo, branchOf(first), first.CSeq().SeqNo)
	}
	busy := failure(again, 486, "Busy Here", "busy-tag")
	if err := uas.send(busy, from); err != nil {
		t.Fatal(err)
	}
	uas.expectAck(first, "busy-tag", "486 in the transaction")
	var res DialResult
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Dial did not return after the 486")
	}
	if res.Code != 486 || res.Leg != nil || res.TransportErr != nil {
		t.Fatalf("dial: code %d, leg %v, error %v; want 486", res.Code, res.Leg != nil, res.TransportErr)
	}
	if err := uas.send(busy, from); err != nil {
		t.Fatal(err)
	}
	uas.expectAck(first, "busy-tag", "486 repeated after Dial returned")
}

// A 401 over UDP is ACKed and answered with a new INVITE: a new branch,
// the next CSeq number, the same Call-ID and From tag, and credentials
// computed for the challenge; the 200 to it makes the leg.
func TestInviteOverUDPAnswersChallenge(t *testing.T) {
	e := startEngineWith(t, engineOpts{})
	uas := newRawUAS(t)
	done := dialAsync(e, DialRequest{CallRef: "auth", Target: uas.target(), RingTimeout: 10 * time.Second,
		Username: "trunk", Password: "s3cret"})
	first, from, _, err := uas.read(gosip.INVITE, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const challenge = `Digest realm="carrier", nonce="n0nce"`
	if err := uas.send(failure(first, 401, "Unauthorized", "auth-tag", gosip.NewHeader("WWW-Authenticate", challenge)), from); err != nil {
		t.Fatal(err)
	}
	uas.expectAck(first, "auth-tag", "401")
	second, from, _, err := uas.read(gosip.INVITE, 5*time.Second)
	if err != nil {
		t.Fatalf("no INVITE with credentials: %v", err)
	}
	if branchOf(second) == branchOf(first) || second.CSeq().SeqNo != first.CSeq().SeqNo+1 ||
		second.CallID().Value() != first.CallID().Value() || second.From().Value() != first.From().Value() {
		t.Errorf("second INVITE: branch %q CSeq %d Call-ID %q From %q; want a new branch, CSeq %d, the first's Call-ID and From",
			branchOf(second), second.CSeq().SeqNo, second.CallID().Value(), second.From().Value(), first.CSeq().SeqNo+1)
	}
	h := second.GetHeader("Authorization")
	if h == nil {
		t.Fatal("second INVITE has no Authorization")
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		t.Fatalf("Authorization %q: %v", h.Value(), err)
	}
	chal, err := digest.ParseChallenge(strings.TrimSpace(challenge))
	if err != nil {
		t.Fatal(err)
	}
	want, err := digest.Digest(chal, digest.Options{Method: "INVITE", URI: cred.URI, Username: "trunk", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if cred.Username != "trunk" || cred.Response != want.Response || !strings.HasPrefix(cred.URI, "sip:callee@127.0.0.1") {
		t.Errorf("credentials user %q uri %q response %q, want trunk, the Request-URI, %q", cred.Username, cred.URI, cred.Response, want.Response)
	}
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
	ok := gosip.NewResponseFromRequest(second, 200, "OK", []byte(sdp))
	ok.To().Params.Add("tag", "callee")
	ok.AppendHeader(&gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", User: "callee", Host: "127.0.0.1", Port: uas.pc.LocalAddr().(*net.UDPAddr).Port}})
	ok.AppendHeader(gosip.NewHeader("Content-Type", "application/sdp"))
	if err := uas.send(ok, from); err != nil {
		t.Fatal(err)
	}
	ack2, _, _, err := uas.read(gosip.ACK, 5*time.Second)
	if err != nil {
		t.Fatalf("200 not ACKed: %v", err)
	}
	if ack2.CSeq().SeqNo != second.CSeq().SeqNo {
		t.Errorf("ACK of the 200 CSeq %d, want %d", ack2.CSeq().SeqNo, second.CSeq().SeqNo)
	}
	res := <-done
	if res.Leg == nil {
		t.Fatalf("dial: code %d %s, error %v; want an answered leg", res.Code, res.Reason, res.TransportErr)
	}
	res.Leg.end() // no BYE: the raw callee would not answer it
}

// The ring timeout after a 180, or the caller hanging up, CANCELs the
// INVITE over UDP: the CANCEL carries the INVITE's branch and CSeq number;
// the 487 that follows is ACKed, and Dial reports which of the two ended
// the call.
func TestInviteOverUDPCancelled(t *testing.T) {
	for _, hangup := range []bool{false, true} {
		name := "ring timeout"
		if hangup {
			name = "hangup"
		}
		t.Run(name, func(t *testing.T) { testInviteCancelled(t, hangup) })
	}
}

func testInviteCancelled(t *testing.T, hangup bool) {
	e := startEngineWith(t, engineOpts{})
	uas := newRawUAS(t)
	done := make(chan DialResult, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ring := 300 * time.Millisecond
	if hangup {
		ring = 10 * time.Second
	}
	go func() {
		done <- e.Dial(ctx, DialRequest{CallRef: "ring", Target: uas.target(), RingTimeout: ring})
	}()
	inv, from, _, err := uas.read(gosip.INVITE, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ringing := gosip.NewResponseFromRequest(inv, 180, "Ringing", nil)
	ringing.To().Params.Add("tag", "ring-tag")
	if err := uas.send(ringing, from); err != nil {
		t.Fatal(err)
	}
	if hangup {
		// Whether or not the engine has read the 180 by now, the CANCEL
		// goes out: a hangup before any provisional response waits for one.
		cancel()
	}
	cancelReq, from, _, err := uas.read(gosip.CANCEL, 5*time.Second)
	if err != nil {
		t.Fatalf("no CANCEL: %v", err)
	}
	if branchOf(cancelReq) != branchOf(inv) || cancelReq.CSeq().SeqNo != inv.CSeq().SeqNo || cancelReq.CSeq().MethodName != gosip.CANCEL {
		t.Errorf("CANCEL branch %q CSeq %s, want the INVITE's %q %d", branchOf(cancelReq), cancelReq.CSeq().Value(), branchOf(inv), inv.CSeq().SeqNo)
	}
	if err := uas.send(gosip.NewResponseFromRequest(cancelReq, 200, "OK", nil), from); err != nil {
		t.Fatal(err)
	}
	if err := uas.send(failure(inv, 487, "Request Terminated", "ring-tag"), from); err != nil {
		t.Fatal(err)
	}
	uas.expectAck(inv, "ring-tag", "487")
	select {
	case res := <-done:
		if res.Code != 487 || res.TimedOut == hangup || res.Cancelled != hangup || !res.Provisional || res.Leg != nil {
			t.Errorf("dial: code %d, timed out %v, cancelled %v, provisional %v, leg %v; want 487 after ringing",
				res.Code, res.TimedOut, res.Cancelled, res.Provisional, res.Leg != nil)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Dial did not return after the 487")
	}
}
