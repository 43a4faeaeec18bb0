package main

// Helpers of part 4 (media): the redial node as its own process (so its
// CPU and memory are its own), its REST API, the tone WAV, and what the
// bench reads of the kernel (per-socket drops, run-queue time, another
// process's socket buffer, whether the machine is quiet).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
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
		return "", fmt.Errorf("go build ./cmd/redial: %w\n%s", err, out)
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
		return nil, fmt.Errorf("start redial serve: %w", err)
	}
	n.pid = n.cmd.Process.Pid
	go func() { n.err = n.cmd.Wait(); logFile.Close(); close(n.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-n.done:
			return nil, fmt.Errorf("redial serve exited at start: %v\n%s", n.err, tail(readFileString(n.logPath), 2000))
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
			return nil, fmt.Errorf("redial serve: /healthz not OK after 15s (last error %v)\n%s", err, tail(readFileString(n.logPath), 2000))
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

// forceRcvbuf sets the receive buffer of another process's UDP socket
// bound to port: SIPp has no option for its media socket's buffer, and at
// 500 packets per 20 ms burst its default (net.core.rmem_default) drops
// echoes that redial delivered. The socket is duplicated with
// pidfd_getfd (root, or ptrace rights on pid) and changed through the
// duplicate, which is the same socket.
func forceRcvbuf(pid, port, size int) error {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return err
	}
	inode := ""
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		if _, ph, ok := strings.Cut(f[1], ":"); ok {
			if p, _ := strconv.ParseInt(ph, 16, 32); int(p) == port {
				inode = f[9]
			}
		}
	}
	if inode == "" {
		return fmt.Errorf("no UDP socket on port %d in /proc/net/udp", port)
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	target := -1
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == "socket:["+inode+"]" {
			target, _ = strconv.Atoi(e.Name())
		}
	}
	if target < 0 {
		return fmt.Errorf("process %d holds no fd for the socket on port %d", pid, port)
	}
	const sysPidfdOpen, sysPidfdGetfd = 434, 438
	pidfd, _, e := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if e != 0 {
		return fmt.Errorf("pidfd_open(%d): %w", pid, e)
	}
	defer syscall.Close(int(pidfd))
	fd, _, e := syscall.Syscall(sysPidfdGetfd, pidfd, uintptr(target), 0)
	if e != 0 {
		return fmt.Errorf("pidfd_getfd(%d, fd %d): %w", pid, target, e)
	}
	defer syscall.Close(int(fd))
	if err := syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size); err != nil {
		return fmt.Errorf("SO_RCVBUFFORCE on port %d of process %d: %w", port, pid, err)
	}
	return nil
}

// quietWait is what waitQuiet found.
type quietWait struct {
	waited time.Duration
	quiet  bool
	other  float64 // the rest of the machine's CPU in the last second, in cores
}

func (q quietWait) String() string {
	if q.quiet {
		return fmt.Sprintf("quiet after %s", q.waited.Round(time.Second))
	}
	return fmt.Sprintf("**not quiet** after %s (others used %.0f%% of a core)", q.waited.Round(time.Second), 100*q.other)
}

// waitQuiet waits, up to max, for two consecutive seconds in which the
// machine's CPU use outside this process (and pids, our own children)
// stays under 10% of a core: the windows are CPU-bound and other work
// running on the two cores would be measured as redial's jitter.
func waitQuiet(ctx context.Context, max time.Duration, pids ...int) quietWait {
	start := time.Now()
	own := func() time.Duration {
		t := processCPU()
		for _, p := range pids {
			t += procCPU(p)
		}
		return t
	}
	calm := 0
	var other float64
	for {
		b0, o0 := machineBusy(), own()
		select {
		case <-ctx.Done():
			return quietWait{waited: time.Since(start), other: other}
		case <-time.After(time.Second):
		}
		other = (machineBusy() - b0 - (own() - o0)).Seconds()
		if other < 0.10 {
			calm++
		} else {
			calm = 0
		}
		if calm >= 2 {
			return quietWait{waited: time.Since(start), quiet: true, other: other}
		}
		if time.Since(start) > max {
			return quietWait{waited: time.Since(start), other: other}
		}
	}
}

// bridgeScenarios are the SIPp scenarios of a bridged call's callee (its
// SDP points redial's RTP at the bench's phone) and far end (waits for
// BYE; the bench adds -rtp_echo).
func bridgeScenarios(root string) (uasXML, echoXML string, err error) {
	if uasXML, err = scenarioPath(root, "uas_answer_extmedia.xml"); err != nil {
		return "", "", err
	}
	if echoXML, err = scenarioPath(root, "uas_answer_wait_bye.xml"); err != nil {
		return "", "", err
	}
	return uasXML, echoXML, nil
}

// startBridgeNode points the bench line at uas and the dialplan's bridge
// extension at echo, starts the node and waits for the machine to quiet
// down: what the media and memory parts do before their bridged calls. The
// caller stops the node.
func startBridgeNode(ctx context.Context, bin string, rds *redisServer, uas, echo *sippProc, dir string) (*nodeProc, quietWait, error) {
	rds.Client.HSet(ctx, "cti_line@default", benchGroup, fmt.Sprintf(`{"params":{"group":"bench","uri":"sip:%s","limit":2000,"enable":true}}`, uas.Addr))
	rds.Client.HSet(ctx, "cti_dialplan@default", "default:bridge", fmt.Sprintf(`{"type":"sip","uri":"sip:bridge@%s"}`, echo.Addr))
	node, err := startNodeProc(ctx, bin, rds, filepath.Join(dir, "node"))
	if err != nil {
		return nil, quietWait{}, err
	}
	return node, waitQuiet(ctx, mediaQuietMax, node.pid, uas.cmd.Process.Pid, echo.cmd.Process.Pid, rds.cmd.Process.Pid), nil
}

// startBridgePeers starts the two SIPps of a bridged call: the callee
// (uasXML, whose SDP points redial's RTP at the phone's port) and the far
// end (echoXML with -rtp_echo on a free port mp, its receive buffer forced
// to 8 MiB so a burst of echoes is not dropped). The caller kills both.
func startBridgePeers(b *bench, phonePort int, uasXML, echoXML, dir string) (uas, echo *sippProc, mp int, err error) {
	uas, err = startSipp(sippOpts{Scenario: uasXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "uas"),
		Args: []string{"-key", "rtp_port", fmt.Sprint(phonePort)}})
	if err != nil {
		return nil, nil, 0, err
	}
	if mp, err = freeUDPRun(4); err != nil {
		uas.Kill()
		return nil, nil, 0, err
	}
	echo, err = startSipp(sippOpts{Scenario: echoXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "echo"),
		Args: []string{"-rtp_echo", "-mp", fmt.Sprint(mp)}})
	if err != nil {
		uas.Kill()
		return nil, nil, 0, err
	}
	for try := 0; ; try++ {
		err := forceRcvbuf(echo.cmd.Process.Pid, mp, 8<<20)
		if err == nil {
			return uas, echo, mp, nil
		}
		if try == 30 {
			uas.Kill()
			echo.Kill()
			return nil, nil, 0, fmt.Errorf("SIPp echo socket: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// softirqThreadsCPU is the CPU time of the kernel's ksoftirqd threads:
// network receive work the kernel defers there is nobody's process time.
func softirqThreadsCPU() time.Duration {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || !strings.HasPrefix(string(comm), "ksoftirqd/") {
			continue
		}
		sum += procCPU(pid)
	}
	return sum
}
