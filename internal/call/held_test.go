package call_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"redial/internal/call"
	"redial/internal/testenv"
)

// A held bridged call costs the node one goroutine, the call's own: the
// relay runs on the shared poller and nothing else waits for the call
// (issue 14: a goroutine's stack is the largest part of a held call's
// memory). The calls still end normally when hung up.
func TestHeldBridgedCallsCostOneGoroutineEach(t *testing.T) {
	const calls = 10
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
