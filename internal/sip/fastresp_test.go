package sip

import (
	"net"
	"strconv"
	"testing"

	gosip "github.com/emiago/sipgo/sip"
)

var scanSeeds = []string{
	"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;rport=5060\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
	"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bKdef, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKother\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>;tag=2\r\ni: x\r\ncseq: 2 BYE\r\nl: 0\r\n\r\n",
	"SIP/2.0 183 Session Progress\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKsdp\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 7 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
	"SIP/2.0 100 Trying\r\nVia: SIP/2.0/UDP h\r\n ;branch=z9hG4bKfold\r\nCSeq: 1 INVITE\r\n\r\n",
	"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch = z9hG4bKspace\r\nCSeq: 1 INVITE\r\n\r\n",
	"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKreq\r\nCSeq: 1 INVITE\r\n\r\n",
	"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKtwo\r\nCSeq: 1 INVITE\r\nCSeq: 2 INVITE\r\n\r\n",
	"SIP/2.0 200\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKnoreason\r\nCSeq: 1 BYE\r\n\r\n",
	"SIP/2.0 200 \r\nVia: SIP/2.0/UDP h;branch=z9hG4bKempty\r\nCSeq: 1 BYE\r\n\r\n",
	"SIP/2.0 99 Low\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKlow\r\nCSeq: 1 BYE\r\n\r\n",
	"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;Branch=z9hG4bKA;branch=z9hG4bKB\r\nCSeq: 1 BYE\r\n\r\n",
	"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP [2001:db8::1]:5060;received=2001:db8::2;branch=z9hG4bK.v6\r\nCSeq: 12 INVITE\r\n\r\n",
	"SIP/2.0 200 OK\r\nv:SIP/2.0/UDP h;branch=z9hG4bKa;branch=z9hG4bKb\r\nCSeq:  3   BYE\r\n\r\n",
	"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=\"z9hG4bKq\"\r\nCSeq: 1 BYE\r\n\r\n",
}

// The Via and CSeq lines as the engine writes them and peers echo them
// back are read without sipgo's parser, to the same result; other shapes
// are left to it.
func TestPlainViaAndCSeq(t *testing.T) {
	s := newRawSender(nil, "192.0.2.9", 5060, "127.0.0.1:5060")
	branch := newBranch()
	for _, line := range []string{
		s.via + branch,
		s.via + branch + ";received=127.0.0.1;rport=5060",
		"v: SIP/2.0/UDP 127.0.0.1:5060;rport=5060;branch=" + branch,
	} {
		got, ok := plainViaBranch([]byte(line)[1:])
		if !ok || got != branch {
			t.Errorf("%q: read %q, %v; want %q", line, got, ok, branch)
		}
	}
	for _, line := range []string{
		"Via: SIP/2.0/UDP h ;branch=" + branch,
		"Via: SIP/2.0/UDP h;branch=" + branch + ", SIP/2.0/UDP g;branch=z9hG4bKx",
		"Via: SIP/2.0/UDP h;rport",
		"Via : SIP/2.0/UDP h;branch=" + branch,
	} {
		if got, ok := plainViaBranch([]byte(line)[1:]); ok {
			t.Errorf("%q: read %q, want it left to sipgo", line, got)
		}
	}
	for line, want := range map[string]string{"CSeq: 4711 INVITE": "INVITE", "cseq: 2 BYE": "BYE", "CSeq: 1 OPTIONS": "OPTIONS"} {
		if got, ok := plainCSeqMethod([]byte(line)); !ok || string(got) != want {
			t.Errorf("%q: read %q, %v", line, got, ok)
		}
	}
	for _, line := range []string{"CSeq: 1 invite", "CSeq: 1234567890 BYE", "CSeq: x BYE", "CSeq: 1 BYE "} {
		if got, ok := plainCSeqMethod([]byte(line)); ok {
			t.Errorf("%q: read %q, want it left to sipgo", line, got)
		}
	}
}

// The scan reads what the transaction match needs from the usual shapes
// (long and compact names, names in any case, several Via values on one line) and
// declines what it cannot read for sure (folded lines, spaces around '=',
// two CSeq headers, requests), which then go to sipgo's parser.
func TestScanResponse(t *testing.T) {
	want := []struct {
		ok             bool
		code           int
		branch, method string
		body           bool
	}{
		{true, 180, "z9hG4bKabc", "INVITE", false},
		{true, 200, "z9hG4bKdef", "BYE", false},
		{true, 183, "z9hG4bKsdp", "INVITE", true},
		{ok: false}, {ok: false}, {ok: false}, {ok: false},
		{ok: false},
		{true, 200, "z9hG4bKempty", "BYE", false},
		{ok: false},
		// sipgo's reading, which the scan defers to for these: the last
		// of two branches, the method with the spaces before it, the
		// quotes kept.
		{true, 200, "z9hG4bKB", "BYE", false},
		{true, 200, "z9hG4bK.v6", "INVITE", false},
		{true, 200, "z9hG4bKb", "  BYE", false},
		{true, 200, `"z9hG4bKq"`, "BYE", false},
	}
	for i, seed := range scanSeeds {
		s, ok := scanResponse([]byte(seed))
		w := want[i]
		if ok != w.ok {
			t.Errorf("seed %d: ok %v, want %v", i, ok, w.ok)
			continue
		}
		if ok && (s.code != w.code || s.branch != w.branch || string(s.method) != w.method || s.body != w.body) {
			t.Errorf("seed %d: %d %q %q body %v, want %d %q %q body %v", i, s.code, s.branch, s.method, s.body, w.code, w.branch, w.method, w.body)
		}
	}
}

// Whatever both read, the scan and sipgo's parser read the same: a
// response, with one status code, top Via branch and CSeq method. So the
// scan never hands a response to a transaction other than the one sipgo's
// path would (pendingTx.deliver). It may take a response that sipgo
// refuses for a malformed header it does not need: only the callee, who
// alone knows the branch, could send one, and it could as well send a
// well-formed one.
func FuzzScanResponse(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	parser := gosip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		s, ok := scanResponse(data)
		if !ok {
			return
		}
		msg, err := parser.ParseSIP(data)
		if err != nil {
			return
		}
		res, isResponse := msg.(*gosip.Response)
		if !isResponse {
			t.Fatalf("scan read a response, sipgo a request")
		}
		branch, _ := res.Via().Params.Get("branch")
		if res.StatusCode != s.code || branch != s.branch || res.CSeq() == nil || res.CSeq().MethodName != s.method {
			t.Fatalf("scan read %d %q %q, sipgo %d %q %v", s.code, s.branch, s.method, res.StatusCode, branch, res.CSeq())
		}
	})
}

// recorder is a txReceiver that keeps what it gets.
type recorder struct{ got []*gosip.Response }

func (r *recorder) receive(res *gosip.Response) { r.got = append(r.got, res) }

// takeResponse hands a response straight to the engine's own transaction
// it matches by branch and method: as a bare status code when nothing of
// it is needed (the BYE's 200, a 180 without SDP), parsed whole when it is
// (a 183 with SDP). It leaves to sipgo what matches nothing of ours,
// including a CANCEL's response on an INVITE's branch.
func TestTakeResponse(t *testing.T) {
	e := &Engine{respParser: gosip.NewParser()}
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5070}
	bye, inv := &recorder{}, &recorder{}
	e.pending.add(txKey{branch: "z9hG4bKbye", method: gosip.BYE}, bye)
	e.pending.add(txKey{branch: "z9hG4bKinv", method: gosip.INVITE}, inv)
	msg := func(code, branch, method, body string) []byte {
		m := "SIP/2.0 " + code + "\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=" + branch + "\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 " + method + "\r\n"
		if body != "" {
			m += "Content-Type: application/sdp\r\n"
		}
		return []byte(m + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	}
	for _, c := range []struct {
		data []byte
		took bool
	}{
		{msg("200 OK", "z9hG4bKbye", "BYE", ""), true},
		{msg("180 Ringing", "z9hG4bKinv", "INVITE", ""), true},
		{msg("183 Session Progress", "z9hG4bKinv", "INVITE", "v=0\r\n"), true},
		{msg("200 OK", "z9hG4bKinv", "CANCEL", ""), false},
		{msg("200 OK", "z9hG4bKother", "BYE", ""), false},
	} {
		if got := e.takeResponse(c.data, from); got != c.took {
			t.Errorf("took %q: %v, want %v", c.data[:20], got, c.took)
		}
	}
	if len(bye.got) != 1 || bye.got[0].StatusCode != 200 {
		t.Fatalf("BYE transaction got %v, want one 200", bye.got)
	}
	if len(inv.got) != 2 || inv.got[0].StatusCode != 180 || inv.got[1].StatusCode != 183 {
		t.Fatalf("INVITE transaction got %d responses, want the 180 and the 183", len(inv.got))
	}
	if string(inv.got[1].Body()) != "v=0\r\n" || inv.got[1].To() == nil || inv.got[1].Source() != "127.0.0.1:5070" {
		t.Errorf("the 183 came without its SDP, To or source: body %q", inv.got[1].Body())
	}
}
