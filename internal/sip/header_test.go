package sip

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"

	"redial/internal/validate"
)

// A header value holding CR, LF or NUL, whatever its source, fails the
// dial before anything is sent, naming the header and its variable; a
// clean dial right after is the first thing the carrier receives, with
// its display name and user part kept inside their header.
func TestDialRefusesUnsafeHeaders(t *testing.T) {
	e := startEngineWith(t, engineOpts{})
	carrier := newRawPeer(t, e.Addr("udp"))
	target := "sip:15551230001@" + carrier.addr()
	cases := []struct {
		name string
		req  DialRequest
		want string
	}{
		{"sip_h_ value with CR/LF", DialRequest{Headers: map[string]string{"X-Test": "ok\r\nX-Evil: 1"}}, "sip_h_X-Test"},
		{"sip_h_ value with a bare LF", DialRequest{Headers: map[string]string{"X-Test": "ok\nX-Evil: 1"}}, "sip_h_X-Test"},
		{"sip_h_ value with NUL", DialRequest{Headers: map[string]string{"X-Test": "ok\x00X-Evil"}}, "contains NUL"},
		{"sip_h_ forging a Via", DialRequest{Headers: map[string]string{"Via": "SIP/2.0/UDP 203.0.113.9;branch=z9hG4bKevil"}}, "sip_h_Via"},
		{"sip_h_ forging a Content-Length", DialRequest{Headers: map[string]string{"l": "0"}}, "sip_h_l"},
		{"sip_h_ name that is no token", DialRequest{Headers: map[string]string{"X-Evil: 1\r\nX": "v"}}, "not a valid header name"},
		{"caller ID name", DialRequest{FromName: "Bob\r\nVia: SIP/2.0/UDP 203.0.113.9"}, "origination_caller_id_name"},
		{"caller ID number", DialRequest{FromUser: "1555\r\nX-Evil: 1"}, "origination_caller_id_number"},
		{"From host", DialRequest{FromHost: "example.com>\r\nX-Evil: 1"}, "sip_from_host"},
		{"line username", DialRequest{Username: "alice\r\nX-Evil: 1", Password: "x"}, "line username"},
		{"Request-URI", DialRequest{Target: target + "\r\nX-Evil: 1"}, "Request-URI"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req
			r.CallRef = "inject"
			if r.Target == "" {
				r.Target = target
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res := e.Dial(ctx, r)
			if res.Leg != nil || res.Code != 400 || res.TransportErr == nil || !strings.Contains(res.TransportErr.Error(), tc.want) ||
				!strings.Contains(res.TransportErr.Error(), "not sent") {
				t.Fatalf("dial: code %d, error %v; want 400 and an error naming %q", res.Code, res.TransportErr, tc.want)
			}
		})
	}

	// The control dial: the first datagram the carrier gets is its INVITE.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan DialResult, 1)
	go func() {
		done <- e.Dial(ctx, DialRequest{CallRef: "clean", Target: target, FromUser: "15#5", FromName: `Bo"b \`,
			Headers: map[string]string{"X-Control": "ok"}, RingTimeout: 30 * time.Second})
	}()
	got, err := carrier.recv(10 * time.Second)
	cancel()
	<-done
	if err != nil {
		t.Fatalf("the clean INVITE did not arrive: %v", err)
	}
	if !strings.HasPrefix(got, "INVITE sip:15551230001@") || !strings.Contains(got, "\r\nX-Control: ok\r\n") {
		t.Fatalf("first datagram is not the clean INVITE:\n%s", got)
	}
	if strings.Contains(got, "X-Evil") || strings.Contains(got, "203.0.113.9") {
		t.Fatalf("a refused header reached the wire:\n%s", got)
	}
	if from := responseHeader(got, "From"); !strings.HasPrefix(from, `"Bo\"b \\" <sip:15%235@127.0.0.1>;tag=`) {
		t.Fatalf("From %q: display name or user part not escaped", from)
	}
}

func TestEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"15551230001": "15551230001", "+4930*1#": "+4930*1%23", "a@b": "a%40b", "a>b c": "a%3Eb%20c",
		"%23": "%23", "%2": "%252", "x;y=z?": "x;y=z?",
	} {
		if got := validate.EscapeURIUser(in, true); got != want {
			t.Errorf("EscapeURIUser(%q, true) = %q, want %q", in, got, want)
		}
	}
	if got := quoteDisplayName(`a"b\c`); got != `a\"b\\c` {
		t.Errorf("quoteDisplayName = %q", got)
	}
}

// pinRoute sets what sipgo would work out itself, Route or none.
func TestPinRouteMatchesSipgo(t *testing.T) {
	for _, c := range []struct{ uri, route string }{
		{"sip:1555@192.0.2.1:5070", ""},
		{"sip:1555@carrier.example.com", ""},
		{"sip:1555@[2001:db8::1]", ""},
		{"sip:1555@192.0.2.1;transport=tcp", ""},
		{"sips:1555@192.0.2.1", ""},
		{"sip:1555@192.0.2.1", "<sip:proxy.example.com:5080;lr>"},
	} {
		var u gosip.Uri
		if err := gosip.ParseUri(c.uri, &u); err != nil {
			t.Fatal(err)
		}
		build := func() *gosip.Request {
			r := gosip.NewRequest(gosip.INVITE, u)
			if c.route != "" {
				r.AppendHeader(gosip.NewHeader("Route", c.route))
			}
			return r
		}
		want, got := build(), build()
		pinRoute(got)
		if got.Transport() != want.Transport() || got.Destination() != want.Destination() {
			t.Errorf("%s route %q: pinned %s %s, sipgo %s %s", c.uri, c.route,
				got.Transport(), got.Destination(), want.Transport(), want.Destination())
		}
	}
}

// The ACK of an answered INVITE (RFC 3261 13.2.2.4) as the leg's own
// dialog copy builds it: Request-URI the 2xx's Contact, the INVITE's From,
// Call-ID and CSeq number, the 2xx's To, our Contact; with a Record-Route,
// the route set as Route headers and the destination its first hop.
func TestUACDialogAck(t *testing.T) {
	var target gosip.Uri
	if err := gosip.ParseUri("sip:1555@192.0.2.1", &target); err != nil {
		t.Fatal(err)
	}
	inv := gosip.NewRequest(gosip.INVITE, target)
	callID := gosip.CallIDHeader("cid-1")
	inv.AppendHeader(&callID)
	inv.AppendHeader(&gosip.FromHeader{Address: gosip.Uri{Scheme: "sip", User: "redial", Host: "192.0.2.9"}, Params: gosip.HeaderParams{{K: "tag", V: "ft"}}})
	inv.AppendHeader(&gosip.ToHeader{Address: gosip.Uri{Scheme: "sip", User: "1555", Host: "192.0.2.1"}})
	inv.AppendHeader(&gosip.CSeqHeader{SeqNo: 7, MethodName: gosip.INVITE})
	contact := gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", User: "redial", Host: "192.0.2.9", Port: 5060}}
	inv.AppendHeader(&contact)
	pinRoute(inv)
	dua := &sipgo.DialogUA{ContactHDR: contact}
	for _, rr := range []string{"", "<sip:proxy.example.com;lr>"} {
		res := gosip.NewResponseFromRequest(inv, 200, "OK", nil)
		res.To().Params.Add("tag", "tt")
		res.AppendHeader(gosip.NewHeader("Contact", "<sip:1555@198.51.100.7:5070>"))
		if rr != "" {
			res.AppendHeader(gosip.NewHeader("Record-Route", rr))
		}
		ack := newUACDialog(dua, inv, res).request(gosip.ACK, 7)
		if ack.Method != gosip.ACK || ack.Recipient.Host != "198.51.100.7" || ack.Recipient.Port != 5070 {
			t.Errorf("rr %q: ACK %s %s, want ACK to the 2xx's Contact", rr, ack.Method, ack.Recipient.String())
		}
		if ack.From().Value() != inv.From().Value() || ack.To().Value() != res.To().Value() || ack.CallID().Value() != "cid-1" ||
			ack.Contact().Value() != inv.Contact().Value() {
			t.Errorf("rr %q: ACK dialog headers %q %q %q %q", rr, ack.From().Value(), ack.To().Value(), ack.CallID().Value(), ack.Contact().Value())
		}
		if cs := ack.CSeq(); cs.SeqNo != 7 || cs.MethodName != gosip.ACK {
			t.Errorf("rr %q: ACK CSeq %s, want 7 ACK", rr, cs.Value())
		}
		wantDest, wantRoute := "198.51.100.7:5070", ""
		if rr != "" {
			wantDest, wantRoute = "proxy.example.com:5060", rr
		}
		route := ""
		if h := ack.GetHeader("route"); h != nil {
			route = h.Value()
		}
		if got := ack.MessageData.Destination(); got != wantDest || ack.Transport() != "UDP" || route != wantRoute {
			t.Errorf("rr %q: ACK pinned to %q over %s with Route %q, want %q over UDP with Route %q", rr, got, ack.Transport(), route, wantDest, wantRoute)
		}
	}
}
