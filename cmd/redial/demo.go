package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/app"
	"redial/internal/call"
	"redial/internal/config"
	"redial/internal/dialplan"
	"redial/internal/sim"
)

func demo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	redisURL := fs.String("redis", os.Getenv("REDIAL_REDIS"), "Redis URL; empty starts a private redis-server on a free port")
	calls := fs.Int("calls", 100, "calls to place")
	limit := fs.Int("limit", 20, "channels on the simulated line")
	seed := fs.Uint64("seed", 7, "seed of the simulated carrier's outcomes")
	verbose := fs.Bool("v", false, "log every call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "redial-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	if *redisURL == "" {
		url, stop, err := startRedis(ctx, work)
		if err != nil {
			return err
		}
		defer stop()
		*redisURL = url
		fmt.Printf("redis-server started for the demo at %s\n", url)
	}
	level := "warn"
	if *verbose {
		level = "info"
	}
	log := newLogger(level)

	carrier, err := sim.New(sim.Config{Addr: "127.0.0.1:0", AnswerPct: 60, BusyPct: 20, Ring: 600 * time.Millisecond,
		Talk: 2 * time.Second, ToneHz: 440, Seed: *seed, RTPMin: 40000, RTPMax: 44999}, log)
	if err != nil {
		return err
	}
	dest, err := sim.New(sim.Config{Addr: "127.0.0.1:0", AnswerPct: 100, Ring: 100 * time.Millisecond,
		ToneHz: 1000, Seed: *seed + 1, RTPMin: 45000, RTPMax: 49999}, log)
	if err != nil {
		return err
	}
	go carrier.Run(ctx)
	go dest.Run(ctx)
	fmt.Printf("simulated carrier at %s (60%% answer, 20%% busy, 20%% no answer), destination at %s\n", carrier.Addr(), dest.Addr())

	rdb := redis.NewClient(mustRedisOpts(*redisURL))
	defer rdb.Close()
	line := fmt.Sprintf(`{"params":{"group":"sim","uri":"sip:%s","transport":"udp","limit":%d,"cps":100,"enable":true},"variables":{"origination_caller_id_number":"15550000000"}}`, carrier.Addr(), *limit)
	if err := rdb.HSet(ctx, "cti_line@default", "sim-carrier", line).Err(); err != nil {
		return fmt.Errorf("demo: write line: %w", err)
	}
	if err := rdb.HSet(ctx, "cti_dialplan@default", "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, dest.Addr())).Err(); err != nil {
		return fmt.Errorf("demo: write dialplan: %w", err)
	}
	rdb.Del(ctx, "enigma:notifications:campaigns")

	cfg := &config.Node{Redis: *redisURL, Host: "demo", Domain: "default",
		SIP: []config.Listener{{Network: "udp", Addr: "127.0.0.1:0"}}, SIPPublicIP: "127.0.0.1",
		RTPMin: 20000, RTPMax: 29999, HTTP: "127.0.0.1:0", Timezone: time.Local, Data: filepath.Join(work, "data"),
		NotifyPrefix: "enigma:notifications", NotifyFormat: "v3", LogLevel: level}
	node, err := app.New(cfg, log)
	if err != nil {
		return err
	}
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(ctx) }()
	if err := node.Lines.Reload(ctx); err != nil {
		return err
	}
	fmt.Printf("redial node: SIP %s, API http://%s\n\n", node.SIP.Addr("udp"), node.Web.Addr())

	start := time.Now()
	var placed, finished atomic.Int64
	var mu sync.Mutex
	counts := map[call.Disposition]int{}
	work1 := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < *limit; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work1 {
				placed.Add(1)
				out, err := node.Calls.Place(ctx, call.Request{
					Numbers: []string{fmt.Sprintf("1555%07d", i)}, LineGroups: []string{"sim"},
					Destination: dialplan.Destination{Extension: "8888", Dialplan: "XML", Context: "default"},
					Variables:   map[string]string{"originate_timeout": "4"}, CampaignRef: "demo", ContactRef: fmt.Sprintf("contact-%d", i),
				})
				finished.Add(1)
				mu.Lock()
				if err != nil {
					counts["ERROR"]++
				} else {
					counts[out.Disposition]++
				}
				mu.Unlock()
			}
		}()
	}
	go func() {
		defer close(work1)
		for i := 1; i <= *calls; i++ {
			select {
			case work1 <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			mu.Lock()
			line := progressLine(int(finished.Load()), *calls, node.Calls.Active(), counts, time.Since(start))
			mu.Unlock()
			fmt.Printf("\r%s", line)
			if finished.Load() >= int64(*calls) || ctx.Err() != nil {
				fmt.Println()
				return
			}
			<-t.C
		}
	}()
	wg.Wait()
	<-progressDone
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Every CDR must have reached Redis (or be on its way from the spool).
	deadline := time.Now().Add(10 * time.Second)
	var cdrs []string
	for time.Now().Before(deadline) {
		cdrs, _ = rdb.LRange(ctx, "enigma:notifications:campaigns", 0, -1).Result()
		if len(cdrs) >= *calls {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	printSummary(os.Stdout, cdrs, time.Since(start), carrier.Stats())
	cancel()
	<-nodeDone
	return nil
}

func progressLine(done, total, active int, counts map[call.Disposition]int, el time.Duration) string {
	const width = 30
	filled := 0
	if total > 0 {
		filled = done * width / total
	}
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[call.Disposition(k)]))
	}
	return fmt.Sprintf("[%s] %3d/%d calls · %2d active · %5.1fs · %s   ", bar, done, total, active, el.Seconds(), strings.Join(parts, " "))
}

func mustRedisOpts(url string) *redis.Options {
	o, err := redis.ParseURL(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "redial demo: --redis:", err)
		os.Exit(2)
	}
	return o
}

// startRedis runs a private redis-server on a free port for the demo.
func startRedis(ctx context.Context, dir string) (string, func(), error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, errors.New("demo: redis-server not found; install it (`make demo` does: apt-get install redis-server) or pass --redis")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("demo: start redis-server: %w", err)
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer rdb.Close()
	for i := 0; i < 100; i++ {
		if rdb.Ping(ctx).Err() == nil {
			return url, stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return "", nil, errors.New("demo: redis-server did not answer within 5s")
}

var _ = slog.Default
