package main

// Part 6's markdown section.

import (
	"fmt"
	"strings"
	"time"
)

func wrtcReport(b *bench, steps []wrtcStep, loadBefore, loadAfter string, took time.Duration) string {
	var s strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&s, format, args...) }
	w("## 6. WebRTC legs\n\n")
	w("In this one process, no SIP and no node: for N in %s (stopping at the first step whose p99 jitter towards the browsers exceeds %s or whose legs do not all connect), N WebRTC legs (`media.NewWebRTCOffer`, PCMU, one port each from a `media.PortPool` on 127.0.0.1) are each answered by a pion `PeerConnection` standing in for the browser (full ICE, host candidates on 127.0.0.1 only, no mDNS, DTLS client, no interceptors), %d set-ups at a time; each leg's Session is relayed (`media.Relay`) to a plain RTP Session whose far end is one UDP socket of the bench (the \"near\" socket). Two sender goroutines on 20 ms tickers send every stream one PCMU packet per tick (12-byte header, 160-byte payload): one from the near socket to each RTP Session (→ relay → leg → SRTP → browser), one through each browser's track (SRTP → leg → relay → RTP Session → near socket). Once every stream is heard at both ends, after a %s warm-up, a window of %s: the browsers (one reader goroutine each, `TrackRemote.Read`) and the near socket (one reader, streams told by source port) record each packet's arrival time; jitter is |interval − 20 ms| over the intervals between consecutive sequence numbers of all streams; loss comes from the sequence numbers.\n\n",
		ladderString(), ms(wrtcJitterMax)+" ms", wrtcSetupWorkers, secs(wrtcWarmup), secs(wrtcWindow))
	w("The **reference**, run just before each step with the same N: the same near socket, senders and readers, but the far side is a plain RTP Session relayed to a plain UDP socket (one socket and one reader goroutine per stream, like the browsers). **CPU per relayed packet** = this process's CPU (user + sys, `getrusage`) in the window ÷ packets the relays forwarded in it, both directions (the Sessions' `PacketsOut`).\n\n")
	w("Machine: %s. Load average before/after: %s / %s. Part took %s.\n\n", machine(), loadBefore, loadAfter, took.Round(time.Second))

	best := 0
	for _, st := range steps {
		if st.webrtc != nil && st.webrtc.ok() {
			best = st.n
		}
	}
	if best > 0 {
		w("**Bridged WebRTC legs at p99 packet-interval jitter ≤ %s (towards the browsers): %d** (the highest step of the ladder met", ms(wrtcJitterMax)+" ms", best)
		if last := steps[len(steps)-1]; last.webrtc.ok() {
			w("; the ladder ends there")
		} else {
			w("; %d missed", last.n)
		}
		w(").\n\n")
	} else {
		w("**No step met p99 jitter ≤ %s towards the browsers.**\n\n", ms(wrtcJitterMax)+" ms")
	}

	for _, st := range steps {
		if st.webrtc != nil && st.webrtc.err == nil && !st.webrtc.ok() && !st.ref.ok() {
			w("At N = %d the reference missed p99 ≤ %s as well: the machine's miss, not WebRTC's, so the ladder went on.\n\n", st.n, ms(wrtcJitterMax)+" ms")
		}
	}
	w("| N | scenario | set-up (all heard) | to far end: jitter p50 / p99 / max (ms), worst stream p99 | loss, silent streams | to near socket: jitter p50 / p99 / max (ms) | loss | packets relayed (/s) | process CPU | **CPU per relayed packet** | ratio WebRTC / RTP |\n")
	w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, st := range steps {
		for _, r := range []*wrtcRun{st.ref, st.webrtc} {
			if r == nil {
				continue
			}
			name, ratio := "RTP↔RTP (reference)", ""
			if r == st.webrtc {
				name = "WebRTC↔RTP"
				if rp := st.ref.perPacket(); rp > 0 && r.perPacket() > 0 {
					ratio = fmt.Sprintf("**%.1f**", r.perPacket()/rp)
				}
			}
			if r.err != nil {
				w("| %d | %s | **%d of %d connected: %s** | | | | | | | | |\n", r.n, name, r.connected, r.n, strings.ReplaceAll(tail(r.err.Error(), 200), "|", "/"))
				continue
			}
			w("| %d | %s | %s | %s, %s | %s, %d | %s | %s | %d (%.0f/s) | %s of a core | %.1f µs | %s |\n",
				r.n, name, r.setup.Round(10*time.Millisecond), triple(r.toFar.jit), ms(r.toFar.worstP99),
				lossPct(r.toFar.received, r.toFar.expected), r.toFar.silent, triple(r.toNear.jit), lossPct(r.toNear.received, r.toNear.expected),
				r.relayed, float64(r.relayed)/wrtcWindow.Seconds(), pct(r.cpu, wrtcWindow), r.perPacket(), ratio)
		}
	}
	w("\n| N | scenario | before set-up | windows measured | rest of the machine CPU | RSS at window end | goroutines | senders' longest tick (ms) | send errors | teardown | ports in use after |\n|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, st := range steps {
		for _, r := range []*wrtcRun{st.ref, st.webrtc} {
			if r == nil || r.err != nil {
				continue
			}
			name := "RTP↔RTP"
			if r == st.webrtc {
				name = "WebRTC↔RTP"
			}
			w("| %d | %s | %s | %d | %s | %s | %d | %s | %d | %s | %d |\n", r.n, name, r.quiet, r.windows, pct(r.other, wrtcWindow), mib(r.rss), r.goroutines,
				ms(r.sendLate), r.sendErrs, r.teardown.Round(10*time.Millisecond), r.leftoverSessions)
		}
	}
	w("\nHow to read it:\n\n")
	w("- The browsers run in the same process, so the WebRTC figure holds both ends of every SRTP hop: each packet is encrypted once and decrypted once, by the leg on one side and by the pion browser on the other, and the browser side also runs full ICE (connectivity checks, consent) and one reader goroutine per peer. The reference does the same sending and reading on plain sockets, so the difference between the two rows is the WebRTC work of both ends; the leg's own share is roughly half of it (leg and browser do the same SRTP work per packet, one encrypting where the other decrypts), i.e. redial's WebRTC leg costs about reference + (WebRTC − reference) ÷ 2 per relayed packet. Both rows include the bench's senders and readers.\n")
	w("- Everything shares the machine's cores; \"rest of the machine\" is `/proc/stat` busy time minus this process. Before each scenario's set-up the bench waits up to %s for two seconds in which the rest of the machine uses under %.0f%% of a core, and a window in which it used more is measured again (up to %d windows; the tables show the one with the least other work).", secs(wrtcQuietMax), 100*mediaOtherMax, wrtcMaxWindows)
	w(" \"Senders' longest tick\" is the longest time one sender took to emit one tick's N packets: when it nears 20 ms, jitter is the sender's, not the relay's.\n")
	w("- A leg that writes before DTLS is up drops the packet (pion), so the warm-up starts only once every stream is heard at both ends.\n")
	w("\nCommand:\n\n```\n%s\n```\n", b.command)
	return s.String()
}

func ladderString() string {
	var p []string
	for _, n := range wrtcLadder {
		p = append(p, fmt.Sprint(n))
	}
	return strings.Join(p, ", ")
}
