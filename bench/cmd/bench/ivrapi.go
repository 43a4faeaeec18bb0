package main

// Part 5, ivrapi: 500 inbound calls run a script whose first component
// hands them to an application (external control, oType 305); one
// WebSocket accepts all 500, then applies a playback to each, first paced
// like calls arriving, then all at once, and gives them back. The baseline
// is the same playback started by a script of its own.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

const (
	ivrapiCalls = 500
	// ivrapiRate is SIPp's call rate, and the pace of the first round of
	// applies, so the paced round and the baseline start playbacks alike.
	ivrapiRate   = 200
	ivrapiPrompt = time.Second
	ivrapiFile   = ":GS_PUB/bench/prompt.wav"
	ivrapiExtAPI = "7501"
	ivrapiExtRef = "7502"
	// ivrapiRounds of one prompt per session: round 0 paced at
	// ivrapiRate, the others all at once (several, since one burst on two
	// shared cores varies a lot from run to run).
	ivrapiRounds = 4
	// ivrapiIdle is how long the held sessions are left idle before the
	// first round, to see what holding them costs.
	ivrapiIdle = 2 * time.Second
)

// ctlSession is one session under the application's control.
type ctlSession struct {
	start      apiStart
	stopped    <-chan apiStopped
	acceptSent time.Time
	acceptRes  time.Time
	applySent  [ivrapiRounds]time.Time
	applyRes   [ivrapiRounds]time.Time
	stopAt     [ivrapiRounds]time.Time
	stopKey    [ivrapiRounds]string
	accepted   bool
	err        error
}

// latencies is a sample of durations with its percentiles.
type latencies struct {
	n             int
	p50, p99, max time.Duration
}

func summarize(d []time.Duration) latencies {
	sortDurations(d)
	return latencies{n: len(d), p50: percentile(d, 50), p99: percentile(d, 99), max: percentile(d, 100)}
}

func (l latencies) String() string {
	if l.n == 0 {
		return "—"
	}
	return fmt.Sprintf("%s / %s / %s", ms(l.p50), ms(l.p99), ms(l.max))
}

// phaseRes is what both phases measure of the node and the callers.
type phaseRes struct {
	wall          time.Duration
	cpu           time.Duration
	rss, hwm      int64
	sippOK        int
	sippFailed    int
	drainErr      error
	warn          int
	firstWarn     string
	quiet         quietWait
	drops         int64
	rcvbuf        int
	packets       int
	streams       int
	pktsPerPrompt [2]int // min, p50 over the prompts matched
	unmapped      int    // calls whose port or ACK is not in SIPp's log
}

// ivrapiResult is the controlled phase.
type ivrapiResult struct {
	phaseRes
	sessions int
	accepted int
	errs     []error
	startLat latencies // SIPp's ACK → api_start read by the client
	ivrtsLag latencies // SIPp's ACK → ivrts (session start, ms resolution)
	accept   latencies
	// applyRes, firstRTP, delivery and noStream: [0] the paced round,
	// [1] the burst rounds pooled.
	applyRes [2]latencies
	firstRTP [2]latencies
	delivery [2]latencies
	noStream [2]int
	// rtpFirst counts prompts whose first RTP packet reached the callers'
	// socket before the client had read their apply_result.
	rtpFirst [2]int
	burstP50 []time.Duration // apply → first RTP p50 of each burst round
	// resGap is, per burst round, the longest time between two
	// apply_results read while others were still due.
	resGap    []time.Duration
	stopKeys  map[string]int
	unmatched int
	apiStops  int
	other     []string
	applyPace time.Duration // how long round 0's writes took
	burstSend time.Duration // the longest a burst round took to write its frames
	// Node CPU from SIPp's start to every session accepted, in each round,
	// and from the aborts to the end.
	cpuRamp, cpuEnd time.Duration
	// cpuIdle is the node's CPU over ivrapiIdle with every session held
	// and nothing playing.
	cpuIdle  time.Duration
	cpuRound [ivrapiRounds]time.Duration
}

// baselineResult is the script phase.
type baselineResult struct {
	phaseRes
	calls    int
	firstRTP latencies // SIPp's ACK → first RTP packet
	noStream int
}

func runIVRAPI(ctx context.Context, b *bench) (string, error) {
	began := time.Now()
	loadBefore := loadAverage()
	dir := filepath.Join(b.work, "ivrapi")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	uacXML, err := scenarioPath(b.root, "uac_extmedia.xml")
	if err != nil {
		return "", err
	}
	fmt.Println("ivrapi: go build ./cmd/redial")
	bin, err := buildRedial(ctx, b.root, dir)
	if err != nil {
		return "", err
	}
	rds, err := startRedis(ctx, b.work)
	if err != nil {
		return "", err
	}
	defer rds.Stop()
	for key, kv := range map[string][][2]string{
		"cti_line@default": {{"trunk", `{"params":{"group":"trunk","uri":"sip:127.0.0.1:5999","limit":2000,"enable":true}}`}},
		"cti_dialplan@default": {
			{"public:" + ivrapiExtAPI, `{"type":"ivr","script":"benchapi"}`},
			{"public:" + ivrapiExtRef, `{"type":"ivr","script":"benchplay"}`}},
		"ivr_script@default": {
			{"benchapi", `{"start":1,"components":[{"oId":1,"oType":305,"key":"k","timeoutSec":60,"transfer":2},{"oId":2,"oType":201}]}`},
			{"benchplay", `{"start":1,"components":[{"oId":1,"oType":204,"mode":0,"file":"` + ivrapiFile + `","transfer":2},{"oId":2,"oType":201}]}`}},
	} {
		for _, f := range kv {
			if err := rds.Client.HSet(ctx, key, f[0], f[1]).Err(); err != nil {
				return "", err
			}
		}
	}
	fmt.Printf("ivrapi: %d calls under external control, one WebSocket\n", ivrapiCalls)
	api, err := ivrapiControlled(ctx, b, bin, rds, uacXML, filepath.Join(dir, "api"))
	if err != nil {
		return "", fmt.Errorf("controlled: %w", err)
	}
	fmt.Printf("ivrapi: baseline, %d calls whose script plays the prompt itself\n", ivrapiCalls)
	ref, err := ivrapiBaseline(ctx, b, bin, rds, uacXML, filepath.Join(dir, "script"))
	if err != nil {
		return "", fmt.Errorf("baseline: %w", err)
	}
	return ivrapiReport(b, api, ref, loadBefore, loadAverage(), time.Since(began)), nil
}

// startPhaseNode writes the prompt into a fresh node's store and starts the
// node as its own process.
func startPhaseNode(ctx context.Context, bin string, rds *redisServer, dir string) (*nodeProc, error) {
	if err := writeToneWAV(filepath.Join(dir, "node", "data", "stores", "GLOBALSHARE_PUBLIC", "bench", "prompt.wav"), 8000, 1000, ivrapiPrompt); err != nil {
		return nil, err
	}
	return startNodeProc(ctx, bin, rds, filepath.Join(dir, "node"))
}

// startCallers runs SIPp's UAC: ivrapiCalls calls to ext at ivrapiRate,
// media pointed at the tap, every message logged.
func startCallers(b *bench, uacXML, dir, ext string, node *nodeProc, tap *rtpTap) (*sippProc, string, error) {
	msgLog := filepath.Join(dir, "uac-messages.log")
	uac, err := startSipp(sippOpts{Scenario: uacXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "uac"), Remote: node.sipAddr,
		Args: []string{"-m", fmt.Sprint(ivrapiCalls), "-r", fmt.Sprint(ivrapiRate), "-l", fmt.Sprint(2 * ivrapiCalls), "-s", ext,
			"-key", "rtp_port", fmt.Sprint(tap.port), "-key", "audio_pt", "0", "-key", "audio_name", "PCMU", "-key", "te_pt", "101",
			"-trace_msg", "-message_file", msgLog}})
	return uac, msgLog, err
}

// finishPhase waits for SIPp to end its calls and for the node to be idle,
// then reads the node's CPU, memory and log.
func finishPhase(ctx context.Context, r *phaseRes, node *nodeProc, uac *sippProc, cpu0 time.Duration, t0 time.Time) {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	uac.Wait(wctx)
	cancel()
	_, _, _, r.drainErr = node.drained(ctx, 30*time.Second)
	r.cpu, r.wall = node.cpu()-cpu0, time.Since(t0)
	r.rss, r.hwm = node.rss()
	r.warn, r.firstWarn = warnLinesBut(node, "API open: no token exists")
	uac.Kill()
	if st, err := uac.Stats(); err == nil {
		r.sippOK, r.sippFailed = st.Successful, st.Failed
	}
}

// warnLinesBut counts the node's log lines (warn and up) but those
// holding skip, and returns the first counted.
func warnLinesBut(n *nodeProc, skip string) (int, string) {
	count, first := 0, ""
	for _, l := range strings.Split(readFileString(n.logPath), "\n") {
		if strings.TrimSpace(l) == "" || strings.Contains(l, skip) {
			continue
		}
		if first == "" {
			first = l
		}
		count++
	}
	return count, first
}

// ivrapiControlled is the phase under test.
func ivrapiControlled(ctx context.Context, b *bench, bin string, rds *redisServer, uacXML, dir string) (*ivrapiResult, error) {
	r := &ivrapiResult{stopKeys: map[string]int{}}
	tap, err := newRTPTap()
	if err != nil {
		return nil, err
	}
	defer tap.close()
	r.rcvbuf = tap.rcvbuf
	node, err := startPhaseNode(ctx, bin, rds, dir)
	if err != nil {
		return nil, err
	}
	defer node.stop()
	cli, err := dialIVRAPI(ctx, node.base)
	if err != nil {
		return nil, err
	}
	defer cli.close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, rep, err := cli.request(rctx, "subscribe", map[string]any{"class": "ivrevents"})
	cancel()
	if err != nil {
		return nil, err
	}
	if string(rep.result) != `"ok"` {
		return nil, fmt.Errorf("subscribe: result %s", rep.result)
	}

	r.quiet = waitQuiet(ctx, mediaQuietMax, node.pid, rds.cmd.Process.Pid)
	drops0 := udpDrops(func(p int) bool { return p == tap.port })
	cpu0, t0 := node.cpu(), time.Now()
	uac, msgLog, err := startCallers(b, uacXML, dir, ivrapiExtAPI, node, tap)
	if err != nil {
		return nil, err
	}
	defer uac.Kill()

	// Accept every session as its api_start comes in.
	pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var sessions []*ctlSession
	var wg sync.WaitGroup
	var mu sync.Mutex
	fail := func(s *ctlSession, err error) {
		mu.Lock()
		defer mu.Unlock()
		if s.err == nil {
			s.err = err
			r.errs = append(r.errs, fmt.Errorf("session %s: %w", s.start.ivrid, err))
		}
	}
	deadline := time.NewTimer(time.Duration(ivrapiCalls)*time.Second/ivrapiRate + 30*time.Second)
	defer deadline.Stop()
collect:
	for len(sessions) < ivrapiCalls {
		select {
		case st := <-cli.starts:
			s := &ctlSession{start: st, stopped: cli.watch(st.ivrid)}
			sessions = append(sessions, s)
			wg.Add(1)
			go func() {
				defer wg.Done()
				sent, rep, err := cli.request(pctx, "ivrapi_accept", map[string]any{"key": "k", "ivrid": s.start.ivrid})
				s.acceptSent, s.acceptRes = sent, rep.at
				if err != nil {
					fail(s, err)
				} else if !strings.Contains(string(rep.result), `"idle"`) {
					fail(s, fmt.Errorf("accept: result %s", rep.result))
				} else {
					s.accepted = true
				}
			}()
		case <-deadline.C:
			break collect
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	wg.Wait()
	r.sessions = len(sessions)
	r.cpuRamp = node.cpu() - cpu0
	for _, s := range sessions {
		if s.err == nil {
			r.accepted++
		}
	}
	fmt.Printf("ivrapi: %d api_start, %d accepted\n", r.sessions, r.accepted)
	if r.sessions == 0 {
		return nil, fmt.Errorf("no api_start within the ramp + 30 s (SIPp: %s)", tail(uac.Output(), 1000))
	}
	idle0 := node.cpu()
	if err := sleepCtx(ctx, ivrapiIdle); err != nil {
		return nil, err
	}
	r.cpuIdle = node.cpu() - idle0

	// Rounds of one playback each: paced, then all at once.
	for round := 0; round < ivrapiRounds; round++ {
		cpuBefore, begin := node.cpu(), time.Now()
		var spanMu sync.Mutex
		var sentSpan time.Duration
		for i, s := range sessions {
			if s.err != nil {
				continue
			}
			if round == 0 {
				if wait := time.Until(begin.Add(time.Duration(i) * time.Second / ivrapiRate)); wait > 0 {
					time.Sleep(wait)
				}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sent, rep, err := cli.request(pctx, "ivrapi_component_apply", map[string]any{"key": "k", "ivrid": s.start.ivrid,
					"data": map[string]any{"oType": 204, "mode": 0, "file": ivrapiFile}})
				s.applySent[round], s.applyRes[round] = sent, rep.at
				spanMu.Lock()
				sentSpan = max(sentSpan, sent.Sub(begin))
				spanMu.Unlock()
				if err != nil {
					fail(s, fmt.Errorf("round %d: %w", round, err))
					return
				}
				select {
				case ev := <-s.stopped:
					s.stopAt[round], s.stopKey[round] = ev.at, ev.transferKey
				case <-pctx.Done():
					fail(s, fmt.Errorf("round %d: no ivrapi_component_stopped", round))
				}
			}()
		}
		wg.Wait()
		r.cpuRound[round] = node.cpu() - cpuBefore
		if round == 0 {
			r.applyPace = sentSpan
		} else {
			r.burstSend = max(r.burstSend, sentSpan)
		}
		fmt.Printf("ivrapi: round %d done in %s\n", round, time.Since(begin).Round(time.Millisecond))
	}

	// Give every session back: the script hangs up.
	cpuAbort := node.cpu()
	for _, s := range sessions {
		if !s.accepted {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := cli.request(pctx, "ivrapi_abort", map[string]any{"key": "k", "ivrid": s.start.ivrid}); err != nil {
				fail(s, err)
			}
		}()
	}
	wg.Wait()
	finishPhase(ctx, &r.phaseRes, node, uac, cpu0, t0)
	r.cpuEnd = r.cpu - (cpuAbort - cpu0)
	r.drops = udpDrops(func(p int) bool { return p == tap.port }) - drops0
	cli.mu.Lock()
	r.unmatched, r.apiStops, r.other = cli.unmatched, cli.apiStops, cli.other
	cli.mu.Unlock()
	node.stop()

	pkts := tap.close()
	calls, err := sippCalls(msgLog)
	if err != nil {
		return nil, fmt.Errorf("SIPp message log: %w", err)
	}
	streams := streamsByPort(pkts)
	r.packets = len(pkts)
	for _, l := range streams {
		r.streams += len(l)
	}
	var startLat, ivrtsLag, accept []time.Duration
	var applyRes, firstRTP, delivery [2][]time.Duration
	var perBurst [ivrapiRounds][]time.Duration
	var perPrompt []time.Duration
	for _, s := range sessions {
		c := calls[s.start.callid]
		if c == nil || c.rtpPort == 0 || c.ack.IsZero() {
			r.unmapped++
			continue
		}
		startLat = append(startLat, s.start.at.Sub(c.ack))
		ivrtsLag = append(ivrtsLag, time.UnixMilli(s.start.ivrts).Sub(c.ack))
		if !s.acceptRes.IsZero() {
			accept = append(accept, s.acceptRes.Sub(s.acceptSent))
		}
		for round := 0; round < ivrapiRounds; round++ {
			k := min(round, 1)
			if s.applySent[round].IsZero() || s.applyRes[round].IsZero() {
				continue
			}
			applyRes[k] = append(applyRes[k], s.applyRes[round].Sub(s.applySent[round]))
			if s.stopAt[round].IsZero() {
				continue
			}
			r.stopKeys[s.stopKey[round]]++
			st := streamAfter(streams, c.rtpPort, s.applySent[round].UnixNano())
			if st == nil {
				r.noStream[k]++
				continue
			}
			first := time.Duration(st.first - s.applySent[round].UnixNano())
			if st.first < s.applyRes[round].UnixNano() {
				r.rtpFirst[k]++
			}
			firstRTP[k] = append(firstRTP[k], first)
			perBurst[round] = append(perBurst[round], first)
			delivery[k] = append(delivery[k], time.Duration(s.stopAt[round].UnixNano()-st.last))
			perPrompt = append(perPrompt, time.Duration(st.packets))
		}
	}
	if b.keep {
		if err := writeSessionsCSV(filepath.Join(dir, "sessions.csv"), sessions, calls, streams); err != nil {
			return nil, err
		}
	}
	r.startLat, r.ivrtsLag, r.accept = summarize(startLat), summarize(ivrtsLag), summarize(accept)
	for k := 0; k < 2; k++ {
		r.applyRes[k], r.firstRTP[k], r.delivery[k] = summarize(applyRes[k]), summarize(firstRTP[k]), summarize(delivery[k])
	}
	for round := 1; round < ivrapiRounds; round++ {
		r.burstP50 = append(r.burstP50, summarize(perBurst[round]).p50)
		var reads []time.Time
		for _, s := range sessions {
			if !s.applyRes[round].IsZero() {
				reads = append(reads, s.applyRes[round])
			}
		}
		sort.Slice(reads, func(i, j int) bool { return reads[i].Before(reads[j]) })
		var gap time.Duration
		for i := 1; i < len(reads); i++ {
			gap = max(gap, reads[i].Sub(reads[i-1]))
		}
		r.resGap = append(r.resGap, gap)
	}
	sortDurations(perPrompt)
	if len(perPrompt) > 0 {
		r.pktsPerPrompt = [2]int{int(perPrompt[0]), int(percentile(perPrompt, 50))}
	}
	return r, nil
}

// ivrapiBaseline is the same prompt played by a script of its own.
func ivrapiBaseline(ctx context.Context, b *bench, bin string, rds *redisServer, uacXML, dir string) (*baselineResult, error) {
	r := &baselineResult{}
	tap, err := newRTPTap()
	if err != nil {
		return nil, err
	}
	defer tap.close()
	r.rcvbuf = tap.rcvbuf
	node, err := startPhaseNode(ctx, bin, rds, dir)
	if err != nil {
		return nil, err
	}
	defer node.stop()
	r.quiet = waitQuiet(ctx, mediaQuietMax, node.pid, rds.cmd.Process.Pid)
	drops0 := udpDrops(func(p int) bool { return p == tap.port })
	cpu0, t0 := node.cpu(), time.Now()
	uac, msgLog, err := startCallers(b, uacXML, dir, ivrapiExtRef, node, tap)
	if err != nil {
		return nil, err
	}
	defer uac.Kill()
	finishPhase(ctx, &r.phaseRes, node, uac, cpu0, t0)
	r.drops = udpDrops(func(p int) bool { return p == tap.port }) - drops0
	node.stop()

	pkts := tap.close()
	calls, err := sippCalls(msgLog)
	if err != nil {
		return nil, fmt.Errorf("SIPp message log: %w", err)
	}
	streams := streamsByPort(pkts)
	r.packets = len(pkts)
	for _, l := range streams {
		r.streams += len(l)
	}
	var first, perPrompt []time.Duration
	for _, c := range calls {
		if c.rtpPort == 0 || c.ack.IsZero() {
			r.unmapped++
			continue
		}
		r.calls++
		st := streamAfter(streams, c.rtpPort, c.ack.UnixNano())
		if st == nil {
			r.noStream++
			continue
		}
		first = append(first, time.Duration(st.first-c.ack.UnixNano()))
		perPrompt = append(perPrompt, time.Duration(st.packets))
	}
	r.firstRTP = summarize(first)
	sortDurations(perPrompt)
	if len(perPrompt) > 0 {
		r.pktsPerPrompt = [2]int{int(perPrompt[0]), int(percentile(perPrompt, 50))}
	}
	if r.calls == 0 {
		return r, errors.New("no call in SIPp's message log has both an answer SDP and an ACK")
	}
	return r, nil
}

func ivrapiReport(b *bench, a *ivrapiResult, ref *baselineResult, loadBefore, loadAfter string, took time.Duration) string {
	var s strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&s, format, args...) }
	bursts := ivrapiRounds - 1
	w("## 5. ivrapi\n\n")
	w("Each phase runs a fresh redial node as its own process, as part 4 does (`redial serve --redis <private redis-server> --host bench --sip udp:127.0.0.1:<port> --sip-public-ip 127.0.0.1 --rtp-ports 16384-32000 --http 127.0.0.1:<port> --data <dir> --log-level warn`), so its CPU (`/proc/<pid>/stat`) and memory (`VmHWM`) are its own. The callers are one SIPp UAC (`testdata/sipp/uac_extmedia.xml -m %d -r %d -l %d -s <extension> -key rtp_port <P>`, PCMU, `-trace_msg`) calling in from the trunk line's address (`cti_line@default` uri `sip:127.0.0.1:5999`, no challenge). Every offer points the media at one UDP socket of the bench (SO_RCVBUF %s, SO_TIMESTAMPNS); packets are told apart per call by their source port, redial's RTP port in the call's answer SDP (SIPp's message log, matched to the session by the `callid` of `api_start`), and per prompt by SSRC (each playback is a new RTP stream). The prompt is `%s`, a %s 8 kHz 16-bit mono 1 kHz tone (50 packets of 20 ms).\n\n",
		ivrapiCalls, ivrapiRate, 2*ivrapiCalls, mib(int64(a.rcvbuf)), ivrapiFile, secs(ivrapiPrompt))
	w("- **ivrapi**: dialplan `public:%s` → script `[{\"oId\":1,\"oType\":305,\"key\":\"k\",\"timeoutSec\":60,\"transfer\":2},{\"oId\":2,\"oType\":201}]`. The application is **one** WebSocket (`ws://<http>/api/v1/ws`, no token: loopback and none defined) in the bench process: it subscribes to `ivrevents`, sends `ivrapi_accept` for each session as its `api_start` arrives, and once all %d sessions are held applies `{\"oType\":204,\"mode\":0,\"file\":\"%s\"}` to each, round after round, the next round once every stopped event of the last is in: first paced at %d/s in the order the sessions arrived (as the baseline's playbacks start), then %d rounds of all %d frames written back to back (before the first round the held sessions are left idle for %s). Then `ivrapi_abort` to each, and the script hangs up. Apply → first RTP runs from just before the client writes the apply frame to the kernel receive stamp of the prompt's first packet at the callers' socket; event delivery from the kernel stamp of the prompt's last packet there to the client having read `ivrapi_component_stopped`.\n",
		ivrapiExtAPI, ivrapiCalls, ivrapiFile, ivrapiRate, bursts, ivrapiCalls, secs(ivrapiIdle))
	w("- **baseline, script**: dialplan `public:%s` → script `[{\"oId\":1,\"oType\":204,\"mode\":0,\"file\":\"%s\",\"transfer\":2},{\"oId\":2,\"oType\":201}]`, same callers at the same rate: the playback is the script's first component. No application sees the script start, so it is taken as SIPp sending the ACK (redial answers, waits for the ACK, then runs the script); the row \"ACK → session start\" of the ivrapi phase (`ivrts`, whole ms, hence below 0) shows how close that is.\n", ivrapiExtRef, ivrapiFile)
	w("- A SIPp-only reference, as the other parts have, is not meaningful here: SIPp has no external-control API to compare with. The baseline, redial playing the same prompt without ivrapi, is the reference instead.\n\n")
	w("Machine: %s. Load average before/after: %s / %s. Part took %s.\n\n", machine(), loadBefore, loadAfter, took.Round(time.Second))

	ratio := func(x, y time.Duration) string {
		if y <= 0 || x <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f", float64(x)/float64(y))
	}
	rf := ref.firstRTP
	w("| measure (ms: p50 / p99 / max) | ivrapi, applies paced at %d/s | ivrapi, %d applies at once (%d rounds pooled) | script baseline | ivrapi / script (p50; p99) |\n|---|---:|---:|---:|---|\n", ivrapiRate, ivrapiCalls, bursts)
	w("| sessions (api_start / accepted); prompts timed | %d / %d; %d | %d | %d calls; %d | |\n",
		a.sessions, a.accepted, a.firstRTP[0].n, a.firstRTP[1].n, ref.calls, rf.n)
	w("| **apply → first RTP packet of the prompt** (baseline: script start, i.e. SIPp's ACK → first RTP packet) | **%s** | **%s** | **%s** | paced **%s; %s**, at once %s; %s |\n",
		a.firstRTP[0], a.firstRTP[1], rf, ratio(a.firstRTP[0].p50, rf.p50), ratio(a.firstRTP[0].p99, rf.p99), ratio(a.firstRTP[1].p50, rf.p50), ratio(a.firstRTP[1].p99, rf.p99))
	w("| **event delivery: last RTP packet of the prompt → `ivrapi_component_stopped` read** | **%s** | **%s** | — | |\n", a.delivery[0], a.delivery[1])
	w("| apply → `ivrapi_component_apply_result` read | %s | %s | — | |\n", a.applyRes[0], a.applyRes[1])
	w("| prompts whose first RTP packet arrived before the client had read their apply_result | %d | %d | — | |\n", a.rtpFirst[0], a.rtpFirst[1])
	w("| **accept → `ivrapi_accept_result` read** (as the api_start come, %d/s) | **%s** (%d) | | — | |\n", ivrapiRate, a.accept, a.accept.n)
	w("| SIPp's ACK → `api_start` read by the client | %s | | — | |\n", a.startLat)
	w("| SIPp's ACK → session start (`ivrts`, whole ms) | %s | | — | |\n", a.ivrtsLag)
	w("| RTP packets per prompt, min / p50 (50 sent) | %d / %d (all rounds) | | %d / %d | |\n", a.pktsPerPrompt[0], a.pktsPerPrompt[1], ref.pktsPerPrompt[0], ref.pktsPerPrompt[1])
	w("| prompts without an RTP stream after the apply (baseline: after the ACK) | %d | %d | %d | |\n\n", a.noStream[0], a.noStream[1], ref.noStream)

	per := func(d time.Duration, n int) string {
		if n <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1e3/float64(n))
	}
	var burstCPU time.Duration
	for _, c := range a.cpuRound[1:] {
		burstCPU += c
	}
	onePrompt := a.cpu - burstCPU - a.cpuIdle
	w("| node process | ivrapi | script baseline | ivrapi / script |\n|---|---:|---:|---:|\n")
	w("| **CPU per session**: CPU from SIPp's start to every call ended ÷ %d (ivrapi: %d prompts per session) | **%s** (%s in %s) | **%s** (%s in %s) | %s |\n",
		ivrapiCalls, ivrapiRounds, per(a.cpu, ivrapiCalls), a.cpu.Round(10*time.Millisecond), a.wall.Round(100*time.Millisecond),
		per(ref.cpu, ivrapiCalls), ref.cpu.Round(10*time.Millisecond), ref.wall.Round(100*time.Millisecond), ratio(a.cpu, ref.cpu))
	w("| **CPU per session with one prompt**: the same without the %d burst rounds and the idle wait | **%s** | %s | **%s** |\n", bursts, per(onePrompt, ivrapiCalls), per(ref.cpu, ivrapiCalls), ratio(onePrompt, ref.cpu))
	w("| CPU by step: calls in and accepted / %s held idle / paced round / burst rounds (each, mean) / abort and hang-up | %s / %s / %s / %s / %s | | |\n", secs(ivrapiIdle),
		a.cpuRamp.Round(10*time.Millisecond), a.cpuIdle.Round(10*time.Millisecond), a.cpuRound[0].Round(10*time.Millisecond), (burstCPU / time.Duration(max(bursts, 1))).Round(10*time.Millisecond), a.cpuEnd.Round(10*time.Millisecond))
	w("| CPU per applied prompt (its round's CPU ÷ prompts): paced / at once | %s / %s | | |\n", per(a.cpuRound[0], ivrapiCalls), per(burstCPU, bursts*ivrapiCalls))
	w("| **peak RSS** (VmHWM at the end of the phase) / RSS then | **%s** / %s | %s / %s | |\n", mib(a.hwm), mib(a.rss), mib(ref.hwm), mib(ref.rss))
	w("| SIPp calls successful / failed | %d / %d | %d / %d | |\n\n", a.sippOK, a.sippFailed, ref.sippOK, ref.sippFailed)

	w("Notes:\n\n")
	w("- The node is not in-process here: like part 4 it runs as `redial serve`, and CPU and RSS are that process's alone (SIP, IVR, RTP, its Redis client and the WebSocket). The application and the RTP socket run in the bench process, SIPp and redis-server beside it, all on the same cores.\n")
	w("- Playback is paced by the node's shared media clock (`media.Clock`): a new stream joins the next of 20 one-millisecond slots and, on a clock with no stream left, the next 20 ms boundary, so its first packet waits 0–20 ms whatever started it; that spread is most of apply → first RTP in the paced round and of the baseline. For the same reason `Play` returns at the stream's slot one period after its last packet (the tick that finds the stream's queue closed), so the stopped event trails the last packet by 20 ms before any delivery cost (which is also when the caller has heard that packet's 20 ms of audio out).\n")
	var p50s, gaps []string
	for _, d := range a.burstP50 {
		p50s = append(p50s, ms(d))
	}
	for _, d := range a.resGap {
		gaps = append(gaps, ms(d))
	}
	w("- A burst is %d frames on one connection at once: each round's writes took at most %s (paced round: %s); apply → first RTP p50 per burst round: %s ms. The replies come back in clumps: the longest pause between two apply_results read while others were still due was, per round, %s ms, and many prompts were already heard before their reply was read (row above). Nothing in the apply path waits for the playback (`ivr.Apply` hands the component to the session and returns its oId), so the clumps look like the connection's one writer goroutine and the client's reader waiting for a CPU behind the 500 request and 500 playback goroutines on 2 cores rather than like a wait in the apply path (a guess: the bench cannot see inside the node); the spread between rounds is that same contention.\n",
		ivrapiCalls, a.burstSend.Round(100*time.Microsecond), a.applyPace.Round(time.Millisecond), strings.Join(p50s, ", "), strings.Join(gaps, ", "))
	keys := []string{}
	for k, n := range a.stopKeys {
		keys = append(keys, fmt.Sprintf("%d `%s`", n, k))
	}
	sort.Strings(keys)
	w("- Stopped events' `transferKey`: %s. `api_stop` notifies read: %d. Frames nobody waited for: %d", strings.Join(keys, ", "), a.apiStops, a.unmatched)
	if len(a.other) > 0 {
		w(" (first: `%s`)", strings.ReplaceAll(a.other[0], "`", "'"))
	}
	w(".\n")
	if len(a.errs) > 0 {
		w("- **%d session errors**; first: `%s`.\n", len(a.errs), strings.ReplaceAll(a.errs[0].Error(), "`", "'"))
	}
	w("- RTP packets received: ivrapi %d in %d streams, baseline %d in %d streams; receive-buffer drops on the callers' socket (`/proc/net/udp`): %d / %d. Calls missing from SIPp's message log: %d / %d.\n",
		a.packets, a.streams, ref.packets, ref.streams, a.drops, ref.drops, a.unmapped, ref.unmapped)
	w("- Before each phase the bench waits (up to %s) for the rest of the machine to be quiet: ivrapi %s; baseline %s.\n", secs(mediaQuietMax), a.quiet, ref.quiet)
	warn := func(n int, first string) string {
		if n == 0 {
			return "none"
		}
		return fmt.Sprintf("%d (first: `%s`)", n, strings.ReplaceAll(tail(first, 300), "`", "'"))
	}
	drain := func(err error) string {
		if err == nil {
			return "no call left and `redial_rtp_ports_in_use` 0"
		}
		return "**" + err.Error() + "**"
	}
	w("- Node log lines at warn and up, besides the start-up warning that the API is open: ivrapi %s; baseline %s. After the phase: ivrapi %s; baseline %s.\n", warn(a.warn, a.firstWarn), warn(ref.warn, ref.firstWarn), drain(a.drainErr), drain(ref.drainErr))
	w("\nCommand:\n\n```\n%s\n```\n", b.command)
	return s.String()
}

// writeSessionsCSV keeps, with -keep, every session's times (Unix ns) for
// a closer look.
func writeSessionsCSV(path string, sessions []*ctlSession, calls map[string]*sippCall, streams map[uint16][]*tapStream) error {
	var sb strings.Builder
	sb.WriteString("ivrid,port,ack,api_start,accept_sent,accept_res,round,apply_sent,apply_res,first_rtp,last_rtp,packets,stopped\n")
	ns := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixNano()
	}
	for _, s := range sessions {
		c := calls[s.start.callid]
		if c == nil {
			c = &sippCall{}
		}
		for round := 0; round < ivrapiRounds; round++ {
			var first, last int64
			pk := 0
			if st := streamAfter(streams, c.rtpPort, ns(s.applySent[round])); st != nil && !s.applySent[round].IsZero() {
				first, last, pk = st.first, st.last, st.packets
			}
			fmt.Fprintf(&sb, "%s,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d\n", s.start.ivrid, c.rtpPort, ns(c.ack), ns(s.start.at), ns(s.acceptSent), ns(s.acceptRes),
				round, ns(s.applySent[round]), ns(s.applyRes[round]), first, last, pk, ns(s.stopAt[round]))
		}
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}
