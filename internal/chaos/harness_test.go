//go:build chaos

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/store"
	"redial/internal/testenv"
)

// redialBin is the `redial` binary TestMain builds once for every scenario.
var redialBin string

func TestMain(m *testing.M) {
	// The suite's own clients watch Redis go away on purpose.
	store.RouteClientLogs(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	dir, err := os.MkdirTemp("", "redial-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	redialBin = filepath.Join(dir, "redial")
	if out, err := exec.Command("go", "build", "-o", redialBin, "redial/cmd/redial").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "chaos: go build ./cmd/redial: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if path := os.Getenv("CHAOS_REPORT"); path != "" {
		if figs := results.all(); len(figs) > 0 {
			if err := writeReport(path, figs); err != nil {
				fmt.Fprintln(os.Stderr, "chaos: writing the report:", err)
				code = 1
			} else {
				fmt.Printf("chaos: figures of %d scenarios written to %s\n", len(figs), path)
			}
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// sippScenario is the path of one of testdata/sipp's scenarios.
func sippScenario(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "sipp", name)
}

// chaosScenario is the path of one of this package's own SIPp scenarios.
func chaosScenario(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", name)
}

// nodeProc is one `redial serve` process.
type nodeProc struct {
	host    string
	http    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	exit    error
	// wasKilled: the scenario killed it on purpose.
	wasKilled bool
}

// rtpSlot hands each node of the run its own RTP port range, below the
// kernel's ephemeral range where FreePort picks SIP and Redis ports.
var rtpSlot atomic.Int32

// startNode runs `redial serve` against url with a 2 s heartbeat TTL and a
// 1 s config resync, logging at warn to a file (shown if the test fails).
func startNode(t *testing.T, url, host string) *nodeProc {
	t.Helper()
	sipPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	rtp := 12000 + int(rtpSlot.Add(1)%20)*400
	n := &nodeProc{host: host, http: fmt.Sprintf("127.0.0.1:%d", httpPort),
		logPath: filepath.Join(t.TempDir(), host+".log"), done: make(chan struct{})}
	logf, err := os.Create(n.logPath)
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(redialBin, "serve", "--redis", url, "--host", host,
		"--sip", fmt.Sprintf("udp:127.0.0.1:%d", sipPort), "--sip-public-ip", "127.0.0.1",
		"--rtp-ports", fmt.Sprintf("%d-%d", rtp, rtp+398), "--http", n.http,
		"--data", t.TempDir(), "--heartbeat-ttl", "2s", "--resync", "1s", "--log-level", "warn")
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start redial serve %s: %v", host, err)
	}
	go func() {
		n.exit = n.cmd.Wait()
		logf.Close()
		close(n.done)
	}()
	t.Cleanup(func() {
		if n.running() {
			n.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-n.done:
			case <-time.After(20 * time.Second):
				n.cmd.Process.Kill()
				<-n.done
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(n.logPath)
			// The whole log outlives the test's temporary directory.
			keep := filepath.Join(os.TempDir(), "redial-chaos-logs", filepath.Base(filepath.Dir(filepath.Dir(n.logPath))), host+".log")
			if os.MkdirAll(filepath.Dir(keep), 0o755) == nil && os.WriteFile(keep, b, 0o644) == nil {
				t.Logf("node %s log kept in %s", host, keep)
			}
			t.Logf("node %s log (%d bytes, last 6000):\n%s", host, len(b), tail(b, 6000))
		}
	})
	return n
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (n *nodeProc) running() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// kill ends the node with SIGKILL, as a crash would.
func (n *nodeProc) kill() {
	n.wasKilled = true
	n.cmd.Process.Kill()
	<-n.done
}

func (n *nodeProc) killed() bool { return n.wasKilled }

// logCounts counts the node's log lines, and those at WARN and ERROR.
func (n *nodeProc) logCounts() (lines, warns, errs int) {
	b, _ := os.ReadFile(n.logPath)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		lines++
		switch {
		case strings.Contains(sc.Text(), "level=WARN"):
			warns++
		case strings.Contains(sc.Text(), "level=ERROR"):
			errs++
		}
	}
	return
}

// healthz returns the node's /healthz status code and body.
func (n *nodeProc) healthz() string {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + n.http + "/healthz")
	if err != nil {
		return "unreachable: " + err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.Join(strings.Fields(tail(b.Bytes(), 300)), " "))
}

// deployment is the Redis a scenario runs against.
type deployment struct {
	// kind names it in the report.
	kind string
	url  string
	// rdb follows the deployment the way the nodes' client does (built
	// from the same URL by store.ParseURL).
	rdb      redis.UniversalClient
	single   *testenv.Redis
	sentinel *testenv.Sentinel
	cluster  *testenv.Cluster
}

type deploymentKind int

const (
	singleRedis deploymentKind = iota
	sentinelRedis
	clusterRedis
)

func startDeployment(t *testing.T, k deploymentKind) *deployment {
	t.Helper()
	d := &deployment{}
	switch k {
	case singleRedis:
		d.single = testenv.StartRedisWith(t, testenv.RedisOptions{AOF: true})
		d.kind, d.url = "one redis-server, AOF (appendfsync always)", d.single.URL
	case sentinelRedis:
		d.sentinel = testenv.StartSentinel(t, testenv.SentinelOptions{})
		d.kind, d.url = "Sentinel: master + 1 replica (AOF, appendfsync always), 3 sentinels, quorum 2, down-after 1 s", d.sentinel.URL
	case clusterRedis:
		d.cluster = testenv.StartCluster(t, testenv.ClusterOptions{})
		d.kind, d.url = "Cluster: 3 masters + 3 replicas (AOF, appendfsync always), node timeout 1.5 s", d.cluster.URL
	}
	opts, err := store.ParseURL(d.url)
	if err != nil {
		t.Fatal(err)
	}
	// Short timeouts: the harness polls through faults and must not hang
	// on a paused server.
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = time.Second, 2*time.Second, 2*time.Second
	opts.PoolSize = 16
	d.rdb = redis.NewUniversalClient(opts)
	t.Cleanup(func() { d.rdb.Close() })
	return d
}

// seenCDR is one CDR read from the redial:cdr stream, with the local time
// the watcher read it.
type seenCDR struct {
	ID, Number, Campaign, Disposition string
	At                                time.Time
}

// cdrWatch reads every CDR as it is added to the redial:cdr stream. It
// reads without consuming (XREAD from the last id), so a read cut short by
// a fault is simply read again, and what it has read survives a Redis that
// loses its data: it stands for an integrator that has already taken its
// CDRs.
type cdrWatch struct {
	mu   sync.Mutex
	cdrs []seenCDR
	errs int
}

func watchCDRs(t *testing.T, d *deployment, st *store.Store) *cdrWatch {
	w := &cdrWatch{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		last := "0-0"
		retry := time.NewTicker(100 * time.Millisecond)
		defer retry.Stop()
		for ctx.Err() == nil {
			res, err := d.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{st.CDRStreamKey(), last}, Count: 1000, Block: 500 * time.Millisecond}).Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				w.mu.Lock()
				w.errs++
				w.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-retry.C:
				}
				continue
			}
			now := time.Now()
			for _, s := range res {
				for _, m := range s.Messages {
					last = m.ID
					w.add(m.Values[store.CDRStreamField], now)
				}
			}
		}
	}()
	return w
}

var (
	cdrIDRE     = regexp.MustCompile(`"cdr_id":"([^"]*)"`)
	cdrNumberRE = regexp.MustCompile(`"client_number":"([^"]*)"`)
	cdrCampRE   = regexp.MustCompile(`"campaign_ref":"([^"]*)"`)
	cdrDispRE   = regexp.MustCompile(`"disposition":"([^"]*)"`)
)

func (w *cdrWatch) add(v any, at time.Time) {
	s, _ := v.(string)
	pick := func(re *regexp.Regexp) string {
		if m := re.FindStringSubmatch(s); m != nil {
			return m[1]
		}
		return ""
	}
	c := seenCDR{ID: pick(cdrIDRE), Number: pick(cdrNumberRE), Campaign: pick(cdrCampRE), Disposition: pick(cdrDispRE), At: at}
	w.mu.Lock()
	w.cdrs = append(w.cdrs, c)
	w.mu.Unlock()
}

func (w *cdrWatch) snapshot() []seenCDR {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]seenCDR(nil), w.cdrs...)
}

// invite is one INVITE the carrier received.
type invite struct {
	Number, CallID string
	At             time.Time
}

var (
	inviteLineRE = regexp.MustCompile(`(?m)^INVITE sip:([^@\s]+)@`)
	callIDRE     = regexp.MustCompile(`(?mi)^Call-ID:\s*(\S+)`)
)

// invites parses SIPp's -trace_msg log: every INVITE received, with its
// request-URI user (the number dialed), Call-ID and SIPp's timestamp.
// Retransmissions share a Call-ID; callers count distinct Call-IDs.
func invites(s *testenv.Sipp) []invite {
	files, _ := filepath.Glob(filepath.Join(s.LogDir(), "*messages.log"))
	var out []invite
	const sep = "----------------------------------------------- "
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, block := range strings.Split(string(b), sep) {
			stamp, msg, ok := strings.Cut(block, "\n")
			if !ok {
				continue
			}
			m := inviteLineRE.FindStringSubmatch(msg)
			if m == nil || !strings.Contains(msg[:min(len(msg), 80)], "received") {
				continue
			}
			id := callIDRE.FindStringSubmatch(msg)
			if id == nil {
				continue
			}
			at, err := time.ParseInLocation("2006-01-02 15:04:05.000000", strings.TrimSpace(stamp), time.Local)
			if err != nil {
				continue
			}
			out = append(out, invite{Number: m[1], CallID: id[1], At: at})
		}
	}
	return out
}

// waitUntil polls cond until it holds or timeout passes and returns the
// last error (nil when it held): scenarios record their figures even when
// a wait fails.
func waitUntil(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v: %w", timeout, err)
		}
		<-tick.C
	}
}
