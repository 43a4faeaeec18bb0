package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/store"
	"redial/internal/testenv"
)

// The campaign_test.go helpers take a *testenv.Redis; these take any
// go-redis client, so the same flows run on a Cluster and behind Sentinel.

func uniHSet(t testing.TB, rdb redis.UniversalClient, key, field, value string) {
	t.Helper()
	if err := rdb.HSet(context.Background(), key, field, value).Err(); err != nil {
		t.Fatalf("HSET %s %s: %v", key, field, err)
	}
}

func uniPush(t testing.TB, rdb redis.UniversalClient, key string, items ...string) {
	t.Helper()
	args := make([]any, len(items))
	for i, it := range items {
		args[i] = it
	}
	if err := rdb.LPush(context.Background(), key, args...).Err(); err != nil {
		t.Fatalf("LPUSH %s: %v", key, err)
	}
}

// uniCDRs returns every CDR payload on the campaigns list, oldest first.
func uniCDRs(t testing.TB, rdb redis.UniversalClient) ([]map[string]any, error) {
	t.Helper()
	raw, err := rdb.LRange(context.Background(), "enigma:notifications:campaigns", 0, -1).Result()
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for i := len(raw) - 1; i >= 0; i-- {
		var env cdrEnvelope
		if err := json.Unmarshal([]byte(raw[i]), &env); err != nil {
			return nil, fmt.Errorf("CDR %q: %w", raw[i], err)
		}
		if env.Type == "cdr" {
			out = append(out, env.Payload)
		}
	}
	return out, nil
}

// flows is a campaign, scheduled calls and callbacks set up in one Redis.
type flows struct {
	queue     string
	numbers   []string // campaign numbers
	scheduled []string // scheduled members' numbers
	callbacks []string // callback owners' numbers (vmbox vb<i> calls the i-th)
	carrier   *testenv.Sipp
}

// setupFlows writes a line to a SIPp carrier that answers and hangs up
// after 600 ms (the call bridged to a SIPp destination meanwhile), a task
// of total numbers on queue (limit 4 per node), sched scheduled members
// due over the next seconds and cb vmboxes with an unread message whose
// voicemail_saved events are pushed.
func setupFlows(t testing.TB, rdb redis.UniversalClient, queue string, total, sched, cb int) *flows {
	t.Helper()
	f := &flows{queue: queue}
	f.carrier = testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-d", "600", "-trace_msg"}})
	dest := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml")})
	target := fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, dest.Addr)
	uniHSet(t, rdb, "cti_line@default", "l1", fmt.Sprintf(`{"params":{"group":"g1","uri":"sip:%s","enable":true},"variables":{"origination_caller_id_number":"15550001111"}}`, f.carrier.Addr))
	uniHSet(t, rdb, "cti_dialplan@default", "default:8888", target)
	uniHSet(t, rdb, "cti_dialplan@default", "default:*97", target)
	uniHSet(t, rdb, "cti_queue_dialer_task@template", "camp",
		fmt.Sprintf(`{"params":{"enable":true,"line_group":["g1"],"limit":4,"number_queue":%q,"destination_extension":"8888"}}`, queue))
	uniHSet(t, rdb, "cti_schedule_dialer_config@default", "remind",
		`{"params":{"line_group":["g1"],"destination_extension":"8888","destination_dialplan":"XML","destination_context":"default"}}`)
	ctx := context.Background()
	now := time.Now()
	for i := 0; i < sched; i++ {
		n := fmt.Sprintf("155571%05d", i)
		f.scheduled = append(f.scheduled, n)
		at := float64(now.Add(time.Duration(i)*200*time.Millisecond).UnixMilli()) / 1000
		if err := rdb.ZAdd(ctx, "cti_schedule_dialer_number@default", redis.Z{Score: at, Member: scheduleMember(n, "remind", 0)}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	uniHSet(t, rdb, "account", "acc1", `{"name":"Acme","voicemail":{"notify":{"callback":{"timeout_s":5}}}}`)
	uniHSet(t, rdb, "callflow@acc1", "cf-vm", `{"numbers":["*97"],"flow":{"module":"voicemail","data":{"action":"check"}}}`)
	uniHSet(t, rdb, "system_config", "ananke", `{"line_group":["g1"]}`)
	for i := 0; i < cb; i++ {
		n := fmt.Sprintf("155581%05d", i)
		f.callbacks = append(f.callbacks, n)
		uniHSet(t, rdb, "user@acc1", fmt.Sprintf("u%d", i), fmt.Sprintf(`{"voicemail":{"notify":{"callback":{"number":%q}}}}`, n))
		uniHSet(t, rdb, "vmbox@acc1", fmt.Sprintf("vb%d", i), fmt.Sprintf(`{"owner_id":"u%d","notify":{"callback":{"schedule":[1]}},"messages":[{"folder":"new"}]}`, i))
	}
	for i := 0; i < cb; i++ {
		uniPush(t, rdb, "redial:events", fmt.Sprintf(`{"event_name":"voicemail_saved","account_id":"acc1","vmbox_id":"vb%d"}`, i))
	}
	f.numbers = numberList("1555900", total)
	uniPush(t, rdb, queue, f.numbers...)
	return f
}

// wait waits until every number, member and callback has its CDR, then
// checks that each was dialed exactly once, answered, and that nothing is
// left claimed, queued or parked in any ledger of hosts.
func (f *flows) wait(t testing.TB, rdb redis.UniversalClient, hosts []string, timeout time.Duration) {
	t.Helper()
	want := len(f.numbers) + len(f.scheduled) + len(f.callbacks)
	var cdrs []map[string]any
	// Poll without failing at the deadline: the checks below say which
	// numbers are missing, which is what a failure needs to show.
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := uniCDRs(t, rdb)
		if err == nil {
			cdrs = got
		}
		if len(cdrs) >= want || time.Now().After(deadline) {
			break
		}
		<-tick.C
	}
	byNumber := map[string][]map[string]any{}
	for _, c := range cdrs {
		n, _ := c["client_number"].(string)
		byNumber[n] = append(byNumber[n], c)
	}
	campaigns := map[string]string{}
	for _, n := range f.numbers {
		campaigns[n] = "camp"
	}
	for _, n := range f.scheduled {
		campaigns[n] = "remind"
	}
	for i, n := range f.callbacks {
		campaigns[n] = fmt.Sprintf("callback:vb%d", i)
	}
	for n, camp := range campaigns {
		got := byNumber[n]
		if len(got) != 1 || got[0]["campaign_ref"] != camp || got[0]["disposition"] != "ANSWERED" {
			t.Errorf("number %s (%s): CDRs %v, want one ANSWERED", n, camp, got)
		}
	}
	if len(cdrs) != want {
		t.Errorf("%d CDRs, want %d", len(cdrs), want)
	}
	// Every claim is settled: no processing, claimed or invited key of any
	// host, nothing queued, parked or due.
	ctx := context.Background()
	st := store.NewWithClient(rdb, store.Config{Domain: "default"})
	testenv.WaitFor(t, 10*time.Second, func() error {
		for _, l := range []*store.Ledger{st.QueueLedger(f.queue, false), st.ScheduleLedger(), st.EventsLedger(), st.PlansLedger()} {
			for _, h := range hosts {
				k := l.Keys(h)
				for _, key := range []string{k.Processing, k.Dialing, k.Invited} {
					if n, err := rdb.Exists(ctx, key).Result(); err != nil || n != 0 {
						return fmt.Errorf("%s: %s still exists (%v)", l.Name(), key, err)
					}
				}
			}
			k := l.Keys("")
			for _, key := range []string{k.Source, k.Interrupted, k.Invalid} {
				if n, err := rdb.Exists(ctx, key).Result(); err != nil || n != 0 {
					return fmt.Errorf("%s: %s is not empty (%v)", l.Name(), key, err)
				}
			}
		}
		if n, err := rdb.HLen(ctx, st.PlansKey()).Result(); err != nil || n != 0 {
			return fmt.Errorf("%d plans left (%v)", n, err)
		}
		return nil
	})
	per := invitesPerNumber(t, f.carrier)
	for n := range campaigns {
		if per[n] != 1 {
			t.Errorf("number %s got %d INVITEs, want 1", n, per[n])
		}
	}
}

// The store's multi-key scripts on a real 3-master Redis Cluster: a
// campaign, scheduled calls and callbacks run on two nodes, and the master
// of the queue's slot fails over (CLUSTER FAILOVER) while the campaign
// runs. Every number gets one INVITE and one CDR; no CROSSSLOT, MOVED or
// ASK error leaves anything claimed.
func TestRedisClusterFlows(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{})
	const queue = "{camp}:numbers"
	f := setupFlows(t, c.Client, queue, 60, 10, 5)
	hosts := []string{"c1", "c2"}
	for _, h := range hosts {
		startNode(t, c.URL, h)
	}
	testenv.WaitFor(t, 20*time.Second, func() error {
		cdrs, err := uniCDRs(t, c.Client)
		if err != nil || len(cdrs) < 10 {
			return fmt.Errorf("%d CDRs so far (%v)", len(cdrs), err)
		}
		return nil
	})
	c.FailoverMasterOf(t, queue, 20*time.Second)
	f.wait(t, c.Client, hosts, 60*time.Second)
	// The keys really are spread over the shards: the queue's slot, the
	// CDR list's and the plans' are not all on one master.
	masters := map[string]bool{}
	for _, k := range []string{queue, "enigma:notifications:campaigns", "redial:{callback}:plans", "cti_line@default"} {
		masters[c.MasterOf(t, k)] = true
	}
	if len(masters) < 2 {
		t.Errorf("every key on one master %v: the test proves nothing about slots", masters)
	}
}

// On a Cluster a number_queue without a {hash tag} cannot be claimed: its
// processing list hashes to another slot, so the claim (BLMOVE) is refused
// with CROSSSLOT and the number stays in the queue, never half-moved.
func TestRedisClusterUntaggedQueueRefused(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{})
	ctx := context.Background()
	st := store.NewWithClient(c.Client, store.Config{Domain: "default", Host: "u1"})
	uniPush(t, c.Client, "plainq", "15559990001")
	led := st.QueueLedger("plainq", false)
	for _, k := range []string{"plainq", led.Keys("").Processing, "{plainq}:processing:u1", "redial:{callback}:plans"} {
		if want, err := c.Client.ClusterKeySlot(ctx, k).Result(); err != nil || int(want) != testenv.Slot(k) {
			t.Fatalf("testenv.Slot(%q) = %d, CLUSTER KEYSLOT says %d (%v)", k, testenv.Slot(k), want, err)
		}
	}
	if testenv.Slot(led.Keys("").Processing) == testenv.Slot("plainq") {
		t.Fatalf("plainq and its processing list share a slot by chance: pick another name")
	}
	_, ok, err := led.ClaimBlocking(ctx, time.Second)
	if err == nil || ok || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("claim from an untagged queue on Cluster: ok=%v err=%v, want a CROSSSLOT error", ok, err)
	}
	if items, err := c.Client.LRange(ctx, "plainq", 0, -1).Result(); err != nil || len(items) != 1 {
		t.Fatalf("plainq = %v (%v), want the number left in place", items, err)
	}
	// The same queue with a tag works.
	uniPush(t, c.Client, "{plainq}", "15559990002")
	tagged := st.QueueLedger("{plainq}", false)
	if raw, ok, err := tagged.ClaimBlocking(ctx, time.Second); err != nil || !ok || raw != "15559990002" {
		t.Fatalf("claim from {plainq}: %q %v %v", raw, ok, err)
	}
	if err := tagged.Ack(ctx, "15559990002"); err != nil {
		t.Fatal(err)
	}
}
