package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"redial/internal/config"
	"redial/internal/store"
	"redial/internal/testenv"
)

// logLine is one captured record.
type logLine struct {
	at        time.Time
	level     string
	msg       string
	component string
	// perCall marks the INFO and DEBUG lines of one call (with a
	// call_ref): a call ending during the outage logs them as on any
	// other day.
	perCall bool
	raw     string
}

// logCapture keeps every record a node logs, decoded from JSON lines.
type logCapture struct {
	t     testing.TB
	mu    sync.Mutex
	lines []logLine
}

func (c *logCapture) Write(p []byte) (int, error) {
	var m map[string]any
	line := logLine{at: time.Now(), raw: strings.TrimRight(string(p), "\n")}
	if err := json.Unmarshal(p, &m); err == nil {
		line.level, _ = m["level"].(string)
		line.msg, _ = m["msg"].(string)
		line.component, _ = m["component"].(string)
		_, hasRef := m["call_ref"]
		line.perCall = hasRef && (line.level == "INFO" || line.level == "DEBUG")
	}
	if line.component == "" {
		// Components without a component attribute prefix their
		// messages with their package name ("lines: ...").
		if pkg, _, ok := strings.Cut(line.msg, ": "); ok && !strings.Contains(pkg, " ") {
			line.component = pkg
		} else {
			line.component = line.msg
		}
	}
	c.mu.Lock()
	c.lines = append(c.lines, line)
	c.mu.Unlock()
	if os.Getenv("REDIAL_TEST_LOG") != "" {
		c.t.Log(line.raw)
	}
	return len(p), nil
}

// between returns the records logged in [from, to).
func (c *logCapture) between(from, to time.Time) []logLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logLine
	for _, l := range c.lines {
		if !l.at.Before(from) && l.at.Before(to) {
			out = append(out, l)
		}
	}
	return out
}

// startNodeLogged is startNodeCfg with the node's records (INFO and up,
// as `redial serve` logs by default) captured as JSON.
func startNodeLogged(t testing.TB, redisURL, host string, adjust func(*config.Node)) (*node, *logCapture) {
	t.Helper()
	cfg := nodeConfig(t, redisURL, host)
	cfg.LogLevel = "info"
	if adjust != nil {
		adjust(cfg)
	}
	capture := &logCapture{t: t}
	return startNodeWith(t, cfg, slog.New(slog.NewJSONHandler(capture, &slog.HandlerOptions{Level: slog.LevelInfo}))), capture
}

// A Redis outage of 15 s in the middle of a campaign: every component
// says once that Redis is gone and once that it is back, instead of a
// line per retry (on main before issue 9: 204 lines from the node and 147
// raw go-redis lines outside slog for this test; after: about 16 and 3).
// go-redis's own lines go through slog, a few of them.
func TestRedisOutageLogsAFewLinesPerComponent(t *testing.T) {
	const outage = 15 * time.Second
	const perComponent = 4
	r := testenv.StartRedisWith(t, testenv.RedisOptions{AOF: true})
	carrier := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_bye.xml"), Args: []string{"-d", "1000"}})
	destination := testenv.StartSipp(t, testenv.SippOptions{Scenario: scenario(t, "uas_answer_wait_bye.xml")})
	setLine(t, r, "l1", "g1", "sip:"+carrier.Addr, "")
	setDialplan(t, r, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, destination.Addr))
	setTask(t, r, "cti_queue_dialer_task@template", "logs", `{"params":{"enable":true,"line_group":["g1"],"limit":3,"number_queue":"{lq}","destination_extension":"8888"}}`, "")
	pushNumbers(t, r, "{lq}", numberList("1555700", 2000)...)
	// Short periods, so every loop retries many times during the outage.
	_, logs := startNodeLogged(t, r.URL, "logs1", func(c *config.Node) {
		c.HeartbeatTTL = 2 * time.Second
		c.Resync = 2 * time.Second
	})
	// go-redis's process-wide logger into this node's log, limited.
	clientLog := &logCapture{t: t}
	store.RouteClientLogs(slog.New(slog.NewJSONHandler(clientLog, nil)))
	t.Cleanup(func() { store.RouteClientLogs(slog.New(slog.NewTextHandler(os.Stderr, nil))) })

	testenv.WaitFor(t, 20*time.Second, func() error {
		if got := len(campaignCDRs(t, r, "logs")); got < 3 {
			return fmt.Errorf("%d CDRs before the outage", got)
		}
		return nil
	})
	before := len(campaignCDRs(t, r, "logs"))
	r.Stop()
	down := time.Now()
	<-time.After(time.Until(down.Add(outage)))
	r.Restart(t)
	up := time.Now()
	// The campaign goes on.
	testenv.WaitFor(t, 30*time.Second, func() error {
		if got := len(campaignCDRs(t, r, "logs")); got < before+5 {
			return fmt.Errorf("%d CDRs, %d before the outage", got, before)
		}
		return nil
	})
	// The figures are reported even when the recoveries below never come.
	var end time.Time
	defer func() {
		if end.IsZero() {
			end = time.Now()
		}
		reportOutageLogs(t, logs.between(down, end), clientLog.between(down, end), outage, end.Sub(up), perComponent)
	}()
	// Every component that said Redis was gone says it is back, after
	// its last failure ("redis reachable again" from logtext.Outage;
	// components with a recovery line of their own say "... again" too).
	testenv.WaitFor(t, 20*time.Second, func() error {
		failing := map[string]bool{}
		for _, l := range logs.between(down, time.Now()) {
			switch {
			case l.level == "WARN" || l.level == "ERROR":
				failing[l.component] = true
			case l.level == "INFO" && strings.Contains(l.msg, " again"):
				failing[l.component] = false
			}
		}
		for c, f := range failing {
			if f {
				return fmt.Errorf("component %s logged a failure and no recovery after it", c)
			}
		}
		return nil
	})
	end = time.Now()
}

// reportOutageLogs logs the figures of an outage and fails the test when a
// component logged more than perComponent lines (per-call lines aside), or
// go-redis more than 6.
func reportOutageLogs(t *testing.T, during, client []logLine, outage, back time.Duration, perComponent int) {
	per := map[string]int{}
	calls := 0
	for _, l := range during {
		if l.perCall {
			calls++
			continue
		}
		per[l.component]++
	}
	var summary []string
	for c, k := range per {
		summary = append(summary, fmt.Sprintf("%s=%d", c, k))
	}
	sort.Strings(summary)
	t.Logf("outage %v, recoveries logged within %v of the restart: %d node lines (%s) besides %d per-call lines, %d go-redis lines",
		outage, back.Round(time.Millisecond), len(during)-calls, strings.Join(summary, " "), calls, len(client))
	for c, k := range per {
		if k > perComponent {
			t.Errorf("component %s logged %d lines during the outage, want at most %d", c, k, perComponent)
		}
	}
	if len(client) > 6 {
		t.Errorf("go-redis logged %d lines during the outage, want at most 6", len(client))
	}
	if t.Failed() {
		var b strings.Builder
		for _, l := range during {
			if !l.perCall {
				b.WriteString(l.raw + "\n")
			}
		}
		for _, l := range client {
			b.WriteString(l.raw + "\n")
		}
		t.Logf("lines logged during the outage:\n%s", b.String())
	}
}

// Redis restarted empty (no persistence): the lines manager and the
// dialer say at WARN that every line and every task vanished at once (on
// main before issue 9: "lines: loaded" lines=0 and "task removed" at INFO
// only). The data-loss alarm itself is cluster.DataLossDetector's test.
func TestRedisRestartedEmptyWarnsLinesAndTasksVanished(t *testing.T) {
	r := testenv.StartRedis(t)
	setLine(t, r, "l1", "g1", "sip:127.0.0.1:9", "")
	setLine(t, r, "l2", "g1", "sip:127.0.0.1:9", "")
	setTask(t, r, "cti_queue_dialer_task@template", "t1", `{"params":{"enable":true,"line_group":["g1"],"limit":1,"number_queue":"{eq}","destination_extension":"8888"}}`, "")
	setTask(t, r, "cti_queue_dialer_task@template", "t2", `{"params":{"enable":true,"line_group":["g1"],"limit":1,"number_queue":"{eq2}","destination_extension":"8888"}}`, "")
	n, logs := startNodeLogged(t, r.URL, "empty1", nil)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if st := n.Dialer.Statuses(context.Background()); len(st) != 2 {
			return fmt.Errorf("tasks: %v", st)
		}
		if st := n.Lines.Statuses(context.Background()); len(st) != 2 {
			return fmt.Errorf("lines: %v", st)
		}
		return nil
	})
	// The detector must have seen the configuration once to notice that
	// it is gone.
	seen := n.DataLoss.Checks()
	testenv.WaitFor(t, 15*time.Second, func() error {
		if n.DataLoss.Checks() <= seen {
			return fmt.Errorf("no data-loss check since the configuration loaded")
		}
		return nil
	})
	r.Stop()
	r.Restart(t)
	want := map[string]string{
		"lines":  "lines: every line vanished from Redis at once",
		"dialer": "dialer: every task vanished from Redis at once",
	}
	testenv.WaitFor(t, 30*time.Second, func() error {
		for c, msg := range want {
			found := false
			for _, l := range logs.between(time.Time{}, time.Now()) {
				if l.level == "WARN" && strings.HasPrefix(l.msg, msg) {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("%s: no WARN %q", c, msg)
			}
		}
		return nil
	})
	// The node says so where an operator looks: /healthz is degraded with
	// the reason, and one ERROR names what is gone.
	testenv.WaitFor(t, 30*time.Second, func() error {
		var h struct {
			Status string   `json:"status"`
			Alarms []string `json:"alarms"`
		}
		code := n.get("/healthz", &h)
		if code != http.StatusServiceUnavailable || h.Status != "degraded" || len(h.Alarms) != 1 || !strings.Contains(h.Alarms[0], "cti_line@default") {
			return fmt.Errorf("/healthz: %d %+v", code, h)
		}
		return nil
	})
	errs := 0
	for _, l := range logs.between(time.Time{}, time.Now()) {
		if l.level == "ERROR" && strings.HasPrefix(l.msg, "redis lost its data") {
			errs++
		}
	}
	if errs != 1 {
		t.Fatalf("%d ERROR lines about the lost data, want 1", errs)
	}
}
