package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// runSchedule is part 3: members of the scheduled dialer falling due at
// 500 per second; how late each INVITE leaves after its due time.
func runSchedule(ctx context.Context, b *bench) (string, error) {
	const perSecond = 500
	const seconds = 10
	const total = perSecond * seconds
	dir := filepath.Join(b.work, "schedule")
	uasXML, err := scenarioPath(b.root, "uas_bench.xml")
	if err != nil {
		return "", err
	}
	rds, err := startRedis(ctx, b.work)
	if err != nil {
		return "", err
	}
	defer rds.Stop()
	msgLog := filepath.Join(dir, "uas-messages.log")
	uas, err := startSipp(sippOpts{Scenario: uasXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "uas"), Args: []string{"-trace_msg", "-message_file", msgLog}})
	if err != nil {
		return "", err
	}
	defer uas.Kill()
	rds.Client.HSet(ctx, "cti_line@default", "bench", fmt.Sprintf(`{"params":{"group":"bench","uri":"sip:%s","limit":2000,"enable":true}}`, uas.Addr))
	rds.Client.HSet(ctx, "cti_dialplan@default", "default:bench", `{"type":"hangup"}`)
	rds.Client.HSet(ctx, "cti_schedule_dialer_config@default", "bench", `{"params":{"line_group":["bench"],"destination_extension":"bench"}}`)
	node, err := startBenchNode(ctx, rds, filepath.Join(dir, "node"), "bench")
	if err != nil {
		return "", err
	}
	defer node.stop()

	// Members due from now+2 s, 500 per second, evenly spread.
	first := time.Now().Add(2 * time.Second)
	due := map[string]time.Time{}
	var zs []redis.Z
	for i := 0; i < total; i++ {
		at := first.Add(time.Duration(i) * time.Second / perSecond)
		n := fmt.Sprintf("1888%07d", i)
		due[n] = at
		zs = append(zs, redis.Z{Score: float64(at.UnixMicro()) / 1e6,
			Member: fmt.Sprintf(`{"params":{"number":%q,"expires":0,"config":"bench"}}`, n)})
	}
	for i := 0; i < len(zs); i += 1000 {
		if err := rds.Client.ZAdd(ctx, "cti_schedule_dialer_number@default", zs[i:min(i+1000, len(zs))]...).Err(); err != nil {
			return "", err
		}
	}
	if err := waitListLen(ctx, rds, total, time.Duration(seconds+60)*time.Second); err != nil {
		return "", fmt.Errorf("schedule: %w", err)
	}
	uas.Kill()
	invites, err := inviteTimes(msgLog)
	if err != nil {
		return "", err
	}
	var late []time.Duration
	missing := 0
	for n, at := range due {
		got, ok := invites[n]
		if !ok {
			missing++
			continue
		}
		late = append(late, got.Sub(at))
	}
	sortDurations(late)
	var sb strings.Builder
	fmt.Fprintf(&sb, "## 3. Schedule precision\n\n")
	fmt.Fprintf(&sb, "%d members of `cti_schedule_dialer_number@default` fall due at %d per second for %d s (added ahead of time); an in-process node claims them and dials a SIPp UAS (`uas_bench.xml`, dialplan target `{\"type\":\"hangup\"}`). Lateness is SIPp's receive timestamp of each INVITE (`-trace_msg`) minus the member's score.\n\n", total, perSecond, seconds)
	fmt.Fprintf(&sb, "Machine: %s. Load average after: %s.\n\n", machine(), loadAverage())
	fmt.Fprintf(&sb, "| measure | value |\n|---|---:|\n")
	fmt.Fprintf(&sb, "| members dialed | %d of %d |\n", len(late), total)
	fmt.Fprintf(&sb, "| lateness p50 / p99 / max | %s / %s / %s |\n", ms(percentile(late, 50)), ms(percentile(late, 99)), ms(percentile(late, 100)))
	fmt.Fprintf(&sb, "| dialed early (negative lateness) | %d |\n\n", countNegative(late))
	fmt.Fprintf(&sb, "Command:\n\n```\n%s\n```\n", b.command)
	return sb.String(), nil
}

func countNegative(d []time.Duration) int {
	n := 0
	for _, x := range d {
		if x < 0 {
			n++
		}
	}
	return n
}
