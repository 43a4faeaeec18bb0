package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"redial/internal/notify"
	"redial/internal/store"
	"redial/internal/testenv"
)

// bindAgent writes ext's binding to a SIPp UAS over UDP, as the registrar
// writes one for a desk phone registered on node host.
func bindAgent(t *testing.T, n *node, ext, host string, agent *testenv.Sipp) {
	t.Helper()
	if err := n.Store.PutBinding(context.Background(), store.Binding{ID: "sip:" + ext + "@" + agent.Addr, Ext: ext, Node: host,
		Transport: "udp", Contact: "sip:" + ext + "@" + agent.Addr, Source: agent.Addr, UserAgent: "SIPp",
		Expires: time.Now().Add(time.Hour), Registered: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

// sippReceived lists the requests and responses a SIPp traced as received
// (-trace_msg), each with its time, in order.
type sippMsg struct {
	at   time.Time
	line string
}

var sippStamp = regexp.MustCompile(`(?m)^-+ (\d{4}-\d\d-\d\d)\s+(\d\d:\d\d:\d\d\.\d+)\s*\n(?:UDP|TCP) message received[^\n]*\n\s*\n([^\r\n]+)`)

func sippReceived(t *testing.T, s *testenv.Sipp) []sippMsg {
	t.Helper()
	var out []sippMsg
	log := readSippMessages(t, s)
	for _, m := range sippStamp.FindAllStringSubmatch(log, -1) {
		at, err := time.ParseInLocation("2006-01-02 15:04:05.999999", m[1]+" "+m[2], time.Local)
		if err != nil {
			t.Fatalf("sipp trace time %q: %v", m[1]+" "+m[2], err)
		}
		out = append(out, sippMsg{at, m[3]})
	}
	return out
}

func firstReceived(t *testing.T, s *testenv.Sipp, prefix string) time.Time {
	t.Helper()
	for _, m := range sippReceived(t, s) {
		if strings.HasPrefix(m.line, prefix) {
			return m.at
		}
	}
	t.Fatalf("sipp on %s received no %q; trace:\n%s", s.Addr, prefix, readSippMessages(t, s))
	return time.Time{}
}

// campaignsEntries returns the envelopes on the campaigns list naming
// callRef, oldest first.
func campaignsEntries(t *testing.T, r *testenv.Redis, callRef string) []cdrEnvelope {
	t.Helper()
	raw, err := r.Client.LRange(context.Background(), "enigma:notifications:campaigns", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []cdrEnvelope
	for i := len(raw) - 1; i >= 0; i-- {
		var env cdrEnvelope
		if err := json.Unmarshal([]byte(raw[i]), &env); err != nil {
			t.Fatal(err)
		}
		if env.Payload["call_ref"] == callRef {
			out = append(out, env)
		}
	}
	return out
}

// clickCDRs waits until want CDRs of callRef (not its call notification)
// are on the campaigns list and returns them oldest first.
func clickCDRs(t *testing.T, r *testenv.Redis, callRef string, want int, timeout time.Duration) []notify.CDR {
	t.Helper()
	var out []notify.CDR
	testenv.WaitFor(t, timeout, func() error {
		out = out[:0]
		for _, e := range campaignsEntries(t, r, callRef) {
			if e.Type != "cdr" {
				continue
			}
			b, _ := json.Marshal(e.Payload)
			var c notify.CDR
			if err := json.Unmarshal(b, &c); err != nil {
				return err
			}
			out = append(out, c)
		}
		if len(out) != want {
			return fmt.Errorf("%d CDRs for %s, want %d", len(out), callRef, want)
		}
		return nil
	})
	return out
}

// Click-to-dial rings the agent first; only once the agent answered is the
// customer dialed, through the line groups with their failover (the first
// carrier answers 503, the second answers); the two are bridged with
// media relayed both ways; every customer attempt's CDR names the agent and
// carries the call_ref given; the outbound "call" notification is on
// <prefix>:campaigns before the answered call's CDR.
func TestClickToDialAgentFirstThenCustomerWithFailover(t *testing.T) {
	r := testenv.StartRedis(t)
	// The agent rings for 700 ms before answering, so a customer dialed
	// before the answer would show up long before the agent's ACK.
	agent := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_dest_rtp.xml"), Args: []string{"-m", "1", "-d", "700"},
		Files: []string{scenario(t, "pcmu_tone.ulaw")}, Trace: true})
	down := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_503.xml"), Args: []string{"-m", "1"}, Trace: true})
	customer := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"),
		Args: []string{"-m", "1", "-rtp_echo"}, Trace: true})
	setLine(t, r, "l1", "g1", "sip:"+down.Addr, "")
	setLine(t, r, "l2", "g2", "sip:"+customer.Addr, "")
	n := startNode(t, r.URL, "a")
	bindAgent(t, n, "1001", "a", agent)

	code, out := n.post("/api/v1/click2dial", map[string]any{"ext": "1001", "number": "15558000001",
		"line_group": []string{"g1", "g2"}, "call_ref": "c2d-given-1", "contact_ref": "contact-9"})
	if code != http.StatusAccepted || out["call_ref"] != "c2d-given-1" {
		t.Fatalf("POST /api/v1/click2dial: %d %v", code, out)
	}

	// Bridged: RTP flows agent -> customer and back (the customer echoes).
	var info struct {
		State string `json:"state"`
		Legs  []struct {
			Role       string `json:"role"`
			PacketsIn  uint64 `json:"packets_in"`
			PacketsOut uint64 `json:"packets_out"`
		} `json:"legs"`
	}
	testenv.WaitFor(t, 15*time.Second, func() error {
		info.Legs = nil
		if c := n.get("/api/v1/calls/c2d-given-1", &info); c != http.StatusOK {
			return fmt.Errorf("GET call: %d", c)
		}
		roles := map[string][2]uint64{}
		for _, l := range info.Legs {
			roles[l.Role] = [2]uint64{l.PacketsIn, l.PacketsOut}
		}
		ag, cu := roles["agent"], roles["callee"]
		if info.State != "bridged" || ag[0] < 20 || cu[1] < 20 || cu[0] < 20 || ag[1] < 20 {
			return fmt.Errorf("state %s, legs %+v", info.State, info.Legs)
		}
		return nil
	})
	// The notification is out as soon as the two are connected.
	entries := campaignsEntries(t, r, "c2d-given-1")
	if len(entries) != 2 || entries[0].Type != "cdr" || entries[1].Type != "call" {
		t.Fatalf("while bridged, campaigns entries = %+v; want the 503 attempt's CDR, then the call notification", entries)
	}
	note := entries[1].Payload
	want := map[string]any{"call_dir": "outbound", "campaign_ref": "click2dial", "number": "15558000001",
		"dial_number": "15550001111", "hold_time": float64(0), "call_ref": "c2d-given-1", "contact_ref": "contact-9", "ref": "1001"}
	for k, v := range want {
		if note[k] != v {
			t.Errorf("notification %s = %v, want %v (payload %v)", k, note[k], v, note)
		}
	}

	req, _ := http.NewRequest(http.MethodDelete, n.api+"/api/v1/calls/c2d-given-1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	cdrs := clickCDRs(t, r, "c2d-given-1", 2, 15*time.Second)
	for i, c := range cdrs {
		if c.Ext == nil || *c.Ext != "1001" || c.CampaignRef != "click2dial" || c.ContactRef != "contact-9" || c.Attempt != i+1 {
			t.Errorf("CDR %d: %+v", i+1, c)
		}
	}
	if cdrs[0].SIPCode != 503 || cdrs[0].Line != "l1" || cdrs[1].Disposition != "ANSWERED" || cdrs[1].Line != "l2" ||
		cdrs[1].ClientNumber != "15558000001" {
		t.Fatalf("CDRs: %+v / %+v", cdrs[0], cdrs[1])
	}
	entries = campaignsEntries(t, r, "c2d-given-1")
	if len(entries) != 3 || entries[1].Type != "call" || entries[2].Type != "cdr" || entries[2].Payload["disposition"] != "ANSWERED" {
		t.Fatalf("campaigns entries = %+v; want CDR (503), call notification, CDR (ANSWERED)", entries)
	}
	waitSipp(t, agent, 10*time.Second)
	waitSipp(t, down, 10*time.Second)
	waitSipp(t, customer, 10*time.Second)

	// Agent first: the carriers saw their INVITEs only after the agent's
	// ACK, that is after the agent answered. The times are each SIPp's
	// own, taken when its loop got to the message: redial writes the ACK
	// before it dials the customer, yet two processes on a loaded machine
	// may log them a little out of order, so the check allows 100 ms,
	// well under the agent's 700 ms of ringing.
	const skew = 100 * time.Millisecond
	agentAck := firstReceived(t, agent, "ACK ")
	if inv := firstReceived(t, agent, "INVITE "); agentAck.Sub(inv) < 600*time.Millisecond {
		t.Fatalf("agent: INVITE at %v, ACK at %v; want 700 ms of ringing between them", inv, agentAck)
	}
	for _, s := range []*testenv.Sipp{down, customer} {
		if inv := firstReceived(t, s, "INVITE "); inv.Before(agentAck.Add(-skew)) {
			t.Fatalf("carrier %s got its INVITE at %v, before the agent answered (ACK at %v)", s.Addr, inv, agentAck)
		}
	}
}

// An agent who does not answer gets one CDR (NO_ANSWER, ext set) and no
// customer is dialed; an agent who hangs up while the customer rings
// cancels the customer (CANCELLED, ext set). Bad requests name the field.
func TestClickToDialAgentNoAnswerAndAgentHangsUp(t *testing.T) {
	r := testenv.StartRedis(t)
	ringing := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_ring_noanswer.xml"), Args: []string{"-m", "1"}})
	leaving := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-m", "1", "-d", "1500"}})
	customer := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_ring_noanswer.xml"), Args: []string{"-m", "1"}, Trace: true})
	setLine(t, r, "l1", "g1", "sip:"+customer.Addr, "")
	n := startNode(t, r.URL, "a")
	bindAgent(t, n, "1001", "a", ringing)
	bindAgent(t, n, "1002", "a", leaving)

	for _, tc := range []struct {
		body  string
		field string
	}{
		{`{"number":"155580","line_group":"g1"}`, "ext"},
		{`{"ext":"1001","line_group":"g1"}`, "number"},
		{`{"ext":"1001","number":"155580"}`, "line_group"},
		{`{"ext":"1001","number":"155580","line_group":"g1","destination":{}}`, "destination"},
		{`{"ext":"10 01","number":"155580","line_group":"g1"}`, "ext"},
	} {
		code, out := n.post("/api/v1/click2dial", tc.body)
		if msg, _ := out["error"].(string); code != http.StatusBadRequest || !strings.HasPrefix(msg, tc.field) {
			t.Errorf("POST %s: %d %v; want 400 naming %s", tc.body, code, out, tc.field)
		}
	}

	code, out := n.post("/api/v1/click2dial", map[string]any{"ext": "1001", "number": "15558000002", "line_group": "g1",
		"variables": map[string]string{"agent_ring_timeout": "1"}})
	if code != http.StatusAccepted {
		t.Fatalf("POST /api/v1/click2dial: %d %v", code, out)
	}
	ref := out["call_ref"].(string)
	c := clickCDRs(t, r, ref, 1, 15*time.Second)[0]
	if c.Disposition != "NO_ANSWER" || c.Ext == nil || *c.Ext != "1001" || c.ClientNumber != "15558000002" || c.CampaignRef != "click2dial" {
		t.Fatalf("agent did not answer: CDR %+v", c)
	}
	var info struct {
		State string `json:"state"`
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if n.get("/api/v1/calls/"+ref, &info); info.State != "ended" {
			return fmt.Errorf("state %q", info.State)
		}
		return nil
	})
	if got := strings.Count(readSippMessages(t, customer), "INVITE sip:"); got != 0 {
		t.Fatalf("customer got %d INVITEs though the agent never answered", got)
	}
	waitSipp(t, ringing, 10*time.Second)

	code, out = n.post("/api/v1/click2dial", map[string]any{"ext": "1002", "number": "15558000003", "line_group": "g1",
		"campaign_ref": "crm"})
	if code != http.StatusAccepted {
		t.Fatalf("POST /api/v1/click2dial: %d %v", code, out)
	}
	ref = out["call_ref"].(string)
	c = clickCDRs(t, r, ref, 1, 15*time.Second)[0]
	if c.Disposition != "CANCELLED" || c.Ext == nil || *c.Ext != "1002" || c.CampaignRef != "crm" || c.Line != "l1" {
		t.Fatalf("agent hung up while the customer rang: CDR %+v", c)
	}
	for _, e := range campaignsEntries(t, r, ref) {
		if e.Type != "cdr" {
			t.Fatalf("a call that never connected got a %q notification: %v", e.Type, e.Payload)
		}
	}
	waitSipp(t, leaving, 10*time.Second)
	waitSipp(t, customer, 10*time.Second) // got its CANCEL
}
