package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"redial/internal/store"
	"redial/internal/testenv"
)

// campaignBinEnv names a prebuilt redial binary to run instead of building
// ./cmd/redial (to measure an older build, as for the "before" column).
const campaignBinEnv = "REDIAL_BENCH_CAMPAIGN_BIN"

// campaignNumbers is how many numbers the throughput run dials.
const campaignNumbers = 20000

// campaignRefRates is SIPp's reference ladder: it runs at the first rate
// that it sustains without a failed call, so the reference is SIPp's own
// best and never a cap we chose.
var campaignRefRates = []int{16000, 12000, 8000, 4000}

// Targets of issue 14 for the campaign path.
const (
	campaignTargetRate = 4000 // numbers/s, queue to CDR
	campaignTargetCmds = 6.0  // Redis commands per number
)

// campaignBaseline is INFO commandstats per number of this part's run
// before issue 14's changes to the campaign path (2026-12-01, this
// machine, the same harness with REDIAL_BENCH_CAMPAIGN_BIN set to a build
// of the tree without them): the "before" column of the report. Commands
// under 0.005 per number are left out.
var campaignBaseline = map[string]float64{
	"evalsha": 3.037, "lpos": 3.000, "hget": 2.002, "hdel": 2.000, "time": 1.037, "zadd": 1.012,
	"lpush": 1.001, "blmove": 1.001, "hset": 1.000, "pttl": 1.000, "sadd": 1.000, "zcard": 1.000,
	"zremrangebyscore": 1.000, "expire": 1.000, "hincrby": 1.000, "lrem": 1.000, "xadd": 1.000,
	"zrem": 1.000, "pexpire": 0.351, "zrange": 0.037, "zrangebyscore": 0.037, "llen": 0.028,
	"zscore": 0.012, "hello": 0.006,
}

// The baseline run's totals and its redis-server CPU per number.
const (
	campaignBaselineTotal    = 24.57
	campaignBaselineRate     = 1640
	campaignBaselineRedisCPU = 161.5 // µs per number
)

// runCampaign is part 2: a queue dialer task on a `redial serve` node
// against a SIPp UAS, next to SIPp's own UAC against the same UAS.
func runCampaign(ctx context.Context, b *bench) (string, error) {
	const numbers = campaignNumbers
	const latencySamples = 200
	dir := filepath.Join(b.work, "campaign")
	if err := os.MkdirAll(filepath.Join(dir, "redis"), 0o755); err != nil {
		return "", err
	}
	uasXML, err := scenarioPath(b.root, "uas_bench.xml")
	if err != nil {
		return "", err
	}
	uacXML, err := scenarioPath(b.root, "uac_bench.xml")
	if err != nil {
		return "", err
	}
	bin := os.Getenv(campaignBinEnv)
	if bin == "" {
		fmt.Println("campaign: building redial")
		if bin, err = buildRedial(ctx, b.root, dir); err != nil {
			return "", err
		}
	} else {
		fmt.Printf("campaign: redial binary from $%s: %s\n", campaignBinEnv, bin)
	}
	rds, err := startRedis(ctx, filepath.Join(dir, "redis"))
	if err != nil {
		return "", err
	}
	defer rds.Stop()
	st := store.NewWithClient(rds.Client, store.Config{})

	// Reference: SIPp's UAC pushing the same number of calls at the
	// highest rate of the ladder it sustains.
	var ref campaignRef
	for _, rate := range campaignRefRates {
		fmt.Printf("campaign: SIPp UAC reference at %d calls/s\n", rate)
		ref, err = campaignSippRef(ctx, b, dir, uasXML, uacXML, rate, numbers)
		if err != nil {
			return "", err
		}
		if ref.sustained() {
			break
		}
	}

	// redial: one task, hangup target, queue filled at once.
	fmt.Println("campaign: redial")
	uas, err := startSipp(sippOpts{Scenario: uasXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "uas"), Args: []string{"-trace_msg", "-message_file", filepath.Join(dir, "uas-messages.log")}})
	if err != nil {
		return "", err
	}
	defer uas.Kill()
	for _, kv := range [][3]string{
		{"cti_line@default", "bench", fmt.Sprintf(`{"params":{"group":"bench","uri":"sip:%s","limit":2000,"enable":true}}`, uas.Addr)},
		{"cti_dialplan@default", "default:bench", `{"type":"hangup"}`},
		{"cti_queue_dialer_task@template", "bench", `{"params":{"enable":true,"line_group":["bench"],"limit":300,"number_queue":"bench_q","destination_extension":"bench"}}`},
	} {
		if err := rds.Client.HSet(ctx, kv[0], kv[1], kv[2]).Err(); err != nil {
			return "", fmt.Errorf("campaign: write %s: %w", kv[0], err)
		}
	}
	node, err := startNodeProc(ctx, bin, rds, filepath.Join(dir, "node"))
	if err != nil {
		return "", fmt.Errorf("campaign: %w", err)
	}
	defer node.stop()

	// Warm-up: the first number waits until the node has loaded the task.
	if err := rds.Client.LPush(ctx, "bench_q", "16650000000").Err(); err != nil {
		return "", err
	}
	if err := waitListLen(ctx, rds, 1, 30*time.Second); err != nil {
		return "", fmt.Errorf("campaign: warm-up number: %w\n%s", err, tail(readFileString(node.logPath), 2000))
	}
	rds.Client.Del(ctx, benchCDRList)

	// Latency: one number at a time on an idle task, LPUSH to INVITE on the wire.
	pushed := map[string]time.Time{}
	for i := 0; i < latencySamples; i++ {
		n := fmt.Sprintf("1666%07d", i)
		pushed[n] = time.Now()
		if err := rds.Client.LPush(ctx, "bench_q", n).Err(); err != nil {
			return "", err
		}
		if err := waitListLen(ctx, rds, int64(i+1), 10*time.Second); err != nil {
			return "", fmt.Errorf("campaign: latency sample %d: %w", i, err)
		}
	}
	rds.Client.Del(ctx, benchCDRList)
	idleBefore, _ := commandStats(ctx, rds)
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return "", err
	}
	idleAfter, _ := commandStats(ctx, rds)
	idle := idleAfter.minus(idleBefore)

	// Throughput: 20,000 numbers at once.
	items := make([]string, numbers)
	for i := range items {
		items[i] = fmt.Sprintf("1777%07d", i)
	}
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", node.pid), []byte("5"), 0)
	cmdBefore, _ := commandStats(ctx, rds)
	nodeCPU0, redisCPU0 := node.cpu(), rds.CPU()
	start := time.Now()
	if _, err := st.PushNumbers(ctx, "bench_q", items); err != nil {
		return "", err
	}
	if err := waitListLen(ctx, rds, numbers, 3*time.Minute); err != nil {
		return "", fmt.Errorf("campaign: %w\n%s", err, tail(readFileString(node.logPath), 2000))
	}
	elapsed := time.Since(start)
	nodeCPU, redisCPU := node.cpu()-nodeCPU0, rds.CPU()-redisCPU0
	cmdAfter, _ := commandStats(ctx, rds)
	_, nodePeak := node.rss()
	cmds := cmdAfter.minus(cmdBefore)
	rate := float64(numbers) / elapsed.Seconds()

	// Lost or duplicated: every number exactly one CDR, exactly one INVITE.
	raw, err := rds.Client.LRange(ctx, benchCDRList, 0, -1).Result()
	if err != nil {
		return "", err
	}
	seen := map[string]int{}
	notAnswered := 0
	for _, r := range raw {
		var env struct {
			Payload struct {
				Number      string `json:"client_number"`
				Disposition string `json:"disposition"`
			} `json:"payload"`
		}
		json.Unmarshal([]byte(r), &env)
		seen[env.Payload.Number]++
		if env.Payload.Disposition != "ANSWERED" {
			notAnswered++
		}
	}
	lost, dup := 0, 0
	for _, n := range items {
		switch c := seen[n]; {
		case c == 0:
			lost++
		case c > 1:
			dup += c - 1
		}
	}
	uas.Kill()
	invites, err := inviteTimes(filepath.Join(dir, "uas-messages.log"))
	if err != nil {
		return "", err
	}
	var lat []time.Duration
	for n, at := range pushed {
		if got, ok := invites[n]; ok {
			lat = append(lat, got.Sub(at))
		}
	}
	sortDurations(lat)
	invited, unmatched := 0, 0
	for _, n := range items {
		if _, ok := invites[n]; ok {
			invited++
			if seen[n] != 1 {
				unmatched++
			}
		}
	}
	qs, _ := st.QueueStats(ctx, "bench_q")
	warns, firstWarn := node.warnLines()

	perNum := func(d time.Duration) string {
		return fmt.Sprintf("%.1f µs", float64(d.Microseconds())/numbers)
	}
	total := float64(cmds.total()) / numbers
	redisPer := redisCPU.Seconds() / numbers
	var sb strings.Builder
	fmt.Fprintf(&sb, "## 2. Campaign\n\n")
	fmt.Fprintf(&sb, "A queue dialer task (`limit` 300, line group `bench`, dialplan target `{\"type\":\"hangup\"}`) on a node run as its own process (`redial serve`, built with `go build`, log level warn) dials a queue of %d numbers pushed at once with one pipelined LPUSH batch per 1000 against a SIPp UAS (`uas_bench.xml`); the reference is SIPp's own UAC (`uac_bench.xml -rp 1000 -l 1000 -r <rate>`, the first rate of %s calls/s it runs without a failed call) against the same UAS scenario in the same run. redis-server, the SIPp UAS and the node share the machine's cores.\n\n", numbers, joinInts(campaignRefRates))
	fmt.Fprintf(&sb, "Machine: %s. Load average after: %s.\n\n", machine(), loadAverage())
	fmt.Fprintf(&sb, "| measure | value | target (issue 14) |\n|---|---:|---|\n")
	fmt.Fprintf(&sb, "| SIPp UAC calls/s (reference) | %.0f at `-r %d` (%d ok, %d failed, exit %v) | |\n", ref.rate, ref.attempted, ref.ok, ref.failed, errOK(ref.err))
	fmt.Fprintf(&sb, "| redial numbers/s, queue to CDR | %.0f (%d numbers in %s) | ≥ %d: %s |\n", rate, numbers, elapsed.Round(time.Millisecond), campaignTargetRate, passFail(rate >= campaignTargetRate))
	if ref.rate > 0 {
		fmt.Fprintf(&sb, "| ratio redial / SIPp | %.2f | |\n", rate/ref.rate)
	}
	fmt.Fprintf(&sb, "| numbers lost (no CDR) | %d | 0: %s |\n| numbers with more than one CDR | %d | 0: %s |\n", lost, passFail(lost == 0), dup, passFail(dup == 0))
	fmt.Fprintf(&sb, "| INVITEs seen by the UAS / of those without exactly one CDR | %d of %d / %d | all, 0: %s |\n", invited, numbers, unmatched, passFail(invited == numbers && unmatched == 0))
	fmt.Fprintf(&sb, "| not ANSWERED | %d | |\n", notAnswered)
	fmt.Fprintf(&sb, "| queue left / claims left / interrupted / invalid | %d / %d / %d / %d | 0 interrupted: %s |\n", qs.Queue, sumMap(qs.Processing), qs.Interrupted, qs.Invalid, passFail(qs.Interrupted == 0))
	fmt.Fprintf(&sb, "| LPUSH on an idle task to INVITE on the wire, p50 / p99 / max (%d samples) | %s / %s / %s | |\n", len(lat),
		ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(percentile(lat, 100)))
	fmt.Fprintf(&sb, "| Redis commands per number (INFO commandstats, script-internal commands included) | %.2f (before: %.2f) | ≤ %.0f: %s |\n", total, campaignBaselineTotal, campaignTargetCmds, passFail(total <= campaignTargetCmds))
	fmt.Fprintf(&sb, "| EVALSHA / EVAL calls per number | %.2f / %.2f | |\n", float64(cmds["evalsha"])/numbers, float64(cmds["eval"])/numbers)
	fmt.Fprintf(&sb, "| redis-server CPU per number | %s (%s over the run; before: %.1f µs) | reported |\n", perNum(redisCPU), redisCPU.Round(10*time.Millisecond), campaignBaselineRedisCPU)
	if redisPer > 0 {
		fmt.Fprintf(&sb, "| numbers/s one Redis core sustains (1 s ÷ Redis CPU per number) | %.0f (before: %.0f) | |\n", 1/redisPer, 1e6/campaignBaselineRedisCPU)
	}
	fmt.Fprintf(&sb, "| node (`redial serve`) CPU per number | %s (%s over the run) | |\n", perNum(nodeCPU), nodeCPU.Round(10*time.Millisecond))
	fmt.Fprintf(&sb, "| node peak RSS during the run (VmHWM, reset before it) | %s | |\n", mib(nodePeak))
	fmt.Fprintf(&sb, "| node log lines at warn and up | %d | |\n\n", warns)
	if firstWarn != "" {
		fmt.Fprintf(&sb, "First node warning: `%s`\n\n", strings.ReplaceAll(tail(firstWarn, 300), "`", "'"))
	}

	fmt.Fprintf(&sb, "Redis commands per number by command (INFO commandstats calls over the throughput run ÷ %d; commands run inside scripts are counted under their own name as well as the EVALSHA that ran them). Before = the same harness on a build without issue 14's campaign changes (%.2f per number, %d numbers/s, redis-server %.1f µs per number); the 20.6 of the earlier report counted an in-process node.\n\n", numbers, campaignBaselineTotal, campaignBaselineRate, campaignBaselineRedisCPU)
	fmt.Fprintf(&sb, "| command | before | after | idle node, calls/s |\n|---|---:|---:|---:|\n")
	names := map[string]bool{}
	for n := range cmds {
		names[n] = true
	}
	for n := range campaignBaseline {
		names[n] = true
	}
	order := make([]string, 0, len(names))
	for n := range names {
		order = append(order, n)
	}
	slices.SortFunc(order, func(a, b string) int {
		if d := cmds[b] - cmds[a]; d != 0 {
			return int(d)
		}
		return strings.Compare(a, b)
	})
	for _, n := range order {
		before := "—"
		if v, ok := campaignBaseline[n]; ok {
			before = fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(&sb, "| %s | %s | %.3f | %.1f |\n", n, before, float64(cmds[n])/numbers, float64(idle[n])/2)
	}
	fmt.Fprintf(&sb, "| **total** | **%.1f** | **%.2f** | %.1f |\n\n", campaignBaselineTotal, total, float64(idle.total())/2)

	sb.WriteString(campaignWhere)
	fmt.Fprintf(&sb, "Notes:\n\n")
	fmt.Fprintf(&sb, "- Numbers/s = numbers ÷ wall time from the first LPUSH of the batch to the moment the CDR list holds all %d CDRs (polled with LLEN every 20 ms; those LLENs and the bench's INFO are in the counts above).\n", numbers)
	fmt.Fprintf(&sb, "- CPU is utime+stime from `/proc/<pid>/stat` (10 ms ticks) of redis-server and of the `redial serve` process over the throughput run, ÷ numbers. The idle column is the same counts over 2 s with the task waiting on an empty queue (its blocking claim, heartbeats, lease renewals), in calls per second.\n")
	fmt.Fprintf(&sb, "- Latency is measured from just before the LPUSH to SIPp's receive timestamp of the INVITE (`-trace_msg`, same clock), one number at a time, waiting for each CDR so the task is idle.\n")
	fmt.Fprintf(&sb, "- SIPp reference at `-r %d`: %.3fs for %d calls, UAC peak RSS %s.\n\nCommand:\n\n```\n%s\n```\n", ref.attempted, ref.elapsed.Seconds(), numbers, mib(ref.rss), b.command)
	return sb.String(), nil
}

// campaignWhere says where each number's Redis commands come from and
// what issue 14 changed; it is hand-written, next to the code whose cost
// it describes.
const campaignWhere = `Where a number's commands go now (about 5.7): per number, the mark's LREM (the claim's copy leaves the processing list for the dialing list), the ack's LREM (it leaves the dialing list), the CDR's XADD and the call record's SET ... EX ... GET, 4 in all; the rest is shared by calls that start or end together (group commit, internal/batch: a request that finds nothing in flight goes at once, the ones arriving meanwhile go together next): the mark's script run and LPUSH onto the dialing list, the ack's script run, the CDR's LPUSH onto the campaigns list, the line lease's acquire script (TIME, ZCARD, one multi-member ZADD, PEXPIRE) and release ZREM, and the claim's script (RPOP with a count, LPUSH, SADD) per batch; together about 1.7 at this rate, less as the rate rises. What issue 14 changed, from 24.6: numbers are claimed in batches instead of one BLMOVE each (BLMOVE only waits on an empty queue); the claim registers the holder, not the mark; a mark moves the claim between two lists instead of counting it in the invited HASH (7 commands for mark and ack became 2 plus shares); the lease acquire prunes expired leases only when the line looks full and sets the key's expiry with one PEXPIRE; the call record is one SET instead of HSET + EXPIRE; acquires, releases, marks, CDR pushes and acks of concurrent calls share script runs and multi-member commands. Crash semantics are unchanged: a claim moves atomically from the queue to the processing list, is marked (moved to the dialing list) before its INVITE and leaves the lists only in the settle or recover scripts.

What is left per number is the contract (the CDR's LPUSH and XADD) and one command each for the mark, the ack and the call record; the LREMs scan the node's processing and dialing lists from their old end, so their cost grows with the calls a node holds, not with the queue. The schedule and callback pollers (ZRANGEBYSCORE, ZRANGE, TIME about 69 calls/s on an idle node) are per node, not per number.

`

// campaignRef is one run of SIPp's UAC against a fresh SIPp UAS.
type campaignRef struct {
	attempted, ok, failed int
	rate                  float64
	elapsed               time.Duration
	rss                   int64
	err                   error
}

func (r campaignRef) sustained() bool {
	return r.err == nil && r.failed == 0 && r.ok > 0
}

func campaignSippRef(ctx context.Context, b *bench, dir, uasXML, uacXML string, rate, numbers int) (campaignRef, error) {
	sub := filepath.Join(dir, fmt.Sprintf("ref-%d", rate))
	refUAS, err := startSipp(sippOpts{Scenario: uasXML, BuffSize: b.sippBuff, Dir: filepath.Join(sub, "uas")})
	if err != nil {
		return campaignRef{}, err
	}
	defer refUAS.Kill()
	uac, err := startSipp(sippOpts{Scenario: uacXML, BuffSize: b.sippBuff, Dir: filepath.Join(sub, "uac"), Remote: refUAS.Addr,
		Args: []string{"-r", strconv.Itoa(rate), "-rp", "1000", "-l", "1000", "-m", strconv.Itoa(numbers)}})
	if err != nil {
		return campaignRef{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out := campaignRef{attempted: rate, err: uac.Wait(wctx), rss: uac.PeakRSS()}
	if st, serr := uac.Stats(); serr == nil && st.Elapsed() > 0 {
		out.ok, out.failed, out.elapsed = st.Successful, st.Failed, st.Elapsed()
		out.rate = float64(st.Successful) / st.Elapsed().Seconds()
	} else if out.err == nil {
		out.err = serr
	}
	return out, nil
}

// cmdStats is INFO commandstats: calls per command (lower case, without
// the "cmdstat_" prefix).
type cmdStats map[string]int64

func commandStats(ctx context.Context, rds *redisServer) (cmdStats, error) {
	return testenv.CommandStats(ctx, rds.Client)
}

func (c cmdStats) minus(before cmdStats) cmdStats {
	out := cmdStats{}
	for n, v := range c {
		if d := v - before[n]; d > 0 {
			out[n] = d
		}
	}
	return out
}

func (c cmdStats) total() int64 {
	var t int64
	for _, v := range c {
		t += v
	}
	return t
}

func sumMap(m map[string]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

func errOK(err error) string {
	if err == nil {
		return "0"
	}
	return err.Error()
}
