package main

// Part 4's optional perf recording and its markdown section.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

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

// secs writes a duration as "8 s" or "5.2 s".
// sleepCtx sleeps for d unless ctx ends first (Ctrl-C: the deferred
// clean-ups then run at once).
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// secs writes a duration as "8 s" or "5.2 s".
func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + " s"
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

func perPacket(cpu time.Duration, packets int64) float64 {
	if packets <= 0 {
		return 0
	}
	return float64(cpu.Nanoseconds()) / 1e3 / float64(packets)
}

func mediaReport(b *bench, ref, a *playResult, r *bridgeResult, loadBefore, loadAfter string, took time.Duration) string {
	var s strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&s, format, args...) }
	win := mediaWindow
	w("## 4. Media\n\n")
	w("The redial node runs as its own process (`go build ./cmd/redial`, then `redial serve --redis <private redis-server> --host bench --sip udp:127.0.0.1:<port> --sip-public-ip 127.0.0.1 --rtp-ports 16384-32000 --http 127.0.0.1:<port> --data <dir> --log-level warn`), so its CPU (`/proc/<pid>/stat`) and memory (`VmRSS`/`VmHWM`) are its own. Calls are originated through its REST API (`POST /api/v1/calls`, line group `bench`, line `limit` 2000) at %d calls/s. The callee is a SIPp UAS (`testdata/sipp/uas_answer_extmedia.xml -key rtp_port <P>`) whose SDP answer points redial's RTP at one UDP socket of the bench, the \"phone\" (SO_RCVBUF forced to 8 MiB, which the kernel reports as %s; SO_TIMESTAMPNS on).\n\n", mediaRate, mib(int64(a.rcvbuf)))
	w("- **A, playback**: %d calls to dialplan `default:play` → `{\"type\":\"ivr\",\"script\":\"play\"}`, a script of one playback component (oType 204, `:GS_PUB/bench/tone.wav`: a %s 8 kHz 16-bit mono 1 kHz tone, long enough for every window) and a hangup (201). Once the API shows every call `answered` and the phone hears every stream, the phone records windows of %s: per RTP stream (SSRC) the inter-arrival intervals; jitter is |interval − 20 ms| over all intervals of all streams. The first windows use the phone the brief describes, a tight loop of blocking reads with `time.Now()` right after each read; then the phone switches to polling (non-blocking `recvmmsg` batches every millisecond), which is woken 1,000 times a second instead of once per packet and so takes less CPU away from the sender. Both also take the kernel's receive timestamp, which on loopback is stamped inside the sender's `sendto`: that column is the sender's own pacing, whatever the phone's scheduling. Then every call is hung up (`DELETE /api/v1/calls/{ref}`) and `redial_rtp_ports_in_use` must return to 0.\n", mediaPlayCalls, secs(mediaToneLen), secs(win))
	w("- **A reference, bare Go loop**: run first, on the same phone and cores, in a child process (this binary re-executed): one goroutine and one UDP socket per stream, packet k due at start + k × 20 ms on a reused timer, one `sendto` per packet, nothing else (no SIP, IVR, file or codec), %d streams started over %s like the calls. It shows what the machine and the measurement allow a Go sender of that shape.\n", mediaPlayCalls, secs(time.Duration(mediaPlayCalls)*time.Second/mediaRate))
	w("- **B, bridge**: %d calls to dialplan `default:bridge` → `{\"type\":\"sip\",\"uri\":\"sip:bridge@<SIPp B>\"}`, SIPp B being `uas_answer_wait_bye.xml -rtp_echo -mp <port>` (it sends every RTP packet back to its sender). Once `GET /api/v1/calls` shows every call `bridged` with its callee leg's `rtp_local_port`, one sender goroutine on a 20 ms ticker sends every call a PCMU packet (12-byte RTP header, 160-byte payload carrying the send time, one SSRC per call) from the phone socket to that port, %d sends per tick; each packet crosses redial twice (A→B, then the echo B→A) and comes back to the phone (tight-loop reader). After a 2 s warm-up, a window of %s: loss counts the packets sent in it that never came back; redial's CPU per relayed packet is its CPU in the window ÷ (2 × echoes that arrived in it); SIPp's CPU in the window (its SIP side is idle then) ÷ echoes is the reference. Before the calls, the same sender sends %d streams straight to SIPp's echo port for %s (after 1 s of warm-up): that round trip is the bench's and SIPp's share, and what the calls take more is redial's (two crossings each way, so ÷ 2 per direction; p99 minus p99 is an estimate, percentiles do not add up exactly). Jitter in B is |interval − 20 ms| between one call's echoes arriving in the window, so it includes the sender's own pacing (one goroutine putting every call's packet on the wire at each tick).\n\n", mediaBridgeCalls, mediaBridgeCalls, secs(win), mediaBridgeCalls, secs(mediaEchoWindow))
	w("Machine: %s. Load average before/after: %s / %s. Part took %s.\n\n", machine(), loadBefore, loadAfter, took.Round(time.Second))

	w("### A. %d concurrent playback calls\n\n", mediaPlayCalls)
	at, ap, rt, rp := &a.tight, &a.poll, &ref.tight, &ref.poll
	cols := []*playWindow{at, rt, ap, rp}
	row := func(name string, f func(w *playWindow) string, target string) {
		w("| %s |", name)
		for _, c := range cols {
			w(" %s |", f(c))
		}
		w(" %s |\n", target)
	}
	w("| measure | redial, tight-loop phone | reference, tight-loop phone | redial, polling phone | reference, polling phone | target |\n|---|---:|---:|---:|---:|---|\n")
	w("| calls up (API `answered`) at window start / end | %d / %d | — | %d / %d | — | %d |\n", at.upBefore, at.upAfter, ap.upBefore, ap.upAfter, mediaPlayCalls)
	row("RTP streams heard in the window", func(c *playWindow) string { return fmt.Sprint(c.streams) }, "")
	row("packets received / expected from sequence numbers (loss)", func(c *playWindow) string {
		return fmt.Sprintf("%d / %d (%s)", c.received, c.expected, lossPct(c.received, c.expected))
	}, "")
	row(fmt.Sprintf("packets received / nominal (streams × %s ÷ 20 ms)", secs(win)), func(c *playWindow) string { return fmt.Sprintf("%d / %d", c.received, c.nominal) }, "")
	row("**jitter \\|interval − 20 ms\\| p50 / p99 / max (ms)**, `time.Now()` after the read", func(c *playWindow) string { return triple(c.jitUser) },
		fmt.Sprintf("p99 ≤ 5 ms: %s", verdict(at.jitUser[1] <= 5*time.Millisecond && at.upBefore >= mediaPlayCalls)))
	row("**same, kernel receive timestamps** (SO_TIMESTAMPNS)", func(c *playWindow) string { return triple(c.jitKern) },
		fmt.Sprintf("polling phone: %s", verdict(ap.jitKern[1] <= 5*time.Millisecond && ap.upBefore >= mediaPlayCalls)))
	row("intervals off by more than 5 ms (read time / kernel time)", func(c *playWindow) string {
		return fmt.Sprintf("%.2f%% / %.2f%%", 100*c.over5User, 100*c.over5Kern)
	}, "")
	row("sender's bursts (kernel stamps, a gap over 1 ms ends one): per second; packets p50; length p50 / p99 (ms)", func(c *playWindow) string {
		return fmt.Sprintf("%.0f/s; %d; %s / %s", c.burstsPerS, c.burstPackets, ms(c.burstLen[0]), ms(c.burstLen[1]))
	}, "")
	row("phone's read behind the kernel stamp p50 / p99 / max (ms)", func(c *playWindow) string { return triple(c.lag) }, "")
	row("sender CPU in the window, per packet sent", func(c *playWindow) string {
		return fmt.Sprintf("%s of a core, %.1f µs", pct(c.cpu, win), perPacket(c.cpu, c.received))
	}, "")
	row("sender's threads runnable but waiting for a CPU (sum)", func(c *playWindow) string { return c.runq.Round(time.Millisecond).String() }, "")
	row("bench process (phone) / rest of the machine CPU", func(c *playWindow) string { return pct(c.benchCPU, win) + " / " + pct(c.otherCPU, win) }, "")
	w("| windows measured (the one with the least other work is shown) | %d | %d | %d | %d | |\n", a.nTight, ref.nTight, a.nPoll, ref.nPoll)
	w("| sender RSS / peak RSS (VmRSS / VmHWM) at the end | %s / %s | %s / %s | | | |\n", mib(ap.rss), mib(ap.hwm), mib(rp.rss), mib(rp.hwm))
	w("| ramp-up: first POST (reference: start) to all streams heard | %s | %s | | | |\n", a.rampUp.Round(10*time.Millisecond), ref.rampUp.Round(10*time.Millisecond))
	drain := fmt.Sprintf("0 after %s", a.drained.Round(10*time.Millisecond))
	if a.drainErr != nil {
		drain = "**" + a.drainErr.Error() + "**"
	}
	w("| `redial_rtp_ports_in_use` after hanging all up | %s (%d DELETE errors) | | | | 0 |\n", drain, a.hangupFailed)
	w("| CDRs on Redis (disposition / hangup cause) / UAS successful calls | %d (%s) / %d | | | | %d |\n\n", a.cdrs, a.cdrKinds, a.uasOK, mediaPlayCalls)

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
	w("| calls bridged | %d (of %d posted, %d POST errors) | %d: %s |\n", r.bridged, r.posted, r.postErrs, mediaBridgeCalls, verdict(r.bridged >= mediaBridgeCalls && r.silentCalls == 0 && r.returned*1000 >= r.sentWin*999))
	w("| packets sent in the window / returned (loss) | %d / %d (%s) | |\n", r.sentWin, r.returned, lossPct(r.returned, r.sentWin))
	w("| calls with no packet back | %d | 0 |\n", r.silentCalls)
	w("| round trip p50 / p99 / max (ms), bench receive time | %s | |\n", triple(r.rtt))
	w("| same, kernel receive timestamp | %s | |\n", triple(r.rttKern))
	e := r.echoRef
	w("| reference, SIPp echo alone (%d streams, same sender): packets sent / returned; round trip p50 / p99 / max (ms) | %d / %d; %s | |\n", mediaBridgeCalls, e.sent, e.returned, triple(e.rtt))
	w("| same, kernel receive timestamp | %s | |\n", triple(e.rttKern))
	addP50, addP99 := (r.rtt[0]-e.rtt[0])/2, (r.rtt[1]-e.rtt[1])/2
	w("| **added by redial per direction**, (round trip − reference) ÷ 2, p50 / p99 (ms) | **%s / %s** | p99 ≤ 2 ms: %s |\n", ms(addP50), ms(addP99), verdict(addP99 <= 2*time.Millisecond))
	w("| echo packet-interval jitter p50 / p99 / max (ms), read time; kernel stamp | %s; %s | p99 ≤ 5 ms: %s |\n", triple(r.jitUser), triple(r.jitKern), verdict(r.jitUser[1] <= 5*time.Millisecond))
	w("| same, reference (SIPp echo alone) | %s; %s | |\n", triple(e.jitUser), triple(e.jitKern))
	w("| packets relayed by redial in the window (2 × echoes arrived) | %d (%.0f/s) | |\n", relayed, float64(relayed)/win.Seconds())
	w("| redial CPU in the window | %s of one core (%s) | |\n", pct(r.cpu, win), r.cpu.Round(10*time.Millisecond))
	w("| **redial CPU per relayed packet** | **%.1f µs** | ≤ 8 µs: %s (a Go SBC publishes 27 µs) |\n", perPkt, verdict(perPkt > 0 && perPkt <= 8))
	w("| SIPp `-rtp_echo` CPU per echoed packet (reference) | %.1f µs (%s of one core) | |\n", sippPer, pct(r.sippCPU, win))
	if sippPer > 0 {
		w("| ratio redial / SIPp per packet | %.2f | ≤ 1.0: %s |\n", perPkt/sippPer, verdict(perPkt/sippPer <= 1.0))
	}
	kern := "off (userspace relay)"
	if r.kernelOn == 1 {
		kern = fmt.Sprintf("on: %.0f packets forwarded in the kernel over the calls' life", r.kernelPkts)
	}
	w("| in-kernel forwarding (`redial_rtp_kernel_forwarding`, `--rtp-kernel`) | %s | |\n", kern)
	// What the relay costs wherever it runs: with in-kernel forwarding
	// the work is done in the senders' system calls (on loopback), so
	// redial's own CPU no longer shows it; the CPU of everything taking
	// part does (the kernel's work is in the process it ran for, or in
	// ksoftirqd).
	if r.arrivedWin > 0 && e.returned > 0 {
		per := func(d time.Duration, n int64) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(n) }
		through := per(r.cpu+r.sippCPU+r.benchCPU+r.redisCPU+r.softirqCPU, r.arrivedWin)
		alone := per(e.sippCPU+e.benchCPU+e.softirqCPU, e.returned)
		added := (through - alone) / 2
		w("| CPU per round trip of every process taking part (redial, SIPp, the bench's sender and reader, redis-server, ksoftirqd), through redial / SIPp echo alone | %.1f µs / %.1f µs | |\n", through, alone)
		w("| **CPU added per relayed packet, wherever it runs**, (through − alone) ÷ 2 | **%.1f µs** | |\n", added)
		if sippPer > 0 {
			w("| ratio of that to SIPp per echoed packet | %.2f | ≤ 1.0: %s |\n", added/sippPer, verdict(added/sippPer <= 1.0))
		}
		w("| whole machine's busy time (`/proc/stat`, other work included) per round trip, through redial / alone | %.1f µs / %.1f µs | |\n", per(r.busy, r.arrivedWin), per(e.busy, e.returned))
	}
	w("| redial threads runnable but waiting for a CPU (sum over threads) | %s | |\n", r.runq.Round(time.Millisecond))
	w("| bench process (sender and reader) / rest of the machine CPU in the window | %s / %s | |\n", pct(r.benchCPU, win), pct(r.otherCPU, win))
	w("| redial RSS / peak RSS | %s / %s | |\n", mib(r.rss), mib(r.hwm))
	drain = fmt.Sprintf("0 after %s", r.drained.Round(10*time.Millisecond))
	if r.drainErr != nil {
		drain = "**" + r.drainErr.Error() + "**"
	}
	w("| `redial_rtp_ports_in_use` after hanging all up | %s (%d DELETE errors) | 0 |\n", drain, r.hangupFailed)
	w("| CDRs on Redis (disposition / hangup cause) / UAS A successful / SIPp B successful | %d (%s) / %d / %d | %d |\n\n", r.cdrs, r.cdrKinds, r.uasOK, r.bOK, mediaBridgeCalls)

	w("Notes:\n\n")
	w("- Everything shares the 2 cores, and other work on the machine shows up in these numbers: \"rest of the machine\" is `/proc/stat` busy time minus the processes named here; \"waiting for a CPU\" sums `/proc/<pid>/task/*/schedstat` run-queue time. During window A SIPp's UAS used %s and redis-server %s of one core; during window B redis-server %s.\n",
		pct(a.tight.uasCPU, win), pct(a.tight.redisCPU, win), pct(r.redisCPU, win))
	w("- Before each scenario the bench waits (up to %s) for two seconds in which the rest of the machine uses under %.0f%% of a core (reference %s; A %s; B %s), and a window in which it used more is measured again, up to %d windows per phone mode while the calls last; the tables show the window with the least other work (B: %d measured).\n",
		secs(mediaQuietMax), 100*mediaOtherMax, ref.quiet, a.quiet, r.quiet, mediaMaxWindows, r.windows)
	w("- B's round trip includes waiting behind the other calls' packets: the sender puts %d packets on the wire at each tick, and redial and SIPp relay them one after another; the reference row has the same wait at SIPp and at the bench.\n", mediaBridgeCalls)
	w("- SIPp has no option for its media socket's receive buffer; at 500 echoes per 20 ms burst the default (net.core.rmem_default) drops about a tenth of them, so the bench forces it to 8 MiB through `pidfd_getfd` and `SO_RCVBUFFORCE` (same socket, no system setting changed).\n")
	w("- Per-socket receive-buffer drops (`/proc/net/udp`) in window A: phone %d, redial's RTP sockets %d; window B: phone %d, SIPp's media port %d, redial's RTP sockets %d. Bench reader buffer overflow: %d samples.\n",
		a.tight.drops[0]+a.poll.drops[0], a.tight.drops[1]+a.poll.drops[1], r.drops[0], r.drops[1], r.drops[2], a.tight.overflow+a.poll.overflow)
	w("- A's last window ended %s before the first call's %s tone could end. B: %d packets sent in all, %d send errors.\n", a.poll.headroom.Round(100*time.Millisecond), secs(mediaToneLen), r.sent, r.sendErrs)
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
	w("- Issue 14, before (goroutine-per-direction relay: two goroutines per call blocked in reads, a read, a write and an empty read per packet): 500 bridged calls cost 14.5–18.9 µs of CPU per relayed packet (SIPp 8.2–10.5 µs, ratio 1.8) with a round trip of p50 6.4–14.8 ms and p99 13.5–48.7 ms. Now the relay registers both sockets of a call with one of GOMAXPROCS shared epoll sets; one goroutine per set, parked in Go's netpoller on the epoll descriptor, forwards one packet per ready socket per `epoll_wait` batch with one `recvfrom` and one `sendto` (internal/media/relay_poll_linux.go). Once a call's two remotes are latched and nothing needs transcoding or recording, the relay hands both directions to the node's in-kernel forwarder (`--rtp-kernel`, internal/media/kfwd: an eBPF program on the interfaces' tcx ingress rewrites the packet's addresses and ports), so from then on no packet reaches redial's sockets. On loopback that work runs inside the sender's `sendto` (the phone's or SIPp's), which is why redial's own CPU per packet is then tiny and why the rows \"CPU added per relayed packet, wherever it runs\" count every process taking part, compared with the reference window. `REDIAL_RTP_KERNEL=off` in the bench's environment runs the node with the userspace relay alone. Scenario sizes: `%s=play=<calls>,bridge=<calls>`.\n", mediaCallsEnv)
	w("- `%s=<dir>` makes the bench run `perf record -g` on the node during each window and write `perf report` there (such runs are slower; do not publish their numbers).\n", mediaPerfEnv)
	w("\nCommand:\n\n```\n%s\n```\n", b.command)
	return s.String()
}
