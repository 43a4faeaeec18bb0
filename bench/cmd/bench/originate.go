package main

// Part 1, originate: how many calls per second redial originates against a
// SIPp UAS (INVITE, 180, 200, ACK, BYE, 200), next to SIPp's own UAC
// against the same UAS as the reference, on one rate ladder.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"redial/internal/call"
)

const (
	benchGroup    = "bench"
	benchCDRList  = "enigma:notifications:campaigns"
	sustainedFrac = 0.95 // a step is sustained at >= 95% of its rate with zero failures
)

// sippRun is one step of the reference.
type sippRun struct {
	rate, calls   int
	successful    int
	failed        int // every call not successful
	elapsed       time.Duration
	uacRSS        int64 // SIPp UAC VmHWM
	uacCPU        time.Duration
	uasCPU        time.Duration
	exitErr       error
	udpDrops      int64
	note          string
	achievedPerS  float64
	sustainedStep bool
}

// redialRun is one step of redial.
type redialRun struct {
	rate, calls  int
	completed    int // Place returned
	ok           int // answered, with an answer time
	failures     int // everything else, including calls never placed
	failureKinds map[string]int
	wall         time.Duration
	setupP50     time.Duration
	setupP99     time.Duration
	setupMax     time.Duration
	callP50      time.Duration // Place start to return
	callP99      time.Duration
	// phases of the whole call, from the CDR's times: before the INVITE
	// (line lease), after the answer until End (dialplan, BYE, lease
	// release), after End until Place returns (CDR push); p50 and p99.
	phases       [3][2]time.Duration
	peakRSS      int64
	cpu          time.Duration
	maxInflight  int64
	maxLag       time.Duration
	cdrsOnRedis  int64
	uasOK        int
	uasCPU       time.Duration
	redisCPU     time.Duration
	heapAfter    int64 // live heap right after the step (after GC)
	nodeHeld     int64 // live heap freed by stopping the node: what it keeps of ended calls
	timerHeld    int64 // -memprofile run: live heap freed in the 35 s after the step, node still up (SIP transaction timers, 32 s)
	warnings     int   // node log lines (warn and up)
	libLogs      int64 // records written by libraries through slog.Default
	udpDrops     int64 // kernel UDP receive-buffer drops during the step
	achievedPerS float64
	sustained    bool
}

func runOriginate(ctx context.Context, b *bench) (string, error) {
	uac, err := scenarioPath(b.root, "uac_bench.xml")
	if err != nil {
		return "", err
	}
	uas, err := scenarioPath(b.root, "uas_bench.xml")
	if err != nil {
		return "", err
	}
	dir := filepath.Join(b.work, "originate")
	loadBefore := loadAverage()
	began := time.Now()

	if err := os.MkdirAll(filepath.Join(dir, "redis"), 0o755); err != nil {
		return "", err
	}
	rds, err := startRedis(ctx, filepath.Join(dir, "redis"))
	if err != nil {
		return "", err
	}
	defer rds.Stop()
	if err := rds.Client.HSet(ctx, "cti_dialplan@default", "default:bench", `{"type":"hangup"}`).Err(); err != nil {
		return "", fmt.Errorf("originate: write dialplan: %w", err)
	}

	sippRuns := map[int]*sippRun{}
	redialRuns := map[int]*redialRun{}
	var errs []error
	// Each side climbs its own ladder up to its first unsustained step,
	// then narrows the gap below it (climb), one step of each side in
	// turn, so the ratio is against SIPp's best sustained rate on the
	// machine as it was while redial ran.
	sippSide := climbSide{b.sippRates, func(rate int) (bool, error) {
		r, err := runSippReference(ctx, b, uac, uas, rate, filepath.Join(dir, fmt.Sprintf("sipp-%d", rate)))
		if err != nil {
			return false, err
		}
		sippRuns[rate] = r
		fmt.Printf("  SIPp   %5d cps: %8.1f calls/s, %d/%d ok, %s\n", rate, r.achievedPerS, r.successful, r.calls, r.elapsed.Round(time.Millisecond))
		return r.sustainedStep, nil
	}}
	redialSide := climbSide{b.rates, func(rate int) (bool, error) {
		r, err := runRedial(ctx, b, rds, uas, rate, filepath.Join(dir, fmt.Sprintf("redial-%d", rate)), "", "", "")
		if err != nil {
			return false, err
		}
		redialRuns[rate] = r
		fmt.Printf("  redial %5d cps: %8.1f calls/s, %d/%d ok, setup p50 %s ms p99 %s ms, node CPU %.0f µs/call, RSS %s, CDRs %d, max in flight %d\n",
			rate, r.achievedPerS, r.ok, r.calls, ms(r.setupP50), ms(r.setupP99), float64(r.cpu.Microseconds())/float64(max(r.completed, 1)), mib(r.peakRSS), r.cdrsOnRedis, r.maxInflight)
		return r.sustained, nil
	}}
	ran, stepErrs := climbAlternately(ctx, sippSide, redialSide)
	sippRan, redialRan := ran[0], ran[1]
	errs = append(errs, stepErrs...)

	var profiled *redialRun
	if (b.cpuProfile != "" || b.memProfile != "" || b.blkProfile != "") && ctx.Err() == nil {
		rate := bestRedial(redialRan, redialRuns)
		if rate == 0 {
			rate = b.rates[0]
		}
		fmt.Printf("  profiling redial at %d cps (cpu %q, heap %q, block %q)\n", rate, b.cpuProfile, b.memProfile, b.blkProfile)
		r, err := runRedial(ctx, b, rds, uas, rate, filepath.Join(dir, fmt.Sprintf("redial-%d-profile", rate)), b.cpuProfile, b.memProfile, b.blkProfile)
		if err != nil {
			errs = append(errs, err)
		} else {
			profiled = r
		}
	}
	sec := originateReport(b, sippRan, redialRan, sippRuns, redialRuns, profiled, loadBefore, loadAverage(), time.Since(began))
	return sec, errors.Join(errs...)
}

// refineSteps is how many steps each side adds below its first unsustained
// step. A ladder's steps are far apart near the top (SIPp's go 20,000,
// 24,000; redial's 8,000, 12,000), so a side's best sustained step could
// sit up to a third below what it sustains; two halvings of the gap put
// each side's best within about a twentieth of its ceiling, and treat both
// sides alike, as the ratio needs.
const refineSteps = 2

// refineRound is the grain of a refining step's rate.
const refineRound = 500

// climber is one side's walk up its ladder (see climb): the next rate to
// run, given what the rates run so far showed.
type climber struct {
	ladder  []int
	i       int // next ladder step
	lo, hi  int // last sustained rate; lowest unsustained one
	refined int // refining steps run
	ran     []int
}

// next returns the rate to run next, or false when the side is done.
func (c *climber) next() (int, bool) {
	if c.hi == 0 {
		if c.i < len(c.ladder) {
			return c.ladder[c.i], true
		}
		return 0, false
	}
	if c.refined >= refineSteps || c.lo == 0 {
		return 0, false
	}
	mid := (c.lo + (c.hi-c.lo)/2) / refineRound * refineRound
	if mid <= c.lo || mid >= c.hi {
		return 0, false
	}
	return mid, true
}

// record notes how the rate next returned went.
func (c *climber) record(rate int, sustained bool) {
	c.ran = append(c.ran, rate)
	if c.hi == 0 {
		c.i++
	} else {
		c.refined++
	}
	if sustained {
		c.lo = rate
	} else {
		c.hi = rate
	}
}

// climb runs step at each rate of ladder in order until one is not
// sustained, then up to refineSteps more at the middle of the gap between
// the last sustained rate and the lowest unsustained one (rounded to
// refineRound), narrowing it each time. It returns the rates it ran, in
// ascending order, and the error that stopped it, if any.
func climb(ctx context.Context, ladder []int, step func(rate int) (bool, error)) ([]int, error) {
	ran, errs := climbAlternately(ctx, climbSide{ladder, step})
	return ran[0], errs[0]
}

// climbSide is one side of climbAlternately: its ladder and how it runs a
// step.
type climbSide struct {
	ladder []int
	step   func(rate int) (bool, error)
}

// climbAlternately climbs each side's ladder as climb does, taking one
// step of each side in turn, so that a change in the machine's speed
// during the part (a noisy neighbour, a slower phase of the host) lands on
// both sides alike instead of on whichever ran its ladder second. A side
// stops at its own ceiling or error; the others go on. It returns each
// side's rates run, ascending, and the error that stopped it.
func climbAlternately(ctx context.Context, sides ...climbSide) ([][]int, []error) {
	cs := make([]climber, len(sides))
	errs := make([]error, len(sides))
	done := make([]bool, len(sides))
	for i := range sides {
		cs[i].ladder = sides[i].ladder
	}
	for left := len(sides); left > 0 && ctx.Err() == nil; {
		for i := range sides {
			if done[i] || ctx.Err() != nil {
				continue
			}
			rate, more := cs[i].next()
			if !more {
				done[i] = true
				left--
				continue
			}
			ok, err := sides[i].step(rate)
			if err != nil {
				errs[i], done[i] = err, true
				left--
				continue
			}
			cs[i].record(rate, ok)
		}
	}
	ran := make([][]int, len(sides))
	for i := range cs {
		ran[i] = cs[i].ran
		sortInts(ran[i])
	}
	return ran, errs
}

func bestRedial(rates []int, runs map[int]*redialRun) int {
	best := 0
	for _, rate := range rates {
		if r := runs[rate]; r != nil && r.sustained {
			best = rate
		}
	}
	return best
}

func bestSipp(rates []int, runs map[int]*sippRun) int {
	best := 0
	for _, rate := range rates {
		if r := runs[rate]; r != nil && r.sustainedStep {
			best = rate
		}
	}
	return best
}

// runSippReference runs SIPp's UAC against a fresh SIPp UAS.
func runSippReference(ctx context.Context, b *bench, uacXML, uasXML string, rate int, dir string) (*sippRun, error) {
	n := int(float64(rate) * b.duration.Seconds())
	r := &sippRun{rate: rate, calls: n}
	uas, err := startSipp(sippOpts{Scenario: uasXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "uas")})
	if err != nil {
		return nil, err
	}
	defer uas.Kill()
	// -timeout bounds a run whose calls hang (lost packets wait for Timer B).
	limit := b.duration + 10*time.Second
	uacP, err := startSipp(sippOpts{Scenario: uacXML, BuffSize: b.sippBuff, Remote: uas.Addr, Dir: filepath.Join(dir, "uac"),
		Args: []string{"-r", fmt.Sprint(rate), "-rp", "1000", "-m", fmt.Sprint(n), "-l", fmt.Sprint(b.inflight),
			"-timeout", fmt.Sprintf("%ds", int(limit.Seconds())), "-timeout_error"}})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, limit+10*time.Second)
	defer cancel()
	drops0 := udpRcvbufErrors()
	r.exitErr = uacP.Wait(wctx)
	r.udpDrops = udpRcvbufErrors() - drops0
	uas.Kill()
	st, err := uacP.Stats()
	if err != nil {
		return nil, fmt.Errorf("originate: SIPp reference at %d cps: %w\n%s", rate, err, tail(uacP.Output(), 1500))
	}
	r.successful = st.Successful
	r.failed = n - st.Successful
	r.elapsed = st.Elapsed()
	if r.elapsed > 0 {
		r.achievedPerS = float64(r.successful) / r.elapsed.Seconds()
	}
	r.uacRSS, r.uacCPU, r.uasCPU = uacP.PeakRSS(), uacP.CPU(), uas.CPU()
	switch {
	case r.elapsed >= limit-time.Second:
		r.note = "stopped by -timeout"
	case r.exitErr != nil && r.failed == 0:
		r.note = fmt.Sprintf("SIPp exited with %v", r.exitErr)
	}
	r.sustainedStep = r.failed == 0 && r.exitErr == nil && r.achievedPerS >= sustainedFrac*float64(rate)
	return r, nil
}

// runRedial runs a fresh node against a fresh SIPp UAS at rate calls/s.
func runRedial(ctx context.Context, b *bench, rds *redisServer, uasXML string, rate int, dir, cpuProfile, memProfile, blkProfile string) (*redialRun, error) {
	n := int(float64(rate) * b.duration.Seconds())
	r := &redialRun{rate: rate, calls: n, failureKinds: map[string]int{}}
	uas, err := startSipp(sippOpts{Scenario: uasXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "uas")})
	if err != nil {
		return nil, err
	}
	defer uas.Kill()
	line := fmt.Sprintf(`{"params":{"group":%q,"uri":"sip:%s","limit":%d,"enable":true}}`, benchGroup, uas.Addr, b.inflight)
	if err := rds.Client.HSet(ctx, "cti_line@default", "bench", line).Err(); err != nil {
		return nil, fmt.Errorf("originate: write line: %w", err)
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "node.log")
	recs := make([]callResult, n)
	var inflight, maxInflight atomic.Int64
	// slots caps the calls in flight: a call takes one when it is sent to
	// the node and gives it back when its result arrives.
	slots := make(chan struct{}, b.inflight)
	var resultErr atomic.Value
	var results sync.WaitGroup
	node, err := startOrigNode(ctx, nodeConfig{Redis: rds.URL, Dir: dir, Inflight: b.inflight,
		CPUProfile: cpuProfile, MemProfile: memProfile, BlkProfile: blkProfile}, func(line string) {
		res, err := parseResult(line)
		if err != nil || res.i < 0 || res.i >= n {
			resultErr.Store(fmt.Errorf("originate: node process: %v (index %d)", err, res.i))
			return
		}
		recs[res.i] = res
		inflight.Add(-1)
		<-slots
		results.Done()
	})
	if err != nil {
		return nil, err
	}
	defer node.kill()
	nodePID := node.pid()

	// A few calls first: a broken setup fails here in a second, not after
	// a whole step, and connection pools are warm for the step.
	if err := node.send("warm 20", true); err != nil {
		return nil, fmt.Errorf("originate: node process: %w", err)
	}
	if res, err := node.await(ctx, "warm ", 30*time.Second); err != nil {
		return nil, err
	} else if msg, bad := strings.CutPrefix(res, "err "); bad {
		msg, _ = strconv.Unquote(msg)
		return nil, fmt.Errorf("originate: warm-up call to the SIPp UAS at %s failed: %s (node log %s)", uas.Addr, msg, logPath)
	}
	if err := waitListLen(ctx, rds, 20, 10*time.Second); err != nil {
		return nil, fmt.Errorf("originate: warm-up CDRs: %w", err)
	}
	rds.Client.Del(ctx, benchCDRList)

	if err := node.send("go", true); err != nil {
		return nil, fmt.Errorf("originate: node process: %w", err)
	}
	if _, err := node.await(ctx, "going", 10*time.Second); err != nil {
		return nil, err
	}
	cpu0, redis0, uas0, drops0 := procCPU(nodePID), rds.CPU(), procCPU(uas.cmd.Process.Pid), udpRcvbufErrors()
	stepCtx, cancelStep := context.WithTimeout(ctx, 3*b.duration+60*time.Second)
	defer cancelStep()
	// Open-loop pacing: call i is due at i/rate seconds; when every slot
	// is taken the send waits and the lag shows in maxLag and the rate.
	first := time.Now()
	var maxLag time.Duration
	interval := float64(time.Second) / float64(rate)
	sent := 0
pace:
	for i := 0; i < n; i++ {
		due := first.Add(time.Duration(float64(i) * interval))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		select {
		case slots <- struct{}{}:
		case <-stepCtx.Done():
			break pace
		}
		cur := inflight.Add(1)
		if cur > maxInflight.Load() {
			maxInflight.Store(cur)
		}
		results.Add(1)
		if err := node.send("c "+strconv.Itoa(i), true); err != nil {
			results.Done()
			resultErr.Store(fmt.Errorf("originate: node process: %w", err))
			break
		}
		sent++
		if lag := time.Since(due); lag > maxLag {
			maxLag = lag
		}
	}
	allIn := make(chan struct{})
	go func() { results.Wait(); close(allIn) }()
	select {
	case <-allIn:
	case <-stepCtx.Done():
	}
	r.cpu = procCPU(nodePID) - cpu0
	r.redisCPU, r.uasCPU = rds.CPU()-redis0, procCPU(uas.cmd.Process.Pid)-uas0
	r.udpDrops = udpRcvbufErrors() - drops0
	if err := node.send("done", true); err != nil {
		return nil, fmt.Errorf("originate: node process: %w", err)
	}
	statsTimeout := 90 * time.Second
	if memProfile != "" {
		statsTimeout += 35 * time.Second
	}
	stats, err := node.await(ctx, "stats ", statsTimeout)
	if err != nil {
		return nil, err
	}
	var st nodeStats
	if err := json.Unmarshal([]byte(stats), &st); err != nil {
		return nil, fmt.Errorf("originate: node stats %q: %w", stats, err)
	}
	node.wait(10 * time.Second)
	if e, _ := resultErr.Load().(error); e != nil {
		return nil, e
	}
	r.peakRSS, r.heapAfter, r.nodeHeld, r.timerHeld, r.libLogs = st.PeakRSS, st.HeapAfter, st.NodeHeld, st.TimerHeld, st.LibLogs
	r.maxInflight, r.maxLag = maxInflight.Load(), maxLag
	first = first.Round(0) // the node's times are wall-clock readings

	var last time.Time
	setups := make([]time.Duration, 0, n)
	durations := make([]time.Duration, 0, n)
	var phases [3][]time.Duration
	for _, c := range recs {
		if c.end.IsZero() {
			continue
		}
		r.completed++
		durations = append(durations, c.end.Sub(c.start))
		if c.end.After(last) {
			last = c.end
		}
		if c.fail != "" {
			r.failures++
			r.failureKinds[c.fail]++
			continue
		}
		setups = append(setups, c.setup)
		for k := range phases {
			phases[k] = append(phases[k], c.phases[k])
		}
	}
	r.failures += n - r.completed // never placed: the step timed out
	if n > r.completed {
		r.failureKinds["not placed before the step's deadline"] += n - r.completed
	}
	r.ok = len(setups)
	r.wall = last.Sub(first)
	if r.wall > 0 {
		r.achievedPerS = float64(r.ok) / r.wall.Seconds()
	}
	sortDurations(durations)
	r.callP50, r.callP99 = percentile(durations, 50), percentile(durations, 99)
	for k := range phases {
		sortDurations(phases[k])
		r.phases[k] = [2]time.Duration{percentile(phases[k], 50), percentile(phases[k], 99)}
	}
	sortDurations(setups)
	r.setupP50, r.setupP99 = percentile(setups, 50), percentile(setups, 99)
	if len(setups) > 0 {
		r.setupMax = setups[len(setups)-1]
	}
	if err := waitListLen(ctx, rds, int64(n), 15*time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	}
	r.cdrsOnRedis, _ = rds.Client.LLen(ctx, benchCDRList).Result()
	rds.Client.Del(ctx, benchCDRList)
	if r.cdrsOnRedis != int64(n) {
		r.failureKinds[fmt.Sprintf("CDRs on %s: %d, want %d", benchCDRList, r.cdrsOnRedis, n)]++
	}
	uas.Kill()
	if st, err := uas.Stats(); err == nil {
		r.uasOK = st.Successful - 20 // the warm-up calls
	}
	if b, err := os.ReadFile(logPath); err == nil {
		r.warnings = strings.Count(string(b), "\n")
	}
	r.sustained = r.failures == 0 && r.cdrsOnRedis == int64(n) && r.achievedPerS >= sustainedFrac*float64(rate)
	for k, v := range r.failureKinds {
		fmt.Printf("    redial %d cps: %d × %s\n", rate, v, k)
	}
	return r, nil
}

// describe names how a call that was not answered ended.
func describe(out call.Outcome) string {
	if len(out.CDRs) == 0 {
		return fmt.Sprintf("%s without a CDR", out.Disposition)
	}
	c := out.CDRs[len(out.CDRs)-1]
	s := fmt.Sprintf("%s sip %d %s", c.Disposition, c.SIPCode, c.HangupCause)
	if reason := c.Variables["redial_reason"]; reason != "" {
		s += ": " + reason
	}
	return s
}

// waitListLen polls the CDR list until it holds want entries.
func waitListLen(ctx context.Context, rds *redisServer, want int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := rds.Client.LLen(ctx, benchCDRList).Result()
		if err == nil && got >= want {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("originate: %s holds %d CDRs after %v, want %d (err %v)", benchCDRList, got, timeout, want, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func originateReport(b *bench, sippRan, redialRan []int, sipp map[int]*sippRun, redial map[int]*redialRun, profiled *redialRun,
	loadBefore, loadAfter string, took time.Duration) string {
	var s strings.Builder
	fmt.Fprintf(&s, "## 1. Originate\n\n")
	fmt.Fprintf(&s, "redial places calls with `Calls.Place` in a node process of its own (this binary re-executed: the node plus a pipe driver, "+
		"see `bench/cmd/bench/originate_node.go`; UDP, line group `bench`, dialplan target `{\"type\":\"hangup\"}`) "+
		"against a SIPp UAS (`testdata/sipp/uas_bench.xml`): INVITE, 180, 200+SDP, ACK, then redial's BYE and its 200 — "+
		"the same exchange as the reference, SIPp's own UAC (`uac_bench.xml`, `-r <rate> -rp 1000 -l %d`) against the same UAS. "+
		"Every SIPp runs with `-buff_size %d` (its 64 KiB default drops datagrams whenever it is descheduled for a few ms at these rates). "+
		"redial's ladder %s calls/s, SIPp's own ladder %s calls/s; each step runs %s of calls (N = rate × %s), open-loop paced at the step's rate with at most %d calls in flight; "+
		"each side climbs its own ladder up to its first step that is not sustained (a failure, or below %.0f%% of the rate), "+
		"then runs up to %d more steps, each halving the gap between its last sustained rate and its lowest unsustained one (rounded to %d calls/s), "+
		"so that each side's best sustained rate is near its ceiling, not wherever its ladder happened to have a step. "+
		"The two sides take their steps in turn (SIPp's first step, redial's first, SIPp's second...), so that a change in the machine's speed during the part "+
		"lands on both sides alike, not on whichever ladder ran second.\n\n",
		b.inflight, b.sippBuff, joinInts(b.rates), joinInts(b.sippRates), b.duration, b.duration, b.inflight, sustainedFrac*100, refineSteps, refineRound)
	fmt.Fprintf(&s, "Machine: %s. Load average before/after: %s / %s. Part took %s.\n\n", machine(), loadBefore, loadAfter, took.Round(time.Second))
	bs, br := bestSipp(sippRan, sipp), bestRedial(redialRan, redial)
	var sippBest float64
	if bs > 0 {
		sippBest = sipp[bs].achievedPerS
	}
	s.WriteString("| rate attempted (calls/s) | SIPp calls/s | SIPp failed | redial calls/s | redial / SIPp's best sustained | redial failures | setup p50 / p99 (ms) | peak RSS (node process) | node CPU / call | CDRs on Redis |\n")
	s.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	dash := "—"
	rateSet := map[int]bool{}
	var all []int
	for _, r := range append(append([]int(nil), redialRan...), sippRan...) {
		if !rateSet[r] {
			rateSet[r] = true
			all = append(all, r)
		}
	}
	sortInts(all)
	for _, rate := range all {
		sp, rd := sipp[rate], redial[rate]
		if sp == nil && rd == nil {
			continue
		}
		cols := []string{fmt.Sprint(rate), dash, dash, dash, dash, dash, dash, dash, dash, dash}
		if sp != nil {
			cols[1] = fmt.Sprintf("%.0f", sp.achievedPerS)
			cols[2] = fmt.Sprintf("%d / %d", sp.failed, sp.calls)
			if sp.note != "" {
				cols[2] += " (" + sp.note + ")"
			}
		}
		if rd != nil {
			cols[3] = fmt.Sprintf("%.0f", rd.achievedPerS)
			if rd.maxInflight >= int64(b.inflight) {
				cols[3] += " †"
			}
			if sippBest > 0 {
				cols[4] = fmt.Sprintf("%.2f", rd.achievedPerS/sippBest)
			}
			cols[5] = fmt.Sprintf("%d / %d", rd.failures, rd.calls)
			cols[6] = fmt.Sprintf("%s / %s", ms(rd.setupP50), ms(rd.setupP99))
			cols[7] = mib(rd.peakRSS)
			if rd.completed > 0 {
				cols[8] = fmt.Sprintf("%.0f µs", float64(rd.cpu.Microseconds())/float64(rd.completed))
			}
			cols[9] = fmt.Sprintf("%d / %d", rd.cdrsOnRedis, rd.calls)
		}
		s.WriteString("| " + strings.Join(cols, " | ") + " |\n")
	}
	s.WriteString("\n")
	fmt.Fprintf(&s, "Highest sustained step: SIPp %s, redial %s", rateOrNone(bs, b.sippRates, len(b.sippRates) > 0), rateOrNone(br, b.rates, true))
	ratio := 0.0
	if bs > 0 && br > 0 {
		ratio = redial[br].achievedPerS / sippBest
		fmt.Fprintf(&s, "; each at its best sustained rate, redial/SIPp = %.0f / %.0f = %.2f", redial[br].achievedPerS, sippBest, ratio)
	}
	s.WriteString(".\n\n")
	// Issue 14's targets, judged on this run.
	s.WriteString("Targets (issue 14):\n\n")
	passFail := func(ok bool) string {
		if ok {
			return "**pass**"
		}
		return "**fail**"
	}
	bestRate := 0.0
	cpuAtBest := 0.0
	if br > 0 {
		bestRate = redial[br].achievedPerS
		if redial[br].completed > 0 {
			cpuAtBest = float64(redial[br].cpu.Microseconds()) / float64(redial[br].completed)
		}
	}
	fmt.Fprintf(&s, "- originate ≥ 5000 calls/s sustained with 0 failures: best sustained %.0f calls/s (step %d) — %s\n", bestRate, br, passFail(br >= 5000 && bestRate >= sustainedFrac*5000))
	// The issue states both sides' CPU per call at their best sustained
	// rates (redial's 690 µs at 2,000 calls/s, SIPp's 70 µs at 11,000), and
	// so is the target judged. Below saturation a call costs more: the
	// threads sleep between calls and each wake-up (of the node, of
	// redis-server, of SIPp) is paid again, and the group commits to Redis
	// carry fewer calls each; the table shows every step.
	cpuMin, cpuMinRate := 0.0, 0
	for _, rate := range redialRan {
		if rd := redial[rate]; rd != nil && rd.sustained && rd.completed > 0 {
			if c := float64(rd.cpu.Microseconds()) / float64(rd.completed); cpuMinRate == 0 || c < cpuMin {
				cpuMin, cpuMinRate = c, rate
			}
		}
	}
	fmt.Fprintf(&s, "- node CPU ≤ 150 µs per call at the best sustained rate: %.0f µs at step %d (lowest over the sustained steps %.0f µs, at step %d; every step is in the table) — %s\n",
		cpuAtBest, br, cpuMin, cpuMinRate, passFail(br > 0 && cpuAtBest > 0 && cpuAtBest <= 150))
	if bs > 0 {
		fmt.Fprintf(&s, "- ratio to SIPp's best sustained rate ≥ 0.45: %.2f — %s\n", ratio, passFail(ratio >= 0.45))
	} else {
		s.WriteString("- ratio to SIPp's best sustained rate ≥ 0.45: SIPp not run or not sustained — not judged\n")
	}
	s.WriteString("\n")
	s.WriteString("Notes:\n\n")
	s.WriteString("- calls/s = successful calls / wall time from the first INVITE to the last BYE's 200 " +
		"(SIPp: its `-trace_stat` start and final dump; redial: first call sent to the node to the last `Place` returning).\n")
	fmt.Fprintf(&s, "- † redial reached the cap of %d calls in flight: it no longer kept up with the pacing, so the step is at or past saturation even when counted as sustained.\n", b.inflight)
	s.WriteString("- Failures: SIPp, calls not successful; redial, any `Place` error or an outcome whose disposition is not ANSWERED. " +
		"CDRs on Redis counts `" + benchCDRList + "` after the step (must equal N: nothing lost).\n")
	s.WriteString("- Setup = the last CDR's Answer − Start (INVITE sent to 200 received, in-memory full-precision times).\n")
	s.WriteString("- Peak RSS is VmHWM of the node process, reset before the step; node CPU / call is that process's user+system time over the step ÷ calls. " +
		"It holds the node and the pipe driver (a channel send to a fixed worker and one result line per call, written in batches), not the pacing or the statistics. " +
		"The bench process, SIPp's UAS and redis-server run on the same two cores.\n")
	var details []string
	for _, rate := range all {
		if sp := sipp[rate]; sp != nil {
			details = append(details, fmt.Sprintf("SIPp %d cps: %d/%d ok in %s; UAC peak RSS %s, UAC CPU %s (%.0f µs/call), UAS CPU %s; %d UDP receive-buffer drops",
				rate, sp.successful, sp.calls, sp.elapsed.Round(time.Millisecond), mib(sp.uacRSS), sp.uacCPU.Round(10*time.Millisecond),
				float64(sp.uacCPU.Microseconds())/float64(max(sp.successful, 1)), sp.uasCPU.Round(10*time.Millisecond), sp.udpDrops))
		}
		if rd := redial[rate]; rd != nil {
			details = append(details, redialDetail(rd))
		}
	}
	if profiled != nil {
		details = append(details, "profiled run: "+redialDetail(profiled))
	}
	s.WriteString("- Per step:\n")
	for _, d := range details {
		s.WriteString("  - " + d + ".\n")
	}
	s.WriteString("\nCommand:\n\n```\n" + b.command + "\n```\n")
	return s.String()
}

func sortInts(v []int) {
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
}

func redialDetail(rd *redialRun) string {
	d := fmt.Sprintf("redial %d cps: %d/%d ok in %s, setup max %s ms, whole call (Place) p50/p99 %s/%s ms "+
		"[before INVITE %s/%s, answer to end %s/%s, end to return %s/%s], max in flight %d, max pacing lag %s; "+
		"CPU: node process %s, SIPp UAS %s, redis-server %s; live heap after the step %s, of which the node held %s (%.1f KiB/call, freed when it stopped); "+
		"UAS saw %d successful calls; %d UDP receive-buffer drops; %d node log lines at warn+, %d sipgo \"unhandled response\" log records (a 180 handled after its 200, or a retransmission)",
		rd.rate, rd.ok, rd.calls, rd.wall.Round(time.Millisecond), ms(rd.setupMax), ms(rd.callP50), ms(rd.callP99),
		ms(rd.phases[0][0]), ms(rd.phases[0][1]), ms(rd.phases[1][0]), ms(rd.phases[1][1]), ms(rd.phases[2][0]), ms(rd.phases[2][1]),
		rd.maxInflight, rd.maxLag.Round(time.Millisecond), rd.cpu.Round(10*time.Millisecond), rd.uasCPU.Round(10*time.Millisecond),
		rd.redisCPU.Round(10*time.Millisecond), mib(rd.heapAfter), mib(rd.nodeHeld), float64(rd.nodeHeld)/1024/float64(rd.calls), rd.uasOK, rd.udpDrops, rd.warnings, rd.libLogs)
	if rd.timerHeld != 0 {
		d += fmt.Sprintf("; -memprofile: in the 35 s after the step (node up) %s (%.1f KiB/call) was freed as SIP transaction timers fired, "+
			"the node-held figure above is what was left after that", mib(rd.timerHeld), float64(rd.timerHeld)/1024/float64(rd.calls))
	}
	for k, v := range rd.failureKinds {
		d += fmt.Sprintf(", %d × %q", v, k)
	}
	return d
}

func rateOrNone(best int, rates []int, ran bool) string {
	switch {
	case !ran:
		return "not run"
	case best == 0:
		return fmt.Sprintf("none (not even %d calls/s)", rates[0])
	case best == rates[len(rates)-1]:
		return fmt.Sprintf("≥ %d calls/s (top of the ladder)", best)
	default:
		return fmt.Sprintf("%d calls/s", best)
	}
}

// liveHeap is the live heap in bytes after two GC cycles.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

func writeHeapProfile(path string) error {
	// The heap profile is as of the last completed GC cycle but one: run
	// two so it shows what is live now.
	runtime.GC()
	runtime.GC()
	return writeProfile("heap", path)
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("originate: %s profile: %w", name, err)
	}
	defer f.Close()
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		return fmt.Errorf("originate: %s profile: %w", name, err)
	}
	return nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
