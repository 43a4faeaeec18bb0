package app

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"redial/internal/config"
	"redial/internal/testenv"
)

// Redis (AOF on) killed for 20 s while 10 calls are up on two nodes, and
// restarted: every call's CDR and the acknowledgement of its number were
// spooled together and are carried out in order once Redis is back, so no
// claim is left in any processing or invited key and :interrupted holds
// no number (every number has its ANSWERED CDR). The heartbeats lapse
// during the outage; neither node may bury the other for it.
func TestRedisOutageWithCallsInFlight(t *testing.T) {
	const total = 10
	r := testenv.StartRedisWith(t, testenv.RedisOptions{AOF: true})
	// The carrier hangs up 4 s after answering: during the outage.
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-d", "4000", "-trace_msg"}})
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml")})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setDialplan(t, r, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, destination.Addr))
	setTask(t, r, "cti_queue_dialer_task@template", "outage", `{"params":{"enable":true,"line_group":["g1"],"limit":5,"number_queue":"{oq}","destination_extension":"8888"}}`, "")
	shortTTL := func(c *config.Node) { c.HeartbeatTTL = 2 * time.Second }
	nodes := []*node{startNodeCfg(t, r.URL, "o1", shortTTL), startNodeCfg(t, r.URL, "o2", shortTTL)}
	nums := numberList("1555600", total)
	pushNumbers(t, r, "{oq}", nums...)

	active := func() int {
		n := 0
		for _, nd := range nodes {
			for _, c := range nd.Calls.Calls() {
				if c.Answer != nil {
					n++
				}
			}
		}
		return n
	}
	testenv.WaitFor(t, 30*time.Second, func() error {
		if a := active(); a != total {
			return fmt.Errorf("%d of %d calls answered and up", a, total)
		}
		return nil
	})
	r.Stop()
	killed := time.Now()
	testenv.WaitFor(t, 30*time.Second, func() error {
		if a := active(); a != 0 {
			return fmt.Errorf("%d calls still up", a)
		}
		return nil
	})
	spooled := 0
	for _, nd := range nodes {
		spooled += nd.Notify.Spooled()
	}
	if spooled < 2*total {
		t.Fatalf("%d records spooled during the outage, want at least %d (a CDR and an ack per call)", spooled, 2*total)
	}
	// The outage lasts 20 s in all, ten heartbeat TTLs.
	<-time.After(time.Until(killed.Add(20 * time.Second)))
	r.Restart(t)

	ctx := context.Background()
	testenv.WaitFor(t, 30*time.Second, func() error {
		for _, nd := range nodes {
			if n := nd.Notify.Spooled(); n > 0 {
				return fmt.Errorf("node %s: %d records still spooled", nd.Cfg.Host, n)
			}
		}
		keys, err := r.Client.Keys(ctx, "{oq}:*").Result()
		if err != nil {
			return err
		}
		for _, k := range keys {
			switch k {
			case "{oq}:holders", "{oq}:interrupted", "{oq}:invalid":
				continue
			}
			n, _ := r.Client.Exists(ctx, k).Result()
			if n > 0 {
				return fmt.Errorf("%s still holds claims", k)
			}
		}
		return nil
	})
	cdrs := campaignCDRs(t, r, "outage")
	if len(cdrs) != total {
		t.Fatalf("%d CDRs after the outage, want %d", len(cdrs), total)
	}
	withCDR := map[string]bool{}
	for _, c := range cdrs {
		if c["disposition"] != "ANSWERED" {
			t.Fatalf("CDR %v: want ANSWERED", c)
		}
		withCDR[c["client_number"].(string)] = true
	}
	parked, _ := r.Client.LRange(ctx, "{oq}:interrupted", 0, -1).Result()
	for _, p := range parked {
		var it struct {
			Item string `json:"item"`
		}
		json.Unmarshal([]byte(p), &it)
		if withCDR[it.Item] {
			t.Errorf("number %s has an ANSWERED CDR and sits in {oq}:interrupted: %s", it.Item, p)
		}
	}
	if len(parked) > 0 {
		t.Fatalf("%d numbers in {oq}:interrupted after an outage that lost no call", len(parked))
	}
	if q, _ := r.Client.LLen(ctx, "{oq}").Result(); q != 0 {
		t.Fatalf("%d numbers back in the queue (would be dialed twice)", q)
	}
	per := invitesPerNumber(t, carrier)
	for _, n := range nums {
		if per[n] != 1 {
			t.Fatalf("number %s got %d INVITEs, want 1", n, per[n])
		}
	}
}
