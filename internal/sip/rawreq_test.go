package sip

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
)

// The ACK and BYE the engine writes itself are, byte for byte, what sipgo
// writes for the same request (uacDialog.request with that Via), with a
// display name, tags, a Contact port and a Request-URI with parameters in
// play; a dialog with a route set or a host name is left to sipgo.
func TestRawRequestIsSipgos(t *testing.T) {
	var target gosip.Uri
	if err := gosip.ParseUri("sip:1555@198.51.100.7:5070;transport=udp", &target); err != nil {
		t.Fatal(err)
	}
	u := &uacDialog{transport: "UDP", target: target, callID: "cid-raw", cseq: 41,
		contact: &gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", User: "redial", Host: "192.0.2.9", Port: 5060}},
		from: &gosip.FromHeader{DisplayName: `"Sales"`, Address: gosip.Uri{Scheme: "sip", User: "15550001111", Host: "192.0.2.9"},
			Params: gosip.HeaderParams{{K: "tag", V: "ft"}}},
		to: &gosip.ToHeader{Address: gosip.Uri{Scheme: "sip", User: "1555", Host: "198.51.100.7", Port: 5070},
			Params: gosip.HeaderParams{{K: "tag", V: "tt"}}}}
	s := newRawSender(nil, "192.0.2.9", 5060, "127.0.0.1:5060")
	u.raw = s
	for _, c := range []struct {
		method gosip.RequestMethod
		cseq   uint32
	}{{gosip.ACK, 41}, {gosip.BYE, 42}} {
		branch := newBranch()
		w := s.get()
		u.render(w, s.via, c.method, c.cseq, branch)
		want := u.request(c.method, c.cseq)
		via := &gosip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "192.0.2.9", Port: 5060}
		via.Params.Add("branch", branch)
		want.PrependHeader(via)
		if string(w.b) != want.String() {
			t.Errorf("%s written:\n%s\nsipgo writes:\n%s", c.method, w.b, want.String())
		}
		if _, err := gosip.NewParser().ParseSIP(w.b); err != nil {
			t.Errorf("%s does not parse: %v", c.method, err)
		}
	}
	if !strings.HasPrefix(newBranch(), gosip.RFC3261BranchMagicCookie+".") || len(newBranch()) != len(gosip.GenerateBranchN(16)) || newBranch() == newBranch() {
		t.Errorf("branch %q is not of sipgo's form %q", newBranch(), gosip.GenerateBranchN(16))
	}
	if _, ok := u.rawTo(); !ok {
		t.Error("a dialog to an IP address over UDP is not written raw")
	}
	routed := &uacDialog{transport: "UDP", target: target, routes: []string{"<sip:proxy.example.com;lr>"}}
	named := &uacDialog{transport: "UDP", target: target}
	named.target.Host = "carrier.example.com"
	for name, d := range map[string]*uacDialog{"route set": routed, "host name": named} {
		if _, ok := d.rawTo(); ok {
			t.Errorf("a dialog with a %s is written raw", name)
		}
	}
}

// The engine's INVITE over UDP is the INVITE sipgo's ClientRequestBuild
// and transport would send: the same headers in the same order, the same
// local address; only the branch and the starting CSeq are drawn anew.
// withCredentials' copy keeps its CSeq and gets a Via only.
func TestRawInviteIsSipgos(t *testing.T) {
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("192.0.2.9"), sipgo.WithClientPort(5060),
		sipgo.WithClientConnectionAddr("127.0.0.1:5060"))
	if err != nil {
		t.Fatal(err)
	}
	s := newRawSender(nil, "192.0.2.9", 5060, "127.0.0.1:5060")
	invite := func() *gosip.Request {
		var target gosip.Uri
		if err := gosip.ParseUri("sip:1555@198.51.100.7:5070", &target); err != nil {
			t.Fatal(err)
		}
		req := gosip.NewRequest(gosip.INVITE, target)
		cid := gosip.CallIDHeader("cid-invite")
		req.AppendHeader(&cid)
		req.AppendHeader(&gosip.FromHeader{Address: gosip.Uri{Scheme: "sip", User: "redial", Host: "192.0.2.9"}, Params: gosip.HeaderParams{{K: "tag", V: "ft"}}})
		req.AppendHeader(&gosip.ToHeader{Address: gosip.Uri{Scheme: "sip", User: "1555", Host: "198.51.100.7", Port: 5070}})
		req.AppendHeader(gosip.NewHeader("Content-Type", "application/sdp"))
		req.SetBody([]byte("v=0\r\n"))
		pinRoute(req)
		return req
	}
	same := func(name string, ours, theirs *gosip.Request) {
		t.Helper()
		// The draws: the branch and, when new, the CSeq number.
		theirs.Via().Params = ours.Via().Params.Clone()
		theirs.CSeq().SeqNo = ours.CSeq().SeqNo
		w := s.get()
		ours.StringWrite(w)
		if string(w.b) != theirs.String() {
			t.Errorf("%s written:\n%s\nsipgo writes:\n%s", name, w.b, theirs.String())
		}
		if ours.Laddr.String() != theirs.Laddr.String() || !ours.Laddr.IP.Equal(theirs.Laddr.IP) {
			t.Errorf("%s: local address %v, sipgo's %v", name, ours.Laddr, theirs.Laddr)
		}
		if _, err := gosip.NewParser().ParseSIP(w.b); err != nil {
			t.Errorf("%s does not parse: %v", name, err)
		}
	}
	ours, theirs := invite(), invite()
	if !s.buildInvite(ours) {
		t.Fatal("a complete INVITE was left to sipgo")
	}
	if err := sipgo.ClientRequestBuild(client, theirs); err != nil {
		t.Fatal(err)
	}
	same("INVITE", ours, theirs)
	if b, _ := ours.Via().Params.Get("branch"); !strings.HasPrefix(b, gosip.RFC3261BranchMagicCookie+".") {
		t.Errorf("branch %q", b)
	}
	if n := ours.CSeq().SeqNo; n > 0x7FFF {
		t.Errorf("CSeq %d outside sipgo's 0-32767", n)
	}

	// The challenge answered: a copy without Via and with the next CSeq.
	next1, next2 := ours.Clone(), ours.Clone()
	for _, n := range []*gosip.Request{next1, next2} {
		n.RemoveHeader("Via")
		n.CSeq().SeqNo++
	}
	seq := next1.CSeq().SeqNo
	if !s.buildInvite(next1) {
		t.Fatal("the answered INVITE was left to sipgo")
	}
	if err := sipgo.ClientRequestBuild(client, next2); err != nil {
		t.Fatal(err)
	}
	same("INVITE with credentials", next1, next2)
	if next1.CSeq().SeqNo != seq {
		t.Errorf("CSeq changed to %d, want %d", next1.CSeq().SeqNo, seq)
	}

	// Without a From, sipgo builds it.
	bare := gosip.NewRequest(gosip.INVITE, ours.Recipient)
	if s.buildInvite(bare) || bare.Via() != nil {
		t.Error("an INVITE without From was built here")
	}
}
