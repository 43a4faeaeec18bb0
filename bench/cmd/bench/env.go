package main

// Shared helpers of every benchmark part: free ports, a private
// redis-server, SIPp processes and their statistics, peak RSS, CPU time,
// percentiles and the machine description.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// repoRoot is the module root, found by walking up from the working
// directory to go.mod, so the scenarios resolve however the bench is run.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module redial")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("bench: run from inside the redial module (no go.mod with `module redial` found upwards)")
		}
		dir = parent
	}
}

// scenarioPath finds a SIPp scenario: testdata/sipp first, then the
// bench's own bench/sipp.
func scenarioPath(root, name string) (string, error) {
	for _, dir := range []string{filepath.Join(root, "testdata", "sipp"), filepath.Join(root, "bench", "sipp")} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("bench: SIPp scenario %s found neither in testdata/sipp nor in bench/sipp", name)
}

// freePort returns a port free for both TCP and UDP on 127.0.0.1 a moment
// ago.
func freePort() (int, error) {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("bench: free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port, nil
	}
	return 0, errors.New("bench: no free port found")
}

// redisServer is a private redis-server process.
type redisServer struct {
	URL    string
	Addr   string
	Client *redis.Client
	cmd    *exec.Cmd
}

// startRedis runs redis-server on a free port, persistence off.
func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("bench: redis-server not found; install it (`make deps` does)")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &redisServer{Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	r.URL = "redis://" + r.Addr + "/0"
	r.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--protected-mode", "no")
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start redis-server: %w", err)
	}
	r.Client = redis.NewClient(&redis.Options{Addr: r.Addr})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := r.Client.Ping(ctx).Err(); err == nil {
			return r, nil
		} else if time.Now().After(deadline) {
			r.Stop()
			return nil, fmt.Errorf("bench: redis-server on %s did not answer within 10s: %w", r.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CPU is the server's CPU time so far.
func (r *redisServer) CPU() time.Duration { return procCPU(r.cmd.Process.Pid) }

// Stop kills the server.
func (r *redisServer) Stop() {
	r.Client.Close()
	if r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

// sippOpts describe one SIPp process.
type sippOpts struct {
	Scenario string
	Port     int      // local port; 0 picks a free one
	Remote   string   // host:port for a UAC; empty for a UAS
	Args     []string // -r, -m, ...
	Dir      string   // working directory: logs and the statistics file
	// BuffSize is SIPp's socket buffer size (-buff_size); 0 keeps SIPp's
	// 64 KiB default.
	BuffSize int
}

// sippProc is a running SIPp.
type sippProc struct {
	Port     int
	Addr     string
	statFile string
	cmd      *exec.Cmd
	done     chan struct{}
	err      error
	out      lockedBuffer
	hwm      atomic.Int64 // last VmHWM read while running
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startSipp runs SIPp in the foreground of a child process with its
// statistics dumped every second to a CSV file (the last row, written at
// exit, holds the totals). A UAS is waited for until it has bound its port.
func startSipp(o sippOpts) (*sippProc, error) {
	bin, err := exec.LookPath("sipp")
	if err != nil {
		return nil, errors.New("bench: sipp not found; install sip-tester (`make deps` does)")
	}
	if o.Port == 0 {
		if o.Port, err = freePort(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	s := &sippProc{Port: o.Port, Addr: fmt.Sprintf("127.0.0.1:%d", o.Port), done: make(chan struct{}),
		statFile: filepath.Join(o.Dir, "stat.csv")}
	args := []string{"-sf", o.Scenario, "-i", "127.0.0.1", "-p", strconv.Itoa(o.Port), "-nostdin",
		"-trace_err", "-error_file", filepath.Join(o.Dir, "errors.log"),
		"-trace_stat", "-stf", s.statFile, "-fd", "1"}
	if o.BuffSize > 0 {
		args = append(args, "-buff_size", strconv.Itoa(o.BuffSize))
	}
	args = append(args, o.Args...)
	if o.Remote != "" {
		args = append(args, o.Remote)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Dir = o.Dir
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start sipp %s: %w", filepath.Base(o.Scenario), err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	// The child's rusage maxrss is useless here: Go starts children with
	// vfork, so it reports the parent's peak. Poll VmHWM instead; it only
	// grows, so the last read is the peak to within the poll interval.
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if v := procHWM(s.cmd.Process.Pid); v > 0 {
				s.hwm.Store(v)
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	if o.Remote == "" {
		deadline := time.Now().Add(10 * time.Second)
		for {
			select {
			case <-s.done:
				return nil, fmt.Errorf("bench: sipp %s exited at start: %v\n%s", filepath.Base(o.Scenario), s.err, tail(s.out.String(), 2000))
			default:
			}
			c, err := net.ListenPacket("udp", s.Addr)
			if err != nil {
				break // SIPp holds the port
			}
			c.Close()
			if time.Now().After(deadline) {
				s.Kill()
				return nil, fmt.Errorf("bench: sipp %s not listening on %s after 10s", filepath.Base(o.Scenario), s.Addr)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return s, nil
}

// Wait waits for SIPp to exit and returns its exit error (1 when some calls
// failed).
func (s *sippProc) Wait(ctx context.Context) error {
	select {
	case <-s.done:
		return s.err
	case <-ctx.Done():
		s.Kill()
		return ctx.Err()
	}
}

// Kill stops SIPp now; SIPp writes its final statistics on SIGTERM, so try
// that first.
func (s *sippProc) Kill() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(3 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// PeakRSS is the child's peak resident set size in bytes, as last polled.
func (s *sippProc) PeakRSS() int64 { return s.hwm.Load() }

// CPU is the child's user+system CPU time, once it exited.
func (s *sippProc) CPU() time.Duration {
	if s.cmd.ProcessState == nil {
		return 0
	}
	return s.cmd.ProcessState.UserTime() + s.cmd.ProcessState.SystemTime()
}

// Output is what SIPp printed.
func (s *sippProc) Output() string { return s.out.String() }

// sippStats is the last row of SIPp's -trace_stat file.
type sippStats struct {
	Start, Current time.Time
	Created        int // outgoing + incoming calls created
	Successful     int
	Failed         int
	Current_       int // calls still in progress
}

// Elapsed is the wall time from SIPp's start (its first INVITE, for a UAC
// paced with -r) to the last statistics dump (at exit, after the last BYE's
// 200).
func (st sippStats) Elapsed() time.Duration { return st.Current.Sub(st.Start) }

// Stats parses the statistics file. Columns are found by name; the time
// columns read "date<TAB>time<TAB>epoch" and the epoch is used.
func (s *sippProc) Stats() (sippStats, error) {
	f, err := os.Open(s.statFile)
	if err != nil {
		return sippStats{}, fmt.Errorf("bench: sipp statistics: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	r.Comma = ';'
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	var header, last []string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return sippStats{}, fmt.Errorf("bench: sipp statistics %s: %w", s.statFile, err)
		}
		if header == nil {
			header = rec
			continue
		}
		if len(rec) >= len(header)-1 {
			last = rec
		}
	}
	if last == nil {
		return sippStats{}, fmt.Errorf("bench: sipp statistics %s: no data row", s.statFile)
	}
	col := map[string]string{}
	for i, h := range header {
		if i < len(last) {
			col[strings.TrimSpace(h)] = strings.TrimSpace(last[i])
		}
	}
	var st sippStats
	var errs []error
	num := func(name string) int {
		v, err := strconv.Atoi(col[name])
		if err != nil {
			errs = append(errs, fmt.Errorf("column %s: %q", name, col[name]))
		}
		return v
	}
	stamp := func(name string) time.Time {
		f := strings.Fields(col[name])
		if len(f) == 0 {
			errs = append(errs, fmt.Errorf("column %s empty", name))
			return time.Time{}
		}
		sec, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("column %s: %q", name, col[name]))
			return time.Time{}
		}
		return time.Unix(0, int64(sec*1e9))
	}
	st.Start, st.Current = stamp("StartTime"), stamp("CurrentTime")
	st.Created = num("OutgoingCall(C)") + num("IncomingCall(C)")
	st.Successful, st.Failed, st.Current_ = num("SuccessfulCall(C)"), num("FailedCall(C)"), num("CurrentCall")
	if len(errs) > 0 {
		return st, fmt.Errorf("bench: sipp statistics %s: %w", s.statFile, errors.Join(errs...))
	}
	return st, nil
}

// resetPeakRSS frees what the Go heap no longer uses and resets the
// kernel's VmHWM of this process, so the next peakRSS covers one step.
func resetPeakRSS() {
	runtime.GC()
	debug.FreeOSMemory()
	// "5" resets the peak RSS (Linux >= 4.0); failure leaves it cumulative.
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSS is VmHWM of this process in bytes.
func peakRSS() int64 { return procHWM(0) }

// procHWM is VmHWM of process pid (0: this process) in bytes.
func procHWM(pid int) int64 {
	path := "/proc/self/status"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// procCPU is the user+system CPU time of process pid so far, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields restart after ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// udpRcvbufErrors is the kernel's count of UDP datagrams dropped because a
// socket's receive buffer was full (all sockets of the machine: SIPp's,
// redial's and anything else running).
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var header []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, h := range header {
			if h == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	return 0
}

// processCPU is this process's user+system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// percentile returns the p-th percentile (0..100) of sorted durations by
// the nearest-rank method.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	if rank < 0 {
		rank = 0
	}
	if rank >= len(sorted) {
		rank = len(sorted) - 1
	}
	return sorted[rank]
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}

// machine describes where the numbers come from.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				f := strings.Fields(v)
				if len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					mem = fmt.Sprintf(", %.1f GiB RAM", float64(kb)/(1<<20))
				}
			}
		}
	}
	sippVer := "?"
	if out, err := exec.Command("sipp", "-v").CombinedOutput(); err == nil || len(out) > 0 {
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "SIPp v") {
				sippVer = strings.TrimSpace(line)
				break
			}
		}
	}
	redisVer := "?"
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		redisVer = strings.TrimSpace(string(out))
		if i := strings.Index(redisVer, " sha="); i > 0 {
			redisVer = redisVer[:i]
		}
	}
	return fmt.Sprintf("nproc %d (%s%s), GOMAXPROCS %d, %s %s/%s; %s; %s",
		runtime.NumCPU(), model, mem, runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, sippVer, redisVer)
}

// loadAverage is /proc/loadavg's first three fields: other work on the
// machine skews every number here.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64)
}

// countingHandler is the process-wide default slog handler: libraries that
// log through slog.Default (sipgo's transaction layer) write to a file, and
// records are counted so a step can report, say, retransmissions seen.
type countingHandler struct {
	slog.Handler
	n *atomic.Int64
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.n.Add(1)
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return countingHandler{Handler: h.Handler.WithAttrs(a), n: h.n}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{Handler: h.Handler.WithGroup(name), n: h.n}
}

// installDefaultLogger sends slog.Default (info and up) to path and
// returns the count of records written through it.
func installDefaultLogger(path string) (*atomic.Int64, io.Closer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	n := new(atomic.Int64)
	slog.SetDefault(slog.New(countingHandler{Handler: slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}), n: n}))
	return n, f, nil
}
