package app

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
)

// A desk phone calls in offering RFC 4733 on payload type 101 and keys
// 7, 0, 9 (Debian's DTMF pcaps replayed by SIPp): the 200 OK answers
// telephone-event on the offerer's payload type, and the IVR's collect
// component hears exactly those keys.
func TestInboundIVRCollectsRFC4733Digits(t *testing.T) {
	r := testenv.StartRedis(t)
	// The trunk's address is the caller's: the call is let in without a
	// challenge and routed through the context "public".
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7100", `{"type":"ivr","script":"dig"}`)
	setScript(t, r, "dig", `{"start":1,"components":[{"oId":1,"oType":302,"maxSymbolCount":3,"timeoutSec":10,"interDigitSec":5,"transfer":2},{"oId":2,"oType":303,"timeSec":0.5,"transfer":3},{"oId":3,"oType":201}]}`)
	n := startNode(t, r.URL, "n1")
	caller := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_dtmf_pcap.xml"),
		Args: []string{"-m", "1", "-s", "7100"}, Remote: n.SIP.Addr("udp"), Trace: true})

	var cdr map[string]any
	testenv.WaitFor(t, 30*time.Second, func() error {
		cdrs := campaignCDRs(t, r, "inbound")
		if len(cdrs) != 1 {
			return fmt.Errorf("%d inbound CDRs", len(cdrs))
		}
		cdr = cdrs[0]
		return nil
	})
	answer := sippAnswerSDP(t, caller)
	if !regexpMatch(`(?m)^m=audio \d+ RTP/AVP 0 101\s*$`, answer) || !strings.Contains(answer, "a=rtpmap:101 telephone-event/8000") {
		t.Errorf("200 OK does not answer telephone-event on the offered PT 101:\n%s", answer)
	}
	vars, _ := cdr["variables"].(map[string]any)
	if cdr["disposition"] != "ANSWERED" || cdr["dial_number"] != "7100" || vars["dtmfBuffer"] != "709" {
		t.Errorf("collected %q, want \"709\" (cdr %v)", vars["dtmfBuffer"], cdr)
	}
	// SIPp fails the call too when the answer lacks telephone-event on 101.
	waitSipp(t, caller, 10*time.Second)
}

// sippAnswerSDP returns the SDP of the 200 OK to the INVITE that a traced
// SIPp UAC received.
func sippAnswerSDP(t testing.TB, s *testenv.Sipp) string {
	t.Helper()
	log := readSippMessages(t, s)
	// SIPp separates logged messages with a line of dashes.
	for _, msg := range regexp.MustCompile(`(?m)^-{20,}.*$`).Split(log, -1) {
		if strings.Contains(msg, "SIP/2.0 200 OK") && regexpMatch(`(?mi)^CSeq:\s*\d+ INVITE`, msg) {
			if i := strings.Index(msg, "v=0"); i >= 0 {
				return strings.ReplaceAll(msg[i:], "\r\n", "\n")
			}
		}
	}
	t.Fatalf("no 200 OK with SDP in SIPp's message log:\n%s", log)
	return ""
}
