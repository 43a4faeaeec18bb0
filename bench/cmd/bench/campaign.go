package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// runCampaign is part 2: a queue dialer task against a SIPp UAS, next to
// SIPp's own UAC against the same UAS.
func runCampaign(ctx context.Context, b *bench) (string, error) {
	const numbers = 20000
	const latencySamples = 200
	dir := filepath.Join(b.work, "campaign")
	uasXML, err := scenarioPath(b.root, "uas_bench.xml")
	if err != nil {
		return "", err
	}
	uacXML, err := scenarioPath(b.root, "uac_bench.xml")
	if err != nil {
		return "", err
	}
	rds, err := startRedis(ctx, b.work)
	if err != nil {
		return "", err
	}
	defer rds.Stop()

	// Reference: SIPp's UAC pushing 20,000 calls as fast as the UAS takes them.
	fmt.Println("campaign: SIPp UAC reference")
	refUAS, err := startSipp(sippOpts{Scenario: uasXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "ref-uas")})
	if err != nil {
		return "", err
	}
	uac, err := startSipp(sippOpts{Scenario: uacXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "ref-uac"), Remote: refUAS.Addr,
		Args: []string{"-r", "4000", "-rp", "1000", "-l", "500", "-m", fmt.Sprint(numbers)}})
	if err != nil {
		refUAS.Kill()
		return "", err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	uacErr := uac.Wait(wctx)
	cancel()
	refUAS.Kill()
	st, serr := uac.Stats()
	var sippRate float64
	sippOK := 0
	if serr == nil && st.Elapsed() > 0 {
		sippOK = st.Successful
		sippRate = float64(st.Successful) / st.Elapsed().Seconds()
	}

	// redial: one task, hangup target, queue filled at once.
	fmt.Println("campaign: redial")
	uas, err := startSipp(sippOpts{Scenario: uasXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "uas"), Args: []string{"-trace_msg", "-message_file", filepath.Join(dir, "uas-messages.log")}})
	if err != nil {
		return "", err
	}
	defer uas.Kill()
	rds.Client.HSet(ctx, "cti_line@default", "bench", fmt.Sprintf(`{"params":{"group":"bench","uri":"sip:%s","limit":2000,"enable":true}}`, uas.Addr))
	rds.Client.HSet(ctx, "cti_dialplan@default", "default:bench", `{"type":"hangup"}`)
	rds.Client.HSet(ctx, "cti_queue_dialer_task@template", "bench",
		`{"params":{"enable":true,"line_group":["bench"],"limit":300,"number_queue":"bench_q","destination_extension":"bench"}}`)
	node, err := startBenchNode(ctx, rds, filepath.Join(dir, "node"), "bench")
	if err != nil {
		return "", err
	}
	defer node.stop()
	<-node.Dialer.Synced()

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

	// Throughput: 20,000 numbers at once.
	items := make([]string, numbers)
	for i := range items {
		items[i] = fmt.Sprintf("1777%07d", i)
	}
	cmdBefore, _ := commandCalls(ctx, rds)
	resetPeakRSS()
	start := time.Now()
	if _, err := node.Store.PushNumbers(ctx, "bench_q", items); err != nil {
		return "", err
	}
	if err := waitListLen(ctx, rds, numbers, 3*time.Minute); err != nil {
		return "", fmt.Errorf("campaign: %w", err)
	}
	elapsed := time.Since(start)
	cmdAfter, _ := commandCalls(ctx, rds)
	rss := peakRSS()
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
	invited := 0
	for _, n := range items {
		if _, ok := invites[n]; ok {
			invited++
		}
	}
	qs, _ := node.Store.QueueStats(ctx, "bench_q")

	var sb strings.Builder
	fmt.Fprintf(&sb, "## 2. Campaign\n\n")
	fmt.Fprintf(&sb, "A queue dialer task (`limit` 300, line group `bench`, dialplan target `{\"type\":\"hangup\"}`) on an in-process node dials a queue of %d numbers pushed at once with one pipelined LPUSH batch per 1000 against a SIPp UAS (`uas_bench.xml`); the reference is SIPp's own UAC (`uac_bench.xml -r 4000 -l 500`) against the same UAS scenario in the same run.\n\n", numbers)
	fmt.Fprintf(&sb, "Machine: %s. Load average after: %s.\n\n", machine(), loadAverage())
	fmt.Fprintf(&sb, "| measure | value |\n|---|---:|\n")
	fmt.Fprintf(&sb, "| SIPp UAC calls/s (reference) | %.0f (%d ok, exit %v) |\n", sippRate, sippOK, errOK(uacErr))
	fmt.Fprintf(&sb, "| redial numbers/s, queue to CDR | %.0f (%d numbers in %s) |\n", rate, numbers, elapsed.Round(time.Millisecond))
	if sippRate > 0 {
		fmt.Fprintf(&sb, "| ratio redial / SIPp | %.2f |\n", rate/sippRate)
	}
	fmt.Fprintf(&sb, "| numbers lost (no CDR) | %d |\n| numbers with more than one CDR | %d |\n| INVITEs seen by the UAS | %d of %d |\n| not ANSWERED | %d |\n", lost, dup, invited, numbers, notAnswered)
	fmt.Fprintf(&sb, "| queue left / claims left / interrupted / invalid | %d / %d / %d / %d |\n", qs.Queue, sumMap(qs.Processing), qs.Interrupted, qs.Invalid)
	fmt.Fprintf(&sb, "| LPUSH on an idle task to INVITE on the wire, p50 / p99 / max (%d samples) | %s / %s / %s |\n", len(lat),
		ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(percentile(lat, 100)))
	fmt.Fprintf(&sb, "| Redis commands per number (INFO commandstats) | %.1f |\n", float64(cmdAfter-cmdBefore)/numbers)
	fmt.Fprintf(&sb, "| peak RSS of the bench process | %s |\n\n", mib(rss))
	fmt.Fprintf(&sb, "Latency is measured from just before the LPUSH to SIPp's receive timestamp of the INVITE (`-trace_msg`, same clock), one number at a time, waiting for each CDR so the task is idle. Redis commands include the CDR's LPUSH and XADD, the claim (BLMOVE), the invite mark and ack scripts, the line lease acquire/release, and heartbeats and polling during the run.\n\nCommand:\n\n```\n%s\n```\n", b.command)
	return sb.String(), nil
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
