package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"redial/internal/store"
	"redial/internal/testenv"
)

// sippAgent is a SIPp UAS agent that registered like a desk phone: a
// SIPp REGISTER (digest) from the agent's port, then the UAS on that same
// port, which the binding's Contact names.
type sippAgent struct {
	ext string
	uas *testenv.Sipp
}

// registerSippAgent creates user ext, registers it at n from a free port
// and starts uasScenario there with args.
func registerSippAgent(t *testing.T, r *testenv.Redis, n *node, ext, uasScenario string, args ...string) *sippAgent {
	t.Helper()
	ctx := context.Background()
	pw := "pw" + ext
	if err := n.Store.SetUser(ctx, ext, fmt.Sprintf(`{"params":{"password":%q,"name":"agent %s","enable":true}}`, pw, ext)); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	reg := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_register.xml"), Port: port, Remote: n.SIP.Addr("udp"),
		Args: []string{"-m", "1", "-s", ext, "-au", ext, "-ap", pw, "-set", "expected", "200", "-set", "expires", "3600"}})
	waitSipp(t, reg, 10*time.Second)
	uas := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, uasScenario), Port: port, Args: args})
	return &sippAgent{ext: ext, uas: uas}
}

// queueCaller calls dialed at n as number, waiting in whatever queue the
// dialplan sends it to until the far end hangs up.
func queueCaller(t *testing.T, n *node, number, dialed string) *testenv.Sipp {
	t.Helper()
	return testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_queue_caller.xml"), Remote: n.SIP.Addr("udp"),
		Args: []string{"-m", "1", "-s", dialed, "-key", "caller", number}})
}

// waitingRefs is the cluster-wide line of queue, first first.
func waitingRefs(t *testing.T, r *testenv.Redis, n *node, queue string) []string {
	t.Helper()
	refs, err := r.Client.ZRange(context.Background(), n.Store.WaitingKey(queue), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return refs
}

// inboundNotes returns the call notifications on <prefix>:inbound, oldest
// first.
func inboundNotes(t *testing.T, r *testenv.Redis) []map[string]any {
	t.Helper()
	raw, err := r.Client.LRange(context.Background(), "enigma:notifications:inbound", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for i := len(raw) - 1; i >= 0; i-- {
		var env struct {
			Type    string         `json:"type"`
			Payload map[string]any `json:"payload"`
		}
		if err := json.Unmarshal([]byte(raw[i]), &env); err != nil {
			t.Fatalf("inbound notification %q: %v", raw[i], err)
		}
		if env.Type != "call" {
			t.Fatalf("inbound notification of type %q: %s", env.Type, raw[i])
		}
		out = append(out, env.Payload)
	}
	return out
}

func setQueue(t *testing.T, n *node, name, value string) {
	t.Helper()
	if err := n.Store.SetQueue(context.Background(), name, value); err != nil {
		t.Fatal(err)
	}
}

func agentState(t *testing.T, n *node, ext string) store.AgentState {
	t.Helper()
	m, err := n.Store.AgentStates(context.Background(), []string{ext}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return m[ext]
}

// Callers on two nodes wait in one line and are answered in the order they
// came, whichever node each is on, by an agent registered on the first
// node; each connected call gives exactly one inbound notification with
// every seed field, and a CDR with ext and hold_time.
func TestQueueCallersOnTwoNodesInArrivalOrder(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7000", `{"type":"queue","queue":"sales"}`)
	a := startNode(t, r.URL, "qa")
	b := startNode(t, r.URL, "qb")
	setQueue(t, a, "sales", `{"params":{"agents":["2001"],"wrapup_s":0,"ring_timeout_s":5,"join_empty":true}}`)
	agent := registerSippAgent(t, r, a, "2001", "uas_answer_bye.xml", "-m", "3", "-d", "600")
	testenv.WaitFor(t, 5*time.Second, func() error {
		if st := agentState(t, a, "2001"); st.State != store.AgentAvailable {
			return fmt.Errorf("agent 2001 is %s after registering", st.State)
		}
		return nil
	})
	// Paused while the callers line up, so that all three wait.
	if code, out := a.post("/api/v1/agents/2001/state", map[string]any{"state": "paused", "reason": "setup"}); code != 200 {
		// The state API may not be wired yet: set it in the store.
		if err := a.ACD.SetAgentState(context.Background(), "2001", "paused", "setup"); err != nil {
			t.Fatalf("pause: %d %v / %v", code, out, err)
		}
	}
	var callers []*testenv.Sipp
	for i, nd := range []*node{b, a, b} {
		callers = append(callers, queueCaller(t, nd, "1555000000"+strconv.Itoa(i+1), "7000"))
		testenv.WaitFor(t, 10*time.Second, func() error {
			if got := waitingRefs(t, r, a, "sales"); len(got) != i+1 {
				return fmt.Errorf("%d callers waiting, want %d", len(got), i+1)
			}
			return nil
		})
	}
	line := waitingRefs(t, r, a, "sales")
	if err := a.ACD.SetAgentState(context.Background(), "2001", "available", ""); err != nil {
		t.Fatal(err)
	}
	for _, c := range callers {
		waitSipp(t, c, 30*time.Second)
	}
	waitSipp(t, agent.uas, 10*time.Second)
	var notes []map[string]any
	testenv.WaitFor(t, 5*time.Second, func() error {
		if notes = inboundNotes(t, r); len(notes) != 3 {
			return fmt.Errorf("%d inbound notifications, want 3", len(notes))
		}
		return nil
	})
	for i, nt := range notes {
		if nt["call_ref"] != line[i] {
			t.Errorf("notification %d is for %v, want %s (the line was %v)", i, nt["call_ref"], line[i], line)
		}
		want := map[string]any{"number": "1555000000" + strconv.Itoa(i+1), "dial_number": "7000", "contact_ref": "",
			"call_dir": "inbound", "ref": "2001"}
		for k, v := range want {
			if nt[k] != v {
				t.Errorf("notification %d: %s = %#v, want %#v (%v)", i, k, nt[k], v, nt)
			}
		}
		if _, ok := nt["hold_time"].(float64); !ok {
			t.Errorf("notification %d: hold_time %#v is not a number", i, nt["hold_time"])
		}
		if len(nt) != 7 {
			t.Errorf("notification %d has %d fields, want the seed's 7: %v", i, len(nt), nt)
		}
	}
	for i, ref := range line {
		c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]
		if c.Disposition != "ANSWERED" || c.Ext == nil || *c.Ext != "2001" {
			t.Errorf("caller %d: CDR %+v", i+1, c)
		}
		if i == 2 && c.HoldTime < 1 {
			t.Errorf("third caller's hold_time %d, want >= 1 (it waited for two calls)", c.HoldTime)
		}
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if st := agentState(t, a, "2001"); st.State != store.AgentAvailable || st.Calls != 3 {
			return fmt.Errorf("agent after the calls: %+v", st)
		}
		return nil
	})
}
