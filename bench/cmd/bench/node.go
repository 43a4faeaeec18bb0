package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"redial/internal/app"
	"redial/internal/config"
	"redial/internal/testenv"
)

// benchNode is an in-process redial node for parts 2 and 3.
type benchNode struct {
	*app.App
	stop func()
}

// startBenchNode runs a node against rds with its log (warn and up) in dir.
func startBenchNode(ctx context.Context, rds *redisServer, dir, host string) (*benchNode, error) {
	sipPort, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "node.log"))
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", host)
	cfg := &config.Node{Redis: rds.URL, Host: host, Domain: "default",
		SIP:         []config.Listener{{Network: "udp", Addr: fmt.Sprintf("127.0.0.1:%d", sipPort)}},
		SIPPublicIP: "127.0.0.1", RTPMin: 16384, RTPMax: 32000, HTTP: "127.0.0.1:0", Timezone: time.UTC,
		Data: filepath.Join(dir, "data"), NotifyPrefix: "enigma:notifications", NotifyFormat: "v3", LogLevel: "warn",
		Resync: 30 * time.Second, HeartbeatTTL: 10 * time.Second}
	node, err := app.New(cfg, log)
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("node: %w", err)
	}
	nctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- node.Run(nctx) }()
	bn := &benchNode{App: node, stop: func() {
		cancel()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			fmt.Fprintln(os.Stderr, "bench: node did not stop within 40s")
		}
		logFile.Close()
	}}
	select {
	case <-node.SIP.Ready():
	case err := <-done:
		return nil, fmt.Errorf("node stopped at start: %v", err)
	case <-time.After(10 * time.Second):
		bn.stop()
		return nil, errors.New("node SIP not ready after 10s")
	}
	return bn, nil
}

var (
	traceStampRE  = regexp.MustCompile(`^-+ (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+)`)
	traceInviteRE = regexp.MustCompile(`^INVITE sip:([^@\s]+)@`)
)

// inviteTimes reads a SIPp -trace_msg log and returns, per dialed number,
// when its first INVITE reached SIPp (the log's own receive timestamps).
func inviteTimes(path string) (map[string]time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]time.Time{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var stamp time.Time
	var received bool
	for sc.Scan() {
		line := sc.Text()
		if m := traceStampRE.FindStringSubmatch(line); m != nil {
			stamp, _ = time.ParseInLocation("2006-01-02 15:04:05.000000", m[1], time.Local)
			received = false
			continue
		}
		if strings.Contains(line, "message received") {
			received = true
			continue
		}
		if received {
			if strings.TrimSpace(line) == "" {
				continue
			}
			if m := traceInviteRE.FindStringSubmatch(line); m != nil {
				if _, seen := out[m[1]]; !seen {
					out[m[1]] = stamp
				}
			}
			received = false
		}
	}
	return out, sc.Err()
}

// commandCalls sums the calls of every command in INFO commandstats.
func commandCalls(ctx context.Context, rds *redisServer) (int64, error) {
	st, err := testenv.CommandStats(ctx, rds.Client)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, n := range st {
		total += n
	}
	return total, nil
}
