package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"redial/internal/config"
	"redial/internal/dialer"
	"redial/internal/testenv"
)

// seedTask is seed 004's task JSON with its placeholder strings replaced by
// real names and nothing else changed.
const seedTask = `{
"params": {
"enable": true,
"line_group": ["g1"],
"limit":100,
"start_time": "2020-1-20 12:00",
"stop_time": "2020-1-22 12:00",
"work_hour": [{
"begin": "8:00",
"end": "12:00"
}, {
"begin": "14:00",
"end": "18:00"
}],
"work_week": [1,2,3,4,5],
"holiday": [{
"begin": "2020-1-20 12:00",
"end": "2020-1-21 12:00"
}, {
"begin": "2020-1-21 12:00",
"end": "2020-1-22 8:00"
}],
"number_queue": "q1",
"destination_extension":"8888",
"destination_dialplan":"XML",
"destination_context":"default"

},
"variables": {
"origination_caller_id_number": "15550002222",
"absolute_codec_string": "pcma,pcmu,g729"
}
}`

func pushNumbers(t testing.TB, r *testenv.Redis, queue string, items ...string) {
	t.Helper()
	args := make([]any, len(items))
	for i, it := range items {
		args[i] = it
	}
	if err := r.Client.LPush(context.Background(), queue, args...).Err(); err != nil {
		t.Fatal(err)
	}
}

func setTask(t testing.TB, r *testenv.Redis, hash, name, value string, publish string) {
	t.Helper()
	ctx := context.Background()
	if err := r.Client.HSet(ctx, hash, name, value).Err(); err != nil {
		t.Fatal(err)
	}
	if publish != "" {
		r.Client.Publish(ctx, publish, `{"type":"config_change","table":"cti_queue_dialer_task","key":"`+name+`"}`)
	}
}

// campaignCDRs returns the CDR payloads of a campaign, oldest first.
func campaignCDRs(t testing.TB, r *testenv.Redis, campaign string) []map[string]any {
	t.Helper()
	raw, err := r.Client.LRange(context.Background(), "enigma:notifications:campaigns", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for i := len(raw) - 1; i >= 0; i-- {
		var env cdrEnvelope
		if err := json.Unmarshal([]byte(raw[i]), &env); err != nil {
			t.Fatal(err)
		}
		if env.Payload["campaign_ref"] == campaign {
			out = append(out, env.Payload)
		}
	}
	return out
}

func waitCDRs(t testing.TB, r *testenv.Redis, campaign string, n int, timeout time.Duration) []map[string]any {
	t.Helper()
	var got []map[string]any
	testenv.WaitFor(t, timeout, func() error {
		got = campaignCDRs(t, r, campaign)
		if len(got) < n {
			return fmt.Errorf("%d of %d CDRs for %s", len(got), n, campaign)
		}
		return nil
	})
	return got
}

// The seed's own task runs unchanged, on its own dates (the node's clock is
// set to Wednesday 2020-01-22 09:00 in the node's zone, inside its window).
func TestSeedTaskRunsUnchanged(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-m", "5", "-d", "100", "-trace_msg"}})
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", "5"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setDialplan(t, r, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, destination.Addr))
	shanghai, _ := time.LoadLocation("Asia/Shanghai")
	clock := time.Date(2020, 1, 22, 9, 0, 0, 0, shanghai)
	start := time.Now()
	now := func() time.Time { return clock.Add(time.Since(start)) }
	setTask(t, r, "cti_queue_dialer_task@template", "seed", seedTask, "")
	pushNumbers(t, r, "q1", "13800000001", "13800000002", "13800000003", "13800000004", "13800000005")
	startNodeCfg(t, r.URL, "n1", func(c *config.Node) { c.Timezone = shanghai }, WithClock(now))

	cdrs := waitCDRs(t, r, "seed", 5, 20*time.Second)
	seen := map[string]bool{}
	for _, c := range cdrs {
		// The line's caller ID wins over the task's: number < @host <
		// @template < line.
		vars := c["variables"].(map[string]any)
		if c["disposition"] != "ANSWERED" || c["dial_number"] != "15550001111" || vars["absolute_codec_string"] != "pcma,pcmu,g729" {
			t.Fatalf("cdr: %v", c)
		}
		seen[c["client_number"].(string)] = true
	}
	if len(seen) != 5 {
		t.Fatalf("numbers dialed: %v", seen)
	}
	waitSipp(t, carrier, 10*time.Second)
	// absolute_codec_string "pcma,pcmu,g729": PCMA offered first, G.729 skipped.
	log := readSippMessages(t, carrier)
	if !strings.Contains(log, "m=audio") || !regexpMatch(`m=audio \d+ RTP/AVP 8 0 101`, log) {
		t.Fatalf("offer does not follow absolute_codec_string:\n%.2000s", log)
	}
	if n, _ := r.Client.LLen(context.Background(), "q1").Result(); n != 0 {
		t.Fatalf("queue still holds %d", n)
	}
}

// Outside the seed's window (its clock at 13:00) nothing is dialed and the
// status says why and when it opens.
func TestTaskStatusSaysWhyNotDialing(t *testing.T) {
	r := testenv.StartRedis(t)
	shanghai, _ := time.LoadLocation("Asia/Shanghai")
	clock := time.Date(2020, 1, 22, 13, 0, 0, 0, shanghai)
	setTask(t, r, "cti_queue_dialer_task@template", "seed", seedTask, "")
	pushNumbers(t, r, "q1", "13800000001")
	n := startNodeCfg(t, r.URL, "n1", func(c *config.Node) { c.Timezone = shanghai }, WithClock(func() time.Time { return clock }))
	var body struct {
		Tasks []dialer.TaskStatus `json:"tasks"`
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		n.get("/api/v1/tasks", &body)
		if len(body.Tasks) != 1 || body.Tasks[0].State != "waiting" {
			return fmt.Errorf("tasks: %+v", body.Tasks)
		}
		return nil
	})
	// 13:00 on 2020-01-22 is after the stop_time of 12:00: it never opens.
	st := body.Tasks[0]
	if st.Reason != "after stop_time" || st.NextOpen != nil || st.QueueLength != 1 || st.Limit != 100 {
		t.Fatalf("status: %+v", st)
	}
}

// Concurrency at the carrier never exceeds the task's limit.
func TestCampaignLimitAtCarrier(t *testing.T) {
	const limit, total = 4, 20
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_hold_log.xml"),
		Args: []string{"-m", strconv.Itoa(total), "-d", "300", "-trace_logs"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setDialplan(t, r, "default:8888", `{"type":"hangup"}`)
	setDialplan(t, r, "default:hold", `{"type":"hangup"}`)
	task := fmt.Sprintf(`{"params":{"enable":true,"line_group":["g1"],"limit":%d,"number_queue":"q2","destination_extension":"park"}}`, limit)
	_ = task
	// The callee hangs up after 300 ms, so the target must keep the call up:
	// a SIP destination that waits for BYE.
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", strconv.Itoa(total)}})
	setDialplan(t, r, "default:park", fmt.Sprintf(`{"type":"sip","uri":"sip:park@%s"}`, destination.Addr))
	setTask(t, r, "cti_queue_dialer_task@template", "lim", task, "")
	var items []string
	for i := 0; i < total; i++ {
		items = append(items, fmt.Sprintf("1555100%04d", i))
	}
	pushNumbers(t, r, "q2", items...)
	startNode(t, r.URL, "n1")
	waitCDRs(t, r, "lim", total, 30*time.Second)
	waitSipp(t, carrier, 10*time.Second)
	peak, calls := maxConcurrent(t, carrier.LogDir())
	if calls != total || peak != limit {
		t.Fatalf("carrier saw %d calls with peak %d, want %d calls with peak exactly the limit %d", calls, peak, total, limit)
	}
}

// Malformed items go to <queue>:invalid with their reason; the campaign goes
// on with the rest.
func TestMalformedItemsMovedAside(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_486.xml"), Args: []string{"-m", "2"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setTask(t, r, "cti_queue_dialer_task@template", "bad", `{"params":{"enable":true,"line_group":["g1"],"limit":2,"number_queue":"q3","destination_extension":"8888"}}`, "")
	pushNumbers(t, r, "q3", "15550000001", `{"params":{"number":{"x":1}}}`, "{not json", `{"params":{"number":"1555;evil"}}`, `{"params":{"number":["15550000002"]}}`)
	startNode(t, r.URL, "n1")
	cdrs := waitCDRs(t, r, "bad", 2, 10*time.Second)
	got := map[any]bool{cdrs[0]["client_number"]: true, cdrs[1]["client_number"]: true}
	if len(cdrs) != 2 || !got["15550000001"] || !got["15550000002"] {
		t.Fatalf("cdrs: %v", cdrs)
	}
	var invalid []string
	testenv.WaitFor(t, 5*time.Second, func() error {
		invalid, _ = r.Client.LRange(context.Background(), "q3:invalid", 0, -1).Result()
		if len(invalid) != 3 {
			return fmt.Errorf("%d invalid", len(invalid))
		}
		return nil
	})
	for _, want := range []string{"params.number", "JSON", "params.number"} {
		found := false
		for _, rec := range invalid {
			var m map[string]any
			json.Unmarshal([]byte(rec), &m)
			if strings.Contains(fmt.Sprint(m["reason"]), want) && m["item"] != nil && m["host"] == "n1" {
				found = true
			}
		}
		if !found {
			t.Fatalf("no invalid record with reason mentioning %q: %v", want, invalid)
		}
	}
}

// A BUSY number is retried per the task's retry rule, delayed in Redis.
func TestRetryRule(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_486.xml"), Args: []string{"-m", "3"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setTask(t, r, "cti_queue_dialer_task@template", "rt", `{"params":{"enable":true,"line_group":["g1"],"limit":2,"number_queue":"q4","destination_extension":"8888","retry":{"BUSY":{"attempts":2,"delay_s":1}}}}`, "")
	pushNumbers(t, r, "q4", `{"params":{"number":"15550000009","contact_ref":"k9","extra":true}}`)
	startNode(t, r.URL, "n1")
	cdrs := waitCDRs(t, r, "rt", 3, 15*time.Second)
	for i, c := range cdrs {
		if c["disposition"] != "BUSY" || c["contact_ref"] != "k9" {
			t.Fatalf("cdr %d: %v", i, c)
		}
	}
	t1, _ := time.Parse(time.RFC3339, cdrs[0]["start"].(string))
	t2, _ := time.Parse(time.RFC3339, cdrs[1]["start"].(string))
	if t2.Sub(t1) < time.Second {
		t.Fatalf("retry came %v after the first attempt, want >= 1s", t2.Sub(t1))
	}
	waitSipp(t, carrier, 5*time.Second)
	testenv.WaitFor(t, 3*time.Second, func() error {
		n, _ := r.Client.ZCard(context.Background(), "q4:retry").Result()
		q, _ := r.Client.LLen(context.Background(), "q4").Result()
		if n+q != 0 {
			return fmt.Errorf("retry set %d, queue %d after the last attempt", n, q)
		}
		return nil
	})
}

// A number with its own time zone waits in Redis until its calling window
// opens there; the others are dialed now.
func TestCalleeTimezoneWindow(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_486.xml"), Args: []string{"-m", "1"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	clock := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC) // a Wednesday, 21:00 in Tokyo
	setTask(t, r, "cti_queue_dialer_task@template", "tz", `{"params":{"enable":true,"line_group":["g1"],"limit":2,"number_queue":"tzq","destination_extension":"8888","timezone":"UTC","work_hour":[{"begin":"8:00","end":"18:00"}]}}`, "")
	pushNumbers(t, r, "tzq", `{"params":{"number":"15556000001","timezone":"Asia/Tokyo"}}`, "15556000002")
	startNode(t, r.URL, "n1", WithClock(func() time.Time { return clock }))
	cdrs := waitCDRs(t, r, "tz", 1, 10*time.Second)
	if cdrs[0]["client_number"] != "15556000002" {
		t.Fatalf("cdr: %v", cdrs[0])
	}
	var z []redisZ
	testenv.WaitFor(t, 5*time.Second, func() error {
		res, err := r.Client.ZRangeWithScores(context.Background(), "tzq:retry", 0, -1).Result()
		if err != nil || len(res) != 1 {
			return fmt.Errorf("retry set: %v %v", res, err)
		}
		z = []redisZ{{res[0].Score, res[0].Member.(string)}}
		return nil
	})
	// Next 08:00 in Tokyo is 23:00 UTC the same day.
	want := time.Date(2026, 3, 4, 23, 0, 0, 0, time.UTC)
	if got := time.UnixMilli(int64(z[0].score)); !got.Equal(want) || !strings.Contains(z[0].member, "15556000001") {
		t.Fatalf("delayed until %v (%s), want %v", got.UTC(), z[0].member, want)
	}
	if got := len(campaignCDRs(t, r, "tz")); got != 1 {
		t.Fatalf("%d CDRs, want 1", got)
	}
}

type redisZ struct {
	score  float64
	member string
}

// A task's cps spaces its new calls: never more than cps INVITEs in any
// second at the carrier.
func TestTaskCPS(t *testing.T) {
	const total, cps = 12, 4
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_hold_log.xml"),
		Args: []string{"-m", fmt.Sprint(total), "-d", "50", "-trace_logs"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", fmt.Sprint(total)}})
	setDialplan(t, r, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, destination.Addr))
	setTask(t, r, "cti_queue_dialer_task@template", "paced", fmt.Sprintf(`{"params":{"enable":true,"line_group":["g1"],"limit":10,"cps":%d,"number_queue":"pq","destination_extension":"8888"}}`, cps), "")
	pushNumbers(t, r, "pq", numberList("1555800", total)...)
	startNode(t, r.URL, "n1")
	waitCDRs(t, r, "paced", total, 30*time.Second)
	waitSipp(t, carrier, 10*time.Second)
	starts := sippStarts(t, carrier.LogDir())
	if len(starts) != total {
		t.Fatalf("%d INVITEs logged, want %d", len(starts), total)
	}
	for i := cps; i < len(starts); i++ {
		if gap := starts[i] - starts[i-cps]; gap < 1000-20 {
			t.Fatalf("INVITEs %d and %d are %d ms apart: more than %d in a second", i-cps+1, i+1, gap, cps)
		}
	}
}

// sippStarts returns the clock ticks (ms) of the "start" lines of
// uas_hold_log.xml, sorted.
func sippStarts(t *testing.T, dir string) []int64 {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*_logs.log"))
	var out []int64
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) >= 2 && fields[1] == "start" {
				if n, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
					out = append(out, n)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
