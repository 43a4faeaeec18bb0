package app

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"redial/internal/config"
	"redial/internal/store"
	"redial/internal/testenv"
)

// queueProcess is a `redial serve` process that callers reach over UDP.
type queueProcess struct {
	cmd    *exec.Cmd
	sip    string
	exited chan struct{}
}

// startQueueProcess runs `redial serve` as host with a heartbeat TTL of 2s,
// as startProcess does, and also returns its SIP address so that callers
// can call in; it returns once the node heartbeats.
func startQueueProcess(t *testing.T, r *testenv.Redis, host string) *queueProcess {
	t.Helper()
	port := testenv.FreePort(t)
	rtp := 10000 + (port%50)*200 // below startNode's and the ephemeral ranges
	level := "warn"
	if os.Getenv("REDIAL_TEST_LOG") != "" {
		level = "debug"
	}
	cmd := exec.Command(redialBinary(t), "serve", "--redis", r.URL, "--host", host,
		"--sip", fmt.Sprintf("udp:127.0.0.1:%d", port), "--sip-public-ip", "127.0.0.1",
		"--rtp-ports", fmt.Sprintf("%d-%d", rtp, rtp+198), "--http", "127.0.0.1:0",
		"--data", t.TempDir(), "--heartbeat-ttl", "2s", "--resync", "1s", "--log-level", level)
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	st := store.NewWithClient(r.Client, store.Config{Host: host, Domain: "default"})
	testenv.WaitFor(t, 30*time.Second, func() error {
		select {
		case <-exited:
			t.Fatalf("redial serve %s exited at start", host)
		default:
		}
		if n, _ := r.Client.Exists(context.Background(), st.AliveKey(host)).Result(); n != 1 {
			return fmt.Errorf("%s not heartbeating yet", host)
		}
		return nil
	})
	return &queueProcess{cmd: cmd, sip: fmt.Sprintf("127.0.0.1:%d", port), exited: exited}
}

// kill9 kills the process as a crash would and waits until it is gone.
func (p *queueProcess) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9: %v", err)
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		select {
		case <-p.exited:
			return nil
		default:
			return fmt.Errorf("pid %d still there", p.cmd.Process.Pid)
		}
	})
}

// queueCallerAt is queueCaller for a node reached by address.
func queueCallerAt(t *testing.T, addr, number, dialed string) *testenv.Sipp {
	t.Helper()
	return testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_queue_caller.xml"), Remote: addr,
		Args: []string{"-m", "1", "-s", dialed, "-key", "caller", number}})
}

// queueKillSetup is a queue "sales" over two nodes: a in this process
// (heartbeat TTL 2s, trusted, so it declares b dead within about a TTL)
// and b a separate process.
func queueKillSetup(t *testing.T, queueJSON string) (*testenv.Redis, *node, *queueProcess) {
	t.Helper()
	r := testenv.StartRedis(t)
	setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
	setDialplan(t, r, "public:7000", `{"type":"queue","queue":"sales"}`)
	a := startNodeCfg(t, r.URL, "qa", func(c *config.Node) { c.HeartbeatTTL = 2 * time.Second })
	b := startQueueProcess(t, r, "qb")
	setQueue(t, a, "sales", queueJSON)
	testenv.WaitFor(t, 20*time.Second, func() error {
		if !a.Directory.Trusted() {
			return fmt.Errorf("node qa does not trust its heartbeat yet")
		}
		return nil
	})
	return r, a, b
}

func waitAgentAvailable(t *testing.T, a *node, ext string) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, func() error {
		if st := agentState(t, a, ext); st.State != store.AgentAvailable {
			return fmt.Errorf("agent %s is %s after registering", ext, st.State)
		}
		return nil
	})
}

// kill -9 of a node holding waiting callers: the survivor drops them from
// the one line within about a heartbeat TTL, its own callers keep their
// order and are answered first come first served, and the agent never
// rings for a dead node's caller.
func TestQueueKillNodeHoldingWaitingCallers(t *testing.T) {
	r, a, b := queueKillSetup(t, `{"params":{"agents":["2001"],"wrapup_s":0,"ring_timeout_s":5,"join_empty":true}}`)
	ctx := context.Background()
	registerSippAgent(t, r, a, "2001", "uas_answer_bye.xml", "-m", "10", "-d", "500")
	waitAgentAvailable(t, a, "2001")
	if err := a.ACD.SetAgentState(ctx, "2001", store.AgentPaused, "setup"); err != nil {
		t.Fatal(err)
	}

	// B1, A1, B2, A2: each in line before the next calls.
	type caller struct {
		onB    bool
		number string
		sipp   *testenv.Sipp
		ref    string
	}
	var callers []*caller
	for i, onB := range []bool{true, false, true, false} {
		c := &caller{onB: onB, number: fmt.Sprintf("155500000%d", i+1)}
		addr := a.SIP.Addr("udp")
		if onB {
			addr = b.sip
		}
		c.sipp = queueCallerAt(t, addr, c.number, "7000")
		testenv.WaitFor(t, 15*time.Second, func() error {
			got := waitingRefs(t, r, a, "sales")
			if len(got) != i+1 {
				return fmt.Errorf("%d callers waiting, want %d", len(got), i+1)
			}
			c.ref = got[i]
			return nil
		})
		callers = append(callers, c)
	}
	aRefs := []string{callers[1].ref, callers[3].ref}

	b.kill9(t)
	killed := time.Now()
	testenv.WaitFor(t, 20*time.Second, func() error {
		if got := waitingRefs(t, r, a, "sales"); !slices.Equal(got, aRefs) {
			return fmt.Errorf("line %v, want qa's callers %v", got, aRefs)
		}
		return nil
	})
	if took := time.Since(killed); took > 10*time.Second {
		t.Errorf("the dead node's callers left the line %v after the kill, want about one heartbeat TTL (2s) and a recovery pass", took)
	}
	holders, err := a.Store.ACDLedger().Holders(ctx)
	if err != nil || slices.Contains(holders, "qb") {
		t.Errorf("queue holders after the recovery = %v, %v; want qb gone", holders, err)
	}

	if err := a.ACD.SetAgentState(ctx, "2001", store.AgentAvailable, ""); err != nil {
		t.Fatal(err)
	}
	for _, c := range callers {
		if !c.onB {
			waitSipp(t, c.sipp, 30*time.Second)
		}
	}
	var notes []map[string]any
	testenv.WaitFor(t, 10*time.Second, func() error {
		if notes = inboundNotes(t, r); len(notes) != 2 {
			return fmt.Errorf("%d inbound notifications, want 2 (qa's callers)", len(notes))
		}
		return nil
	})
	for i, nt := range notes {
		if nt["call_ref"] != aRefs[i] || nt["ref"] != "2001" {
			t.Errorf("notification %d = %v, want call_ref %s to 2001 (qa's callers in order %v)", i, nt, aRefs[i], aRefs)
		}
	}
	for _, ref := range aRefs {
		if c := cdrsFor(t, r, ref, 1, 10*time.Second)[0]; c.Disposition != "ANSWERED" || c.Ext == nil || *c.Ext != "2001" {
			t.Errorf("qa's caller %s: CDR %+v", ref, c)
		}
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		if st := agentState(t, a, "2001"); st.State != store.AgentAvailable || st.Calls != 2 {
			return fmt.Errorf("agent after the calls: %+v, want available with 2 calls", st)
		}
		return nil
	})
	// qb's callers never reached the agent: no answered CDR, and their
	// SIPp never got the BYE that ends an answered queue call.
	for i, c := range callers {
		if !c.onB {
			continue
		}
		for _, cdr := range cdrsFor(t, r, c.ref, 0, time.Second) {
			t.Errorf("qb's caller %s has a CDR %+v", c.ref, cdr)
		}
		select {
		case <-c.sipp.Done():
			if err := c.sipp.Wait(ctx); err == nil {
				t.Errorf("qb's caller %d (%s) completed its call after qb was killed:\n%s", i+1, c.ref, c.sipp.Output())
			}
		default:
		}
		c.sipp.Kill()
	}
}

// kill -9 of a node whose caller rings an agent registered on that node:
// after the recovery the agent is available again, not stuck ringing for
// a call that died, and no miss is counted against it.
func TestQueueKillNodeWhileAgentRings(t *testing.T) {
	_, a, b := queueKillSetup(t, `{"params":{"agents":["2002"],"wrapup_s":0,"ring_timeout_s":120,"join_empty":true}}`)
	// Agent 2002 registers on qb and its phone rings without answering:
	// only the recovery can free it before the two-minute ring timeout.
	sippAgentsAt(t, a.Store, b.sip, []string{"2002"}, testenv.SippOptions{Scenario: scenario(t, "uas_ring_noanswer.xml")})
	waitAgentAvailable(t, a, "2002")

	queueCallerAt(t, b.sip, "15550000001", "7000")
	bRef := waitAgentRingsForCaller(t, a, "2002")
	killAndWaitAgentFreed(t, a, b, "2002", bRef)
}

// The same with the agent registered on the survivor: the dead node's
// caller rang it through the survivor (which relays to its binding).
func TestQueueKillNodeWhileAgentRingsAcrossNodes(t *testing.T) {
	r, a, b := queueKillSetup(t, `{"params":{"agents":["2002"],"wrapup_s":0,"ring_timeout_s":120,"join_empty":true}}`)
	registerSippAgent(t, r, a, "2002", "uas_ring_noanswer.xml")
	waitAgentAvailable(t, a, "2002")

	queueCallerAt(t, b.sip, "15550000001", "7000")
	bRef := waitAgentRingsForCaller(t, a, "2002")
	killAndWaitAgentFreed(t, a, b, "2002", bRef)

	// The next caller, on qa, rings the agent.
	queueCallerAt(t, a.SIP.Addr("udp"), "15550000002", "7000")
	testenv.WaitFor(t, 15*time.Second, func() error {
		st := agentState(t, a, "2002")
		if st.State != store.AgentRinging || st.CallRef == "" || st.CallRef == bRef {
			return fmt.Errorf("agent 2002 is %s for %q, want ringing for qa's caller", st.State, st.CallRef)
		}
		return nil
	})
}

// waitAgentRingsForCaller waits until ext rings for a caller and returns
// that caller's call_ref. The agent's phone never answers, so on_call
// means a node took the call as answered while the phone still rang.
func waitAgentRingsForCaller(t *testing.T, a *node, ext string) string {
	t.Helper()
	var ref string
	testenv.WaitFor(t, 15*time.Second, func() error {
		st := agentState(t, a, ext)
		if st.State == store.AgentOnCall {
			t.Fatalf("agent %s is on_call for %s, but its phone (uas_ring_noanswer) never answered: %+v", ext, st.CallRef, st)
		}
		if st.State != store.AgentRinging || st.CallRef == "" {
			return fmt.Errorf("agent %s is %s, want ringing for qb's caller", ext, st.State)
		}
		ref = st.CallRef
		return nil
	})
	return ref
}

// killAndWaitAgentFreed kills b and waits until ext, ringing for b's
// caller ref, is available again with no miss counted.
func killAndWaitAgentFreed(t *testing.T, a *node, b *queueProcess, ext, ref string) {
	t.Helper()
	b.kill9(t)
	killed := time.Now()
	testenv.WaitFor(t, 20*time.Second, func() error {
		if st := agentState(t, a, ext); st.State != store.AgentAvailable || st.CallRef != "" {
			return fmt.Errorf("agent %s is %s for %q after qb died, want available", ext, st.State, st.CallRef)
		}
		return nil
	})
	if took := time.Since(killed); took > 10*time.Second {
		t.Errorf("agent freed %v after the kill, want about one heartbeat TTL (2s) and a recovery pass", took)
	}
	if st := agentState(t, a, ext); st.NoAnswer != 0 || st.Calls != 0 {
		t.Errorf("agent freed by the recovery = %+v, want no miss and no call counted", st)
	}
	if p, err := a.Store.Position(context.Background(), "sales", ref); err != nil || p != 0 {
		t.Errorf("qb's caller %s at position %d (%v) after the recovery", ref, p, err)
	}
}
