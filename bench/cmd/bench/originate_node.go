package main

// The originate part's redial node runs in a process of its own (this
// binary re-executed with originateNodeEnv set), so the CPU and memory the
// report gives per call are the node's, not the harness's: the pacing,
// the per-call records and the statistics stay in the parent.
//
// The child reads commands on stdin, one a line, and answers on stdout:
//
//	warm <n>     place n calls at once; answers "warm ok" or "warm err <quoted error>"
//	go           reset peak RSS, start the profiles; answers "going"
//	c <i>        place call i; answers "r <i> <start> <end> <setup> <p0> <p1> <p2> <quoted failure>"
//	             (start/end in Unix ns, durations in ns, failure "" when answered)
//	done         no more calls: wait for them, stop the profiles, measure the
//	             heap, stop the node; answers "stats <JSON nodeStats>" and exits
//
// The driver per call is a read of its command, a channel send to one of a
// fixed set of worker goroutines and one formatted result line, written in
// batches every 2 ms: a few µs against the hundreds the call costs.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"redial/internal/app"
	"redial/internal/call"
	"redial/internal/config"
	"redial/internal/dialplan"
)

// originateNodeEnv carries the child's nodeConfig as JSON.
const originateNodeEnv = "REDIAL_BENCH_ORIGINATE_NODE"

// nodeConfig is what the parent tells the child.
type nodeConfig struct {
	Redis      string `json:"redis"`
	Dir        string `json:"dir"`
	Inflight   int    `json:"inflight"`
	CPUProfile string `json:"cpu_profile,omitempty"`
	MemProfile string `json:"mem_profile,omitempty"`
	BlkProfile string `json:"blk_profile,omitempty"`
}

// nodeStats is what the child reports after a step.
type nodeStats struct {
	PeakRSS   int64 `json:"peak_rss"`
	HeapAfter int64 `json:"heap_after"`
	NodeHeld  int64 `json:"node_held"`
	TimerHeld int64 `json:"timer_held"`
	LibLogs   int64 `json:"lib_logs"`
}

// origNode is the parent's handle on a child node.
type origNode struct {
	cmd    *exec.Cmd
	in     *bufio.Writer
	inMu   sync.Mutex
	ctl    chan string // every line that is not a call result
	stderr *os.File
}

// startOrigNode starts the child and waits for it to be ready; onResult
// gets every call result line (on the reading goroutine).
func startOrigNode(ctx context.Context, cfg nodeConfig, onResult func(line string)) (*origNode, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	js, _ := json.Marshal(cfg)
	stderr, err := os.Create(filepath.Join(cfg.Dir, "node-stderr.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), originateNodeEnv+"="+string(js))
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("originate: start node process: %w", err)
	}
	p := &origNode{cmd: cmd, in: bufio.NewWriterSize(stdin, 64<<10), ctl: make(chan string, 16), stderr: stderr}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "r ") {
				onResult(line)
				continue
			}
			p.ctl <- line
		}
		close(p.ctl)
	}()
	if _, err := p.await(ctx, "ready", 30*time.Second); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

// send writes one command line; flush sends it now.
func (p *origNode) send(line string, flush bool) error {
	p.inMu.Lock()
	defer p.inMu.Unlock()
	p.in.WriteString(line)
	p.in.WriteByte('\n')
	if flush {
		return p.in.Flush()
	}
	return nil
}

// await waits for a control line starting with prefix and returns its
// rest.
func (p *origNode) await(ctx context.Context, prefix string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-p.ctl:
			if !ok {
				return "", fmt.Errorf("originate: node process exited waiting for %q (see %s)", prefix, p.stderr.Name())
			}
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				return strings.TrimSpace(rest), nil
			}
		case <-t.C:
			return "", fmt.Errorf("originate: node process: no %q after %v", prefix, timeout)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func (p *origNode) pid() int { return p.cmd.Process.Pid }

func (p *origNode) kill() {
	p.cmd.Process.Kill()
	p.cmd.Wait()
	p.stderr.Close()
}

// wait reaps the child after "done".
func (p *origNode) wait(timeout time.Duration) {
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-done
	}
	p.stderr.Close()
}

// callResult is one parsed "r" line.
type callResult struct {
	i          int
	start, end time.Time
	setup      time.Duration
	phases     [3]time.Duration
	fail       string
}

func parseResult(line string) (callResult, error) {
	f := strings.SplitN(line, " ", 9)
	if len(f) != 9 {
		return callResult{}, fmt.Errorf("bad result line %q", line)
	}
	var n [7]int64
	for k := range n {
		v, err := strconv.ParseInt(f[1+k], 10, 64)
		if err != nil {
			return callResult{}, fmt.Errorf("bad result line %q", line)
		}
		n[k] = v
	}
	fail, err := strconv.Unquote(f[8])
	if err != nil {
		return callResult{}, fmt.Errorf("bad result line %q", line)
	}
	return callResult{i: int(n[0]), start: time.Unix(0, n[1]), end: time.Unix(0, n[2]), setup: time.Duration(n[3]),
		phases: [3]time.Duration{time.Duration(n[4]), time.Duration(n[5]), time.Duration(n[6])}, fail: fail}, nil
}

// originateNodeMain is the child: it runs until "done" or stdin closes.
func originateNodeMain(raw string) int {
	var cfg nodeConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "node: config:", err)
		return 2
	}
	if err := runNodeChild(cfg, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		return 1
	}
	return 0
}

func runNodeChild(cfg nodeConfig, stdin io.Reader, stdout io.Writer) error {
	libLogs, closer, err := installDefaultLogger(filepath.Join(cfg.Dir, "slog-default.log"))
	if err != nil {
		return err
	}
	defer closer.Close()
	sipPort, err := freePort()
	if err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(cfg.Dir, "node.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", "bench")
	ncfg := &config.Node{Redis: cfg.Redis, Host: "bench", Domain: "default",
		SIP:         []config.Listener{{Network: "udp", Addr: fmt.Sprintf("127.0.0.1:%d", sipPort)}},
		SIPPublicIP: "127.0.0.1", RTPMin: 20000, RTPMax: 40000, HTTP: "127.0.0.1:0", Timezone: time.UTC,
		Data: filepath.Join(cfg.Dir, "data"), NotifyPrefix: "enigma:notifications", NotifyFormat: "v3", LogLevel: "warn"}
	node, err := app.New(ncfg, log)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	nctx, stopNode := context.WithCancel(context.Background())
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(nctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		stopNode()
		select {
		case <-nodeDone:
		case <-time.After(40 * time.Second):
			fmt.Fprintln(os.Stderr, "node did not stop within 40s")
		}
	}
	defer stop()
	ctx := context.Background()
	select {
	case <-node.SIP.Ready():
	case err := <-nodeDone:
		return fmt.Errorf("node stopped at start: %v", err)
	case <-time.After(10 * time.Second):
		return errors.New("node SIP not ready after 10s")
	}
	if err := node.Lines.Reload(ctx); err != nil {
		return fmt.Errorf("load lines: %w", err)
	}

	// Results go out through one writer goroutine that flushes every 2 ms
	// at most: one write syscall per batch rather than per call. The
	// results carry their own times, so the delay only holds the parent's
	// in-flight slots 2 ms longer.
	out := make(chan string, 4096)
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		w := bufio.NewWriterSize(stdout, 64<<10)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case s, ok := <-out:
				if !ok {
					w.Flush()
					return
				}
				w.WriteString(s)
				if !strings.HasPrefix(s, "r ") {
					w.Flush() // control answers at once
				}
			case <-tick.C:
				if w.Buffered() > 0 {
					w.Flush()
				}
			}
		}
	}()
	out <- "ready\n"

	place := func(ctx context.Context, i int) (call.Outcome, error) {
		return node.Calls.Place(ctx, call.Request{Numbers: []string{strconv.Itoa(15550000000 + i)}, // "1555" and i in 7 digits
			LineGroups: []string{benchGroup}, Destination: dialplan.Destination{Extension: "bench"},
			CampaignRef: "bench"})
	}
	jobs := make(chan int, cfg.Inflight)
	var workers sync.WaitGroup
	workersOn := false
	startWorkers := func() {
		workersOn = true
		for w := 0; w < cfg.Inflight; w++ {
			workers.Add(1)
			go func() {
				defer workers.Done()
				for i := range jobs {
					start := time.Now()
					o, err := place(ctx, i)
					end := time.Now()
					var setup time.Duration
					var ph [3]time.Duration
					fail := ""
					switch {
					case err != nil:
						fail = "error: " + err.Error()
					case o.Disposition != call.Answered || len(o.CDRs) == 0:
						fail = describe(o)
					default:
						last := o.CDRs[len(o.CDRs)-1]
						if last.Answer == nil {
							fail = "answered CDR without answer time"
						} else {
							setup = last.Answer.Sub(last.Start)
							ph = [3]time.Duration{last.Start.Sub(start), last.End.Sub(*last.Answer), end.Sub(last.End)}
						}
					}
					out <- fmt.Sprintf("r %d %d %d %d %d %d %d %s\n", i, start.UnixNano(), end.UnixNano(), setup, ph[0], ph[1], ph[2], strconv.Quote(fail))
				}
			}()
		}
	}

	var cpuFile *os.File
	var lib0 int64
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "c":
			i, _ := strconv.Atoi(arg)
			if !workersOn {
				startWorkers()
			}
			jobs <- i
		case "warm":
			n, _ := strconv.Atoi(arg)
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for k := 0; k < n; k++ {
				wg.Add(1)
				go func(k int) {
					defer wg.Done()
					o, err := place(ctx, 9000000+k)
					if err == nil && o.Disposition != call.Answered {
						err = fmt.Errorf("disposition %s: %s", o.Disposition, describe(o))
					}
					if err != nil {
						errs <- err
					}
				}(k)
			}
			wg.Wait()
			close(errs)
			if err := <-errs; err != nil {
				out <- "warm err " + strconv.Quote(err.Error()) + "\n"
			} else {
				out <- "warm ok\n"
			}
		case "go":
			resetPeakRSS()
			lib0 = libLogs.Load()
			if cfg.CPUProfile != "" {
				if cpuFile, err = os.Create(cfg.CPUProfile); err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
				if err := pprof.StartCPUProfile(cpuFile); err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
			}
			if cfg.BlkProfile != "" {
				// Every blocking event over 100 µs, every contended lock.
				runtime.SetBlockProfileRate(int(100 * time.Microsecond))
				runtime.SetMutexProfileFraction(1)
			}
			startWorkers()
			out <- "going\n"
		case "done":
			close(jobs)
			workers.Wait()
			var st nodeStats
			st.PeakRSS = peakRSS()
			if cpuFile != nil {
				pprof.StopCPUProfile()
				cpuFile.Close()
			}
			if cfg.BlkProfile != "" {
				runtime.SetBlockProfileRate(0)
				runtime.SetMutexProfileFraction(0)
				for name, path := range map[string]string{"block": cfg.BlkProfile, "mutex": cfg.BlkProfile + ".mutex"} {
					if err := writeProfile(name, path); err != nil {
						return err
					}
				}
			}
			st.HeapAfter = liveHeap()
			heapLate := st.HeapAfter
			if cfg.MemProfile != "" {
				if err := writeHeapProfile(cfg.MemProfile); err != nil {
					return err
				}
				fmt.Fprintln(os.Stderr, "waiting 35s for SIP transaction timers (32 s) to expire, node up")
				time.Sleep(35 * time.Second)
				heapLate = liveHeap()
				st.TimerHeld = st.HeapAfter - heapLate
				if err := writeHeapProfile(strings.TrimSuffix(cfg.MemProfile, ".pprof") + "-late.pprof"); err != nil {
					return err
				}
			}
			// What stopping the node frees is what it held of the ended
			// calls (kept for GET /api/v1/calls/{ref}).
			stop()
			node = nil
			st.NodeHeld = heapLate - liveHeap()
			st.LibLogs = libLogs.Load() - lib0
			js, _ := json.Marshal(st)
			out <- "stats " + string(js) + "\n"
			close(out)
			<-outDone
			return nil
		}
	}
	return sc.Err()
}
