package main

// Part 4, media: a redial node in its own process plays a WAV to 1,000
// concurrent calls (packet pacing as the callee's phone hears it), then
// relays RTP both ways for 500 concurrent bridged calls (CPU per relayed
// packet, next to SIPp's rtp_echo as the reference).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

const (
	mediaPlayCalls   = 1000
	mediaBridgeCalls = 500
	mediaRate        = 200 // calls originated per second
	mediaWindow      = 8 * time.Second
	mediaToneLen     = 30 * time.Second
	// mediaPerfEnv names a directory: when set, `perf record -g` samples
	// the node during each window (which costs CPU, so the numbers of such
	// a run are not the ones to publish) and `perf report` goes there.
	mediaPerfEnv = "REDIAL_BENCH_PERF"
)

// playResult is scenario A.
type playResult struct {
	posted, postErrs     int
	firstPostErr         string
	upBefore, upAfter    int
	rampUp               time.Duration
	streams              int
	received, expected   int64
	nominal              int64
	overflow             int
	jitUser, jitKern     [3]time.Duration // p50, p99, max of |interval − 20 ms|
	over5User, over5Kern float64          // share of intervals off by more than 5 ms
	intervals            int
	lag                  [3]time.Duration // bench reader: time.Now() after the read − kernel timestamp
	cpu                  time.Duration
	rss, hwm             int64
	uasCPU, redisCPU     time.Duration
	benchCPU             time.Duration
	otherCPU             time.Duration // the rest of the machine
	runq                 time.Duration // redial's threads runnable but not running
	drops                [2]int64 // phone socket, redial's RTP sockets
	rcvbuf               int
	hangupFailed         int
	drained              time.Duration
	drainErr             error
	portsAfter           float64
	cdrs                 int64
	cdrKinds             string
	uasOK                int
	warn                 int
	firstWarn            string
	headroom             time.Duration // first answer + tone length − window end
}

// bridgeResult is scenario B.
type bridgeResult struct {
	posted, postErrs   int
	firstPostErr       string
	bridged            int
	sent, sentWin      int64
	sendErrs           int64
	returned           int64 // of the packets sent in the window
	arrivedWin         int64 // echoes arriving within the window
	silentCalls        int
	rtt, rttKern       [3]time.Duration
	cpu, sippCPU       time.Duration
	rss, hwm           int64
	redisCPU, benchCPU time.Duration
	otherCPU, runq     time.Duration
	drops              [3]int64 // phone, SIPp media port, redial's RTP sockets
	hangupFailed       int
	drained            time.Duration
	drainErr           error
	portsAfter         float64
	cdrs               int64
	cdrKinds           string
	uasOK, bOK         int
	warn               int
	firstWarn          string
}

func runMedia(ctx context.Context, b *bench) (string, error) {
	began := time.Now()
	loadBefore := loadAverage()
	dir := filepath.Join(b.work, "media")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	uasXML, err := scenarioPath(b.root, "uas_answer_extmedia.xml")
	if err != nil {
		return "", err
	}
	echoXML, err := scenarioPath(b.root, "uas_answer_wait_bye.xml")
	if err != nil {
		return "", err
	}
	fmt.Println("media: go build ./cmd/redial")
	bin, err := buildRedial(ctx, b.root, dir)
	if err != nil {
		return "", err
	}
	rds, err := startRedis(ctx, b.work)
	if err != nil {
		return "", err
	}
	defer rds.Stop()

	fmt.Printf("media: A, %d playback calls\n", mediaPlayCalls)
	pa, err := mediaPlayback(ctx, b, bin, rds, uasXML, filepath.Join(dir, "play"))
	if err != nil {
		return "", fmt.Errorf("media: playback: %w", err)
	}
	fmt.Printf("media: B, %d bridged calls\n", mediaBridgeCalls)
	rds.Client.Del(ctx, benchCDRList)
	pb, err := mediaBridge(ctx, b, bin, rds, uasXML, echoXML, filepath.Join(dir, "bridge"))
	if err != nil {
		return "", fmt.Errorf("media: bridge: %w", err)
	}
	return mediaReport(b, pa, pb, loadBefore, loadAverage(), time.Since(began)), nil
}

// mediaPlayback is scenario A.
func mediaPlayback(ctx context.Context, b *bench, bin string, rds *redisServer, uasXML, dir string) (*playResult, error) {
	r := &playResult{}
	ph, err := newPhone(mediaPlayCalls * int(mediaWindow/(20*time.Millisecond)) * 3 / 2)
	if err != nil {
		return nil, err
	}
	defer ph.close()
	r.rcvbuf = ph.rcvbuf
	uas, err := startSipp(sippOpts{Scenario: uasXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "uas"),
		Args: []string{"-key", "rtp_port", fmt.Sprint(ph.port)}})
	if err != nil {
		return nil, err
	}
	defer uas.Kill()
	for key, kv := range map[string][2]string{
		"cti_line@default":     {benchGroup, fmt.Sprintf(`{"params":{"group":"bench","uri":"sip:%s","limit":2000,"enable":true}}`, uas.Addr)},
		"cti_dialplan@default": {"default:play", `{"type":"ivr","script":"play"}`},
		"ivr_script@default":   {"play", `{"start":1,"components":[{"oId":1,"oType":204,"mode":0,"file":":GS_PUB/bench/tone.wav","transfer":2},{"oId":2,"oType":201}]}`},
	} {
		if err := rds.Client.HSet(ctx, key, kv[0], kv[1]).Err(); err != nil {
			return nil, err
		}
	}
	if err := writeToneWAV(filepath.Join(dir, "node", "data", "stores", "GLOBALSHARE_PUBLIC", "bench", "tone.wav"), 8000, 1000, mediaToneLen); err != nil {
		return nil, err
	}
	node, err := startNodeProc(ctx, bin, rds, filepath.Join(dir, "node"))
	if err != nil {
		return nil, err
	}
	defer node.stop()

	start := time.Now()
	refs, errs := node.originateAll(ctx, mediaPlayCalls, mediaRate, "1999", "play")
	r.posted, r.postErrs = len(refs)-len(errs), len(errs)
	if len(errs) > 0 {
		r.firstPostErr = errs[0].Error()
	}
	// All calls up: the API shows them answered (the IVR runs) and the
	// phone hears every stream.
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := node.calls(ctx)
		if err == nil && countState(list, "answered") >= r.posted && ph.streams.Load() >= int64(r.posted) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("after 30s: %d of %d calls answered, phone hears %d streams (API error %v)",
				countState(list, "answered"), r.posted, ph.streams.Load(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.rampUp = time.Since(start)
	time.Sleep(time.Second) // the last streams' first packets are in
	list, _ := node.calls(ctx)
	r.upBefore = countState(list, "answered")

	// The window.
	perf := startPerf(node.pid, dir, "playback")
	dropsPhone0, dropsNode0 := udpDrops(func(p int) bool { return p == ph.port }), udpDrops(redialPort)
	cpu0, uas0, rds0, bench0 := node.cpu(), procCPU(uas.cmd.Process.Pid), rds.CPU(), processCPU()
	busy0, rq0 := machineBusy(), runqueueWait(node.pid)
	from := ph.now()
	ph.record(from, from+int64(mediaWindow))
	time.Sleep(mediaWindow)
	r.cpu, r.uasCPU, r.redisCPU, r.benchCPU = node.cpu()-cpu0, procCPU(uas.cmd.Process.Pid)-uas0, rds.CPU()-rds0, processCPU()-bench0
	r.runq = runqueueWait(node.pid) - rq0
	r.otherCPU = max(0, machineBusy()-busy0-r.cpu-r.uasCPU-r.redisCPU-r.benchCPU)
	time.Sleep(50 * time.Millisecond)
	r.drops = [2]int64{udpDrops(func(p int) bool { return p == ph.port }) - dropsPhone0, udpDrops(redialPort) - dropsNode0}
	r.rss, r.hwm = node.rss()
	samples, overflow := ph.take()
	perf.finish()
	r.headroom = mediaToneLen - time.Since(start) // the first call started playing after start
	list, _ = node.calls(ctx)
	r.upAfter = countState(list, "answered")
	r.overflow = overflow
	analysePlayback(r, samples)
	if b.keep {
		if err := writeSamples(filepath.Join(dir, "phone-samples.csv"), samples); err != nil {
			return nil, err
		}
	}

	// Hang up and check every port is freed.
	r.hangupFailed = node.hangupAll(ctx, refs)
	cnt, ports, took, derr := node.drained(ctx, 30*time.Second)
	_ = cnt
	r.drained, r.drainErr, r.portsAfter = took, derr, ports
	r.cdrs, r.cdrKinds = countCDRs(ctx, rds)
	r.warn, r.firstWarn = node.warnLines()
	node.stop()
	uas.Kill()
	if st, err := uas.Stats(); err == nil {
		r.uasOK = st.Successful
	}
	return r, nil
}

// redialPort tells redial's RTP ports.
func redialPort(p int) bool { return p >= 16384 && p <= 32000 }

// analysePlayback turns the phone's samples into jitter and loss.
func analysePlayback(r *playResult, samples []rxSample) {
	type stream struct {
		n                int64
		firstExt, ext    int64
		lastSeq          uint16
		lastUser, lastKn int64
	}
	byS := map[uint32]*stream{}
	var ju, jk, lag []time.Duration
	abs := func(d int64) time.Duration {
		d -= int64(20 * time.Millisecond)
		if d < 0 {
			d = -d
		}
		return time.Duration(d)
	}
	for _, s := range samples {
		lag = append(lag, time.Duration(s.lag))
		st := byS[s.ssrc]
		if st == nil {
			byS[s.ssrc] = &stream{n: 1, lastSeq: s.seq, lastUser: s.user, lastKn: s.kern}
			continue
		}
		st.n++
		st.ext += int64(int16(s.seq - st.lastSeq))
		st.lastSeq = s.seq
		ju = append(ju, abs(s.user-st.lastUser))
		jk = append(jk, abs(s.kern-st.lastKn))
		st.lastUser, st.lastKn = s.user, s.kern
	}
	r.streams = len(byS)
	for _, st := range byS {
		r.received += st.n
		r.expected += st.ext - st.firstExt + 1
	}
	r.nominal = int64(len(byS)) * int64(mediaWindow/(20*time.Millisecond))
	r.intervals = len(ju)
	for i, set := range [][]time.Duration{ju, jk} {
		sortDurations(set)
		v := [3]time.Duration{percentile(set, 50), percentile(set, 99), percentile(set, 100)}
		over := 0.0
		if len(set) > 0 {
			n := 0
			for _, d := range set {
				if d > 5*time.Millisecond {
					n++
				}
			}
			over = float64(n) / float64(len(set))
		}
		if i == 0 {
			r.jitUser, r.over5User = v, over
		} else {
			r.jitKern, r.over5Kern = v, over
		}
	}
	sortDurations(lag)
	r.lag = [3]time.Duration{percentile(lag, 50), percentile(lag, 99), percentile(lag, 100)}
}

// countCDRs counts the CDRs on Redis and sums them up by disposition and
// hangup cause.
func countCDRs(ctx context.Context, rds *redisServer) (int64, string) {
	raw, err := rds.Client.LRange(ctx, benchCDRList, 0, -1).Result()
	if err != nil {
		return 0, err.Error()
	}
	kinds := map[string]int{}
	for _, s := range raw {
		var env struct {
			Payload struct {
				Disposition string `json:"disposition"`
				HangupCause string `json:"hangup_cause"`
			} `json:"payload"`
		}
		json.Unmarshal([]byte(s), &env)
		kinds[env.Payload.Disposition+" / "+env.Payload.HangupCause]++
	}
	var parts []string
	for k, n := range kinds {
		parts = append(parts, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(parts)
	return int64(len(raw)), strings.Join(parts, ", ")
}

// mediaBridge is scenario B.
func mediaBridge(ctx context.Context, b *bench, bin string, rds *redisServer, uasXML, echoXML, dir string) (*bridgeResult, error) {
	r := &bridgeResult{}
	ph, err := newPhone(mediaBridgeCalls * int((mediaWindow+time.Second)/(20*time.Millisecond)) * 3 / 2)
	if err != nil {
		return nil, err
	}
	defer ph.close()
	uas, err := startSipp(sippOpts{Scenario: uasXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "uas"),
		Args: []string{"-key", "rtp_port", fmt.Sprint(ph.port)}})
	if err != nil {
		return nil, err
	}
	defer uas.Kill()
	mp, err := freeUDPRun(4)
	if err != nil {
		return nil, err
	}
	echo, err := startSipp(sippOpts{Scenario: echoXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "echo"),
		Args: []string{"-rtp_echo", "-mp", fmt.Sprint(mp)}})
	if err != nil {
		return nil, err
	}
	defer echo.Kill()
	rds.Client.HSet(ctx, "cti_line@default", benchGroup, fmt.Sprintf(`{"params":{"group":"bench","uri":"sip:%s","limit":2000,"enable":true}}`, uas.Addr))
	rds.Client.HSet(ctx, "cti_dialplan@default", "default:bridge", fmt.Sprintf(`{"type":"sip","uri":"sip:bridge@%s"}`, echo.Addr))
	node, err := startNodeProc(ctx, bin, rds, filepath.Join(dir, "node"))
	if err != nil {
		return nil, err
	}
	defer node.stop()

	refs, errs := node.originateAll(ctx, mediaBridgeCalls, mediaRate, "1998", "bridge")
	r.posted, r.postErrs = len(refs)-len(errs), len(errs)
	if len(errs) > 0 {
		r.firstPostErr = errs[0].Error()
	}
	// Each call bridged, with redial's A-side (callee leg) RTP port.
	aPort := map[string]int{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := node.calls(ctx)
		for _, c := range list {
			if c.State != "bridged" || len(c.Legs) == 0 {
				continue
			}
			port := c.Legs[0].LocalPort
			for _, l := range c.Legs {
				if l.Role == "callee" {
					port = l.LocalPort
				}
			}
			if port > 0 {
				aPort[c.CallRef] = port
			}
		}
		if err == nil && len(aPort) >= r.posted {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("after 30s: %d of %d calls bridged (API error %v)", len(aPort), r.posted, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.bridged = len(aPort)
	var streams []*sendStream
	for i, ref := range refs {
		if p, ok := aPort[ref]; ok {
			streams = append(streams, &sendStream{to: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(p)),
				ssrc: 0x5eed0000 + uint32(i), seq: uint16(i * 7919), ts: uint32(i) * 104729})
		}
	}

	// Send for a 2 s warm-up, then the window, then a second for the
	// last echoes.
	from := ph.now() + int64(2*time.Second)
	to := from + int64(mediaWindow)
	ph.record(from, to+int64(time.Second))
	var sent, win, serrs atomic.Int64
	sctx, stopSend := context.WithCancel(ctx)
	sendDone := make(chan struct{})
	go func() { ph.sendLoop(sctx, streams, from, to, &sent, &win, &serrs); close(sendDone) }()
	defer func() { stopSend(); <-sendDone }()
	time.Sleep(time.Duration(from - ph.now()))
	perf := startPerf(node.pid, dir, "bridge")
	drops0 := [3]int64{udpDrops(func(p int) bool { return p == ph.port }), udpDrops(func(p int) bool { return p == mp }), udpDrops(redialPort)}
	cpu0, sipp0, rds0, bench0 := node.cpu(), procCPU(echo.cmd.Process.Pid), rds.CPU(), processCPU()
	busy0, rq0 := machineBusy(), runqueueWait(node.pid)
	time.Sleep(time.Duration(to - ph.now()))
	r.cpu, r.sippCPU, r.redisCPU, r.benchCPU = node.cpu()-cpu0, procCPU(echo.cmd.Process.Pid)-sipp0, rds.CPU()-rds0, processCPU()-bench0
	r.runq = runqueueWait(node.pid) - rq0
	r.otherCPU = max(0, machineBusy()-busy0-r.cpu-r.sippCPU-r.redisCPU-r.benchCPU)
	r.drops = [3]int64{udpDrops(func(p int) bool { return p == ph.port }) - drops0[0], udpDrops(func(p int) bool { return p == mp }) - drops0[1], udpDrops(redialPort) - drops0[2]}
	perf.finish()
	r.rss, r.hwm = node.rss()
	time.Sleep(time.Duration(to + int64(time.Second) - ph.now()))
	stopSend()
	<-sendDone
	r.sent, r.sentWin, r.sendErrs = sent.Load(), win.Load(), serrs.Load()
	samples, _ := ph.take()
	if b.keep {
		if err := writeSamples(filepath.Join(dir, "phone-samples.csv"), samples); err != nil {
			return nil, err
		}
	}
	perCall := map[uint32]int{}
	var rtt, rttK []time.Duration
	for _, s := range samples {
		if s.sent == 0 {
			continue
		}
		if s.user >= from && s.user < to {
			r.arrivedWin++
		}
		if s.sent >= from && s.sent < to {
			r.returned++
			perCall[s.ssrc]++
			rtt = append(rtt, time.Duration(s.user-s.sent))
			rttK = append(rttK, time.Duration(s.kern-s.sent))
		}
	}
	r.silentCalls = len(streams) - len(perCall)
	sortDurations(rtt)
	sortDurations(rttK)
	r.rtt = [3]time.Duration{percentile(rtt, 50), percentile(rtt, 99), percentile(rtt, 100)}
	r.rttKern = [3]time.Duration{percentile(rttK, 50), percentile(rttK, 99), percentile(rttK, 100)}

	r.hangupFailed = node.hangupAll(ctx, refs)
	_, ports, took, derr := node.drained(ctx, 30*time.Second)
	r.drained, r.drainErr, r.portsAfter = took, derr, ports
	r.cdrs, r.cdrKinds = countCDRs(ctx, rds)
	r.warn, r.firstWarn = node.warnLines()
	node.stop()
	uas.Kill()
	echo.Kill()
	if st, err := uas.Stats(); err == nil {
		r.uasOK = st.Successful
	}
	if st, err := echo.Stats(); err == nil {
		r.bOK = st.Successful
	}
	return r, nil
}

// perfRun is an optional `perf record` of the node during a window.
type perfRun struct {
	cmd       *exec.Cmd
	data, out string
}

func startPerf(pid int, dir, name string) *perfRun {
	outDir := os.Getenv(mediaPerfEnv)
	if outDir == "" {
		return nil
	}
	os.MkdirAll(outDir, 0o755)
	p := &perfRun{data: filepath.Join(dir, "perf-"+name+".data"), out: filepath.Join(outDir, "perf-"+name+".txt")}
	p.cmd = exec.Command("perf", "record", "-F", "499", "-g", "-p", fmt.Sprint(pid), "-o", p.data)
	p.cmd.Stdout, p.cmd.Stderr = nil, nil
	if err := p.cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: media: perf record: %v\n", err)
		return nil
	}
	return p
}

func (p *perfRun) finish() {
	if p == nil {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	p.cmd.Wait()
	var reports []string
	for _, args := range [][]string{
		{"report", "-i", p.data, "--stdio", "--no-children", "--sort", "dso,symbol", "--percent-limit", "0.7", "-g", "none"},
		{"report", "-i", p.data, "--stdio", "--children", "--sort", "symbol", "--percent-limit", "3", "-g", "none"},
	} {
		out, err := exec.Command("perf", args...).CombinedOutput()
		if err != nil {
			out = append(out, []byte("\nperf report: "+err.Error())...)
		}
		reports = append(reports, "$ perf "+strings.Join(args, " ")+"\n"+string(out))
	}
	if err := os.WriteFile(p.out, []byte(strings.Join(reports, "\n\n")), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "bench: media: %v\n", err)
		return
	}
	fmt.Printf("media: perf report in %s\n", p.out)
}

func pct(cpu, wall time.Duration) string {
	return fmt.Sprintf("%.0f%%", 100*cpu.Seconds()/wall.Seconds())
}

func triple(v [3]time.Duration) string {
	return fmt.Sprintf("%s / %s / %s", ms(v[0]), ms(v[1]), ms(v[2]))
}

func lossPct(got, want int64) string {
	if want <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.3f%%", 100*float64(want-got)/float64(want))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func mediaReport(b *bench, a *playResult, r *bridgeResult, loadBefore, loadAfter string, took time.Duration) string {
	var s strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&s, format, args...) }
	win := mediaWindow
	w("## 4. Media\n\n")
	w("The redial node runs as its own process (`go build ./cmd/redial`; `redial serve --sip udp:127.0.0.1:<port> --sip-public-ip 127.0.0.1 --rtp-ports 16384-32000 --log-level warn`, private redis-server), so its CPU (`/proc/<pid>/stat`) and memory (`VmRSS`/`VmHWM`) are its own. Calls are originated through its REST API (`POST /api/v1/calls`, line group `bench`) at %d calls/s. The callee is a SIPp UAS (`uas_answer_extmedia.xml -key rtp_port <P>`) whose SDP answer points redial's RTP at one UDP socket of the bench, the \"phone\" (SO_RCVBUF forced to %s; SO_TIMESTAMPNS on), read in a tight loop with `time.Now()` taken right after each read.\n\n", mediaRate, mib(int64(a.rcvbuf)))
	w("- **A, playback**: %d calls, dialplan `default:play` → `{\"type\":\"ivr\",\"script\":\"play\"}`, a script of a playback component (oType 204, `:GS_PUB/bench/tone.wav`, a %s 8 kHz 16-bit mono 1 kHz tone) then hangup (201). Once every call is answered and its stream heard, the phone records %s: per RTP stream (SSRC) the inter-arrival intervals; jitter is |interval − 20 ms| over all intervals of all streams. Then every call is hung up (`DELETE /api/v1/calls/{ref}`) and `redial_rtp_ports_in_use` must return to 0.\n", mediaPlayCalls, mediaToneLen, win)
	w("- **B, bridge**: %d calls, dialplan `default:bridge` → `{\"type\":\"sip\",\"uri\":\"sip:bridge@<SIPp B>\"}`, SIPp B = `uas_answer_wait_bye.xml -rtp_echo` (echoes every RTP packet to its sender). Once `GET /api/v1/calls` shows every call `bridged` with its callee leg's `rtp_local_port`, one sender goroutine on a 20 ms ticker sends each call a 20 ms PCMU packet (172 bytes, own SSRC, send time in the payload) from the phone socket to that port; each packet crosses redial twice (A→B, the echo B→A) and returns to the phone. After a 2 s warm-up, a %s window: loss counts the packets sent in it that never came back; CPU per relayed packet is redial's CPU in the window ÷ (2 × echoes that arrived in it); SIPp's CPU in the window (its SIP side is idle then) ÷ echoes is the reference.\n\n", mediaBridgeCalls, win)
	w("Machine: %s. Load average before/after: %s / %s. Part took %s.\n\n", machine(), loadBefore, loadAfter, took.Round(time.Second))

	w("### A. %d concurrent playback calls\n\n", mediaPlayCalls)
	w("| measure | value | target |\n|---|---:|---|\n")
	w("| calls up (API `answered`) at window start / end | %d / %d (of %d posted, %d POST errors) | %d |\n", a.upBefore, a.upAfter, a.posted, a.postErrs, mediaPlayCalls)
	w("| RTP streams heard in the window | %d | |\n", a.streams)
	w("| packets received / expected from sequence numbers (loss) | %d / %d (%s) | |\n", a.received, a.expected, lossPct(a.received, a.expected))
	w("| packets received / nominal (streams × %s ÷ 20 ms) | %d / %d | |\n", win, a.received, a.nominal)
	w("| jitter \\|interval − 20 ms\\| p50 / p99 / max (ms), bench receive time | %s | p99 ≤ 5 ms: %s |\n", triple(a.jitUser), verdict(a.jitUser[1] <= 5*time.Millisecond && a.upBefore >= mediaPlayCalls))
	w("| same, kernel receive timestamps (SO_TIMESTAMPNS) | %s | |\n", triple(a.jitKern))
	w("| intervals off by more than 5 ms (bench / kernel time) | %.3f%% / %.3f%% of %d | |\n", 100*a.over5User, 100*a.over5Kern, a.intervals)
	w("| bench reader lag behind the kernel stamp p50 / p99 / max (ms) | %s | |\n", triple(a.lag))
	w("| redial CPU in the window | %s of one core (%s in %s) | |\n", pct(a.cpu, win), a.cpu.Round(10*time.Millisecond), win)
	w("| redial RSS / peak RSS (VmRSS / VmHWM) | %s / %s | |\n", mib(a.rss), mib(a.hwm))
	w("| ramp-up: first POST to all calls answered and heard | %s | |\n", a.rampUp.Round(10*time.Millisecond))
	drain := fmt.Sprintf("0 after %s", a.drained.Round(10*time.Millisecond))
	if a.drainErr != nil {
		drain = "**" + a.drainErr.Error() + "**"
	}
	w("| `redial_rtp_ports_in_use` after hanging all up | %s (%d DELETE errors) | 0 |\n", drain, a.hangupFailed)
	w("| CDRs on Redis (disposition / hangup cause) / UAS successful calls | %d (%s) / %d | %d |\n\n", a.cdrs, a.cdrKinds, a.uasOK, mediaPlayCalls)

	w("### B. %d concurrent bridged calls, RTP both ways\n\n", mediaBridgeCalls)
	relayed := 2 * r.arrivedWin
	perPkt, sippPer := 0.0, 0.0
	if relayed > 0 {
		perPkt = float64(r.cpu.Microseconds()) / float64(relayed)
	}
	if r.arrivedWin > 0 {
		sippPer = float64(r.sippCPU.Microseconds()) / float64(r.arrivedWin)
	}
	w("| measure | value | target / reference |\n|---|---:|---|\n")
	w("| calls bridged | %d (of %d posted, %d POST errors) | %d: %s |\n", r.bridged, r.posted, r.postErrs, mediaBridgeCalls, verdict(r.bridged >= mediaBridgeCalls && r.silentCalls == 0))
	w("| packets sent in the window / returned (loss) | %d / %d (%s) | |\n", r.sentWin, r.returned, lossPct(r.returned, r.sentWin))
	w("| calls with no packet back | %d | 0 |\n", r.silentCalls)
	w("| round trip p50 / p99 / max (ms), bench receive time | %s | |\n", triple(r.rtt))
	w("| same, kernel receive timestamp | %s | |\n", triple(r.rttKern))
	w("| packets relayed by redial in the window (2 × echoes arrived) | %d (%.0f/s) | |\n", relayed, float64(relayed)/win.Seconds())
	w("| redial CPU in the window | %s of one core (%s) | |\n", pct(r.cpu, win), r.cpu.Round(10*time.Millisecond))
	w("| **redial CPU per relayed packet** | **%.1f µs** | a Go SBC publishes 27 µs |\n", perPkt)
	w("| SIPp `-rtp_echo` CPU per echoed packet (reference) | %.1f µs (%s of one core) | |\n", sippPer, pct(r.sippCPU, win))
	if sippPer > 0 {
		w("| ratio redial / SIPp per packet | %.1f | |\n", perPkt/sippPer)
	}
	w("| redial RSS / peak RSS | %s / %s | |\n", mib(r.rss), mib(r.hwm))
	drain = fmt.Sprintf("0 after %s", r.drained.Round(10*time.Millisecond))
	if r.drainErr != nil {
		drain = "**" + r.drainErr.Error() + "**"
	}
	w("| `redial_rtp_ports_in_use` after hanging all up | %s (%d DELETE errors) | 0 |\n", drain, r.hangupFailed)
	w("| CDRs on Redis (disposition / hangup cause) / UAS A successful / SIPp B successful | %d (%s) / %d / %d | %d |\n\n", r.cdrs, r.cdrKinds, r.uasOK, r.bOK, mediaBridgeCalls)

	w("Notes:\n\n")
	w("- Everything shares the 2 cores. During window A: SIPp UAS %s, redis-server %s, bench process (phone reader) %s, the rest of the machine %s of one core; redial's threads were runnable but waiting for a CPU for %s in all (`/proc/<pid>/task/*/schedstat`). During window B: redis-server %s, bench process (sender and reader) %s, the rest of the machine %s; redial waited for a CPU %s.\n",
		pct(a.uasCPU, win), pct(a.redisCPU, win), pct(a.benchCPU, win), pct(a.otherCPU, win), a.runq.Round(time.Millisecond),
		pct(r.redisCPU, win), pct(r.benchCPU, win), pct(r.otherCPU, win), r.runq.Round(time.Millisecond))
	w("- Jitter is measured twice: with `time.Now()` right after each read (what the brief asks; includes the bench reader being descheduled, see its lag) and with the kernel's receive timestamp, which on loopback is taken inside redial's `sendto`, so it isolates redial's own pacing.\n")
	w("- Per-socket receive-buffer drops (`/proc/net/udp`) in window A: phone %d, redial's RTP sockets %d; window B: phone %d, SIPp's media port %d, redial's RTP sockets %d. Bench reader buffer overflow: %d samples.\n",
		a.drops[0], a.drops[1], r.drops[0], r.drops[1], r.drops[2], a.overflow)
	w("- Window A ended %s before the first call's %s tone could end. B: %d packets sent in all, %d send errors.\n", a.headroom.Round(100*time.Millisecond), mediaToneLen, r.sent, r.sendErrs)
	warn := func(n int, first string) string {
		if n == 0 {
			return "0"
		}
		return fmt.Sprintf("%d (first: `%s`)", n, strings.ReplaceAll(tail(first, 300), "`", "'"))
	}
	w("- Node log lines at warn and up: A %s; B %s.\n", warn(a.warn, a.firstWarn), warn(r.warn, r.firstWarn))
	if a.firstPostErr != "" || r.firstPostErr != "" {
		w("- First POST errors: A `%s`; B `%s`.\n", a.firstPostErr, r.firstPostErr)
	}
	w("- `%s=<dir>` makes the bench run `perf record -g` on the node during each window and write `perf report` there (such runs are slower; do not publish their numbers).\n", mediaPerfEnv)
	w("\nCommand:\n\n```\n%s\n```\n", b.command)
	return s.String()
}
