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
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// mediaPlayCalls and mediaBridgeCalls are the scenario sizes; runMedia
// sets them from mediaCallsEnv ("play=2000,bridge=2000") before anything
// reads them.
var (
	mediaPlayCalls   = 1000
	mediaBridgeCalls = 500
)

const (
	// mediaCallsEnv overrides the scenario sizes, e.g. "play=2000,bridge=2000".
	mediaCallsEnv = "REDIAL_BENCH_MEDIA_CALLS"
	// mediaEchoWindow is the window of B's reference: the same sender
	// straight to SIPp's echo port, no redial in between.
	mediaEchoWindow = 4 * time.Second
	mediaRate       = 200 // calls originated per second
	mediaWindow     = 8 * time.Second
	// mediaToneLen covers the ramp and up to four windows.
	mediaToneLen = 60 * time.Second
	// mediaPerfEnv names a directory: when set, `perf record -g` samples
	// the node during each window (which costs CPU, so the numbers of such
	// a run are not the ones to publish) and `perf report` goes there.
	mediaPerfEnv = "REDIAL_BENCH_PERF"
	// mediaQuietMax is how long each scenario waits for other work on the
	// machine to stop before it starts anyway.
	mediaQuietMax = 20 * time.Second
	// mediaOtherMax is the share of a core other work may use in a window
	// before it is measured again, at most mediaMaxWindows times.
	mediaOtherMax   = 0.10
	mediaMaxWindows = 2
)

// playWindow is one measuring window of scenario A (or its reference).
type playWindow struct {
	upBefore, upAfter    int
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
	runq                 time.Duration // the sender's threads runnable but not running
	drops                [2]int64      // phone socket, redial's RTP sockets
	headroom             time.Duration // how long the first call's tone still had to play
	// bursts: the sender's packets grouped by kernel stamp, a gap of more
	// than 1 ms starting a new burst: bursts per second, packets per burst
	// p50, burst length p50 and p99.
	burstsPerS   float64
	burstPackets int
	burstLen     [2]time.Duration
	samples      []rxSample
}

// playResult is scenario A.
type playResult struct {
	// tight is measured with the brief's phone (a tight loop of blocking
	// reads), poll with the light one (recvmmsg every millisecond); each is
	// the window with the least other work on the machine of the nTight
	// and nPoll measured.
	tight, poll      playWindow
	nTight, nPoll    int
	posted, postErrs int
	firstPostErr     string
	rampUp           time.Duration
	rcvbuf           int
	hangupFailed     int
	drained          time.Duration
	drainErr         error
	portsAfter       float64
	cdrs             int64
	cdrKinds         string
	uasOK            int
	warn             int
	firstWarn        string
	quiet            quietWait
}

// bridgeWindow is one measuring window of scenario B.
type bridgeWindow struct {
	sentWin            int64
	returned           int64 // of the packets sent in the window
	arrivedWin         int64 // echoes arriving within the window
	silentCalls        int
	rtt, rttKern       [3]time.Duration
	cpu, sippCPU       time.Duration
	rss, hwm           int64
	redisCPU, benchCPU time.Duration
	otherCPU, runq     time.Duration
	busy               time.Duration // the whole machine's CPU (/proc/stat)
	softirqCPU         time.Duration // the ksoftirqd threads'
	drops              [3]int64      // phone, SIPp media port, redial's RTP sockets
	samples            []rxSample
	// jitUser and jitKern: |interval − 20 ms| between a call's echoes
	// arriving in the window, p50, p99, max (read time, kernel stamp).
	jitUser, jitKern [3]time.Duration
}

// bridgeResult is scenario B.
type bridgeResult struct {
	bridgeWindow
	windows          int
	posted, postErrs int
	firstPostErr     string
	bridged          int
	sent, sendErrs   int64
	hangupFailed     int
	drained          time.Duration
	drainErr         error
	portsAfter       float64
	cdrs             int64
	cdrKinds         string
	uasOK, bOK       int
	warn             int
	firstWarn        string
	quiet            quietWait
	echoRef          echoRef
	// kernelOn is redial_rtp_kernel_forwarding during the calls;
	// kernelPkts the packets the kernel forwarded, read once all ended.
	kernelOn, kernelPkts float64
}

// echoRef is B's reference window: the bench's sender and reader with
// SIPp's echo alone.
type echoRef struct {
	sent, returned int64
	rtt, rttKern   [3]time.Duration
	sippCPU        time.Duration
	busy           time.Duration // the whole machine's CPU in the window
	benchCPU       time.Duration // the bench process's (sender and reader)
	softirqCPU     time.Duration // the ksoftirqd threads'
	jitUser        [3]time.Duration
	jitKern        [3]time.Duration
}

// echoJitter is the packet-interval jitter of the echoes that arrived in
// [from, to), per call (SSRC).
func echoJitter(samples []rxSample, from, to int64) (user, kern [3]time.Duration) {
	var in []rxSample
	for _, s := range samples {
		if s.user >= from && s.user < to {
			in = append(in, s)
		}
	}
	var pw playWindow
	analysePlayback(&pw, in)
	return pw.jitUser, pw.jitKern
}

// echoReference sends every stream's packets straight to SIPp's echo for a
// second of warm-up and a window of mediaEchoWindow and measures the round
// trip.
func echoReference(ctx context.Context, ph *phone, streams []*sendStream, echoPid int) (echoRef, error) {
	var e echoRef
	var sent, serrs atomic.Int64
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	from := ph.now() + int64(time.Second)
	to := from + int64(mediaEchoWindow)
	ph.sendWindow(from, to)
	ph.record(from, to+int64(time.Second))
	go func() { ph.sendLoop(sctx, streams, &sent, &serrs); close(done) }()
	err := sleepCtx(ctx, time.Duration(from-ph.now()))
	sipp0, busy0, bench0, sirq0 := procCPU(echoPid), machineBusy(), processCPU(), softirqThreadsCPU()
	if err == nil {
		err = sleepCtx(ctx, time.Duration(to-ph.now()))
	}
	e.sippCPU, e.busy = procCPU(echoPid)-sipp0, machineBusy()-busy0
	e.benchCPU, e.softirqCPU = processCPU()-bench0, softirqThreadsCPU()-sirq0
	stop()
	<-done
	if err == nil {
		err = sleepCtx(ctx, time.Second)
	}
	if err != nil {
		return e, err
	}
	e.sent = ph.sentWin.Load()
	samples, _ := ph.take()
	var rtt, rttK []time.Duration
	for _, s := range samples {
		if s.sent >= from && s.sent < to {
			e.returned++
			rtt = append(rtt, time.Duration(s.user-s.sent))
			rttK = append(rttK, time.Duration(s.kern-s.sent))
		}
	}
	sortDurations(rtt)
	sortDurations(rttK)
	e.rtt = [3]time.Duration{percentile(rtt, 50), percentile(rtt, 99), percentile(rtt, 100)}
	e.rttKern = [3]time.Duration{percentile(rttK, 50), percentile(rttK, 99), percentile(rttK, 100)}
	e.jitUser, e.jitKern = echoJitter(samples, from+int64(100*time.Millisecond), to)
	return e, nil
}

// bestWindow measures windows until one has the rest of the machine under
// mediaOtherMax of a core, up to mediaMaxWindows and while again allows,
// and returns the one with the least other work and how many it measured:
// the machine may be shared, and the windows are CPU-bound.
func bestWindow[W any](label string, other func(W) time.Duration, again func() bool, measure func(n int) (W, error)) (W, int, error) {
	var best W
	bestOther := time.Duration(-1)
	for n := 1; ; n++ {
		w, err := measure(n)
		if err != nil {
			return best, n, err
		}
		o := other(w)
		if bestOther < 0 || o < bestOther {
			best, bestOther = w, o
		}
		if o.Seconds() < mediaOtherMax*mediaWindow.Seconds() || n == mediaMaxWindows || !again() {
			return best, n, nil
		}
		fmt.Printf("media: %s: the rest of the machine used %s of a core in window %d; measuring again\n", label, pct(o, mediaWindow), n)
	}
}

// playPhases measures scenario A's windows with the tight-loop phone, then
// switches the phone to polling and measures again; left(k) tells whether
// k more windows still fit.
func playPhases(r *playResult, label string, ph *phone, measure func(n int) (playWindow, error), left func(int) bool, keep bool, csvPrefix string) error {
	other := func(w playWindow) time.Duration { return w.otherCPU }
	var err error
	r.tight, r.nTight, err = bestWindow(label+", tight-loop phone", other, func() bool { return left(2) }, measure)
	if err != nil {
		return err
	}
	ph.poll()
	r.poll, r.nPoll, err = bestWindow(label+", polling phone", other, func() bool { return left(1) }, measure)
	if err != nil {
		return err
	}
	if keep {
		for name, w := range map[string]*playWindow{"tight": &r.tight, "poll": &r.poll} {
			if err := writeSamples(csvPrefix+"-"+name+".csv", w.samples); err != nil {
				return err
			}
		}
	}
	r.tight.samples, r.poll.samples = nil, nil
	return nil
}

// mediaSizes reads mediaCallsEnv.
func mediaSizes() error {
	v := os.Getenv(mediaCallsEnv)
	if v == "" {
		return nil
	}
	for _, kv := range strings.Split(v, ",") {
		k, n, ok := strings.Cut(strings.TrimSpace(kv), "=")
		var calls int
		if _, err := fmt.Sscan(n, &calls); !ok || err != nil || calls <= 0 {
			return fmt.Errorf("%s: %q: want play=<calls> or bridge=<calls>", mediaCallsEnv, kv)
		}
		switch k {
		case "play":
			mediaPlayCalls = calls
		case "bridge":
			mediaBridgeCalls = calls
		default:
			return fmt.Errorf("%s: %q: want play=<calls> or bridge=<calls>", mediaCallsEnv, kv)
		}
	}
	return nil
}

func runMedia(ctx context.Context, b *bench) (string, error) {
	began := time.Now()
	if err := mediaSizes(); err != nil {
		return "", err
	}
	loadBefore := loadAverage()
	dir := filepath.Join(b.work, "media")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	uasXML, echoXML, err := bridgeScenarios(b.root)
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

	fmt.Printf("media: A reference, bare Go loop, %d streams\n", mediaPlayCalls)
	ref, err := mediaReference(ctx, mediaPlayCalls, time.Duration(mediaPlayCalls)*time.Second/mediaRate, filepath.Join(dir, "play"), b.keep, rds.cmd.Process.Pid)
	if err != nil {
		return "", fmt.Errorf("reference player: %w", err)
	}
	fmt.Printf("media: A, %d playback calls\n", mediaPlayCalls)
	pa, err := mediaPlayback(ctx, b, bin, rds, uasXML, filepath.Join(dir, "play"))
	if err != nil {
		return "", fmt.Errorf("playback: %w", err)
	}
	fmt.Printf("media: B, %d bridged calls\n", mediaBridgeCalls)
	rds.Client.Del(ctx, benchCDRList)
	pb, err := mediaBridge(ctx, b, bin, rds, uasXML, echoXML, filepath.Join(dir, "bridge"))
	if err != nil {
		return "", fmt.Errorf("bridge: %w", err)
	}
	return mediaReport(b, ref, pa, pb, loadBefore, loadAverage(), time.Since(began)), nil
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

	r.quiet = waitQuiet(ctx, mediaQuietMax, node.pid, uas.cmd.Process.Pid, rds.cmd.Process.Pid)
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

	uasPid := uas.cmd.Process.Pid
	measure := func(n int) (playWindow, error) {
		var w playWindow
		list, _ := node.calls(ctx)
		w.upBefore = countState(list, "answered")
		perf := startPerf(node.pid, dir, fmt.Sprintf("playback-%d", n))
		dropsPhone0, dropsNode0 := udpDrops(func(p int) bool { return p == ph.port }), udpDrops(redialPort)
		cpu0, uas0, rds0, bench0 := node.cpu(), procCPU(uasPid), rds.CPU(), processCPU()
		busy0, rq0 := machineBusy(), runqueueWait(node.pid)
		from := ph.now()
		ph.record(from, from+int64(mediaWindow))
		if err := sleepCtx(ctx, mediaWindow); err != nil {
			perf.finish()
			return w, err
		}
		w.cpu, w.uasCPU, w.redisCPU, w.benchCPU = node.cpu()-cpu0, procCPU(uasPid)-uas0, rds.CPU()-rds0, processCPU()-bench0
		w.runq = runqueueWait(node.pid) - rq0
		w.otherCPU = max(0, machineBusy()-busy0-w.cpu-w.uasCPU-w.redisCPU-w.benchCPU)
		time.Sleep(50 * time.Millisecond)
		w.drops = [2]int64{udpDrops(func(p int) bool { return p == ph.port }) - dropsPhone0, udpDrops(redialPort) - dropsNode0}
		w.rss, w.hwm = node.rss()
		samples, overflow := ph.take()
		perf.finish()
		w.headroom = mediaToneLen - time.Since(start) // the first call started playing after start
		list, _ = node.calls(ctx)
		w.upAfter = countState(list, "answered")
		w.overflow = overflow
		analysePlayback(&w, samples)
		w.samples = samples
		return w, nil
	}
	// Another window only while every call still plays its tone.
	left := func(windows int) bool {
		return time.Since(start)+time.Duration(windows)*(mediaWindow+100*time.Millisecond)+time.Second < mediaToneLen
	}
	if err := playPhases(r, "A", ph, measure, left, b.keep, filepath.Join(dir, "phone")); err != nil {
		return nil, err
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
func analysePlayback(r *playWindow, samples []rxSample) {
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

	ks := make([]int64, len(samples))
	for i, s := range samples {
		ks[i] = s.kern
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	var lens []time.Duration
	var sizes []time.Duration // packet counts, sorted with the same helper
	for i := 0; i < len(ks); {
		j := i + 1
		for j < len(ks) && ks[j]-ks[j-1] <= int64(time.Millisecond) {
			j++
		}
		lens = append(lens, time.Duration(ks[j-1]-ks[i]))
		sizes = append(sizes, time.Duration(j-i))
		i = j
	}
	if len(ks) > 1 {
		r.burstsPerS = float64(len(lens)) / (float64(ks[len(ks)-1]-ks[0]) / 1e9)
	}
	sortDurations(lens)
	sortDurations(sizes)
	r.burstPackets = int(percentile(sizes, 50))
	r.burstLen = [2]time.Duration{percentile(lens, 50), percentile(lens, 99)}
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
	uas, echo, mp, err := startBridgePeers(b, ph.port, uasXML, echoXML, dir)
	if err != nil {
		return nil, err
	}
	defer uas.Kill()
	defer echo.Kill()
	// Reference: the same sender straight to SIPp's echo port, so the round
	// trip of the calls can be split into SIPp's and the bench's share and
	// what redial adds.
	var echoStreams []*sendStream
	for i := range mediaBridgeCalls {
		echoStreams = append(echoStreams, &sendStream{to: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(mp)),
			ssrc: 0x7eed0000 + uint32(i), seq: uint16(i * 7919), ts: uint32(i) * 104729})
	}
	if r.echoRef, err = echoReference(ctx, ph, echoStreams, echo.cmd.Process.Pid); err != nil {
		return nil, err
	}
	node, quiet, err := startBridgeNode(ctx, bin, rds, uas, echo, dir)
	if err != nil {
		return nil, err
	}
	defer node.stop()
	r.quiet = quiet
	refs, errs := node.originateAll(ctx, mediaBridgeCalls, mediaRate, "1998", "bridge")
	r.posted, r.postErrs = len(refs)-len(errs), len(errs)
	if len(errs) > 0 {
		r.firstPostErr = errs[0].Error()
	}
	// Each call bridged, with redial's A-side (callee leg) RTP port.
	aPort, err := waitBridged(ctx, node, r.posted)
	if err != nil {
		return nil, err
	}
	r.bridged = len(aPort)
	var streams []*sendStream
	for i, ref := range refs {
		if p, ok := aPort[ref]; ok {
			streams = append(streams, &sendStream{to: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(p)),
				ssrc: 0x5eed0000 + uint32(i), seq: uint16(i * 7919), ts: uint32(i) * 104729})
		}
	}

	// Send for a 2 s warm-up, then windows, each followed by a second for
	// its last echoes.
	var sent, serrs atomic.Int64
	sctx, stopSend := context.WithCancel(ctx)
	sendDone := make(chan struct{})
	go func() { ph.sendLoop(sctx, streams, &sent, &serrs); close(sendDone) }()
	defer func() { stopSend(); <-sendDone }()
	echoPid := echo.cmd.Process.Pid
	next := ph.now() + int64(2*time.Second)
	measure := func(n int) (bridgeWindow, error) {
		var w bridgeWindow
		from := max(next, ph.now()+int64(50*time.Millisecond))
		to := from + int64(mediaWindow)
		next = to + int64(time.Second)
		ph.sendWindow(from, to)
		ph.record(from, to+int64(time.Second))
		if err := sleepCtx(ctx, time.Duration(from-ph.now())); err != nil {
			return w, err
		}
		perf := startPerf(node.pid, dir, fmt.Sprintf("bridge-%d", n))
		drops0 := [3]int64{udpDrops(func(p int) bool { return p == ph.port }), udpDrops(func(p int) bool { return p == mp }), udpDrops(redialPort)}
		cpu0, sipp0, rds0, bench0 := node.cpu(), procCPU(echoPid), rds.CPU(), processCPU()
		busy0, rq0, sirq0 := machineBusy(), runqueueWait(node.pid), softirqThreadsCPU()
		if err := sleepCtx(ctx, time.Duration(to-ph.now())); err != nil {
			perf.finish()
			return w, err
		}
		w.cpu, w.sippCPU, w.redisCPU, w.benchCPU = node.cpu()-cpu0, procCPU(echoPid)-sipp0, rds.CPU()-rds0, processCPU()-bench0
		w.runq = runqueueWait(node.pid) - rq0
		w.busy, w.softirqCPU = machineBusy()-busy0, softirqThreadsCPU()-sirq0
		w.otherCPU = max(0, w.busy-w.cpu-w.sippCPU-w.redisCPU-w.benchCPU)
		w.drops = [3]int64{udpDrops(func(p int) bool { return p == ph.port }) - drops0[0], udpDrops(func(p int) bool { return p == mp }) - drops0[1], udpDrops(redialPort) - drops0[2]}
		perf.finish()
		w.rss, w.hwm = node.rss()
		if err := sleepCtx(ctx, time.Duration(to+int64(time.Second)-ph.now())); err != nil {
			return w, err
		}
		w.sentWin = ph.sentWin.Load()
		samples, _ := ph.take()
		w.samples = samples
		perCall := map[uint32]int{}
		var rtt, rttK []time.Duration
		for _, s := range samples {
			if s.sent == 0 {
				continue
			}
			if s.user >= from && s.user < to {
				w.arrivedWin++
			}
			if s.sent >= from && s.sent < to {
				w.returned++
				perCall[s.ssrc]++
				rtt = append(rtt, time.Duration(s.user-s.sent))
				rttK = append(rttK, time.Duration(s.kern-s.sent))
			}
		}
		w.silentCalls = len(streams) - len(perCall)
		sortDurations(rtt)
		sortDurations(rttK)
		w.rtt = [3]time.Duration{percentile(rtt, 50), percentile(rtt, 99), percentile(rtt, 100)}
		w.rttKern = [3]time.Duration{percentile(rttK, 50), percentile(rttK, 99), percentile(rttK, 100)}
		w.jitUser, w.jitKern = echoJitter(samples, from, to)
		return w, nil
	}
	best, n, err := bestWindow("B", func(w bridgeWindow) time.Duration { return w.otherCPU }, func() bool { return true }, measure)
	if err != nil {
		return nil, err
	}
	stopSend()
	<-sendDone
	r.bridgeWindow, r.windows = best, n
	r.sent, r.sendErrs = sent.Load(), serrs.Load()
	if b.keep {
		if err := writeSamples(filepath.Join(dir, "phone-samples.csv"), r.samples); err != nil {
			return nil, err
		}
	}
	r.samples = nil

	r.kernelOn, _ = node.metric(ctx, "redial_rtp_kernel_forwarding")
	r.hangupFailed = node.hangupAll(ctx, refs)
	_, ports, took, derr := node.drained(ctx, 30*time.Second)
	r.drained, r.drainErr, r.portsAfter = took, derr, ports
	r.kernelPkts, _ = node.metric(ctx, "redial_rtp_kernel_forwarded_packets_total")
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
