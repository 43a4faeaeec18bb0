package sip

import (
	"strings"
	"testing"

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
	s := newRawSender(nil, "192.0.2.9", 5060)
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
