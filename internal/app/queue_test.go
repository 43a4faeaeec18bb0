package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"redial/internal/store"
	"redial/internal/testenv"
)

// sippAgent is a SIPp UAS agent that registered like a desk phone.
type sippAgent struct {
	ext string
	uas *testenv.Sipp
}

// registerSippAgent creates user ext, registers it at n from a free port
// and starts uasScenario there with args.
func registerSippAgent(t *testing.T, r *testenv.Redis, n *node, ext, uasScenario string, args ...string) *sippAgent {
	t.Helper()
	return &sippAgent{ext: ext, uas: sippAgents(t, n, []string{ext}, testenv.SippOptions{Scenario: scenario(t, uasScenario), Args: args})}
}

// sippAgents creates users exts, registers each at n with digest (SIPp
// uac_register.xml) from one free port, and then starts the UAS uas there,
// which every binding's Contact names: one SIPp answering for several
// agents. Between the REGISTERs and the UAS another test package may take
// the port; the agents then register again from another.
func sippAgents(t *testing.T, n *node, exts []string, uas testenv.SippOptions) *testenv.Sipp {
	t.Helper()
	return sippAgentsAt(t, n.Store, n.SIP.Addr("udp"), exts, uas)
}

// sippAgentsAt is sippAgents for a node known by its SIP address (a node
// running as a process); st is any store of the cluster's domain.
func sippAgentsAt(t *testing.T, st *store.Store, sipAddr string, exts []string, uas testenv.SippOptions) *testenv.Sipp {
	t.Helper()
	ctx := context.Background()
	for _, ext := range exts {
		if err := st.SetUser(ctx, ext, fmt.Sprintf(`{"params":{"password":"pw%s","name":"agent %s","enable":true}}`, ext, ext)); err != nil {
			t.Fatal(err)
		}
	}
	for attempt := 1; ; attempt++ {
		port := testenv.FreePort(t)
		registered := true
		for _, ext := range exts {
			reg, busy := testenv.TryStartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_register.xml"), Port: port, Remote: sipAddr,
				Args: []string{"-m", "1", "-s", ext, "-au", ext, "-ap", "pw" + ext, "-set", "expected", "200", "-set", "expires", "3600"}})
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := reg.Wait(wctx)
			cancel()
			if busy || err != nil && strings.Contains(reg.Output(), "Address already in use") {
				registered = false
				break
			}
			if err != nil {
				t.Fatalf("sipp REGISTER of %s: %v\n%s", ext, err, reg.Output())
			}
		}
		if registered {
			uas.Port = port
			s, busy := testenv.TryStartSipp(t, uas)
			if !busy {
				return s
			}
		}
		// The port was taken: forget the bindings that name it.
		for _, ext := range exts {
			list, err := st.Bindings(ctx, ext, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range list {
				if strings.Contains(b.Contact, fmt.Sprintf(":%d", port)) {
					if err := st.RemoveBinding(ctx, ext, b.ID); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if attempt == 3 {
			t.Fatalf("agents %v: port taken by others three times", exts)
		}
		t.Logf("agents %v: port %d was taken meanwhile; registering again from another", exts, port)
	}
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

// An unanswered offer moves to the next agent after ring_timeout_s and
// max_no_answer pauses the agent who never answers; wrap-up keeps the
// agent who answered free of calls for its time; an IVR in front sets
// contact_ref; a caller who hangs up waiting is ABANDONED with ext null
// and no notification; max_wait_s sends a caller to the overflow.
func TestQueueRingTimeoutWrapupAbandonOverflow(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7001", `{"type":"ivr","script":"front"}`)
	setDialplan(t, r, "default:q1", `{"type":"queue","queue":"q1"}`)
	setDialplan(t, r, "public:7002", `{"type":"queue","queue":"q2"}`)
	setDialplan(t, r, "public:7003", `{"type":"queue","queue":"q3"}`)
	setDialplan(t, r, "default:ovf", `{"type":"hangup"}`)
	setScript(t, r, "front", `{"start":1,"components":[
		{"oId":1,"oType":304,"variables":{"contact_ref":"ACC42"},"transfer":2},
		{"oId":2,"oType":203,"number":"q1","reinviteMode":2}]}`)
	a := startNode(t, r.URL, "qa")
	setQueue(t, a, "q1", `{"params":{"agents":["3001","3002"],"strategy":"top_down","ring_timeout_s":1,"max_no_answer":2,"wrapup_s":3}}`)
	setQueue(t, a, "q2", `{"params":{"agents":["3009"],"join_empty":true}}`)
	setQueue(t, a, "q3", `{"params":{"agents":["3009"],"join_empty":true,"max_wait_s":1,"overflow":{"extension":"ovf","context":"default"}}}`)
	never := registerSippAgent(t, r, a, "3001", "uas_ring_noanswer.xml", "-m", "2")
	answers := registerSippAgent(t, r, a, "3002", "uas_answer_bye.xml", "-m", "2", "-d", "300")
	_ = never

	// (1) 3001 rings 1 s, then 3002 answers.
	c1 := queueCaller(t, a, "15551110001", "7001")
	waitSipp(t, c1, 20*time.Second)
	var first map[string]any
	testenv.WaitFor(t, 5*time.Second, func() error {
		notes := inboundNotes(t, r)
		if len(notes) != 1 {
			return fmt.Errorf("%d notifications", len(notes))
		}
		first = notes[0]
		return nil
	})
	if first["ref"] != "3002" || first["contact_ref"] != "ACC42" || first["number"] != "15551110001" || first["dial_number"] != "7001" {
		t.Fatalf("first call's notification: %v", first)
	}
	if st := agentState(t, a, "3001"); st.State != store.AgentAvailable || st.NoAnswer != 1 {
		t.Fatalf("3001 after one unanswered offer: %+v", st)
	}
	c := cdrsFor(t, r, first["call_ref"].(string), 1, 5*time.Second)[0]
	if c.Disposition != "ANSWERED" || c.Ext == nil || *c.Ext != "3002" || c.ContactRef != "" && c.ContactRef != "ACC42" {
		t.Fatalf("first call's CDR: %+v", c)
	}
	ended := time.Now()
	if st := agentState(t, a, "3002"); st.State != store.AgentWrapup {
		t.Fatalf("3002 right after its call: %+v, want wrapup", st)
	}

	// (2) 3001 rings again and is paused; the caller waits for 3002's
	// wrap-up to end.
	c2 := queueCaller(t, a, "15551110002", "7001")
	waitSipp(t, c2, 20*time.Second)
	var second map[string]any
	testenv.WaitFor(t, 5*time.Second, func() error {
		notes := inboundNotes(t, r)
		if len(notes) != 2 {
			return fmt.Errorf("%d notifications", len(notes))
		}
		second = notes[1]
		return nil
	})
	if second["ref"] != "3002" {
		t.Fatalf("second call's notification: %v", second)
	}
	c = cdrsFor(t, r, second["call_ref"].(string), 1, 5*time.Second)[0]
	if c.Answer == nil || c.Answer.Add(time.Duration(c.HoldTime)*time.Second).Before(ended.Add(2*time.Second)) {
		t.Errorf("second call reached 3002 %ds after its answer at %v; the wrap-up of 3s began at %v", c.HoldTime, c.Answer, ended)
	}
	if st := agentState(t, a, "3001"); st.State != store.AgentPaused || st.Reason != store.ReasonNoAnswer {
		t.Fatalf("3001 after max_no_answer offers: %+v, want paused (no answer)", st)
	}
	waitSipp(t, answers.uas, 10*time.Second)

	// (3) A caller who gives up: ABANDONED, ext null, no notification.
	quitter := testenv.StartSipp(t, testenv.SippOptions{Args: []string{"-sn", "uac", "-m", "1", "-s", "7002", "-d", "1500"}, Remote: a.SIP.Addr("udp")})
	waitSipp(t, quitter, 15*time.Second)
	var ab map[string]any
	testenv.WaitFor(t, 5*time.Second, func() error {
		for _, x := range campaignCDRs(t, r, "inbound") {
			if x["dial_number"] == "7002" {
				ab = x
				return nil
			}
		}
		return fmt.Errorf("no CDR for the call to 7002")
	})
	if ab["disposition"] != "ABANDONED" || ab["ext"] != nil || ab["hold_time"].(float64) < 1 {
		t.Fatalf("abandoned caller's CDR: %v", ab)
	}
	if n := len(inboundNotes(t, r)); n != 2 {
		t.Fatalf("%d inbound notifications after an abandoned call, want still 2", n)
	}

	// (4) max_wait_s: the overflow takes the caller.
	over := testenv.StartSipp(t, testenv.SippOptions{Args: []string{"-sn", "uac", "-m", "1", "-s", "7003", "-d", "10000"}, Remote: a.SIP.Addr("udp")})
	var ov map[string]any
	testenv.WaitFor(t, 10*time.Second, func() error {
		for _, x := range campaignCDRs(t, r, "inbound") {
			if x["dial_number"] == "7003" {
				ov = x
				return nil
			}
		}
		return fmt.Errorf("no CDR for the call to 7003")
	})
	over.Kill()
	vars, _ := ov["variables"].(map[string]any)
	if ov["disposition"] != "ANSWERED" || vars["redial_queue_overflow_reason"] != "max_wait_s 1 passed" {
		t.Fatalf("overflowed caller's CDR: %v", ov)
	}
}
