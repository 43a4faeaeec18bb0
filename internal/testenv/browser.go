package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BrowserOptions tune a test's chromium.
type BrowserOptions struct {
	// Args are extra chromium flags, added after the driver's own.
	Args []string
	// FakeAudioFile, when set, is a WAV file the fake microphone plays in
	// a loop instead of its beeps (--use-file-for-fake-audio-capture).
	FakeAudioFile string
	// Timeout bounds each order to the browser: Goto, Eval, Screenshot
	// and the rest. Default 30s.
	Timeout time.Duration
}

// Browser is a headless Debian chromium driven through puppeteer-core by
// webui/test/driver.mjs, with a fake microphone and camera that need no
// permission prompt. No request leaves the machine: pages' requests to
// hosts other than loopback are blocked and recorded (Offsite), and
// anything else chromium tries goes to a loopback proxy that drops it
// (Background). WebRTC's UDP is not covered: pages must use no STUN or
// TURN server but the node's.
//
// The methods that take no context fail the test on error and so must be
// called from the test's goroutine; Eval and EvalContext return errors
// instead.
type Browser struct {
	// PID is chromium's process id, also the id of its process group.
	PID int
	// Version is what chromium reports, e.g. "Chrome/156.0.8078.114".
	Version string
	// UserDataDir is the profile directory, fresh for each Browser.
	UserDataDir string

	t       testing.TB
	timeout time.Duration
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	log     SyncBuffer // the driver's and chromium's stderr, and stray stdout

	writeMu sync.Mutex
	mu      sync.Mutex
	nextID  int
	pending map[int]chan driverReply
	done    chan struct{} // closed when the driver's stdout ends
	exitErr error
}

// driverReply is one line of the driver's stdout: an answer to an order
// (ID set) or an event.
type driverReply struct {
	ID      int             `json:"id"`
	OK      bool            `json:"ok"`
	Value   json.RawMessage `json:"value"`
	Error   string          `json:"error"`
	Event   string          `json:"event"`
	PID     int             `json:"pid"`
	Version string          `json:"version"`
}

// StartBrowser launches chromium for the test and closes it when the test
// ends. It needs chromium, node and webui's npm packages (scripts/deps.sh
// installs all three).
func StartBrowser(t testing.TB, o BrowserOptions) *Browser {
	t.Helper()
	chromium := RequireTool(t, "chromium")
	node := RequireTool(t, "node")
	modules := NodeModules(t)
	driver := filepath.Join(filepath.Dir(modules), "test", "driver.mjs")
	if _, err := os.Stat(driver); err != nil {
		t.Fatalf("testenv: browser driver: %v", err)
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	args := append([]string(nil), o.Args...)
	if o.FakeAudioFile != "" {
		abs, err := filepath.Abs(o.FakeAudioFile)
		if err != nil {
			t.Fatalf("testenv: browser: fake audio file: %v", err)
		}
		args = append(args, "--use-file-for-fake-audio-capture="+abs)
	}
	b := &Browser{
		UserDataDir: filepath.Join(t.TempDir(), "profile"),
		t:           t,
		timeout:     o.Timeout,
		pending:     map[int]chan driverReply{},
		done:        make(chan struct{}),
	}
	cfg, err := json.Marshal(map[string]any{"executablePath": chromium, "userDataDir": b.UserDataDir, "args": args})
	if err != nil {
		t.Fatal(err)
	}
	b.cmd = exec.Command(node, driver, string(cfg))
	b.cmd.Dir = filepath.Dir(driver)
	// The driver gets a process group of its own so that cleanup can kill
	// it whole; chromium makes its own (puppeteer starts it detached).
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	b.cmd.Stderr = &b.log
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("testenv: start browser driver: %v", err)
	}
	ready := make(chan driverReply, 1)
	go b.read(stdout, ready)
	t.Cleanup(b.stop)

	// Chromium's first start on a loaded machine takes seconds.
	select {
	case r := <-ready:
		b.PID, b.Version = r.PID, r.Version
	case <-b.done:
		t.Fatalf("testenv: browser driver exited at start (%v):\n%s", b.exitErr, truncate([]byte(b.log.String()), 8000))
	case <-time.After(60 * time.Second):
		t.Fatalf("testenv: chromium not ready within 60s:\n%s", truncate([]byte(b.log.String()), 8000))
	}
	if b.PID <= 0 {
		t.Fatalf("testenv: browser driver reported no chromium pid")
	}
	return b
}

// NodeModules returns the path of webui/node_modules in this module,
// failing the test when it is not installed. Tests serve SIP.js to their
// pages from there.
func NodeModules(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("testenv: no go.mod above the test's directory")
		}
		dir = parent
	}
	modules := filepath.Join(dir, "webui", "node_modules")
	for _, pkg := range []string{"puppeteer-core", "sip.js", "sip.js-0.7"} {
		if _, err := os.Stat(filepath.Join(modules, pkg, "package.json")); err != nil {
			t.Fatalf("testenv: npm package %s is not installed in %s (run scripts/deps.sh, which runs npm ci there): %v", pkg, modules, err)
		}
	}
	return modules
}

// read dispatches the driver's answers until its stdout ends. Lines that
// are not JSON (chromium may write to stdout) go to the log.
func (b *Browser) read(stdout io.Reader, ready chan<- driverReply) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
	for sc.Scan() {
		var r driverReply
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			fmt.Fprintf(&b.log, "%s\n", sc.Bytes())
			continue
		}
		if r.Event == "ready" {
			select {
			case ready <- r:
			default:
			}
			continue
		}
		b.mu.Lock()
		ch := b.pending[r.ID]
		delete(b.pending, r.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
	b.mu.Lock()
	b.exitErr = b.cmd.Wait()
	b.mu.Unlock()
	close(b.done)
}

// call sends one order and waits for its answer.
func (b *Browser) call(ctx context.Context, order map[string]any, out any) error {
	ch := make(chan driverReply, 1)
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	b.pending[id] = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
	}()
	order["id"] = id
	line, err := json.Marshal(order)
	if err != nil {
		return fmt.Errorf("browser %s: %w", order["op"], err)
	}
	b.writeMu.Lock()
	_, err = b.stdin.Write(append(line, '\n'))
	b.writeMu.Unlock()
	if err != nil {
		return fmt.Errorf("browser %s: write to driver: %w", order["op"], err)
	}
	select {
	case r := <-ch:
		if !r.OK {
			return fmt.Errorf("browser %s: %s", order["op"], r.Error)
		}
		if out != nil {
			if err := json.Unmarshal(r.Value, out); err != nil {
				return fmt.Errorf("browser %s: decode %s: %w", order["op"], truncate(r.Value, 200), err)
			}
		}
		return nil
	case <-b.done:
		return fmt.Errorf("browser %s: driver exited (%v):\n%s", order["op"], b.exitErr, truncate([]byte(b.log.String()), 4000))
	case <-ctx.Done():
		return fmt.Errorf("browser %s: %w", order["op"], ctx.Err())
	}
}

// callT is call with the browser's timeout, failing the test on error.
func (b *Browser) callT(order map[string]any, out any) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	if err := b.call(ctx, order, out); err != nil {
		b.t.Fatalf("testenv: %v", err)
	}
}

// Goto loads url in the page and waits for its load event. It fails the
// test when the page does not load or answers with a status of 400 or
// more.
func (b *Browser) Goto(url string) {
	b.t.Helper()
	var status *int
	b.callT(map[string]any{"op": "goto", "url": url, "timeout": b.timeout.Milliseconds()}, &status)
	if status != nil && *status >= 400 {
		b.t.Fatalf("testenv: browser goto %s: status %d", url, *status)
	}
}

// Eval evaluates a JavaScript expression in the page, awaits it when it
// yields a promise and decodes the JSON of its value into out (nil to
// discard it; undefined arrives as null). It gives up after the
// browser's timeout.
func (b *Browser) Eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	return b.EvalContext(ctx, expr, out)
}

// EvalContext is Eval bounded by ctx instead of the browser's timeout.
func (b *Browser) EvalContext(ctx context.Context, expr string, out any) error {
	return b.call(ctx, map[string]any{"op": "eval", "expr": expr}, out)
}

// Screenshot sets the viewport to w×h CSS pixels and writes a PNG of the
// page to path.
func (b *Browser) Screenshot(path string, w, h int) {
	b.t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		b.t.Fatal(err)
	}
	b.callT(map[string]any{"op": "screenshot", "path": abs, "width": w, "height": h}, nil)
}

// Console returns what the pages logged so far, one entry per message as
// "<type>: <text>" (types log, info, warn, error, debug, ...; errors carry
// their source location), plus "pageerror: <message>" for uncaught
// exceptions and "requestfailed: <url> <reason>" for failed requests.
func (b *Browser) Console() []string {
	b.t.Helper()
	var lines []string
	b.callT(map[string]any{"op": "console"}, &lines)
	return lines
}

// ConsoleErrors returns the Console entries that are errors: console
// errors, uncaught exceptions and failed requests, less a missing
// /favicon.ico, which chromium asks for by itself.
func (b *Browser) ConsoleErrors() []string {
	b.t.Helper()
	var errs []string
	for _, l := range b.Console() {
		if strings.Contains(l, "/favicon.ico") {
			continue
		}
		if strings.HasPrefix(l, "error: ") || strings.HasPrefix(l, "pageerror: ") || strings.HasPrefix(l, "requestfailed: ") {
			errs = append(errs, l)
		}
	}
	return errs
}

// Offsite returns the URLs of the requests and WebSockets that pages
// tried to open to hosts other than localhost, 127.0.0.0/8 and [::1], in
// order. Every one was blocked; the page saw a network error.
func (b *Browser) Offsite() []string {
	b.t.Helper()
	var urls []string
	b.callT(map[string]any{"op": "offsite"}, &urls)
	return urls
}

// Background returns what the driver's loopback proxy dropped: chromium's
// own connections to its update, sign-in and time services (which no flag
// turns off entirely; they are not the pages' doing), and pages'
// WebSockets, which Offsite lists too, as "CONNECT host:port". None of
// them left the machine.
func (b *Browser) Background() []string {
	b.t.Helper()
	var urls []string
	b.callT(map[string]any{"op": "background"}, &urls)
	return urls
}

// Close closes chromium the way a user would, ending its connections
// cleanly. Console, Offsite and Background still answer afterwards.
func (b *Browser) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	return b.call(ctx, map[string]any{"op": "close"}, nil)
}

// Kill SIGKILLs chromium's whole process group, as a crash or a power cut
// would, and returns once every process of it has exited: the kernel has
// then closed its sockets, so a node sees its WebSockets end at once.
// Console, Offsite and Background still answer afterwards.
func (b *Browser) Kill() {
	b.t.Helper()
	if err := syscall.Kill(-b.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		b.t.Fatalf("testenv: kill chromium group %d: %v", b.PID, err)
	}
	WaitFor(b.t, 10*time.Second, func() error { return groupAlive(b.PID) })
}

// stop ends chromium and the driver at the test's end. Chromium is killed
// rather than closed: nothing of its profile needs saving, and it must be
// gone before the temp dir holding the profile is removed.
func (b *Browser) stop() {
	verbose := b.t.Failed() || os.Getenv("REDIAL_TEST_LOG") != ""
	if verbose {
		// What the page logged is what explains most browser failures.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var lines []string
		if err := b.call(ctx, map[string]any{"op": "console"}, &lines); err == nil {
			b.t.Logf("browser console:\n%s", truncate([]byte(strings.Join(lines, "\n")), 8000))
		}
		cancel()
	}
	// Without a pid (chromium never reported ready), closing stdin makes
	// the driver close whatever it launched; kill(-0) would hit the test.
	if b.PID > 0 {
		syscall.Kill(-b.PID, syscall.SIGKILL)
		deadline := time.Now().Add(10 * time.Second)
		for groupAlive(b.PID) != nil {
			if time.Now().After(deadline) {
				b.t.Errorf("testenv: %v 10s after SIGKILL", groupAlive(b.PID))
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	b.stdin.Close()
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
	}
	if verbose {
		b.t.Logf("browser driver and chromium output:\n%s", truncate([]byte(withoutDBus(b.log.String())), 8000))
	}
}

// withoutDBus drops chromium's complaints that there is no D-Bus, which it
// repeats dozens of times at every start on a machine without one.
func withoutDBus(log string) string {
	lines := strings.Split(log, "\n")
	kept := lines[:0]
	for _, l := range lines {
		if !strings.Contains(l, ":ERROR:dbus/") {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "\n")
}

// groupAlive returns an error naming a process of group pgid that has not
// exited yet (zombies have: their sockets are closed), or nil when there
// is none.
func groupAlive(pgid int) error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			return fmt.Errorf("chromium process %d (group %d) still running", pid, pgid)
		}
	}
	return nil
}
