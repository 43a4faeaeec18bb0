package main

// Part 9, memory: what a held call costs the node in resident memory,
// without media and with an anchored G.711 stream, and whether the node
// gives it back once the calls end (issue 14's targets).

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

const (
	// memCalls bridged calls are held without media; memStreams of them
	// then carry RTP both ways.
	memCalls   = 1000
	memStreams = 500
	// memSettle lets the ramp's garbage and timers play out before a
	// reading.
	memSettle = 5 * time.Second
	// memAfter is how long after the last call ended the node is read
	// again: longer than sipgo's Timer M (64×T1 = 32 s).
	memAfter = 40 * time.Second
	// memTargetIdle and memTargetMedia are issue 14's targets per call.
	memTargetIdle  = 50 << 10
	memTargetMedia = 100 << 10
	// memBinEnv names a redial binary to measure instead of building
	// ./cmd/redial.
	memBinEnv = "REDIAL_BENCH_MEMORY_BIN"
	// memBeforeEnv names an older redial binary measured first, the same
	// way, for a before/after table.
	memBeforeEnv = "REDIAL_BENCH_MEMORY_BEFORE"
	// memProfileEnv names a directory: the node is then built with
	// -tags redial_pprof (its /debug/pprof/ and /debug/memstats routes
	// exist only in such a build, and ask for an API token like the rest
	// of the API), runs with GODEBUG=memprofilerate=4096, and what
	// memProfile lists is written there right after the idle, held,
	// ended and 40-s-later readings. The collections it runs change the
	// readings after it: a profiling run is for diagnosis, not for the
	// tables.
	memProfileEnv = "REDIAL_BENCH_MEMORY_PROFILE"
)

// memReading is the node (and the two SIPp UASes) at one moment.
type memReading struct {
	rss, hwm             int64
	heapAlloc, heapInuse float64 // Go heap: allocated objects, spans in use
	// heapLive is the live heap as the last collection marked it
	// (go_gc_heap_live_bytes, runtime/metrics /gc/heap/live:bytes); -1
	// when the node does not export it.
	heapLive        float64
	goroutines      float64
	uasRSS, echoRSS int64
}

// memResult is the whole part.
type memResult struct {
	idle, held, media, ended, later memReading
	posted, postErrs, bridged       int
	firstPostErr                    string
	sent, echoes                    int64
	hangupFailed                    int
	drained                         time.Duration
	drainErr                        error
	portsAfter                      float64
	warn                            int
	firstWarn                       string
	quiet                           quietWait
	cdrs                            int64
	cdrKinds                        string
}

func runMemory(ctx context.Context, b *bench) (string, error) {
	began := time.Now()
	dir := filepath.Join(b.work, "memory")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	uasXML, echoXML, err := bridgeScenarios(b.root)
	if err != nil {
		return "", err
	}
	bin := os.Getenv(memBinEnv)
	profDir := os.Getenv(memProfileEnv)
	switch {
	case profDir != "":
		fmt.Println("memory: go build -tags redial_pprof ./cmd/redial; profiles to", profDir)
		if bin, err = buildProfilingRedial(ctx, b.root, dir); err != nil {
			return "", err
		}
		if err := os.MkdirAll(profDir, 0o755); err != nil {
			return "", err
		}
		// Inherited by the node (and, harmlessly, by SIPp and Redis).
		os.Setenv("GODEBUG", "memprofilerate=4096")
		defer os.Unsetenv("GODEBUG")
	case bin == "":
		fmt.Println("memory: go build ./cmd/redial")
		if bin, err = buildRedial(ctx, b.root, dir); err != nil {
			return "", err
		}
	}
	rds, err := startRedis(ctx, b.work)
	if err != nil {
		return "", err
	}
	defer rds.Stop()
	var before *memResult
	if old := os.Getenv(memBeforeEnv); old != "" {
		fmt.Printf("memory: before: %s\n", old)
		if before, err = memoryRun(ctx, b, old, rds, uasXML, echoXML, filepath.Join(dir, "before")); err != nil {
			return "", fmt.Errorf("before: %w", err)
		}
	}
	r, err := memoryRun(ctx, b, bin, rds, uasXML, echoXML, dir)
	if err != nil {
		return "", err
	}
	return memoryReport(b, r, before, time.Since(began)), nil
}

// memRead takes a reading of the node and the SIPp processes. The heap
// figures are wherever the node's last collection left them: forcing
// collections from outside (scraping /metrics, which allocates, until the
// GC count moves) was tried and inflated the RSS it was meant to explain.
func memRead(ctx context.Context, node *nodeProc, uas, echo *sippProc) memReading {
	var m memReading
	m.rss, m.hwm = node.rss()
	m.heapAlloc, _ = node.metric(ctx, "go_memstats_heap_alloc_bytes")
	m.heapInuse, _ = node.metric(ctx, "go_memstats_heap_inuse_bytes")
	m.goroutines, _ = node.metric(ctx, "go_goroutines")
	if v, err := node.metric(ctx, "go_gc_heap_live_bytes"); err == nil {
		m.heapLive = v
	} else {
		m.heapLive = -1
	}
	m.uasRSS = procStatusBytes(uas.cmd.Process.Pid, "VmRSS:")
	m.echoRSS = procStatusBytes(echo.cmd.Process.Pid, "VmRSS:")
	return m
}

func memoryRun(ctx context.Context, b *bench, bin string, rds *redisServer, uasXML, echoXML, dir string) (*memResult, error) {
	r := &memResult{}
	// The phone only counts what comes back; it records no samples.
	ph, err := newPhone(1)
	if err != nil {
		return nil, err
	}
	defer ph.close()
	uas, echo, _, err := startBridgePeers(b, ph.port, uasXML, echoXML, dir)
	if err != nil {
		return nil, err
	}
	defer uas.Kill()
	defer echo.Kill()
	rds.Client.Del(ctx, benchCDRList)
	node, quiet, err := startBridgeNode(ctx, bin, rds, uas, echo, dir)
	if err != nil {
		return nil, err
	}
	defer node.stop()
	r.quiet = quiet
	// Idle: one warm-up call through the whole path first, so that what
	// every node allocates once (pools, the API's and Redis' buffers) is
	// in the baseline and not charged to the calls.
	warm, werrs := node.originateAll(ctx, 1, 1, "1997", "bridge")
	if len(werrs) > 0 {
		return nil, fmt.Errorf("warm-up call: %w", werrs[0])
	}
	if _, err := waitBridged(ctx, node, 1); err != nil {
		return nil, fmt.Errorf("warm-up call: %w", err)
	}
	node.hangupAll(ctx, warm)
	if _, _, _, err := node.drained(ctx, 30*time.Second); err != nil {
		return nil, fmt.Errorf("warm-up call: %w", err)
	}
	if err := sleepCtx(ctx, memSettle); err != nil {
		return nil, err
	}
	r.idle = memRead(ctx, node, uas, echo)
	memProfile(ctx, node, "idle", false)

	fmt.Printf("memory: %d bridged calls, no media\n", memCalls)
	refs, errs := node.originateAll(ctx, memCalls, mediaRate, "1996", "bridge")
	r.posted, r.postErrs = len(refs)-len(errs), len(errs)
	if len(errs) > 0 {
		r.firstPostErr = errs[0].Error()
	}
	aPort, err := waitBridged(ctx, node, r.posted)
	if err != nil {
		return nil, err
	}
	r.bridged = len(aPort)
	if err := sleepCtx(ctx, memSettle); err != nil {
		return nil, err
	}
	r.held = memRead(ctx, node, uas, echo)
	memProfile(ctx, node, "held", false)

	fmt.Printf("memory: RTP both ways on %d of them\n", memStreams)
	var streams []*sendStream
	for i, ref := range refs {
		if p, ok := aPort[ref]; ok && len(streams) < memStreams {
			streams = append(streams, &sendStream{to: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(p)),
				ssrc: 0x6d656d00 + uint32(i), seq: uint16(i * 7919), ts: uint32(i) * 104729})
		}
	}
	var sent, serrs atomic.Int64
	sctx, stopSend := context.WithCancel(ctx)
	sendDone := make(chan struct{})
	go func() { ph.sendLoop(sctx, streams, &sent, &serrs); close(sendDone) }()
	echoes0 := ph.packets.Load()
	err = sleepCtx(ctx, memSettle)
	r.media = memRead(ctx, node, uas, echo)
	stopSend()
	<-sendDone
	// The last burst's echoes are still on their way: count them once
	// nothing more has arrived for 100 ms (at most 2 s).
	for last, quiet, deadline := ph.packets.Load(), 0, time.Now().Add(2*time.Second); quiet < 5 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		if n := ph.packets.Load(); n != last {
			last, quiet = n, 0
		} else {
			quiet++
		}
	}
	r.sent, r.echoes = sent.Load(), ph.packets.Load()-echoes0
	if err != nil {
		return nil, err
	}

	fmt.Println("memory: hang up, then wait")
	r.hangupFailed = node.hangupAll(ctx, refs)
	_, ports, took, derr := node.drained(ctx, 30*time.Second)
	r.drained, r.drainErr, r.portsAfter = took, derr, ports
	r.ended = memRead(ctx, node, uas, echo)
	memProfile(ctx, node, "ended", false)
	if err := sleepCtx(ctx, memAfter); err != nil {
		return nil, err
	}
	r.later = memRead(ctx, node, uas, echo)
	memProfile(ctx, node, "later", false)
	r.cdrs, r.cdrKinds = countCDRs(ctx, rds)
	r.warn, r.firstWarn = node.warnLines()
	return r, nil
}

// buildProfilingRedial builds ./cmd/redial with its pprof routes.
func buildProfilingRedial(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "redial-pprof")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "redial_pprof", "-o", bin, "./cmd/redial")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -tags redial_pprof ./cmd/redial: %w\n%s", err, out)
	}
	return bin, nil
}

// memProfile writes, to $REDIAL_BENCH_MEMORY_PROFILE, the node as read
// (<name>-smaps_rollup.txt, <name>-metrics.txt) and, unless light, its
// goroutines (<name>-goroutine.txt, counts; <name>-goroutine-full.txt,
// every stack), what it keeps once collected and returned
// (<name>-memstats-freed.json from /debug/memstats?free=1, again in
// <name>-memstats-freed2.json, then <name>-smaps_rollup-freed.txt) and its
// heap profile (<name>-heap.pb.gz).
// Without that variable it does nothing. Compare with
// go tool pprof -sample_index=inuse_space -base idle-heap.pb.gz later-heap.pb.gz.
func memProfile(ctx context.Context, node *nodeProc, name string, light bool) {
	dir := os.Getenv(memProfileEnv)
	if dir == "" {
		return
	}
	smaps := func(file string) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", node.pid)); err == nil {
			os.WriteFile(filepath.Join(dir, file), b, 0o644)
		}
	}
	smaps(name + "-smaps_rollup.txt")
	steps := []struct{ path, file string }{{"/metrics", name + "-metrics.txt"}}
	if !light {
		steps = append(steps, []struct{ path, file string }{
			{"/debug/pprof/goroutine?debug=1", name + "-goroutine.txt"},
			{"/debug/pprof/goroutine?debug=2", name + "-goroutine-full.txt"},
			{"/debug/memstats?free=1", name + "-memstats-freed.json"},
			// Twice: what the requests before allocated during the first
			// collection may outlive it.
			{"/debug/memstats?free=1", name + "-memstats-freed2.json"},
			{"", name + "-smaps_rollup-freed.txt"},
			{"/debug/pprof/heap?gc=1", name + "-heap.pb.gz"},
		}...)
	}
	for _, p := range steps {
		if p.path == "" {
			smaps(p.file)
			continue
		}
		if err := memFetch(ctx, node, p.path, filepath.Join(dir, p.file)); err != nil {
			fmt.Fprintf(os.Stderr, "bench: memory: profile %s: %v\n", p.file, err)
		}
	}
}

func memFetch(ctx context.Context, node *nodeProc, path, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, node.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := node.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s (a build without -tags redial_pprof?)", path, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return os.WriteFile(file, body, 0o644)
}

// waitBridged waits until n calls are bridged and returns each call's
// callee-leg RTP port by call ref.
func waitBridged(ctx context.Context, node *nodeProc, n int) (map[string]int, error) {
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
		if err == nil && len(aPort) >= n {
			return aPort, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("after 30s: %d of %d calls bridged (API error %v)", len(aPort), n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// memNotes is the hand-written part of the section: the figures before
// issue 14's memory work and what was changed.
const memNotes = `
Notes:

- Results against the targets: RSS per established call without media
  met: 39.9 to 43.4 KiB in four runs since the call's setup goroutine
  ends once it is bridged (below), against 50.1 to 57.4 KiB before that,
  81.8 to 86.2 KiB before the goroutine work and 83 to 87 KiB before
  issue 14 (run-to-run noise is about ±3 KiB, following where the GC
  cycle is at the reading); with an anchored G.711 stream met (the
  stream adds under a KiB: socket queues); flat after the end missed
  (see below).
- Where a held bridged call's memory goes now (a profiling build, 1000
  calls held, GODEBUG=memprofilerate=1024, GC forced before reading):
  about 11 KiB of live heap (internal/sip's two legs with their kept
  dialogs, sessions, sockets and SDP 5.1 KiB; the call 0.65 KiB; its
  context 0.5 KiB; the relay 0.5 KiB; the line lease 0.3 KiB), one 2 KiB
  goroutine stack (the bridge's waiter), and the freed heap not yet
  returned to the kernel: with GOGC=100 the heap grows to twice what is
  live before a collection, and the garbage of setting the calls up sits
  in it.
- Goroutines per held call, 3 → 1, and a small one: the relay of two
  plain UDP sessions runs on the port pool's epoll shards and nothing
  waits for it (media.StartRelay); the watcher that stops ringing the
  destination when the callee hangs up ends with the dial; the poll
  shards keep one receive buffer each instead of 2 KiB per leg; and the
  goroutine that set the call up (the attempts, the dial, the manager's
  frames: 2 to 4 KiB in use, so its stack shrank no further than 8 KiB)
  hands the bridged call to a waiter of its own and ends
  (call.HandoffConnector, SIPBridge.ConnectThen). The waiter's parked
  frames are under 1 KiB, so its stack stays at the 2 KiB minimum; it
  hangs up, writes the CDR and finishes the call when either side ends.
  That took 8 to 10 KiB off each held call.
- Live heap before the goroutine work, measured the same way: 26.7 KiB →
  16.0 KiB per call from the outbound legs' dialog (below), then about
  11 KiB with the relay's buffers shared.
- What changed, all in internal/sip: an established outbound leg no longer
  keeps sipgo's DialogClientSession, which holds the INVITE client
  transaction for the whole call (the INVITE with its SDP, the parsed 2xx,
  the ACK template in the retransmission hook: about 6 KiB per leg). It
  keeps its own record of the dialog instead (uacdialog.go: From, To,
  Call-ID, CSeq, remote target, route set; about 0.7 KiB), from which it
  sends its BYE and answers the callee's.
- Timer M: sipgo v1.7.2 (and v1.7.3) keeps each answered INVITE client
  transaction 64×T1 = 32 s in RFC 6026's Accepted state, only so that a
  retransmitted 2xx is ACKed again; its Timer M is the exported
  sip.Timer_M, read when the timer starts. redial sets it to T1/2 = 250 ms
  at start (stray.go, package init, before any goroutine can read it),
  writes its ACK without sipgo's replay hook, and
  ACKs a 2xx that matches no transaction itself when it belongs to an
  established outbound leg (the same ACK as the first, RFC 3261
  13.2.2.4, built from the leg's own dialog copy: the 2xx's Contact as
  Request-URI, its Record-Route reversed as route set, From/To/Call-ID
  and the INVITE's CSeq number, a new Via branch). A 2xx of an
  unknown dialog is still only logged, so outsiders cannot make the node
  send ACKs where they like. testdata/sipp/uas_200_retrans_late.xml
  (internal/sip TestRetransmitted2xxAcked) repeats its 200 500 ms and
  3.5 s after the ACK and fails the call unless a new ACK comes (the test
  fails with the handler switched off, and its 500 ms case with the
  earlier hold of 2 s). An ended call's transaction is therefore freed
  250 ms after the answer instead of 32 s: at 2000 calls/s about 3 MiB
  held instead of about 0.4 GiB (6.5 KiB per call, appendix of part 1).
- Not flat after the end, but much closer: 15 MiB of RSS and 6 to 7 MiB
  of heap above idle 40 s after the end in two runs (before: 49 to 52
  MiB and 21 to 26 MiB). What changed, in internal/call: an ended call
  is kept for KeepEnded (2 minutes, for the API's GET of a call) as a
  compact record (ended.go: its Info with the CDRs stored once and the
  outcome's flags; about 0.7 KiB, plus the CDR's variables) instead of
  the whole *Call with its CDRs twice (about 2 KiB); and once the calls
  in progress have stayed at a tenth of a peak of 200 or more for 10 s,
  the manager runs runtime/debug.FreeOSMemory once, at most every 10 s
  (release.go; never under steady load), so the burst's garbage is
  collected and its pages returned without waiting for the runtime's
  two-minute collection.
- What the node still held 40 s after the end (profiling runs,
  ` + "`REDIAL_BENCH_MEMORY_PROFILE=<dir>`" + `: the node built with
  ` + "`-tags redial_pprof`" + `, its heap profile compared with the idle one by
  ` + "`go tool pprof -base`" + `, goroutine dumps, and the runtime's own figures
  after two collections that return every free page; after one, the
  garbage of the requests just before, a goroutine dump's 2 MiB buffer,
  is still counted): 2.1 to 2.5 MiB of live heap above idle. The
  ended-call records were 1.05 MiB of it for 1001 calls, in some nine
  objects each (the record 320 B, the CDR slice 288 B, the variables map
  270 B, the CDR ID, the answer time, the ref and numbers strings, the
  map and list entries); 31 idle keep-alive connections of the bench's
  HTTP client, each a goroutine parked in net/http with 8 KiB of buffers
  (the web server had no IdleTimeout, so they stayed for good: the "31
  more goroutines"); maps that kept their peak buckets (internal/lines'
  held leases 53 KiB, the relay shards' legs 69 KiB, internal/sip's legs
  107 KiB, the port pool's 73 KiB, sipgo's client transactions 53 KiB);
  and 1200 goroutine descriptors (0.55 MiB: the runtime never frees
  one). Worse than their size, the records were allocated during the
  hang-up among the calls' garbage and, once that was collected, kept
  the spans they sat in (see "Tried and not kept" below).
- What changed: the web server closes keep-alive connections idle for
  30 s; internal/lines' held map and the relay shards' legs map are
  rebuilt small once they fall to a sixteenth of a peak of 256 or more;
  a ledger's own keys are built once and the scheduler's and callback
  runner's polls reuse one timer (the scheduler polls Redis every 20 ms,
  and built a dozen key strings and a timer each time): an idle node's
  garbage fell from about 110 to about 70 KiB/s; and the node exports
  the live heap as of the last collection (` + "`go_gc_heap_live_bytes`" + `,
  runtime/metrics /gc/heap/live:bytes), which the table shows (see the
  last bullet but one for how to read it).
  Goroutines 40 s after the end: +1 above idle (was +31).
- Tried and not kept: the ended-call records as bytes (a varint encoding
  of the Info, CDRs and outcome flags, about 130 to 260 bytes a call) in
  slabs filled in the order calls end, keyed by the ref's bytes in the
  record. In profiling runs it took the live heap 40 s after the end
  from 2.1 to 2.5 MiB above idle to 1.2 to 1.5, and heap spans in use
  after one collection from +9.0 to +3.5 to 4.7 MiB, as the records no
  longer pin the spans of the burst's garbage; RSS in the table went
  from 13 to 14 MiB above idle to 9 to 12. It was left out: a codec of
  every field of Info and of the CDR (a field added later and not
  encoded would vanish from the API silently), unsafe strings and a slab
  allocator of its own, for about 1 KiB per ended call, while the target
  stays out of reach (next bullet).
- Why "flat" is not met: what stays 40 s after the end is mostly the Go
  runtime's, set by the peak and not by the calls ended: some 1200
  goroutine descriptors (0.55 MiB; the runtime never frees one), free
  goroutine stacks kept per P (0.7 to 1.7 MiB), the heap arena and span
  metadata of the peak (about 1.2 MiB), the runtime's other (0.6 MiB),
  the free space left in spans (1.1 MiB); then the ended-call records
  (about 1 MiB for their 2 minutes), the maps left in internal/sip, the
  port pool and sipgo (0.23 MiB), and a go-redis connection the burst
  sometimes adds (256 KiB of buffers). The runtime's part alone is over
  the 2 MiB of RSS the target allows for 1000 calls. The heap as read
  (alloc) barely moves in the 40 s because the last collection was the
  release about 10 s after the end, and what an idle node allocates
  (about 70 KiB/s, most of it the scheduler's 20 ms poll of Redis) sits
  in the heap as garbage until the next collection; the idle reading
  carries 2 to 3 MiB of the same. The live-heap row has neither
  garbage nor a forced collection, but it is as of each reading's last
  collection: the idle one's may be minutes old, and the later one's is
  the release about 10 s after the end, when some of the hang-up's
  objects (sipgo's transactions until their timers, the ended records)
  were still held. A profiling run (above) is the precise figure.
- Inbound legs (calls to the node) still keep sipgo's
  DialogServerSession with the INVITE and its 200 for the call's life: not
  part of this bench, and not changed.
`

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

func perCallBytes(after, before int64, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(after-before) / float64(n)
}

// memPerCall is the section's per-call figures: RSS without and with
// media, Go heap without media.
func memPerCall(r *memResult) (idle, media, heap float64) {
	n, k := r.bridged, min(r.bridged, memStreams)
	idle = perCallBytes(r.held.rss, r.idle.rss, n)
	media = idle
	if k > 0 {
		media += float64(r.media.rss-r.held.rss) / float64(k)
	}
	return idle, media, float64(r.held.heapAlloc-r.idle.heapAlloc) / float64(max(n, 1))
}

func memoryReport(b *bench, r, before *memResult, took time.Duration) string {
	var s strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&s, format, a...) }
	n, k := r.bridged, min(r.bridged, memStreams)
	idleCall, mediaCall, _ := memPerCall(r)
	w("## 9. Memory\n\n")
	w("The redial node runs as its own process, as in part 4 (`redial serve --redis <private redis-server> --host bench --sip udp:127.0.0.1:<port> --sip-public-ip 127.0.0.1 --rtp-ports 16384-32000 --http 127.0.0.1:<port> --data <dir> --log-level warn`); RSS is its `VmRSS`, the Go heap its `go_memstats_heap_alloc_bytes` / `go_memstats_heap_inuse_bytes` from `/metrics`. The node has no endpoint that runs a collection, so its heap figures include whatever garbage the last cycle left; the live heap per call is measured separately (see the notes).\n\n")
	w("An **established call without media** is, for a B2BUA, what part 4 B sets up: a call originated through the API (`POST /api/v1/calls`, line group `bench` to SIPp A `uas_answer_extmedia.xml`, at %d calls/s) and bridged by its dialplan (`{\"type\":\"sip\",\"uri\":\"sip:bridge@<SIPp B>\"}`, SIPp B `uas_answer_wait_bye.xml -rtp_echo`): two confirmed SIP dialogs, two anchored RTP sockets and the relay between them, with no packet flowing. %d such calls are held; then the bench's phone sends a PCMU stream (20 ms, 160-byte payload) to the callee-leg port of %d of them, which SIPp B echoes, so each of those calls carries G.711 both ways through both legs (**a call with an anchored G.711 stream**). Then every call is hung up (`DELETE`), and the node is read as soon as `redial_rtp_ports_in_use` is 0 and again %s later (longer than sipgo's default Timer M, 64×T1 = 32 s).\n\n",
		mediaRate, memCalls, memStreams, secs(memAfter))
	w("Per call = (RSS with the calls up − RSS idle before) ÷ calls; the idle reading follows one warm-up call and %s of rest, and every reading comes %s after the step before it. With media, the increment of the streams over the held calls is added to the per-call figure without media. SIPp's UAS processes (one dialog each per call, no media stack but `-rtp_echo` on B) are the reference.\n\n", secs(memSettle), secs(memSettle))
	w("Machine: %s. Part took %s; %s before the idle reading.\n\n", machine(), took.Round(time.Second), r.quiet)
	w("| reading | node RSS | Go heap alloc / in use | goroutines | SIPp A / SIPp B RSS |\n|---|---:|---:|---:|---:|\n")
	for _, row := range []struct {
		name string
		m    memReading
	}{
		{"idle (after one warm-up call)", r.idle},
		{fmt.Sprintf("%d calls bridged, no media", n), r.held},
		{fmt.Sprintf("same, %d of them with RTP both ways", k), r.media},
		{"all calls ended (ports back to 0)", r.ended},
		{secs(memAfter) + " later", r.later},
	} {
		w("| %s | %s | %s / %s | %.0f | %s / %s |\n", row.name, mib(row.m.rss), mib(int64(row.m.heapAlloc)), mib(int64(row.m.heapInuse)),
			row.m.goroutines, mib(row.m.uasRSS), mib(row.m.echoRSS))
	}
	w("\n| measure | value | target |\n|---|---:|---|\n")
	w("| calls bridged | %d (of %d posted, %d POST errors) | %d |\n", n, r.posted, r.postErrs, memCalls)
	w("| **node RSS per established call, no media** | **%s** | ≤ 50 KB: %s |\n", kib(idleCall), verdict(idleCall <= memTargetIdle))
	w("| node Go heap (alloc) per call, no media | %s | |\n", kib(float64(r.held.heapAlloc-r.idle.heapAlloc)/float64(max(n, 1))))
	w("| node goroutines per call | %.1f | |\n", (r.held.goroutines-r.idle.goroutines)/float64(max(n, 1)))
	w("| **node RSS per call with an anchored G.711 stream** | **%s** | ≤ 100 KB: %s |\n", kib(mediaCall), verdict(mediaCall <= memTargetMedia))
	w("| SIPp A + SIPp B RSS per call (reference; no media / with echo) | %s / %s | |\n",
		kib(perCallBytes(r.held.uasRSS+r.held.echoRSS, r.idle.uasRSS+r.idle.echoRSS, n)),
		kib(perCallBytes(r.media.uasRSS+r.media.echoRSS, r.idle.uasRSS+r.idle.echoRSS, n)))
	flat := r.later.rss-r.idle.rss < int64(n)*2048 && r.later.heapAlloc-r.idle.heapAlloc < float64(n)*1024
	w("| **after the calls end: RSS / heap alloc above idle, at once → %s later** | **%s / %s → %s / %s** | flat: %s |\n", secs(memAfter),
		mib(r.ended.rss-r.idle.rss), mib(int64(r.ended.heapAlloc-r.idle.heapAlloc)), mib(r.later.rss-r.idle.rss), mib(int64(r.later.heapAlloc-r.idle.heapAlloc)), verdict(flat))
	if r.idle.heapLive >= 0 && r.later.heapLive >= 0 {
		// What the node holds, without the garbage an idle node makes
		// between collections.
		w("| live heap (as of the last collection) above idle, %s after the end | %.1f MiB | ≤ %.1f MiB |\n", secs(memAfter),
			(r.later.heapLive-r.idle.heapLive)/(1<<20), float64(n)*1024/(1<<20))
	}
	w("| RTP packets sent to the %d streams / echoes back (%s) | %d / %d | |\n", k, secs(memSettle), r.sent, r.echoes)
	drain := fmt.Sprintf("%v after %s (%d DELETE errors)", r.portsAfter, r.drained.Round(10*time.Millisecond), r.hangupFailed)
	if r.drainErr != nil {
		drain = r.drainErr.Error()
	}
	w("| `redial_rtp_ports_in_use` after hanging all up | %s | 0 |\n", drain)
	w("| CDRs on Redis (disposition / hangup cause) | %d (%s) | %d |\n", r.cdrs, r.cdrKinds, n+1)
	w("| node log lines at warn and up | %d | 0 |\n", r.warn)
	if before != nil {
		bi, bm, bh := memPerCall(before)
		ai, am, ah := memPerCall(r)
		w("\nBefore / after (`%s=<older build>`, measured first in the same run, same SIPps and Redis):\n\n", memBeforeEnv)
		w("| measure | before | after |\n|---|---:|---:|\n")
		w("| node RSS per established call, no media | %s | %s |\n", kib(bi), kib(ai))
		w("| node RSS per call with an anchored G.711 stream | %s | %s |\n", kib(bm), kib(am))
		w("| node Go heap (alloc) per call, no media | %s | %s |\n", kib(bh), kib(ah))
		w("| node goroutines per call | %.1f | %.1f |\n", (before.held.goroutines-before.idle.goroutines)/float64(max(before.bridged, 1)), (r.held.goroutines-r.idle.goroutines)/float64(max(n, 1)))
		w("| RSS / heap above idle: calls ended → %s later | %s / %s → %s / %s | %s / %s → %s / %s |\n", secs(memAfter),
			mib(before.ended.rss-before.idle.rss), mib(int64(before.ended.heapAlloc-before.idle.heapAlloc)), mib(before.later.rss-before.idle.rss), mib(int64(before.later.heapAlloc-before.idle.heapAlloc)),
			mib(r.ended.rss-r.idle.rss), mib(int64(r.ended.heapAlloc-r.idle.heapAlloc)), mib(r.later.rss-r.idle.rss), mib(int64(r.later.heapAlloc-r.idle.heapAlloc)))
	}
	if r.firstPostErr != "" {
		w("\nFirst POST error: `%s`\n", r.firstPostErr)
	}
	if r.firstWarn != "" {
		w("\nFirst node warning: `%s`\n", tail(r.firstWarn, 300))
	}
	w("\n\"Flat\" here: 40 s after the end, RSS within 2 KiB and the Go heap within 1 KiB per call of the idle reading. The Go runtime returns freed heap to the kernel lazily (background scavenger), so RSS lags the heap and stays near its peak for minutes; the heap is the better sign of what the node still holds, though it too waits for the next collection (an idle Go process collects every two minutes).\n")
	w("%s", memNotes)
	w("\nCommand:\n\n```\n%s\n```\n", b.command)
	return s.String()
}
