package call_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"redial/internal/call"
	"redial/internal/testenv"
)

// A held bridged call costs the node one goroutine, and a small one: the
// relay runs on the shared poller, nothing else waits for the call, and
// the goroutine that set the call up (attempts, dial, the manager's
// frames) has ended, leaving the bridge's waiter, whose frames are under
// 1 KiB so its stack stays at the 2 KiB minimum (issue 14: a goroutine's
// stack was the largest part of a held call's memory, and the setup
// goroutine's shrank no further than 8 KiB). The calls still end normally
// when hung up.
func TestHeldBridgedCallsCostOneSmallGoroutineEach(t *testing.T) {
	const calls = 24 // two RTP ports each: the harness has 50
	r := testenv.StartRedis(t)
	m := fmt.Sprint(calls)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario("uas_answer_wait_bye.xml"), Args: []string{"-m", m}})
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario("uas_answer_wait_bye.xml"), Args: []string{"-m", m}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr)
	setDialplan(t, r, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, destination.Addr))
	n := startNode(t, r)
	idle := runtime.NumGoroutine()

	var held []*call.Call
	for i := range calls {
		c, err := n.calls.Originate(context.Background(), request(fmt.Sprintf("held-%d", i), fmt.Sprintf("1555124%04d", i), "8888"))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	testenv.WaitFor(t, 20*time.Second, func() error {
		for _, c := range held {
			if st := c.Info().State; st != call.StateBridged {
				return fmt.Errorf("call %s is %s", c.Ref(), st)
			}
		}
		return nil
	})
	// Setting up leaves goroutines behind for a moment (SIP transactions
	// until their timers fire); what the held calls keep is what stays.
	// A few spare for the node's own (Redis connections and the like).
	const spare = 5
	testenv.WaitFor(t, 15*time.Second, func() error {
		if g := runtime.NumGoroutine() - idle; g > calls+spare {
			return fmt.Errorf("%d goroutines above idle for %d held calls, want at most %d", g, calls, calls+spare)
		}
		return nil
	})
	t.Logf("%d goroutines above idle for %d held calls", runtime.NumGoroutine()-idle, calls)
	if n := goroutinesIn("call.(*Manager).runRegistered("); n != 0 {
		t.Fatalf("%d goroutines still in the call's setup (Manager.runRegistered) while the calls are held, want 0", n)
	}
	if n := goroutinesIn("call.(*bridge).hold("); n != calls {
		t.Fatalf("%d goroutines hold a bridge, want %d", n, calls)
	}
	for _, c := range held {
		if !n.calls.Hangup(c.Ref()) {
			t.Fatalf("hangup %s: no such call", c.Ref())
		}
	}
	for _, c := range held {
		select {
		case <-c.Done():
		case <-time.After(15 * time.Second):
			t.Fatalf("call %s did not end after hangup", c.Ref())
		}
		if o := c.Outcome(); !o.Connected || o.Disposition != call.Answered {
			t.Fatalf("call %s: outcome %+v, want connected and ANSWERED", c.Ref(), o)
		}
	}
}

// After a call ends, the manager keeps only a compact record of it (issue
// 16: a burst's ended calls held their whole *Call for two minutes). Get
// answers from the record exactly as the call did: the same Info (the
// body of GET /api/v1/calls/{ref}, byte for byte as JSON), the same
// Outcome, Done closed.
func TestEndedCallAnswersFromItsRecord(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario("uas_answer_wait_bye.xml"), Args: []string{"-m", "1"}})
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario("uas_answer_wait_bye.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr)
	setDialplan(t, r, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, destination.Addr))
	n := startNode(t, r)

	c, err := n.calls.Originate(context.Background(), request("ended-1", "15551240001", "8888"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, func() error {
		if st := c.Info().State; st != call.StateBridged {
			return fmt.Errorf("call is %s", st)
		}
		return nil
	})
	if !n.calls.Hangup(c.Ref()) {
		t.Fatal("hangup: no such call")
	}
	select {
	case <-c.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("call did not end after hangup")
	}
	got, ok := n.calls.Get(c.Ref())
	if !ok {
		t.Fatal("ended call not found")
	}
	if got == c {
		t.Fatal("the ended *Call itself is still kept")
	}
	want, err := json.Marshal(c.Info())
	if err != nil {
		t.Fatal(err)
	}
	have, err := json.Marshal(got.Info())
	if err != nil {
		t.Fatal(err)
	}
	if string(have) != string(want) {
		t.Fatalf("ended call's Info from its record:\n%s\nfrom the call:\n%s", have, want)
	}
	if !strings.Contains(string(have), `"state":"ended"`) || !strings.Contains(string(have), `"answer":`) ||
		!strings.Contains(string(have), `"disposition":"ANSWERED"`) {
		t.Fatalf("ended call's Info lacks its state, answer or disposition: %s", have)
	}
	if o, w := got.Outcome(), c.Outcome(); fmt.Sprintf("%+v", o) != fmt.Sprintf("%+v", w) {
		t.Fatalf("outcome from the record %+v, from the call %+v", o, w)
	}
	select {
	case <-got.Done():
	default:
		t.Fatal("Done of the ended call's record not closed")
	}
	if n.calls.Hangup(c.Ref()) || n.calls.Active() != 0 || len(n.calls.Calls()) != 0 {
		t.Fatal("ended call still counted in progress")
	}
}

// goroutinesIn counts the goroutines with frame in their stack.
func goroutinesIn(frame string) int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, frame) {
			n++
		}
	}
	return n
}
