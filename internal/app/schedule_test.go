package app

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/testenv"
)

func scheduleMember(number, config string, expires int64) string {
	return fmt.Sprintf(`{"params":{"number":%q,"expires":%d,"config":%q},"variables":{"x_sched":"1"}}`, number, expires, config)
}

func addScheduled(t testing.TB, r *testenv.Redis, member string, at time.Time) {
	t.Helper()
	score := float64(at.UnixMilli()) / 1000
	if err := r.Client.ZAdd(context.Background(), "cti_schedule_dialer_number@default", redisZMember(score, member)).Err(); err != nil {
		t.Fatal(err)
	}
}

// A member due now and one due in 3 s are dialed once each, at their time;
// an expired one yields an EXPIRED CDR instead of vanishing.
func TestScheduledMembers(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_486.xml"), Args: []string{"-m", "2", "-trace_msg"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	r.Client.HSet(context.Background(), "cti_schedule_dialer_config@default", "remind",
		`{"params":{"line_group":["g1"],"destination_extension":"8888","destination_dialplan":"XML","destination_context":"default"},"variables":{"origination_caller_id_number":"15550009999"}}`)
	startNode(t, r.URL, "n1")
	now := time.Now()
	addScheduled(t, r, scheduleMember("15557000001", "remind", 0), now)
	addScheduled(t, r, scheduleMember("15557000002", "remind", 0), now.Add(3*time.Second))
	addScheduled(t, r, scheduleMember("15557000003", "remind", now.Add(-time.Minute).Unix()), now.Add(-2*time.Second))
	cdrs := waitCDRs(t, r, "remind", 3, 15*time.Second)
	byNumber := map[string]map[string]any{}
	for _, c := range cdrs {
		byNumber[c["client_number"].(string)] = c
	}
	if c := byNumber["15557000003"]; c == nil || c["disposition"] != "EXPIRED" || c["sip_code"].(float64) != 0 {
		t.Fatalf("expired member: %v", c)
	}
	for _, n := range []string{"15557000001", "15557000002"} {
		if c := byNumber[n]; c == nil || c["disposition"] != "BUSY" || c["variables"].(map[string]any)["x_sched"] != "1" {
			t.Fatalf("member %s: %v", n, c)
		}
	}
	start2, _ := time.Parse(time.RFC3339, byNumber["15557000002"]["start"].(string))
	if start2.Before(now.Add(2 * time.Second).Truncate(time.Second)) {
		t.Fatalf("member due in 3s was dialed at %v (scheduled at %v)", start2, now.Add(3*time.Second))
	}
	waitSipp(t, carrier, 5*time.Second)
	per := invitesPerNumber(t, carrier)
	if per["15557000001"] != 1 || per["15557000002"] != 1 || per["15557000003"] != 0 {
		t.Fatalf("INVITEs per number: %v", per)
	}
	if n, _ := r.Client.ZCard(context.Background(), "cti_schedule_dialer_number@default").Result(); n != 0 {
		t.Fatalf("%d members left", n)
	}
}

// With no free line a member is written back at now+60.
func TestScheduledNoLineWrittenBack(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "full", "g1", "sip:127.0.0.1:9", `,"limit":0`)
	r.Client.HSet(context.Background(), "cti_schedule_dialer_config@default", "remind",
		`{"params":{"line_group":["g1"],"destination_extension":"8888"}}`)
	startNode(t, r.URL, "n1")
	member := scheduleMember("15557000010", "remind", 0)
	before := time.Now()
	addScheduled(t, r, member, before)
	testenv.WaitFor(t, 5*time.Second, func() error {
		score, err := r.Client.ZScore(context.Background(), "cti_schedule_dialer_number@default", member).Result()
		if err != nil {
			return err
		}
		at := time.UnixMilli(int64(score * 1000))
		if at.Before(before.Add(59*time.Second)) || at.After(time.Now().Add(61*time.Second)) {
			return fmt.Errorf("member due at %v, want about now+60s", at)
		}
		return nil
	})
	if cdrs := campaignCDRs(t, r, "remind"); len(cdrs) != 0 {
		t.Fatalf("a member that found no line got a CDR: %v", cdrs)
	}
}

// callbackDocs writes an account whose vmbox has unread messages, an owner
// and a voicemail-check callflow reached through the dialplan.
func callbackDocs(t testing.TB, r *testenv.Redis, schedule string) {
	t.Helper()
	ctx := context.Background()
	r.Client.HSet(ctx, "account", "acc1", `{"name":"Acme","voicemail":{"notify":{"callback":{"timeout_s":5}}}}`)
	r.Client.HSet(ctx, "user@acc1", "u1", `{"first_name":"Ann","voicemail":{"notify":{"callback":{"number":"15558000001","disabled":true}}}}`)
	r.Client.HSet(ctx, "vmbox@acc1", "vb1", fmt.Sprintf(`{"owner_id":"u1","mailbox":"1001","notify":{"callback":{"disabled":false,"schedule":%s}},"messages":[{"media_id":"m1","folder":"new"},{"media_id":"m0","folder":"saved"}]}`, schedule))
	r.Client.HSet(ctx, "callflow@acc1", "cf-main", `{"numbers":["1001"],"flow":{"module":"user","data":{"id":"u1"}}}`,
		"cf-vm", `{"numbers":["*97"],"flow":{"module":"voicemail","data":{"action":"check","single_mailbox_login":true}}}`)
	r.Client.HSet(ctx, "system_config", "ananke", `{"line_group":["g1"]}`)
	r.Client.HSet(ctx, "cti_dialplan@default", "default:*97", `{"type":"hangup"}`)
}

func pushEvent(t testing.TB, r *testenv.Redis, ev string) {
	t.Helper()
	if err := r.Client.LPush(context.Background(), "redial:events", ev).Err(); err != nil {
		t.Fatal(err)
	}
}

func startTimes(t testing.TB, cdrs []map[string]any) []time.Time {
	var out []time.Time
	for _, c := range cdrs {
		s, _ := time.Parse(time.RFC3339, c["start"].(string))
		out = append(out, s)
	}
	return out
}

// A vmbox with schedule [1,1,1] whose owner is busy twice and then answers
// gets exactly three attempts about a second apart; the same event pushed
// twice, to two nodes, still makes one plan.
func TestCallbackPlan(t *testing.T) {
	r := testenv.StartRedis(t)
	callee := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_busy_then_answer.xml"), Args: []string{"-m", "3", "-trace_msg"}})
	setLine(t, r, "l1", "g1", "sip:"+callee.Addr, "")
	callbackDocs(t, r, "[1,1,1]")
	startNode(t, r.URL, "n1")
	startNode(t, r.URL, "n2")
	pushEvent(t, r, `{"event_name":"voicemail_saved","account_id":"acc1","vmbox_id":"vb1"}`)
	pushEvent(t, r, `{"Event-Name":"voicemail_saved","Account-ID":"acc1","Voicemail-Box":"vb1"}`)
	cdrs := waitCDRs(t, r, "callback:vb1", 3, 20*time.Second)
	want := []string{"BUSY", "BUSY", "ANSWERED"}
	for i, c := range cdrs {
		if c["disposition"] != want[i] || c["client_number"] != "15558000001" {
			t.Fatalf("attempt %d: %v", i+1, c)
		}
	}
	ts := startTimes(t, cdrs)
	for i := 1; i < len(ts); i++ {
		if gap := ts[i].Sub(ts[i-1]); gap < time.Second || gap > 3*time.Second {
			t.Fatalf("attempts %d and %d are %v apart, want about 1s", i, i+1, gap)
		}
	}
	waitSipp(t, callee, 10*time.Second)
	// The plan is over: no fourth call, no plan left.
	testenv.WaitFor(t, 5*time.Second, func() error {
		n, _ := r.Client.HLen(context.Background(), "redial:{callback}:plans").Result()
		if n != 0 {
			return fmt.Errorf("%d plans left", n)
		}
		return nil
	})
	if per := invitesPerNumber(t, callee); per["15558000001"] != 3 {
		t.Fatalf("callee got %d INVITEs, want 3", per["15558000001"])
	}
	ended, _ := r.Client.LRange(context.Background(), "redial:{callback}:ended", 0, -1).Result()
	if len(ended) != 1 || !strings.Contains(ended[0], "answered") {
		t.Fatalf("ended plans: %v", ended)
	}
}

// Marking the messages saved stops the plan before its next attempt.
func TestCallbackStopsWhenMessagesSaved(t *testing.T) {
	r := testenv.StartRedis(t)
	callee := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_486.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+callee.Addr, "")
	callbackDocs(t, r, "[1,2,2]")
	startNode(t, r.URL, "n1")
	pushEvent(t, r, `{"event_name":"voicemail_saved","account_id":"acc1","vmbox_id":"vb1"}`)
	waitCDRs(t, r, "callback:vb1", 1, 10*time.Second)
	r.Client.HSet(context.Background(), "vmbox@acc1", "vb1", `{"owner_id":"u1","notify":{"callback":{"schedule":[1,2,2]}},"messages":[{"media_id":"m1","folder":"saved"}]}`)
	var ended []string
	testenv.WaitFor(t, 10*time.Second, func() error {
		ended, _ = r.Client.LRange(context.Background(), "redial:{callback}:ended", 0, -1).Result()
		if len(ended) != 1 {
			return fmt.Errorf("plan not ended yet")
		}
		return nil
	})
	if !strings.Contains(ended[0], "no unread messages") {
		t.Fatalf("ended: %v", ended)
	}
	if n := len(campaignCDRs(t, r, "callback:vb1")); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}

// A cron check_voicemail tick plans the callback like voicemail_saved, once
// per cluster however many nodes run.
func TestCronCheckVoicemail(t *testing.T) {
	r := testenv.StartRedis(t)
	callee := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", "1", "-trace_msg"}})
	setLine(t, r, "l1", "g1", "sip:"+callee.Addr, "")
	callbackDocs(t, r, "[0]")
	r.Client.HSet(context.Background(), "system_config", "ananke",
		`{"line_group":["g1"],"schedules":[{"type":"periodic","seconds":1,"action":{"type":"check_voicemail","account_id":"acc1","vmbox_id":"vb1"}}]}`)
	n1 := startNode(t, r.URL, "n1")
	n2 := startNode(t, r.URL, "n2")
	cdrs := waitCDRs(t, r, "callback:vb1", 1, 10*time.Second)
	if cdrs[0]["disposition"] != "ANSWERED" {
		t.Fatalf("cdr: %v", cdrs[0])
	}
	waitSipp(t, callee, 5*time.Second)
	// Stop the plan from coming back: the message is heard.
	r.Client.HSet(context.Background(), "vmbox@acc1", "vb1", `{"owner_id":"u1","messages":[{"folder":"saved"}]}`)
	// Each tick ran on exactly one node: the guard keys, one per tick, were
	// each taken once, so ticks run == guard keys.
	testenv.WaitFor(t, 5*time.Second, func() error {
		keys, _ := r.Client.Keys(context.Background(), "redial:cron:*").Result()
		ran := counterValue(t, n1, "redial_cron_ticks_total") + counterValue(t, n2, "redial_cron_ticks_total")
		if ran < 2 || int(ran) != len(keys) {
			return fmt.Errorf("ticks run %v, guard keys %d", ran, len(keys))
		}
		return nil
	})
}

func counterValue(t testing.TB, n *node, name string) float64 {
	t.Helper()
	v, _ := testenv.Metric(t, n.Registry, name, nil)
	return v
}

func redisZMember(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }

// A node killed in the middle of a callback attempt: another node picks the
// plan up and finishes it.
func TestCallbackPlanSurvivesNodeKill(t *testing.T) {
	r := testenv.StartRedis(t)
	callee := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_ring_noanswer.xml"), Args: []string{"-trace_msg"}})
	setLine(t, r, "l1", "g1", "sip:"+callee.Addr, "")
	callbackDocs(t, r, "[1,1,1]")
	ctx := context.Background()
	r.Client.HSet(ctx, "vmbox@acc1", "vb1", `{"owner_id":"u1","notify":{"callback":{"disabled":false,"schedule":[1,1,1],"timeout_s":3}},"messages":[{"folder":"new"}]}`)
	procs := map[string]*exec.Cmd{"a": startProcess(t, r.URL, "a"), "b": startProcess(t, r.URL, "b")}
	pushEvent(t, r, `{"event_name":"voicemail_saved","account_id":"acc1","vmbox_id":"vb1"}`)
	var holder string
	testenv.WaitFor(t, 20*time.Second, func() error {
		for h := range procs {
			n := r.Client.LLen(ctx, "redial:{callback}:claimed:"+h).Val() + r.Client.LLen(ctx, "redial:{callback}:dialing:"+h).Val()
			if n == 1 {
				holder = h
				return nil
			}
		}
		return fmt.Errorf("no node is attempting the plan")
	})
	procs[holder].Process.Kill()
	procs[holder].Wait()
	var ended []string
	testenv.WaitFor(t, 40*time.Second, func() error {
		ended, _ = r.Client.LRange(ctx, "redial:{callback}:ended", 0, -1).Result()
		if len(ended) == 0 {
			return fmt.Errorf("plan still running")
		}
		return nil
	})
	if !strings.Contains(ended[0], "3 attempts made") || strings.Contains(ended[0], `"host":"`+holder+`"`) {
		t.Fatalf("plan ended as %s (killed node %s)", ended[0], holder)
	}
	if n := len(campaignCDRs(t, r, "callback:vb1")); n != 3 {
		t.Fatalf("%d attempts recorded, want 3", n)
	}
}
