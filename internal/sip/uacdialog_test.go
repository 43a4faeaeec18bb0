package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
)

// TestUACByeGivesUpAtDeadline sends a leg's BYE to a peer that never
// answers: the BYE goes out, and bye returns DeadlineExceeded at its
// deadline, not at the transaction's Timer F (32 s).
func TestUACByeGivesUpAtDeadline(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	c, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	peer := pc.LocalAddr().(*net.UDPAddr)
	u := &uacDialog{client: c, transport: "UDP", callID: "bye-deadline", cseq: 1,
		contact: &gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: 5060}},
		from: &gosip.FromHeader{Address: gosip.Uri{Scheme: "sip", User: "redial", Host: "127.0.0.1"},
			Params: gosip.HeaderParams{{K: "tag", V: "a"}}},
		to: &gosip.ToHeader{Address: gosip.Uri{Scheme: "sip", User: "callee", Host: "127.0.0.1"},
			Params: gosip.HeaderParams{{K: "tag", V: "b"}}},
		target: gosip.Uri{Scheme: "sip", User: "callee", Host: "127.0.0.1", Port: peer.Port}}

	// The second BYE (a leg sends one; two legs here, as far as the
	// peer can tell) may run on the first one's recycled timer.
	u.timers = &timerPool{}
	for i := range 2 {
		u.cseq = uint32(10 * (i + 1))
		start := time.Now()
		err = u.bye(context.Background(), start.Add(300*time.Millisecond))
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("bye %d to a silent peer: %v, want DeadlineExceeded", i, err)
		}
		if took < 250*time.Millisecond || took > 5*time.Second {
			t.Errorf("bye %d gave up after %v, want about 300ms", i, took)
		}
		buf := make([]byte, 4096)
		pc.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("the peer got nothing: %v", err)
		}
		if !strings.HasPrefix(string(buf[:n]), "BYE sip:callee@127.0.0.1:") {
			t.Errorf("the peer got %q", buf[:n])
		}
	}
}

// TestUACByeOverUDPRetransmits hangs up a call whose callee does not get
// the first BYE: the engine sends the same BYE again T1 later (Timer E) and
// returns once its 200 comes. A 200 whose Via branch is not the BYE's,
// such as anyone could send, does not end it.
func TestUACByeOverUDPRetransmits(t *testing.T) {
	e := startEngineWith(t, engineOpts{})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	peer := pc.LocalAddr().(*net.UDPAddr)

	// The callee: answers the INVITE, takes the ACK, lets the first BYE
	// go unanswered but for a 200 with another branch, and answers the
	// second. It reports the BYEs' branches.
	branches := make(chan []string, 1)
	uasErr := make(chan error, 1)
	go func() {
		read := func(method string) (*gosip.Request, net.Addr, error) {
			buf := make([]byte, 8192)
			for {
				pc.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return nil, nil, fmt.Errorf("waiting for %s: %w", method, err)
				}
				msg, err := gosip.NewParser().ParseSIP(buf[:n])
				if err != nil {
					return nil, nil, err
				}
				if req, ok := msg.(*gosip.Request); ok && req.Method == gosip.RequestMethod(method) {
					return req, from, nil
				}
			}
		}
		send := func(res *gosip.Response, to net.Addr) error {
			_, err := pc.WriteTo([]byte(res.String()), to)
			return err
		}
		inv, from, err := read("INVITE")
		if err != nil {
			uasErr <- err
			return
		}
		sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
		ok := gosip.NewResponseFromRequest(inv, 200, "OK", []byte(sdp))
		ok.To().Params.Add("tag", "callee")
		ok.AppendHeader(&gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", User: "callee", Host: "127.0.0.1", Port: peer.Port}})
		ok.AppendHeader(gosip.NewHeader("Content-Type", "application/sdp"))
		if err := send(ok, from); err != nil {
			uasErr <- err
			return
		}
		if _, _, err := read("ACK"); err != nil {
			uasErr <- err
			return
		}
		var seen []string
		for i := range 2 {
			bye, from, err := read("BYE")
			if err != nil {
				uasErr <- err
				return
			}
			branch, _ := bye.Via().Params.Get("branch")
			seen = append(seen, branch)
			res := gosip.NewResponseFromRequest(bye, 200, "OK", nil)
			if i == 0 {
				res.Via().Params.Add("branch", "z9hG4bKnotthebye")
			}
			if err := send(res, from); err != nil {
				uasErr <- err
				return
			}
		}
		branches <- seen
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := e.Dial(ctx, DialRequest{CallRef: "bye-lost", Target: "sip:callee@127.0.0.1:" + strconv.Itoa(peer.Port), RingTimeout: 5 * time.Second})
	if res.Leg == nil {
		select {
		case err := <-uasErr:
			t.Fatalf("dial: code %d %s, error %v; callee: %v", res.Code, res.Reason, res.TransportErr, err)
		default:
			t.Fatalf("dial: code %d %s, error %v; want an answered leg", res.Code, res.Reason, res.TransportErr)
		}
	}
	start := time.Now()
	err = res.Leg.Hangup(ctx)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("hangup: %v", err)
	}
	select {
	case seen := <-branches:
		if seen[0] == "" || seen[0] != seen[1] {
			t.Errorf("BYE branches %q, want the same BYE twice", seen)
		}
	case err := <-uasErr:
		t.Fatalf("callee: %v", err)
	}
	// The first retransmission is due T1 (500 ms) after the BYE; ending
	// sooner means the spoofed 200 was taken.
	if took < 400*time.Millisecond || took > 5*time.Second {
		t.Errorf("hangup took %v, want about T1 (the retransmission's answer)", took)
	}
}
