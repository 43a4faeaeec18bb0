package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"redial/internal/config"
	"redial/internal/testenv"
)

var inviteRE = regexp.MustCompile(`(?m)^INVITE sip:([^@\s]+)@[^\n]*\n(?:[^\n]+\n)*?Call-ID:\s*(\S+)`)

// invitesPerNumber counts distinct INVITE transactions (by Call-ID) per
// dialed number in SIPp's -trace_msg log, so retransmissions don't count.
func invitesPerNumber(t testing.TB, s *testenv.Sipp) map[string]int {
	t.Helper()
	log := readSippMessages(t, s)
	seen := map[string]map[string]bool{}
	for _, m := range inviteRE.FindAllStringSubmatch(log, -1) {
		if seen[m[1]] == nil {
			seen[m[1]] = map[string]bool{}
		}
		seen[m[1]][m[2]] = true
	}
	out := map[string]int{}
	for n, ids := range seen {
		out[n] = len(ids)
	}
	return out
}

func numberList(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return out
}

// Two nodes sharing one queue dial every number exactly once.
func TestTwoNodesDialEachNumberOnce(t *testing.T) {
	const total = 120
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", fmt.Sprint(total), "-trace_msg"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setDialplan(t, r, "default:8888", `{"type":"hangup"}`)
	setTask(t, r, "cti_queue_dialer_task@template", "shared", `{"params":{"enable":true,"line_group":["g1"],"limit":8,"number_queue":"shared_q","destination_extension":"8888"}}`, "")
	nums := numberList("1555200", total)
	n1 := startNode(t, r.URL, "n1")
	n2 := startNode(t, r.URL, "n2")
	pushNumbers(t, r, "shared_q", nums...)
	cdrs := waitCDRs(t, r, "shared", total, 60*time.Second)
	waitSipp(t, carrier, 20*time.Second)
	per := invitesPerNumber(t, carrier)
	for _, n := range nums {
		if per[n] != 1 {
			t.Fatalf("number %s got %d INVITEs, want exactly 1", n, per[n])
		}
	}
	byNode := map[string]int{}
	for _, c := range cdrs {
		if c["disposition"] != "ANSWERED" {
			t.Fatalf("cdr: %v", c)
		}
	}
	for _, n := range []*node{n1, n2} {
		for _, st := range n.Dialer.Statuses(context.Background()) {
			byNode[n.Cfg.Host] += int(st.Dialed)
		}
	}
	if byNode["n1"] == 0 || byNode["n2"] == 0 || byNode["n1"]+byNode["n2"] != total {
		t.Fatalf("work split %v, want both nodes dialing and %d in all", byNode, total)
	}
}

// A config change is applied within 1 s of its PUBLISH, and within one
// resync period when the PUBLISH was missed.
func TestConfigChangeApplied(t *testing.T) {
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_486.xml"), Args: []string{"-m", "2"}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	const off = `{"params":{"enable":false,"line_group":["g1"],"limit":1,"number_queue":"cq","destination_extension":"8888"}}`
	const on = `{"params":{"enable":true}}`
	setTask(t, r, "cti_queue_dialer_task@template", "cfg", off, "")
	pushNumbers(t, r, "cq", "15553000001")
	n := startNodeCfg(t, r.URL, "n1", func(c *config.Node) { c.Resync = 2 * time.Second })
	<-n.Dialer.Synced()

	// Enabled through the host hash with a notice on config@<host>.
	start := time.Now()
	setTask(t, r, "cti_queue_dialer_task@n1", "cfg", on, "config@n1")
	waitCDRs(t, r, "cfg", 1, 5*time.Second)
	if el := time.Since(start); el > time.Second {
		t.Fatalf("enable applied %v after PUBLISH, want within 1s", el)
	}

	// Disabled again without any notice: the periodic resync applies it.
	setTask(t, r, "cti_queue_dialer_task@n1", "cfg", `{"params":{"enable":false}}`, "")
	testenv.WaitFor(t, 4*time.Second, func() error {
		for _, st := range n.Dialer.Statuses(context.Background()) {
			if st.Name == "cfg" && st.Reason == "disabled" {
				return nil
			}
		}
		return fmt.Errorf("still enabled")
	})
	pushNumbers(t, r, "cq", "15553000002")
	// Re-enabled with the notice on config@all: dialed at once.
	start = time.Now()
	setTask(t, r, "cti_queue_dialer_task@n1", "cfg", on, "config@all")
	waitCDRs(t, r, "cfg", 2, 5*time.Second)
	if el := time.Since(start); el > time.Second {
		t.Fatalf("enable applied %v after PUBLISH, want within 1s", el)
	}
}

var buildOnce sync.Once
var builtBinary string
var buildErr error

// redialBinary builds cmd/redial once per test run.
func redialBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "redial-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBinary = filepath.Join(dir, "redial")
		out, err := exec.Command("go", "build", "-o", builtBinary, "redial/cmd/redial").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBinary
}

// startProcess runs `redial serve` as its own process, so it can be killed
// with SIGKILL like a crashed node.
func startProcess(t testing.TB, redisURL, host string) *exec.Cmd {
	t.Helper()
	port := testenv.FreePort(t)
	rtp := 10000 + (port%50)*200 // below startNode's and the ephemeral ranges
	cmd := exec.Command(redialBinary(t), "serve", "--redis", redisURL, "--host", host,
		"--sip", fmt.Sprintf("udp:127.0.0.1:%d", port), "--sip-public-ip", "127.0.0.1",
		"--rtp-ports", fmt.Sprintf("%d-%d", rtp, rtp+198), "--http", "127.0.0.1:0",
		"--data", t.TempDir(), "--heartbeat-ttl", "2s", "--resync", "1s", "--log-level", "warn")
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
		}
	})
	return cmd
}

// kill -9 of a node in the middle of a campaign loses no number (each ends
// in a CDR, the interrupted list or the queue) and dials none twice.
func TestKillNodeMidCampaign(t *testing.T) {
	const total = 60
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-d", "1500", "-trace_msg"}})
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml")})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setDialplan(t, r, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, destination.Addr))
	setTask(t, r, "cti_queue_dialer_task@template", "crash", `{"params":{"enable":true,"line_group":["g1"],"limit":5,"number_queue":"kq","destination_extension":"8888"}}`, "")
	nums := numberList("1555400", total)
	victim := startProcess(t, r.URL, "victim")
	startProcess(t, r.URL, "survivor")
	pushNumbers(t, r, "kq", nums...)

	// Kill the victim while it has calls up.
	testenv.WaitFor(t, 30*time.Second, func() error {
		n := r.Client.LLen(context.Background(), "kq:processing:victim").Val() + r.Client.LLen(context.Background(), "kq:dialing:victim").Val()
		done := len(campaignCDRs(t, r, "crash"))
		if n < 3 || done < 5 {
			return fmt.Errorf("victim holds %d claims, %d CDRs so far", n, done)
		}
		return nil
	})
	victim.Process.Kill()
	victim.Wait()

	// The survivor recovers the victim's claims and finishes the queue.
	ctx := context.Background()
	var interrupted []string
	testenv.WaitFor(t, 60*time.Second, func() error {
		q, _ := r.Client.LLen(ctx, "kq").Result()
		pv := r.Client.LLen(ctx, "kq:processing:victim").Val() + r.Client.LLen(ctx, "kq:dialing:victim").Val()
		ps := r.Client.LLen(ctx, "kq:processing:survivor").Val() + r.Client.LLen(ctx, "kq:dialing:survivor").Val()
		if q+pv+ps != 0 {
			return fmt.Errorf("queue %d, victim claims %d, survivor claims %d", q, pv, ps)
		}
		return nil
	})
	interrupted, _ = r.Client.LRange(ctx, "kq:interrupted", 0, -1).Result()
	if len(interrupted) == 0 {
		t.Fatalf("the victim was killed with calls up, but nothing went to kq:interrupted")
	}
	accounted := map[string]string{}
	for _, c := range campaignCDRs(t, r, "crash") {
		accounted[c["client_number"].(string)] = "cdr"
	}
	for _, rec := range interrupted {
		var m struct {
			Item string `json:"item"`
		}
		json.Unmarshal([]byte(rec), &m)
		if _, ok := accounted[m.Item]; !ok {
			accounted[m.Item] = "interrupted"
		}
	}
	var missing []string
	for _, n := range nums {
		if _, ok := accounted[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d numbers lost (no CDR, not interrupted, not queued): %s", len(missing), strings.Join(missing, " "))
	}
	per := invitesPerNumber(t, carrier)
	for _, n := range nums {
		if per[n] > 1 {
			t.Fatalf("number %s dialed %d times", n, per[n])
		}
	}
	t.Logf("%d numbers: %d interrupted by the kill, the rest completed", total, len(interrupted))
}

// global_limit caps a task's calls across all nodes, below the per-node
// limits added up.
func TestGlobalLimitAcrossNodes(t *testing.T) {
	const total = 24
	r := testenv.StartRedis(t)
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_hold_log.xml"),
		Args: []string{"-m", fmt.Sprint(total), "-d", "300", "-trace_logs"}})
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml"), Args: []string{"-m", fmt.Sprint(total)}})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setDialplan(t, r, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, destination.Addr))
	setTask(t, r, "cti_queue_dialer_task@template", "glob", `{"params":{"enable":true,"line_group":["g1"],"limit":4,"global_limit":3,"number_queue":"gq","destination_extension":"8888"}}`, "")
	startNode(t, r.URL, "n1")
	startNode(t, r.URL, "n2")
	pushNumbers(t, r, "gq", numberList("1555500", total)...)
	waitCDRs(t, r, "glob", total, 60*time.Second)
	waitSipp(t, carrier, 10*time.Second)
	peak, calls := maxConcurrent(t, carrier.LogDir())
	if calls != total || peak != 3 {
		t.Fatalf("carrier saw %d calls, peak %d; want %d calls, peak exactly global_limit 3", calls, peak, total)
	}
}
