// Package testenv starts the real peers tests run against (redis-server,
// SIPp) and offers polling helpers, so no test sleeps for a fixed time.
//
// A missing tool fails the test: CI must never pass by skipping. `make test`
// installs every tool it needs first.
//
// RTP port ranges. Test binaries run side by side (`go test -p 2`), and a
// pool parks closed sessions' sockets, still bound, for up to a second
// (media.PortPool), so each package's tests bind RTP ports in a range of
// their own, all below the kernel's ephemeral range (32768 and up), where
// FreePort picks SIPp's and the listeners' ports:
//
//	1100-1499    internal/sim
//	2000-5999    internal/ivr
//	6000-7999    internal/sip
//	8000-9999    internal/media
//	10000-19999  internal/app, nodes run as processes and the queue race
//	20000-29999  internal/app, nodes in the test process (nodeConfig)
//	30000-32699  internal/call
package testenv

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/logtext"
)

// RequireTool returns the path of a command the test needs, failing the test
// when it is not installed.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("testenv: %s is not installed (run `make deps`, which installs redis-server, sip-tester, baresip-core, chromium, nodejs and the npm packages of webui): %v", name, err)
	}
	return p
}

// handedOut remembers the ports FreePort gave this test binary: a port is
// released as soon as it is probed, so without this two callers (a SIPp's
// SIP port and its media port) could be handed the same one.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort returns a TCP+UDP port that was free on 127.0.0.1 a moment ago
// and that this test binary has not handed out before.
func FreePort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1)
}

// freePorts returns the first of n consecutive free ports (SIPp binds its
// media port and the one two above it).
func freePorts(t testing.TB, span int) int {
	t.Helper()
	for i := 0; i < 200; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testenv: free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+span > 65535 || !reserve(port, span) {
			continue
		}
		return port
	}
	t.Fatalf("testenv: no free port found")
	return 0
}

// reserve checks that ports port..port+span-1 are free for TCP and UDP and
// marks them handed out.
func reserve(port, span int) bool {
	handedOut.Lock()
	defer handedOut.Unlock()
	for p := port; p < port+span; p++ {
		if handedOut.ports[p] || !free(p) {
			return false
		}
	}
	for p := port; p < port+span; p++ {
		handedOut.ports[p] = true
	}
	return true
}

func free(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// Redis is a redis-server process owned by one test.
type Redis struct {
	Addr   string
	URL    string
	Client *redis.Client
	cmd    *exec.Cmd
	port   int
	dir    string
	aof    bool
}

// StartRedis starts a fresh redis-server on a free port with persistence off
// and stops it when the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	return StartRedisWith(t, RedisOptions{})
}

// RedisOptions tune a test's redis-server.
type RedisOptions struct {
	// AOF turns on the append-only file with an fsync per write, so a
	// Stop (a kill) followed by Restart keeps every acknowledged write,
	// as a production deployment with AOF does.
	AOF bool
}

// routeClientLogs sends go-redis's process-wide log lines through slog,
// rate-limited, once per test binary, as store.RouteClientLogs does for
// a node (testenv cannot import store, whose tests import testenv):
// otherwise a test that stops Redis prints a raw line per failed dial.
var routeClientLogs sync.Once

// StartRedisWith is StartRedis with options.
func StartRedisWith(t testing.TB, o RedisOptions) *Redis {
	t.Helper()
	routeClientLogs.Do(func() {
		redis.SetLogger(logtext.NewPrintfLogger(slog.New(slog.NewTextHandler(os.Stderr, nil)), "redis client", logtext.LimitConfig{}))
	})
	bin := RequireTool(t, "redis-server")
	port := FreePort(t)
	r := &Redis{port: port, dir: t.TempDir(), aof: o.AOF}
	r.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	r.URL = "redis://" + r.Addr + "/0"
	r.start(t, bin)
	r.Client = redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() {
		r.Client.Close()
		r.Stop()
	})
	return r
}

func (r *Redis) start(t testing.TB, bin string) {
	t.Helper()
	aof := []string{"--appendonly", "no"}
	if r.aof {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	r.cmd = exec.Command(bin, append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--dir", r.dir, "--protected-mode", "no"}, aof...)...)
	r.cmd.Stdout = nil
	r.cmd.Stderr = nil
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("testenv: start redis-server: %v", err)
	}
	WaitFor(t, 10*time.Second, func() error {
		c, err := net.DialTimeout("tcp", r.Addr, 200*time.Millisecond)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+PONG") {
			return fmt.Errorf("redis not ready: %q", line)
		}
		return nil
	})
}

// Stop kills the server (as a crash would); Restart brings it back on the
// same port with an empty data set.
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

// Restart starts the server again on the same port after Stop; with AOF
// it comes back with its data, otherwise empty.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	r.start(t, RequireTool(t, "redis-server"))
}

// Pause stops the server with SIGSTOP: it keeps its connections but
// answers nothing, as a Redis behind a stalled network would, until
// Resume.
func (r *Redis) Pause(t testing.TB) {
	t.Helper()
	if r.cmd == nil || r.cmd.Process.Signal(syscall.SIGSTOP) != nil {
		t.Fatalf("testenv: SIGSTOP redis-server %s: not running", r.Addr)
	}
}

// Resume continues a paused server (SIGCONT).
func (r *Redis) Resume(t testing.TB) {
	t.Helper()
	if r.cmd == nil || r.cmd.Process.Signal(syscall.SIGCONT) != nil {
		t.Fatalf("testenv: SIGCONT redis-server %s: not running", r.Addr)
	}
}

// RestartEmpty starts a stopped server again with its data files deleted:
// a Redis that lost its disk (or ran without persistence) comes back empty.
func (r *Redis) RestartEmpty(t testing.TB) {
	t.Helper()
	if r.cmd != nil {
		t.Fatalf("testenv: RestartEmpty of a running redis-server %s: Stop it first", r.Addr)
	}
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(r.dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	r.Restart(t)
}

// WaitFor polls cond until it returns nil or the timeout passes, then fails
// the test with the last error.
func WaitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: condition not met within %v: %v", timeout, err)
		}
		time.Sleep(delay)
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// Sipp is a running SIPp scenario.
type Sipp struct {
	cmd    *exec.Cmd
	Port   int
	Addr   string
	done   chan struct{}
	err    error
	logDir string
	out    strings.Builder
}

// SippOptions describe one SIPp process.
type SippOptions struct {
	Scenario string   // path to the XML scenario
	Args     []string // extra arguments (-m, -r, -d, -key ...)
	Remote   string   // remote host:port for UAC scenarios; empty for a UAS
	Port     int      // local port; 0 picks a free one
	Trace    bool     // write SIPp's message and error logs into the test's temp dir
	// Files are copied into SIPp's working directory before it starts:
	// SIPp opens rtp_stream files relative to it.
	Files []string
}

// StartSipp runs SIPp in the background on 127.0.0.1 and kills it when the
// test ends.
func StartSipp(t testing.TB, o SippOptions) *Sipp {
	t.Helper()
	// A free port can be taken by a parallel test package before SIPp
	// binds it; a start that failed that way is retried on other ports
	// when the test let StartSipp choose them.
	for attempt := 1; ; attempt++ {
		s, busy := startSipp(t, o)
		if !busy {
			return s
		}
		if o.Port != 0 || attempt == 3 {
			t.Fatalf("testenv: sipp %s exited at start (%v):\n%s", filepath.Base(o.Scenario), s.err, truncate([]byte(s.Output()), 4000))
		}
		t.Logf("testenv: sipp start %d: a port was taken meanwhile; retrying on others", attempt)
	}
}

// TryStartSipp starts SIPp once on o.Port and reports busy, rather than
// failing the test, when that port was taken before SIPp could bind it:
// a test that needs two SIPps on one port in turn (a phone that registers
// then answers) picks another port and starts again.
func TryStartSipp(t testing.TB, o SippOptions) (s *Sipp, busy bool) {
	t.Helper()
	return startSipp(t, o)
}

// startSipp starts SIPp once; busy reports that it exited at start because
// a port was taken.
func startSipp(t testing.TB, o SippOptions) (s *Sipp, busy bool) {
	t.Helper()
	bin := RequireTool(t, "sipp")
	if o.Port == 0 {
		o.Port = FreePort(t)
	}
	s = &Sipp{Port: o.Port, Addr: fmt.Sprintf("127.0.0.1:%d", o.Port), done: make(chan struct{}), logDir: t.TempDir()}
	// An empty Scenario runs one of SIPp's built-in ones (-sn in Args).
	var scen string
	if o.Scenario != "" {
		var err error
		if scen, err = filepath.Abs(o.Scenario); err != nil {
			t.Fatal(err)
		}
	}
	// SIPp stays in the foreground (no -bg) so the test owns the process.
	args := []string{"-i", "127.0.0.1", "-p", strconv.Itoa(o.Port), "-nostdin", "-trace_err", "-error_file", filepath.Join(s.logDir, "errors.log")}
	if scen != "" {
		args = append([]string{"-sf", scen}, args...)
	}
	if o.Trace {
		args = append(args, "-trace_msg", "-message_file", filepath.Join(s.logDir, "messages.log"))
	}
	// SIPp binds a media port (default 6000) even when unused; give each
	// instance its own so parallel tests do not collide.
	if !hasArg(o.Args, "-mp") {
		args = append(args, "-mp", strconv.Itoa(freePorts(t, 3)))
	}
	args = append(args, o.Args...)
	if o.Remote != "" {
		args = append(args, o.Remote)
	}
	for _, f := range o.Files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("testenv: sipp file: %v", err)
		}
		if err := os.WriteFile(filepath.Join(s.logDir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Dir = s.logDir
	s.cmd.Stdout = &s.out
	s.cmd.Stderr = &s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("testenv: start sipp: %v", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(s.logDir, "errors.log"))
			if len(b) > 0 {
				t.Logf("sipp %s errors:\n%s", filepath.Base(o.Scenario), truncate(b, 4000))
			}
			if o.Trace {
				b, _ := os.ReadFile(filepath.Join(s.logDir, "messages.log"))
				t.Logf("sipp %s messages:\n%s", filepath.Base(o.Scenario), truncate(b, 8000))
			}
		}
	})
	// SIPp binds its port at start; wait until it does so a UAS is ready.
	if o.Remote == "" {
		WaitFor(t, 10*time.Second, func() error {
			select {
			case <-s.done:
				// A UAS that exits before it listens never served a
				// call; say why now rather than as a timeout later.
				if strings.Contains(s.Output(), "Address already in use") {
					busy = true
					return nil
				}
				t.Fatalf("testenv: sipp %s exited at start (%v):\n%s", filepath.Base(o.Scenario), s.err, truncate([]byte(s.Output()), 4000))
			default:
			}
			if argValue(o.Args, "-t") == "t1" || argValue(o.Args, "-t") == "tn" {
				c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
				if err != nil {
					return fmt.Errorf("sipp not yet listening on tcp %s: %w", s.Addr, err)
				}
				c.Close()
				return nil
			}
			c, err := net.ListenPacket("udp", s.Addr)
			if err == nil {
				c.Close()
				return fmt.Errorf("sipp not yet listening on %s", s.Addr)
			}
			return nil
		})
	}
	return s, busy
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[len(b)-n:])
	}
	return string(b)
}

// Wait waits for SIPp to exit and returns its exit error (SIPp exits 0 when
// every call succeeded, 1 when some failed).
func (s *Sipp) Wait(ctx context.Context) error {
	select {
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when SIPp exits.
func (s *Sipp) Done() <-chan struct{} { return s.done }

// Output is what SIPp printed.
func (s *Sipp) Output() string { return s.out.String() }

// LogDir is where SIPp writes its logs and -trace files.
func (s *Sipp) LogDir() string { return s.logDir }

// Kill stops SIPp now.
func (s *Sipp) Kill() {
	select {
	case <-s.done:
	default:
		s.cmd.Process.Kill()
		<-s.done
	}
}

func hasArg(args []string, name string) bool {
	for _, a := range args {
		if a == name {
			return true
		}
	}
	return false
}

func argValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
