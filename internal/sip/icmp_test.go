package sip

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
)

// An INVITE to a closed UDP port ends as soon as the ICMP port
// unreachable comes back, as a 503 naming it, instead of after Timer B
// (32 s); the listener keeps serving, and the next INVITE goes out.
func TestICMPPortUnreachableEndsInvite(t *testing.T) {
	e := startEngineWith(t, engineOpts{})
	closed := testenv.FreePort(t)
	done := make(chan DialResult, 1)
	start := time.Now()
	go func() {
		done <- e.Dial(context.Background(), DialRequest{CallRef: "icmp", Target: "sip:15551230001@127.0.0.1:" + strconv.Itoa(closed),
			RingTimeout: 30 * time.Second})
	}()
	var res DialResult
	select {
	case res = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the INVITE to a closed port was still pending after 5 s")
	}
	elapsed := time.Since(start)
	t.Logf("INVITE to a closed port ended after %v: %d %s", elapsed, res.Code, res.TransportErr)
	if res.Code != 503 || res.TimedOut || res.Cancelled || res.TransportErr == nil ||
		!strings.Contains(res.TransportErr.Error(), "ICMP port unreachable") {
		t.Fatalf("result %+v, want 503 with an ICMP port unreachable error", res)
	}

	// The socket error did not stop the listener, nor the next send.
	carrier := newRawPeer(t, e.Addr("udp"))
	optionsAnswered(t, carrier)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		done <- e.Dial(ctx, DialRequest{CallRef: "after", Target: "sip:15551230002@" + carrier.addr(), RingTimeout: 30 * time.Second})
	}()
	got, err := carrier.recv(5 * time.Second)
	cancel()
	<-done
	if err != nil || !strings.HasPrefix(got, "INVITE sip:15551230002@") {
		t.Fatalf("INVITE after the ICMP error: %q, %v", firstLine(got), err)
	}
}

// The Call-ID quoted by an ICMP error picks the INVITE; without one (a
// short quote) every INVITE to the destination is taken.
func TestICMPMatching(t *testing.T) {
	w := newICMPWatch()
	dest := netip.MustParseAddrPort("192.0.2.1:5060")
	var ended []string
	for _, id := range []string{"a", "b"} {
		defer w.add(&pendingInvite{callID: id, dest: dest, fail: func(string) { ended = append(ended, id) }})()
	}
	defer w.add(&pendingInvite{callID: "c", dest: netip.MustParseAddrPort("192.0.2.2:5060"), fail: func(string) { ended = append(ended, "c") }})()

	quote := "INVITE sip:1@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK1\r\nCall-ID: b\r\nCSeq: 1 INVITE\r\n"
	if n := w.unreachable(icmpEvent{dest: dest, reason: "ICMP port unreachable", payload: []byte(quote)}); n != 1 || ended[0] != "b" {
		t.Fatalf("ended %v by a quote naming b", ended)
	}
	ended = nil
	if n := w.unreachable(icmpEvent{dest: dest, reason: "ICMP port unreachable", payload: []byte(strings.Replace(quote, "Call-ID: b", "Call-ID: zz", 1))}); n != 0 {
		t.Fatalf("an ICMP error quoting an unknown Call-ID ended %v", ended)
	}
	if n := w.unreachable(icmpEvent{dest: dest, reason: "ICMP port unreachable"}); n != 2 {
		t.Fatalf("an ICMP error without a quote ended %v, want a and b", ended)
	}
	if quotedCallID([]byte("INVITE sip:1@x SIP/2.0\r\ni: abc\r\n")) != "abc" || quotedCallID([]byte("INVITE sip:1@x SIP/2.0\r\nCall-ID: ab")) != "" {
		t.Fatal("quotedCallID")
	}
}
