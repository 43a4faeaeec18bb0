package app

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"redial/internal/call"
	"redial/internal/dialplan"
	"redial/internal/testenv"
)

// CR/LF in channel variables never reaches the carrier, even when the
// call manager is called directly (past the edges' validation): each such
// attempt fails before sending with a FAILED CDR naming the variable, and
// the carrier's trace shows only the one clean INVITE that followed.
func TestHeaderInjectionNeverOnTheWire(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_486.xml"), Args: []string{"-m", "1"}, Trace: true})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setDialplan(t, r, "default:8888", `{"type":"hangup"}`)
	n := startNode(t, r.URL, "n1")
	place := func(number string, vars map[string]string) call.Outcome {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := n.Calls.Place(ctx, call.Request{Numbers: []string{number}, LineGroups: []string{"g1"},
			Destination: dialplan.Destination{Extension: "8888", Dialplan: "XML", Context: "default"}, Variables: vars})
		if err != nil {
			t.Fatalf("place: %v", err)
		}
		return out
	}
	cases := []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"sip_h_X-Test": "ok\r\nX-Evil: 1"}, "sip_h_X-Test"},
		{map[string]string{"sip_h_X-Test": "ok\nX-Evil: 1"}, "sip_h_X-Test"},
		{map[string]string{"origination_caller_id_name": "Bob\r\nVia: SIP/2.0/UDP 203.0.113.9;branch=z9hG4bKevil"}, "origination_caller_id_name"},
		{map[string]string{"sip_h_Via": "SIP/2.0/UDP 203.0.113.9;branch=z9hG4bKevil"}, "sip_h_Via"},
	}
	for i, tc := range cases {
		out := place("1555123040"+strconv.Itoa(i), tc.vars)
		if len(out.CDRs) != 1 {
			t.Fatalf("case %d: %d CDRs, want 1", i, len(out.CDRs))
		}
		cdr := out.CDRs[0]
		if cdr.Disposition != "FAILED" || cdr.SIPCode != 400 || !strings.Contains(cdr.Variables["redial_reason"], tc.want) ||
			!strings.Contains(cdr.Variables["redial_reason"], "not sent") {
			t.Fatalf("case %d: CDR disposition %s, sip_code %d, reason %q; want FAILED, 400 and a reason naming %s",
				i, cdr.Disposition, cdr.SIPCode, cdr.Variables["redial_reason"], tc.want)
		}
	}
	// The control call reaches the carrier (486).
	if out := place("15551230499", map[string]string{"sip_h_X-Test": "ok"}); len(out.CDRs) != 1 || out.CDRs[0].SIPCode != 486 {
		t.Fatalf("control call: %+v", out.CDRs)
	}
	waitSipp(t, carrier, 10*time.Second)
	msgs := readSippMessages(t, carrier)
	if got := strings.Count(msgs, "INVITE sip:"); got != 1 {
		t.Fatalf("carrier got %d INVITEs, want only the control call's:\n%s", got, msgs)
	}
	if strings.Contains(msgs, "X-Evil") || strings.Contains(msgs, "203.0.113.9") {
		t.Fatalf("a forged header reached the carrier:\n%s", msgs)
	}
}

// A line whose UDP port answers ICMP port unreachable ends its attempt at
// once (503, the reason in the CDR) and the call fails over to the next
// line group and is answered there, long before Timer B (32 s).
func TestICMPUnreachableLineFailsOver(t *testing.T) {
	r := testenv.StartRedis(t)
	closed := testenv.FreePort(t)
	up := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "dead", "g1", "sip:127.0.0.1:"+strconv.Itoa(closed), "")
	setLine(t, r, "up", "g2", "sip:"+up.Addr, "")
	setDialplan(t, r, "default:8888", `{"type":"hangup"}`)
	n := startNode(t, r.URL, "n1")
	ref := originate(t, n, map[string]any{"number": "15551230501", "line_group": []string{"g1", "g2"}, "destination": dest("8888")})
	c, ok := n.Calls.Get(ref)
	if !ok {
		t.Fatalf("call %s not found", ref)
	}
	// Polled: the attempt on the dead line must be over within 3 s.
	testenv.WaitFor(t, 3*time.Second, func() error {
		if info := c.Info(); len(info.CDRs) == 0 {
			return errors.New("no CDR for the dead line yet")
		}
		return nil
	})
	select {
	case <-c.Done():
	case <-time.After(15 * time.Second):
		t.Fatalf("call %s did not end", ref)
	}
	out := c.Outcome()
	if len(out.CDRs) != 2 {
		t.Fatalf("%d CDRs, want 2: %+v", len(out.CDRs), out.CDRs)
	}
	dead, answered := out.CDRs[0], out.CDRs[1]
	failover := answered.Start.Sub(dead.Start)
	t.Logf("dead line attempt: sip_code %d, %q; next line dialed %v after the first INVITE", dead.SIPCode, dead.Variables["redial_reason"], failover)
	if dead.Line != "dead" || dead.SIPCode != 503 || !strings.Contains(dead.Variables["redial_reason"], "ICMP port unreachable") {
		t.Fatalf("dead line CDR: %+v", dead)
	}
	if failover > time.Second {
		t.Fatalf("failover took %v, want under 1 s", failover)
	}
	if answered.Line != "up" || answered.Disposition != "ANSWERED" {
		t.Fatalf("second attempt: %+v", answered)
	}
	waitSipp(t, up, 10*time.Second)
}

// Password guessing against the node's inbound digest: five wrong
// passwords from one address block it (the next INVITE gets 403 without
// even a challenge), while a caller from another address with the right
// password is still authenticated (404: no route for its number).
func TestInboundDigestGuessingBlocked(t *testing.T) {
	r := testenv.StartRedis(t)
	// A trunk that calls in with credentials; its address is not
	// loopback, so callers here are challenged.
	setLine(t, r, "trunk", "g1", "sip:192.0.2.10:5060", `,"username":"trunk","password":"s3cret"`)
	n := startNode(t, r.URL, "n1")
	guess := func(password, expected string, extra ...string) {
		t.Helper()
		args := append([]string{"-m", "1", "-s", "7777", "-au", "trunk", "-ap", password, "-set", "expected", expected}, extra...)
		s := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_digest_auth.xml"), Args: args, Remote: n.SIP.Addr("udp")})
		waitSipp(t, s, 20*time.Second)
	}
	for i := 0; i < 5; i++ {
		guess("wrong"+strconv.Itoa(i), "403")
	}
	guess("s3cret", "blocked")
	guess("s3cret", "404", "-i", "127.0.0.2")
}
