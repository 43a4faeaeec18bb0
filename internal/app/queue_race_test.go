package app

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"redial/internal/config"
	"redial/internal/testenv"
)

// agentCall is one INVITE an agent's phone got, from its arrival to its
// last message.
type agentCall struct {
	ext, callID string
	from, to    time.Time
	ended       bool
}

var (
	sippMsgHead = regexp.MustCompile(`(?m)^-+ (\d{4}-\d\d-\d\d)\s+(\d\d:\d\d:\d\d\.\d+)\s*$`)
	sippCallID  = regexp.MustCompile(`(?mi)^Call-ID:\s*(\S+)`)
	sippInvite  = regexp.MustCompile(`(?m)^INVITE sip:([^@;>\s]+)@`)
)

// agentCalls reads a SIPp UAS's -trace_msg log into one agentCall per
// Call-ID.
func agentCalls(t *testing.T, s *testenv.Sipp) []agentCall {
	t.Helper()
	log := readSippMessages(t, s)
	heads := sippMsgHead.FindAllStringSubmatchIndex(log, -1)
	calls := map[string]*agentCall{}
	for i, h := range heads {
		end := len(log)
		if i+1 < len(heads) {
			end = heads[i+1][0]
		}
		body := log[h[1]:end]
		at, err := time.ParseInLocation("2006-01-02 15:04:05.999999", log[h[2]:h[3]]+" "+log[h[4]:h[5]], time.Local)
		if err != nil {
			t.Fatal(err)
		}
		m := sippCallID.FindStringSubmatch(body)
		if m == nil {
			continue
		}
		c := calls[m[1]]
		if c == nil {
			c = &agentCall{callID: m[1], from: at}
			calls[m[1]] = c
		}
		if inv := sippInvite.FindStringSubmatch(body); inv != nil && c.ext == "" {
			c.ext = inv[1]
		}
		// The call is over for the phone at its BYE, CANCEL or error
		// response; SIPp's retransmissions after that do not count.
		if !c.ended {
			c.to = at
			first := strings.TrimSpace(body[strings.Index(body, "\n\n")+2:])
			if i := strings.IndexByte(first, '\n'); i >= 0 {
				first = first[:i]
			}
			for _, p := range []string{"BYE ", "CANCEL ", "SIP/2.0 4", "SIP/2.0 5", "SIP/2.0 6"} {
				c.ended = c.ended || strings.HasPrefix(first, p)
			}
		}
	}
	var out []agentCall
	for _, c := range calls {
		out = append(out, *c)
	}
	return out
}

// Many callers on two nodes, many agents on both: no agent ever rings or
// talks for two callers at once, every caller is answered exactly once,
// and SIPp's counts, the notifications and the CDRs agree.
func TestQueueRace200CallersTwoNodes(t *testing.T) {
	for _, strategy := range []string{"longest_idle", "ring_all"} {
		t.Run(strategy, func(t *testing.T) {
			const perNode, agentsPerNode = 100, 10
			r := testenv.StartRedis(t)
			setLine(t, r, "trunk", "g1", "sip:127.0.0.1:5999", "")
			setDialplan(t, r, "public:7000", `{"type":"queue","queue":"race"}`)
			// A waiting caller holds an RTP port, and so does every agent
			// ringing: more than a test node's usual 50 ports.
			wide := func(c *config.Node) {
				base := 10000 + (c.RTPMin/100%40)*250
				c.RTPMin, c.RTPMax = base, base+248
			}
			a := startNodeCfg(t, r.URL, "ra", wide)
			b := startNodeCfg(t, r.URL, "rb", wide)
			var exts, extsA, extsB []string
			for i := range 2 * agentsPerNode {
				ext := fmt.Sprintf("40%02d", i)
				exts = append(exts, ext)
				if i < agentsPerNode {
					extsA = append(extsA, ext)
				} else {
					extsB = append(extsB, ext)
				}
			}
			setQueue(t, a, "race", fmt.Sprintf(`{"params":{"agents":["%s"],"strategy":%q,"wrapup_s":0,"ring_timeout_s":10,"join_empty":true}}`,
				strings.Join(exts, `","`), strategy))
			pool := testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Trace: true, Args: []string{"-m", "1000", "-d", "150"}}
			poolA := sippAgents(t, a, extsA, pool)
			poolB := sippAgents(t, b, extsB, pool)
			testenv.WaitFor(t, 10*time.Second, func() error {
				for _, e := range exts {
					if st := agentState(t, a, e); st.State != "available" {
						return fmt.Errorf("agent %s is %s", e, st.State)
					}
				}
				return nil
			})
			var callers []*testenv.Sipp
			for _, nd := range []*node{a, b} {
				callers = append(callers, testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uac_queue_caller.xml"),
					Remote: nd.SIP.Addr("udp"), Args: []string{"-m", fmt.Sprint(perNode), "-r", "25", "-l", fmt.Sprint(perNode),
						"-s", "7000", "-key", "caller", "15550009999"}}))
			}
			for _, c := range callers {
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				err := c.Wait(ctx)
				cancel()
				if err != nil {
					states := map[string]string{}
					for _, e := range exts {
						st := agentState(t, a, e)
						states[e] = st.State + " " + st.CallRef
					}
					t.Fatalf("callers: %v; line %v; agents %v; %d notifications", err, waitingRefs(t, r, a, "race"), states, len(inboundNotes(t, r)))
				}
			}
			var notes []map[string]any
			testenv.WaitFor(t, 10*time.Second, func() error {
				if notes = inboundNotes(t, r); len(notes) != 2*perNode {
					return fmt.Errorf("%d inbound notifications, want %d", len(notes), 2*perNode)
				}
				return nil
			})
			refs := map[string]bool{}
			for _, nt := range notes {
				ref, _ := nt["call_ref"].(string)
				if refs[ref] {
					t.Fatalf("call %s notified twice", ref)
				}
				refs[ref] = true
			}
			testenv.WaitFor(t, 10*time.Second, func() error {
				cdrs := campaignCDRs(t, r, "inbound")
				answered := 0
				for _, c := range cdrs {
					if c["disposition"] == "ANSWERED" && c["ext"] != nil {
						answered++
					}
				}
				if len(cdrs) != 2*perNode || answered != 2*perNode {
					have := map[string]bool{}
					for _, c := range cdrs {
						have[c["call_ref"].(string)] = true
					}
					var missing []string
					for ref := range refs {
						if !have[ref] {
							missing = append(missing, ref)
						}
					}
					return fmt.Errorf("%d inbound CDRs, %d answered by an agent; want %d each; no CDR for %v", len(cdrs), answered, 2*perNode, missing)
				}
				return nil
			})
			poolA.Kill()
			poolB.Kill()
			// SIPp's view: per agent, calls never overlap; every caller was
			// connected to exactly one agent that answered.
			byExt := map[string][]agentCall{}
			for _, p := range []*testenv.Sipp{poolA, poolB} {
				for _, c := range agentCalls(t, p) {
					byExt[c.ext] = append(byExt[c.ext], c)
				}
			}
			total := 0
			for ext, cs := range byExt {
				sort.Slice(cs, func(i, j int) bool { return cs[i].from.Before(cs[j].from) })
				for i := 1; i < len(cs); i++ {
					// SIPp stamps messages as it handles them: a new INVITE
					// (from either node's socket) can be logged a moment
					// before the last message of the call redial already saw
					// end, when both wait in SIPp's sockets while it is
					// descheduled (6 ms seen on a loaded CI run). Two calls
					// really at once overlap by a whole talk time.
					if cs[i].from.Before(cs[i-1].to.Add(-25 * time.Millisecond)) {
						t.Errorf("agent %s got call %s at %v while call %s lasted until %v", ext, cs[i].callID,
							cs[i].from.Format("15:04:05.000"), cs[i-1].callID, cs[i-1].to.Format("15:04:05.000"))
					}
				}
				total += len(cs)
			}
			if strategy == "longest_idle" && total != 2*perNode {
				t.Errorf("agents got %d INVITEs, want %d (one per caller)", total, 2*perNode)
			}
			if total < 2*perNode {
				t.Errorf("agents got %d INVITEs for %d callers", total, 2*perNode)
			}
			t.Logf("%s: %d callers answered by %d agents over two nodes; %d INVITEs to agents", strategy, 2*perNode, len(byExt), total)
		})
	}
}
