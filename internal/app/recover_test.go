package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"redial/internal/cluster"
	"redial/internal/config"
	"redial/internal/store"
	"redial/internal/testenv"
)

// kill -9 of a node that holds a claim in every ledger — a queue number
// whose INVITE may have gone out, a scheduled member, a callback event and
// a callback plan — and the survivor recovers each exactly once, each as
// its ledger says: the number to <queue>:interrupted, the member back at
// its score, the event back to be read, the plan due again.
func TestSurvivorRecoversEveryLedgerOnce(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	// The task is disabled: its queue's ledger is looked after, but the
	// survivor dials nothing.
	setTask(t, r, "cti_queue_dialer_task@template", "rq", `{"params":{"enable":false,"line_group":["g1"],"limit":1,"number_queue":"{rq}","destination_extension":"8888"}}`, "")
	victim := startProcess(t, r.URL, "victim")
	vs := store.NewWithClient(r.Client, store.Config{Host: "victim", Domain: "default"})
	// Wait until the victim heartbeats and has adopted the queue, which it
	// does right after settling its own (empty) ledgers at start.
	testenv.WaitFor(t, 30*time.Second, func() error {
		if n, _ := r.Client.SIsMember(ctx, "{rq}:holders", "victim").Result(); !n {
			return fmt.Errorf("victim has not adopted the queue yet")
		}
		if n, _ := r.Client.Exists(ctx, vs.AliveKey("victim")).Result(); n != 1 {
			return fmt.Errorf("victim not heartbeating")
		}
		return nil
	})
	// Claims written before the victim has settled its own leftovers in
	// a ledger would be settled by the victim itself; its metrics say
	// when all five ledgers are settled (queue, schedule, callback events
	// and plans, and the inbound queues' waiting callers).
	testenv.WaitFor(t, 30*time.Second, func() error {
		m, err := processMetrics(ctx, vs, "victim")
		if err != nil {
			return err
		}
		if m["redial_claims_ledgers"] != 5 || m["redial_claims_ledgers_unsettled"] != 0 {
			return fmt.Errorf("victim's ledgers: %v registered, %v unsettled", m["redial_claims_ledgers"], m["redial_claims_ledgers_unsettled"])
		}
		return nil
	})
	// The queue claim is taken through the ledger (the disabled task never
	// claims). The other ledgers' sources are read by the running victim,
	// which would race the test for them; their in-flight claims are
	// written into the victim's ledger keys as its own claims would be.
	queue := vs.QueueLedger("{rq}", false)
	pushNumbers(t, r, "{rq}", "15557000001")
	raw, ok, err := queue.ClaimBlocking(ctx, time.Second)
	if err != nil || !ok {
		t.Fatalf("claim queue item: %v %v", ok, err)
	}
	if err := queue.Mark(ctx, raw); err != nil {
		t.Fatal(err)
	}
	sched, events, plans := vs.ScheduleLedger(), vs.EventsLedger(), vs.PlansLedger()
	member := `{"params":{"number":"15557000002","config":"none"}}`
	score := fmt.Sprint(time.Now().Add(time.Hour).Unix())
	plan := store.PlanField("acc", "vb")
	pipe := r.Client.TxPipeline()
	sk, ek, pk := sched.Keys("victim"), events.Keys("victim"), plans.Keys("victim")
	pipe.LPush(ctx, sk.Processing, member)
	pipe.HSet(ctx, sk.Scores, member, score)
	pipe.SAdd(ctx, sk.Holders, "victim")
	pipe.LPush(ctx, ek.Processing, `{"event_name":"not_voicemail"}`)
	pipe.SAdd(ctx, ek.Holders, "victim")
	pipe.HSet(ctx, pk.Payload, plan, `{"account_id":"acc","vmbox_id":"vb","schedule_s":[1]}`)
	pipe.LPush(ctx, pk.Dialing, plan) // marked: its INVITE may have gone out
	pipe.HSet(ctx, pk.Scores, plan, fmt.Sprint(time.Now().UnixMilli()))
	pipe.SAdd(ctx, pk.Holders, "victim")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}

	survivor := startNodeCfg(t, r.URL, "survivor", func(c *config.Node) { c.HeartbeatTTL = 2 * time.Second })
	// Let the survivor trust its heartbeat before the kill, so the death is
	// noticed within one TTL.
	testenv.WaitFor(t, 20*time.Second, func() error {
		if !survivor.Directory.Trusted() {
			return fmt.Errorf("survivor not trusted yet")
		}
		return nil
	})
	victim.Process.Kill()
	victim.Wait()
	killed := time.Now()

	testenv.WaitFor(t, 30*time.Second, func() error {
		for _, l := range []*store.Ledger{queue, sched, events, plans} {
			k := l.Keys("victim")
			if n := r.Client.LLen(ctx, k.Processing).Val() + r.Client.LLen(ctx, k.Dialing).Val(); n != 0 {
				return fmt.Errorf("%s: victim still holds %d claims", l.Name(), n)
			}
		}
		return nil
	})
	if took := time.Since(killed); took > 8*time.Second {
		t.Errorf("recovery took %v after the kill, want about one heartbeat TTL (2s) plus a poll", took)
	}

	// The scheduled member is back at its own score (an hour from now).
	if sc, err := r.Client.ZScore(ctx, vs.ScheduleNumbersKey(), member).Result(); err != nil || fmt.Sprint(int64(sc)) != score {
		t.Fatalf("scheduled member back at %v (%v), want %s", sc, err, score)
	}
	// Each ledger's claim was recovered once, and went where it should.
	got := recoveredCounts(t, survivor)
	want := map[string]float64{"queue {rq}/interrupted": 1, "schedule/source": 1, "events/source": 1, "plans/source_interrupted": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("recovered %s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok && v != 0 {
			t.Errorf("unexpected recovery %s = %v", k, v)
		}
	}
	parked, _ := r.Client.LRange(ctx, "{rq}:interrupted", 0, -1).Result()
	if len(parked) != 1 || !strings.Contains(parked[0], "15557000001") {
		t.Fatalf("{rq}:interrupted = %v, want the one marked number", parked)
	}
	var p store.ParkedItem
	if err := json.Unmarshal([]byte(parked[0]), &p); err != nil || p.Item != raw || p.Host != "victim" {
		t.Fatalf("parked entry %s: %+v %v", parked[0], p, err)
	}
	if q, _ := r.Client.LLen(ctx, "{rq}").Result(); q != 0 {
		t.Fatalf("the marked number went back to the queue (would be dialed twice)")
	}
	// The event was read again by the survivor (and moved aside: it is no
	// voicemail_saved); the plan was attempted again and ended (no vmbox).
	testenv.WaitFor(t, 20*time.Second, func() error {
		inv, _ := r.Client.LRange(ctx, events.Keys("").Invalid, 0, -1).Result()
		if len(inv) != 1 || !strings.Contains(inv[0], "not_voicemail") {
			return fmt.Errorf("events invalid list: %v", inv)
		}
		ended, _ := vs.EndedPlans(ctx, 10)
		if len(ended) != 1 || ended[0].Host != "survivor" {
			return fmt.Errorf("ended plans: %+v", ended)
		}
		return nil
	})
}

// recoveredCounts reads redial_claims_recovered_total by "ledger/to".
// processMetrics reads the unlabelled gauges and counters of a node's
// /metrics, at the HTTP address it registered in the node directory.
func processMetrics(ctx context.Context, st *store.Store, host string) (map[string]float64, error) {
	recs, err := st.NodeRecords(ctx)
	if err != nil {
		return nil, err
	}
	var info cluster.NodeInfo
	for _, rec := range recs {
		if rec.Host == host {
			if err := json.Unmarshal([]byte(rec.Info), &info); err != nil {
				return nil, fmt.Errorf("node %s: %w", host, err)
			}
		}
	}
	if info.HTTP == "" {
		return nil, fmt.Errorf("node %s has not registered its HTTP address", host)
	}
	resp, err := http.Get("http://" + info.HTTP + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

func recoveredCounts(t *testing.T, n *node) map[string]float64 {
	t.Helper()
	mfs, err := n.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "redial_claims_recovered_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[label(m, "ledger")+"/"+label(m, "to")] = m.GetCounter().GetValue()
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
