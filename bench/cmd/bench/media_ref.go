package main

// The reference of part 4's playback scenario: the bare shape of redial's
// media.(*Session).Play — one goroutine and one UDP socket per stream,
// packet k due at start + k×20 ms on a timer, one sendto per packet — and
// nothing else (no SIP, no IVR, no file, no codec). It runs as a child
// process (this same binary, re-executed with mediaRefEnv set) against the
// same phone socket, on the same cores, just before redial's run, so its
// jitter is what the machine and the measurement allow a Go program of
// that design; what redial adds on top is redial's.

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// mediaRefEnv, when set to "<phone port>,<streams>,<ramp>", turns this
// process into the reference player.
const mediaRefEnv = "REDIAL_BENCH_MEDIA_REF"

func init() {
	if v := os.Getenv(mediaRefEnv); v != "" {
		if err := refPlayerMain(v); err != nil {
			fmt.Fprintln(os.Stderr, "bench: reference player:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

func refPlayerMain(spec string) error {
	f := strings.Split(spec, ",")
	if len(f) != 3 {
		return fmt.Errorf("%s=%q: want port,streams,ramp", mediaRefEnv, spec)
	}
	port, err1 := strconv.Atoi(f[0])
	n, err2 := strconv.Atoi(f[1])
	ramp, err3 := time.ParseDuration(f[2])
	if err1 != nil || err2 != nil || err3 != nil || n <= 0 {
		return fmt.Errorf("%s=%q: want port,streams,ramp", mediaRefEnv, spec)
	}
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
	for i := 0; i < n; i++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		go refPlay(context.Background(), c, dst)
		time.Sleep(ramp / time.Duration(n))
	}
	select {} // killed by the bench
}

// refPlay mirrors media.(*Session).Play's loop: schedule from a monotonic
// start, a reused timer, restart after more than three late frames.
func refPlay(ctx context.Context, c *net.UDPConn, dst netip.AddrPort) {
	pkt := make([]byte, 12+160)
	pkt[0], pkt[1] = 0x80, 0x80
	seq, ts := uint16(rand.Uint32()), rand.Uint32()
	binary.BigEndian.PutUint32(pkt[8:12], rand.Uint32())
	for i := 12; i < len(pkt); i++ {
		pkt[i] = 0xff
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	start := time.Now()
	for k := 0; ; k++ {
		due := start.Add(time.Duration(k) * 20 * time.Millisecond)
		wait := time.Until(due)
		if wait < -3*20*time.Millisecond {
			start = time.Now().Add(-time.Duration(k) * 20 * time.Millisecond)
			wait = 0
		}
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		binary.BigEndian.PutUint16(pkt[2:4], seq)
		binary.BigEndian.PutUint32(pkt[4:8], ts)
		c.WriteToUDPAddrPort(pkt, dst)
		pkt[1] = 0
		seq++
		ts += 160
	}
}

// mediaReference runs the reference player for streams streams against a
// fresh phone and measures it like redial's playback.
func mediaReference(ctx context.Context, streams int, ramp time.Duration, dir string, keep bool, pids ...int) (*playResult, error) {
	r := &playResult{}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ph, err := newPhone(streams * int(mediaWindow/(20*time.Millisecond)) * 3 / 2)
	if err != nil {
		return nil, err
	}
	defer ph.close()
	r.quiet = waitQuiet(ctx, mediaQuietMax, pids...)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%d,%s", mediaRefEnv, ph.port, streams, ramp))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("reference player: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	defer func() { cmd.Process.Kill(); <-done }()
	pid := cmd.Process.Pid

	start := time.Now()
	deadline := start.Add(ramp + 15*time.Second)
	for ph.streams.Load() < int64(streams) {
		select {
		case <-done:
			return nil, fmt.Errorf("reference player exited early (%v)", cmd.ProcessState)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("reference player: phone hears %d of %d streams", ph.streams.Load(), streams)
		}
	}
	r.rampUp = time.Since(start)
	time.Sleep(time.Second)
	r.posted = streams
	measure := func(int) (playWindow, error) {
		var w playWindow
		w.upBefore, w.upAfter = streams, streams
		cpu0, bench0, busy0, rq0 := procCPU(pid), processCPU(), machineBusy(), runqueueWait(pid)
		from := ph.now()
		ph.record(from, from+int64(mediaWindow))
		if err := sleepCtx(ctx, mediaWindow); err != nil {
			return w, err
		}
		w.cpu, w.benchCPU, w.runq = procCPU(pid)-cpu0, processCPU()-bench0, runqueueWait(pid)-rq0
		w.otherCPU = max(0, machineBusy()-busy0-w.cpu-w.benchCPU)
		w.rss, w.hwm = procStatusBytes(pid, "VmRSS:"), procHWM(pid)
		time.Sleep(50 * time.Millisecond)
		samples, overflow := ph.take()
		w.overflow = overflow
		analysePlayback(&w, samples)
		w.samples = samples
		return w, nil
	}
	if err := playPhases(r, "A reference", ph, measure, func(int) bool { return true }, keep, filepath.Join(dir, "reference")); err != nil {
		return nil, err
	}
	return r, nil
}
