package sip

import (
	"context"
	"strconv"
	"testing"
	"time"

	"redial/internal/testenv"
)

// A callee that missed our ACK retransmits its 200, T1 (500 ms) after the
// first and later again (RFC 3261 13.3.1.4); each time the engine ACKs it
// anew, so the callee keeps the call and ends it with its own BYE. Over
// UDP the engine's own INVITE transaction ended at the first 2xx
// (inviteUDP), so the retransmission matches nothing and ackStray2xx does
// it (over other transports sipgo's transaction leaves Accepted after
// acceptedHold).
// Without that ACK the SIPp scenario fails the call (exit 1) and never
// sends the BYE.
func TestRetransmitted2xxAcked(t *testing.T) {
	for _, pause := range []string{"500", "3500"} {
		t.Run(pause+"ms", func(t *testing.T) {
			e := startEngineWith(t, engineOpts{})
			uas := testenv.StartSipp(t, testenv.SippOptions{Scenario: "../../testdata/sipp/uas_200_retrans_late.xml",
				Args: []string{"-m", "1", "-d", pause}, Trace: true})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res := e.Dial(ctx, DialRequest{CallRef: "late200", Target: "sip:callee@127.0.0.1:" + strconv.Itoa(uas.Port), RingTimeout: 10 * time.Second})
			if res.Leg == nil {
				t.Fatalf("dial: code %d %s, error %v; want an answered leg", res.Code, res.Reason, res.TransportErr)
			}
			defer res.Leg.Hangup(context.Background())
			select {
			case <-res.Leg.Done():
			case <-time.After(15 * time.Second):
				t.Fatalf("the callee never hung up: its repeated 200 was not ACKed\n%s", uas.Output())
			}
			if !res.Leg.HungUpByRemote() {
				t.Fatal("leg ended, but not by the callee's BYE")
			}
			if err := uas.Wait(ctx); err != nil {
				t.Fatalf("sipp: %v\n%s", err, uas.Output())
			}
		})
	}
}
