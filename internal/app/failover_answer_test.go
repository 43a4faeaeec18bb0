package app

import (
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
)

// A callee who answered is never rung again. The first trunk answers 200
// OK with a Contact that refuses connections, so our ACK cannot be sent;
// the call must end there (best-effort BYE, one CDR with sip_code 200)
// instead of taking the failed ACK for a trunk failure and dialing the
// second line group or the second number.
func TestNoFailoverAfterAnswerWithoutAck(t *testing.T) {
	r := testenv.StartRedis(t)
	answered := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_dead_contact.xml"),
		Args: []string{"-m", "1", "-t", "t1"}, Trace: true})
	other := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"),
		Args: []string{"-m", "1"}, Trace: true})
	setLine(t, r, "first", "g1", "sip:"+answered.Addr, `,"transport":"tcp"`)
	setLine(t, r, "second", "g2", "sip:"+other.Addr, "")
	setDialplan(t, r, "default:8888", `{"type":"hangup"}`)
	n := startNode(t, r.URL, "n1")

	ref := originate(t, n, map[string]any{"number": []string{"15551230301", "15551230302"},
		"line_group": []string{"g1", "g2"}, "destination": dest("8888")})
	c, ok := n.Calls.Get(ref)
	if !ok {
		t.Fatalf("call %s not found", ref)
	}
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("call %s did not end", ref)
	}
	out := c.Outcome()
	if out.Invites != 1 || len(out.CDRs) != 1 || !out.Answered || out.Connected {
		t.Fatalf("outcome: invites=%d cdrs=%d answered=%v connected=%v disposition=%s",
			out.Invites, len(out.CDRs), out.Answered, out.Connected, out.Disposition)
	}
	// Done means every CDR was published: exactly one is in Redis.
	cdr := cdrsFor(t, r, ref, 1, 5*time.Second)[0]
	if cdr.Line != "first" || cdr.SIPCode != 200 || cdr.Disposition != "FAILED" || cdr.Answer == nil ||
		cdr.HangupCause != "DESTINATION_OUT_OF_ORDER" || cdr.ClientNumber != "15551230301" ||
		!strings.Contains(cdr.Variables["redial_reason"], "ACK") {
		t.Fatalf("cdr: %+v", cdr)
	}
	// The message logs are written as messages go: the first UAS saw one
	// INVITE, the second none.
	waitSipp(t, answered, 15*time.Second)
	if got := strings.Count(readSippMessages(t, answered), "INVITE sip:"); got != 1 {
		t.Fatalf("first trunk got %d INVITEs, want 1", got)
	}
	if msgs := readSippMessages(t, other); strings.Contains(msgs, "INVITE") {
		t.Fatalf("second line group was dialed:\n%s", msgs)
	}
}
