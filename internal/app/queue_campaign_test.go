package app

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"redial/internal/dialer"
	"redial/internal/store"
	"redial/internal/testenv"
)

// sippCalls counts, from SIPp's message log, the distinct calls whose
// INVITE and whose CANCEL SIPp received (retransmissions count once).
func sippCalls(t testing.TB, s *testenv.Sipp) (invited, cancelled int) {
	t.Helper()
	inv, can := map[string]bool{}, map[string]bool{}
	for _, msg := range strings.Split(readSippMessages(t, s), "message received")[1:] {
		lines := strings.Split(strings.ReplaceAll(msg, "\r", ""), "\n")
		method, callID := "", ""
		for _, l := range lines[1:] {
			l = strings.TrimSpace(l)
			if l == "" && method == "" {
				continue
			}
			if method == "" {
				method, _, _ = strings.Cut(l, " ")
				continue
			}
			if name, v, ok := strings.Cut(l, ":"); ok && (strings.EqualFold(name, "Call-ID") || name == "i") {
				callID = strings.TrimSpace(v)
				break
			}
		}
		switch {
		case callID == "":
		case method == "INVITE":
			inv[callID] = true
		case method == "CANCEL":
			can[callID] = true
		}
	}
	return len(inv), len(can)
}

// taskStatus reads one task's status from the API.
func taskStatus(t testing.TB, n *node, name string) (dialer.TaskStatus, error) {
	t.Helper()
	var body struct {
		Tasks []dialer.TaskStatus `json:"tasks"`
	}
	n.get("/api/v1/tasks", &body)
	for _, st := range body.Tasks {
		if st.Name == name {
			return st, nil
		}
	}
	return dialer.TaskStatus{}, fmt.Errorf("task %s not in %+v", name, body.Tasks)
}

// A campaign into a queue rings at most floor(available agents x
// agent_ratio) callees at once, follows agents becoming available, and
// dials nobody while every agent is paused; numbers it does not dial stay
// in the Redis list. The callees never answer, so no call reaches the
// queue itself.
func TestQueueCampaignPacedByAgents(t *testing.T) {
	const total = 20
	r := testenv.StartRedis(t)
	ctx := context.Background()
	st := store.NewWithClient(r.Client, store.Config{Domain: "default"})
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_ring_noanswer.xml"), Trace: true})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setDialplan(t, r, "default:8888", `{"type":"queue","queue":"sales"}`)
	if err := st.SetQueue(ctx, "sales", `{"params": {"agents": ["1001", "1002", {"ext": "1003", "level": 2}], "strategy": "ring_all"}}`); err != nil {
		t.Fatal(err)
	}
	setTask(t, r, "cti_queue_dialer_task@template", "qc", `{"params":{"enable":true,"line_group":["g1"],"limit":50,
		"number_queue":"qcq","destination_extension":"8888","agent_ratio":1.5}}`, "")
	pushNumbers(t, r, "qcq", numberList("1555700", total)...)
	n := startNode(t, r.URL, "n1")
	agents := func(state string, exts ...string) {
		t.Helper()
		reason := ""
		if state == store.AgentPaused {
			reason = "meeting"
		}
		for _, ext := range exts {
			if err := st.SetAgentState(ctx, ext, state, reason, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	queued := func() int64 {
		t.Helper()
		n, err := r.Client.LLen(ctx, "qcq").Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	peak := 0
	// settle waits until the task holds back with want calls ringing at
	// SIPp, invites calls dialed in all and the given reason, failing as
	// soon as SIPp has more than ceiling calls ringing or more than
	// invites calls dialed.
	settle := func(want, ceiling int, reason string, invites int) {
		t.Helper()
		testenv.WaitFor(t, 10*time.Second, func() error {
			inv, can := sippCalls(t, carrier)
			peak = max(peak, inv-can)
			if inv-can > ceiling || inv > invites {
				t.Fatalf("SIPp has %d calls ringing (at most %d allowed) and got %d INVITEs (want %d)", inv-can, ceiling, inv, invites)
			}
			s, err := taskStatus(t, n, "qc")
			if err != nil {
				return err
			}
			if inv-can != want || inv != invites || s.State != "waiting" || s.Reason != reason || s.InFlight != want {
				return fmt.Errorf("SIPp: %d INVITEs, %d CANCELs; task %+v", inv, can, s)
			}
			return nil
		})
		if q := queued(); q != int64(total-invites) {
			t.Fatalf("%d numbers left in the queue, want %d: the task claimed numbers it did not dial", q, total-invites)
		}
	}

	// Nobody logged in: nothing rings, and the status says why.
	settle(0, 0, "waiting for agents (queue sales: 0 available)", 0)

	// Two agents x 1.5: three callees ring, no more.
	agents(store.AgentAvailable, "1001", "1002")
	settle(3, 3, "waiting for agents (queue sales: 2 available, agent_ratio 1.5, 3 calls not yet connected)", 3)

	// A third agent: floor(3 x 1.5) = 4.
	agents(store.AgentAvailable, "1003")
	settle(4, 4, "waiting for agents (queue sales: 3 available, agent_ratio 1.5, 4 calls not yet connected)", 4)
	if peak != 4 {
		t.Fatalf("peak %d INVITEs outstanding, want 4", peak)
	}

	// Everybody paused: the ringing calls end (hung up), and none replaces
	// them.
	agents(store.AgentPaused, "1001", "1002", "1003")
	testenv.WaitFor(t, 5*time.Second, func() error {
		s, err := taskStatus(t, n, "qc")
		if err != nil || s.Reason != "waiting for agents (queue sales: 0 available)" {
			return fmt.Errorf("task %+v %v", s, err)
		}
		return nil
	})
	for _, c := range n.Calls.Calls() {
		if c.CampaignRef == "qc" {
			n.Calls.Hangup(c.CallRef)
		}
	}
	settle(0, 4, "waiting for agents (queue sales: 0 available)", 4)
	if cdrs := waitCDRs(t, r, "qc", 4, 10*time.Second); len(cdrs) != 4 {
		t.Fatalf("%d CDRs, want 4", len(cdrs))
	}
}
