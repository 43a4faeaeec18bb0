package app

import (
	"context"

	"strings"
	"testing"
	"time"

	"redial/internal/store"
	"redial/internal/testenv"
)

// A desk phone registered over UDP (a SIPp UAS; its binding written as
// the registrar writes one) is the agent behind {"type":"user"}: an
// originated call (as campaigns and schedules place them) and an IVR
// transfer both ring it and bridge to it, and each CDR names the agent; a
// user nobody can answer fails the call with no INVITE sent anywhere.
func TestUserTargetFromOriginateAndIVRTransfer(t *testing.T) {
	r := testenv.StartRedis(t)
	customer := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", "3"}})
	agent := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-m", "2", "-d", "700"}})
	setLine(t, r, "l1", "g1", "sip:"+customer.Addr, "")
	setDialplan(t, r, "default:1001", `{"type":"user","user":"1001"}`)
	setDialplan(t, r, "default:1002", `{"type":"user","user":"1002"}`)
	setDialplan(t, r, "default:toagent", `{"type":"ivr","script":"xfer"}`)
	setScript(t, r, "xfer", `{"start":1,"components":[{"oId":1,"oType":203,"number":"1001","reinviteMode":2}]}`)
	n := startNode(t, r.URL, "a")
	if err := n.Store.PutBinding(context.Background(), store.Binding{ID: "sip:1001@" + agent.Addr, Ext: "1001", Node: "a",
		Transport: "udp", Contact: "sip:1001@" + agent.Addr, Source: agent.Addr, UserAgent: "SIPp",
		Expires: time.Now().Add(time.Hour), Registered: time.Now()}); err != nil {
		t.Fatal(err)
	}
	direct := originate(t, n, map[string]any{"number": "15557000001", "line_group": []string{"g1"}, "destination": dest("1001")})
	viaIVR := originate(t, n, map[string]any{"number": "15557000002", "line_group": []string{"g1"}, "destination": dest("toagent")})
	for _, ref := range []string{direct, viaIVR} {
		c := cdrsFor(t, r, ref, 1, 20*time.Second)[0]
		if c.Disposition != "ANSWERED" || c.Ext == nil || *c.Ext != "1001" {
			t.Fatalf("call %s: CDR %+v", ref, c)
		}
	}
	// An outbound call connected to an agent: seed 001's notification on
	// the campaigns list, before its CDR (DESIGN.md).
	for _, ref := range []string{direct, viaIVR} {
		env := campaignsEntries(t, r, ref)
		if len(env) != 2 || env[0].Type != "call" || env[1].Type != "cdr" {
			t.Fatalf("call %s: campaigns list entries %+v, want the call notification then the CDR", ref, env)
		}
		if p := env[0].Payload; p["call_dir"] != "outbound" || p["ref"] != "1001" || p["number"] == "" {
			t.Fatalf("call %s: notification %v", ref, p)
		}
	}
	waitSipp(t, agent, 15*time.Second)

	nobody := originate(t, n, map[string]any{"number": "15557000003", "line_group": []string{"g1"}, "destination": dest("1002")})
	c := cdrsFor(t, r, nobody, 1, 20*time.Second)[0]
	if c.Ext == nil || *c.Ext != "1002" || !strings.Contains(c.Variables["redial_reason"], "not registered") {
		t.Fatalf("user nobody can answer: CDR %+v", c)
	}
}
