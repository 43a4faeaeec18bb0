package sip

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
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
	u.timers = &sync.Pool{}
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
