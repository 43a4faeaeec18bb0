package main

// Helpers of part 4 (media): the redial node as its own process (so its
// CPU and memory are its own), its REST API, the bench's "phone" RTP socket
// and the 30 s tone WAV.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// nodeProc is a redial node started as `redial serve`.
type nodeProc struct {
	cmd     *exec.Cmd
	pid     int
	base    string // http://127.0.0.1:port
	sipAddr string
	logPath string
	done    chan struct{}
	err     error
	client  *http.Client
}

// buildRedial compiles ./cmd/redial into dir once per run.
func buildRedial(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "redial")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/redial")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("media: go build ./cmd/redial: %w\n%s", err, out)
	}
	return bin, nil
}

// startNodeProc runs `redial serve` against rds with its data directory and
// log (warn and up) in dir, and waits for /healthz.
func startNodeProc(ctx context.Context, bin string, rds *redisServer, dir string) (*nodeProc, error) {
	sipPort, err := freePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	n := &nodeProc{base: fmt.Sprintf("http://127.0.0.1:%d", httpPort), sipAddr: fmt.Sprintf("127.0.0.1:%d", sipPort),
		logPath: filepath.Join(dir, "node.log"), done: make(chan struct{}),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxIdleConns: 64}}}
	logFile, err := os.Create(n.logPath)
	if err != nil {
		return nil, err
	}
	n.cmd = exec.Command(bin, "serve", "--redis", rds.URL, "--host", "bench",
		"--sip", "udp:"+n.sipAddr, "--sip-public-ip", "127.0.0.1", "--rtp-ports", "16384-32000",
		"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--data", filepath.Join(dir, "data"), "--log-level", "warn")
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	// Our own process group: a Ctrl-C on the bench must not reach the node
	// before the bench has hung its calls up and stopped it.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("media: start redial serve: %w", err)
	}
	n.pid = n.cmd.Process.Pid
	go func() { n.err = n.cmd.Wait(); logFile.Close(); close(n.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-n.done:
			return nil, fmt.Errorf("media: redial serve exited at start: %v\n%s", n.err, tail(readFileString(n.logPath), 2000))
		default:
		}
		resp, err := n.client.Get(n.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return n, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			n.stop()
			return nil, fmt.Errorf("media: redial serve: /healthz not OK after 15s (last error %v)\n%s", err, tail(readFileString(n.logPath), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and, after 20 s, SIGKILL.
func (n *nodeProc) stop() {
	select {
	case <-n.done:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(20 * time.Second):
		fmt.Fprintln(os.Stderr, "bench: media: redial serve did not stop within 20s; killing it")
		n.cmd.Process.Kill()
		<-n.done
	}
}

func (n *nodeProc) cpu() time.Duration { return procCPU(n.pid) }

// rss is VmRSS and VmHWM of the node in bytes.
func (n *nodeProc) rss() (cur, peak int64) {
	return procStatusBytes(n.pid, "VmRSS:"), procHWM(n.pid)
}

// warnLines counts the node's log lines (it logs at warn and up).
func (n *nodeProc) warnLines() (int, string) {
	s := readFileString(n.logPath)
	lines := 0
	first := ""
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if first == "" {
			first = l
		}
		lines++
	}
	return lines, first
}

func (n *nodeProc) do(ctx context.Context, method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// originate is POST /api/v1/calls; it returns the call_ref.
func (n *nodeProc) originate(ctx context.Context, number, extension string) (string, error) {
	var out struct {
		CallRef string `json:"call_ref"`
	}
	_, err := n.do(ctx, http.MethodPost, "/api/v1/calls", map[string]any{
		"number": number, "line_group": []string{benchGroup}, "destination": map[string]string{"extension": extension},
	}, &out)
	return out.CallRef, err
}

// apiCall is the part of GET /api/v1/calls' Info the bench reads.
type apiCall struct {
	CallRef     string `json:"call_ref"`
	State       string `json:"state"`
	Disposition string `json:"disposition"`
	Legs        []struct {
		Role       string `json:"role"`
		LocalPort  int    `json:"rtp_local_port"`
		PacketsIn  uint64 `json:"packets_in"`
		PacketsOut uint64 `json:"packets_out"`
	} `json:"legs"`
}

// calls is GET /api/v1/calls: the calls in progress.
func (n *nodeProc) calls(ctx context.Context) ([]apiCall, error) {
	var out struct {
		Calls []apiCall `json:"calls"`
	}
	_, err := n.do(ctx, http.MethodGet, "/api/v1/calls", nil, &out)
	return out.Calls, err
}

func countState(calls []apiCall, state string) int {
	c := 0
	for _, x := range calls {
		if x.State == state {
			c++
		}
	}
	return c
}

// hangup is DELETE /api/v1/calls/{ref}.
func (n *nodeProc) hangup(ctx context.Context, ref string) error {
	_, err := n.do(ctx, http.MethodDelete, "/api/v1/calls/"+ref, nil, nil)
	return err
}

// metric reads one unlabelled gauge or counter from GET /metrics.
func (n *nodeProc) metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("GET /metrics: no %s", name)
}

// originateAll posts count calls paced at rate per second (each POST in
// its own goroutine, so a slow answer does not slow the pacing) and returns
// the call refs in order, "" where the POST failed, with the first errors.
func (n *nodeProc) originateAll(ctx context.Context, count, rate int, prefix, extension string) ([]string, []error) {
	refs := make([]string, count)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < count; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); wait > 0 {
			time.Sleep(wait)
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ref, err := n.originate(ctx, fmt.Sprintf("%s%06d", prefix, i), extension)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("call %d: %w", i, err))
				mu.Unlock()
				return
			}
			refs[i] = ref
		}(i)
	}
	wg.Wait()
	return refs, errs
}

// hangupAll deletes every call with 32 requests in flight.
func (n *nodeProc) hangupAll(ctx context.Context, refs []string) (failed int) {
	ch := make(chan string)
	var bad atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ref := range ch {
				if err := n.hangup(ctx, ref); err != nil {
					bad.Add(1)
				}
			}
		}()
	}
	for _, r := range refs {
		if r != "" {
			ch <- r
		}
	}
	close(ch)
	wg.Wait()
	return int(bad.Load())
}

// drained waits until no call is in progress and redial_rtp_ports_in_use
// is 0; it returns the last values seen.
func (n *nodeProc) drained(ctx context.Context, timeout time.Duration) (calls int, ports float64, took time.Duration, err error) {
	start := time.Now()
	for {
		list, lerr := n.calls(ctx)
		p, perr := n.metric(ctx, "redial_rtp_ports_in_use")
		calls, ports = len(list), p
		if lerr == nil && perr == nil && calls == 0 && ports == 0 {
			return calls, ports, time.Since(start), nil
		}
		if time.Since(start) > timeout || ctx.Err() != nil {
			return calls, ports, time.Since(start), fmt.Errorf("after %v: %d calls in progress, redial_rtp_ports_in_use %v (errors: %v, %v)",
				timeout, calls, ports, lerr, perr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rxSample is one RTP packet as the phone received it.
type rxSample struct {
	ssrc uint32
	seq  uint16
	user int64 // time.Now() right after the read, ns since the phone's epoch (monotonic)
	lag  int64 // that time minus the kernel's receive timestamp (SO_TIMESTAMPNS), ns
	kern int64 // kernel receive timestamp, ns since the phone's epoch
	sent int64 // part B: send time carried in the payload, ns since the epoch; 0 otherwise
}

// phone is the bench's RTP endpoint: one UDP socket that every call's SDP
// points at, read in a tight loop.
type phone struct {
	conn    *net.UDPConn
	port    int
	rcvbuf  int // effective SO_RCVBUF as the kernel reports it
	epoch   time.Time
	epochNs int64 // epoch as Unix ns, to place kernel timestamps

	packets atomic.Int64
	streams atomic.Int64
	bad     atomic.Int64 // not RTP, or no kernel timestamp

	mu       sync.Mutex
	from, to int64 // recording window, arrival ns since epoch
	samples  []rxSample
	overflow int

	done chan struct{}
}

// stampMagic marks the bench's own packets in part B (payload bytes 8..11),
// so echoes are told from anything else.
const stampMagic = 0x52444c42 // "RDLB"

func newPhone(capacity int) (*phone, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("media: phone socket: %w", err)
	}
	p := &phone{conn: c, port: c.LocalAddr().(*net.UDPAddr).Port, epoch: time.Now(), done: make(chan struct{}),
		samples: make([]rxSample, 0, capacity)}
	p.epochNs = p.epoch.UnixNano()
	raw, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	var serr error
	raw.Control(func(fd uintptr) {
		// SO_RCVBUFFORCE passes net.core.rmem_max when we may (root); the
		// plain option is capped by it.
		const want = 8 << 20
		if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, want) != nil {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, want)
		}
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, 4<<20)
		p.rcvbuf, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	})
	if serr != nil {
		c.Close()
		return nil, fmt.Errorf("media: phone socket: SO_TIMESTAMPNS: %w", serr)
	}
	go p.read()
	return p, nil
}

// read is the tight receive loop. It allocates nothing per packet except
// the first sight of a new SSRC.
func (p *phone) read() {
	defer close(p.done)
	buf := make([]byte, 2048)
	oob := make([]byte, 256)
	seen := map[uint32]struct{}{}
	for {
		n, oobn, _, _, err := p.conn.ReadMsgUDPAddrPort(buf, oob)
		now := time.Now()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		kern, ok := kernelStamp(oob[:oobn])
		if n < 12 || buf[0]>>6 != 2 || !ok {
			p.bad.Add(1)
			continue
		}
		p.packets.Add(1)
		s := rxSample{
			ssrc: binary.BigEndian.Uint32(buf[8:12]),
			seq:  binary.BigEndian.Uint16(buf[2:4]),
			user: int64(now.Sub(p.epoch)),
			lag:  now.UnixNano() - kern,
			kern: kern - p.epochNs,
		}
		if n >= 12+16 && binary.BigEndian.Uint32(buf[20:24]) == stampMagic {
			s.sent = int64(binary.BigEndian.Uint64(buf[12:20]))
		}
		if _, ok := seen[s.ssrc]; !ok {
			seen[s.ssrc] = struct{}{}
			p.streams.Store(int64(len(seen)))
		}
		p.mu.Lock()
		if s.user >= p.from && s.user < p.to {
			if len(p.samples) < cap(p.samples) {
				p.samples = append(p.samples, s)
			} else {
				p.overflow++
			}
		}
		p.mu.Unlock()
	}
}

// kernelStamp finds SCM_TIMESTAMPNS in a control message buffer (Unix ns).
func kernelStamp(oob []byte) (int64, bool) {
	const hdr = 16 // struct cmsghdr on 64-bit Linux: len uint64, level, type int32
	for len(oob) >= hdr {
		l := int(binary.NativeEndian.Uint64(oob[0:8]))
		level := int32(binary.NativeEndian.Uint32(oob[8:12]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:16]))
		if l < hdr || l > len(oob) {
			return 0, false
		}
		if level == syscall.SOL_SOCKET && typ == syscall.SCM_TIMESTAMPNS && l >= hdr+16 {
			sec := int64(binary.NativeEndian.Uint64(oob[hdr : hdr+8]))
			nsec := int64(binary.NativeEndian.Uint64(oob[hdr+8 : hdr+16]))
			return sec*1e9 + nsec, true
		}
		l = (l + 7) &^ 7
		if l > len(oob) {
			break
		}
		oob = oob[l:]
	}
	return 0, false
}

// now is the phone's clock: ns since its epoch.
func (p *phone) now() int64 { return int64(time.Since(p.epoch)) }

// record keeps the packets arriving in [from, to) (phone clock).
func (p *phone) record(from, to int64) {
	p.mu.Lock()
	p.from, p.to = from, to
	p.samples = p.samples[:0]
	p.overflow = 0
	p.mu.Unlock()
}

// take returns what record kept and stops recording.
func (p *phone) take() ([]rxSample, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := append([]rxSample(nil), p.samples...)
	p.from, p.to = 0, 0
	return s, p.overflow
}

func (p *phone) close() {
	p.conn.Close()
	<-p.done
}

// sendStream is one call's outgoing RTP stream in part B.
type sendStream struct {
	to   netip.AddrPort
	ssrc uint32
	seq  uint16
	ts   uint32
}

// sendLoop sends one 20 ms PCMU packet (160-byte payload) per stream on
// every tick of a 20 ms ticker until ctx ends, from the phone's socket. The
// payload carries the send time (phone clock) and stampMagic so the echo
// gives the round trip. Packets sent in [from, to) are counted in win.
func (p *phone) sendLoop(ctx context.Context, streams []*sendStream, from, to int64, sent, win, errs *atomic.Int64) {
	pkt := make([]byte, 12+160)
	for i := 24; i < len(pkt); i++ {
		pkt[i] = 0xff // µ-law silence
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	first := true
	for {
		for _, s := range streams {
			pkt[0] = 0x80
			pkt[1] = 0 // PCMU
			if first {
				pkt[1] |= 0x80 // marker on the first packet of each stream
			}
			binary.BigEndian.PutUint16(pkt[2:4], s.seq)
			binary.BigEndian.PutUint32(pkt[4:8], s.ts)
			binary.BigEndian.PutUint32(pkt[8:12], s.ssrc)
			at := p.now()
			binary.BigEndian.PutUint64(pkt[12:20], uint64(at))
			binary.BigEndian.PutUint32(pkt[20:24], stampMagic)
			if _, err := p.conn.WriteToUDPAddrPort(pkt, s.to); err != nil {
				errs.Add(1)
			} else {
				sent.Add(1)
				if at >= from && at < to {
					win.Add(1)
				}
			}
			s.seq++
			s.ts += 160
		}
		first = false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// writeToneWAV writes a mono 16-bit PCM WAV of a sine tone.
func writeToneWAV(path string, rate int, freq float64, d time.Duration) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	n := int(int64(rate) * int64(d) / int64(time.Second))
	data := make([]byte, 44+2*n)
	copy(data[0:4], "RIFF")
	binary.LittleEndian.PutUint32(data[4:8], uint32(36+2*n))
	copy(data[8:16], "WAVEfmt ")
	binary.LittleEndian.PutUint32(data[16:20], 16)
	binary.LittleEndian.PutUint16(data[20:22], 1) // PCM
	binary.LittleEndian.PutUint16(data[22:24], 1) // mono
	binary.LittleEndian.PutUint32(data[24:28], uint32(rate))
	binary.LittleEndian.PutUint32(data[28:32], uint32(2*rate))
	binary.LittleEndian.PutUint16(data[32:34], 2)
	binary.LittleEndian.PutUint16(data[34:36], 16)
	copy(data[36:40], "data")
	binary.LittleEndian.PutUint32(data[40:44], uint32(2*n))
	for i := 0; i < n; i++ {
		v := int16(math.Round(8000 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))))
		binary.LittleEndian.PutUint16(data[44+2*i:], uint16(v))
	}
	return os.WriteFile(path, data, 0o644)
}

// procStatusBytes reads a "kB" field of /proc/<pid>/status in bytes.
func procStatusBytes(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// udpDrops sums the per-socket "drops" column of /proc/net/udp for the
// sockets bound to 127.0.0.1 or 0.0.0.0 whose local port pick selects.
func udpDrops(pick func(port int) bool) int64 {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0
	}
	var total int64
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 13 {
			continue
		}
		_, portHex, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseInt(portHex, 16, 32)
		if err != nil || !pick(int(port)) {
			continue
		}
		d, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
		total += d
	}
	return total
}

// freeUDPRun finds base with base..base+n-1 all free UDP ports on
// 127.0.0.1 (SIPp's -mp binds mp and mp+2).
func freeUDPRun(n int) (int, error) {
	for try := 0; try < 50; try++ {
		base, err := freePort()
		if err != nil {
			return 0, err
		}
		base &^= 1
		ok := true
		for p := base; p < base+n; p++ {
			c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok && base+n <= 65535 {
			return base, nil
		}
	}
	return 0, fmt.Errorf("bench: no run of %d free UDP ports found", n)
}

func readFileString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// machineBusy is the CPU time all processes of the machine used so far
// (/proc/stat: everything but idle and iowait).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already in user
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// runqueueWait is how long the threads of pid have been runnable but
// waiting for a CPU so far (sum of /proc/<pid>/task/*/schedstat field 2):
// time the scheduler, not the process, is to blame for.
func runqueueWait(pid int) time.Duration {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var ns int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			ns += n
		}
	}
	return time.Duration(ns)
}

// writeSamples keeps the phone's samples as CSV (with -keep), for a closer
// look at the timing.
func writeSamples(path string, samples []rxSample) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "ssrc,seq,user_ns,kernel_ns,lag_ns,sent_ns")
	for _, s := range samples {
		fmt.Fprintf(w, "%d,%d,%d,%d,%d,%d\n", s.ssrc, s.seq, s.user, s.kern, s.lag, s.sent)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
