package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/app"
	"redial/internal/config"
	"redial/internal/dialer"
	"redial/internal/sim"
	"redial/internal/store"
)

func demo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	redisURL := fs.String("redis", os.Getenv("REDIAL_REDIS"), "Redis URL; empty starts a private redis-server on a free port")
	calls := fs.Int("calls", 200, "numbers in the demo campaign")
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
		Talk: 2 * time.Second, ToneHz: 440, Seed: *seed, RTPMin: 10000, RTPMax: 12999}, log)
	if err != nil {
		return err
	}
	dest, err := sim.New(sim.Config{Addr: "127.0.0.1:0", AnswerPct: 100, Ring: 100 * time.Millisecond,
		ToneHz: 1000, Seed: *seed + 1, RTPMin: 13000, RTPMax: 15999}, log)
	if err != nil {
		return err
	}
	go carrier.Run(ctx)
	go dest.Run(ctx)
	fmt.Printf("simulated carrier at %s (60%% answer, 20%% busy, 20%% no answer), destination at %s\n", carrier.Addr(), dest.Addr())

	// The demo's own view of Redis, for what an integrator would write and
	// read; key names stay in the store.
	ds, err := store.New(store.Config{URL: *redisURL, Domain: "default", Host: "demo", NotifyPrefix: store.DefaultNotifyPrefix})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer ds.Close()
	rdb := ds.Client()
	line := fmt.Sprintf(`{"params":{"group":"sim","uri":"sip:%s","transport":"udp","limit":%d,"cps":100,"enable":true},"variables":{"origination_caller_id_number":"15550000000"}}`, carrier.Addr(), *limit)
	if err := ds.SetLine(ctx, "sim-carrier", line); err != nil {
		return fmt.Errorf("demo: write line: %w", err)
	}
	if err := ds.SetDialplanEntry(ctx, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, dest.Addr())); err != nil {
		return fmt.Errorf("demo: write dialplan: %w", err)
	}
	rdb.Del(ctx, ds.CampaignsListKey())

	cfg := &config.Node{Redis: *redisURL, Host: "demo", Domain: "default",
		SIP: []config.Listener{{Network: "udp", Addr: "127.0.0.1:0"}}, SIPPublicIP: "127.0.0.1",
		RTPMin: 20000, RTPMax: 29999, HTTP: "127.0.0.1:0", Timezone: time.Local, Data: filepath.Join(work, "data"),
		NotifyPrefix: store.DefaultNotifyPrefix, NotifyFormat: "v3", LogLevel: level}
	node, err := app.New(cfg, log)
	if err != nil {
		return err
	}
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(ctx) }()
	fmt.Printf("redial node: SIP %s, API http://%s\n\n", node.SIP.Addr("udp"), node.Web.Addr())

	// The campaign: a task over the numbers, exactly as an integrator would
	// load it (template hash + change notice), then the numbers on its queue.
	task := fmt.Sprintf(`{"params":{"enable":true,"line_group":["sim"],"limit":%d,"number_queue":"demo:numbers","destination_extension":"8888","destination_dialplan":"XML","destination_context":"default"},"variables":{"originate_timeout":"4"}}`, *limit)
	st := node.Store
	if err := st.SetTask(ctx, "", "demo", task); err != nil {
		return fmt.Errorf("demo: write task: %w", err)
	}
	items := make([]string, *calls)
	for i := range items {
		items[i] = fmt.Sprintf(`{"params":{"number":"1555%07d","contact_ref":"contact-%d"}}`, i+1, i+1)
	}
	if _, err := st.PushNumbers(ctx, "demo:numbers", items); err != nil {
		return fmt.Errorf("demo: push numbers: %w", err)
	}
	fmt.Printf("task \"demo\": %d numbers on queue demo:numbers, limit %d\n\n", *calls, *limit)
	start := time.Now()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		var status dialer.TaskStatus
		for _, s := range node.Dialer.Statuses(ctx) {
			if s.Name == "demo" {
				status = s
			}
		}
		done := len(must(rdb.LRange(ctx, ds.CampaignsListKey(), 0, -1).Result()))
		fmt.Printf("\r%s", progressLine(done, *calls, status, time.Since(start)))
		if done >= *calls && status.InFlight == 0 {
			fmt.Println()
			break
		}
		select {
		case <-ctx.Done():
			fmt.Println()
			return ctx.Err()
		case <-t.C:
		}
	}
	// Every CDR must have reached Redis (or be on its way from the spool).
	deadline := time.Now().Add(10 * time.Second)
	var cdrs []string
	for time.Now().Before(deadline) {
		cdrs, _ = rdb.LRange(ctx, ds.CampaignsListKey(), 0, -1).Result()
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

func progressLine(done, total int, st dialer.TaskStatus, el time.Duration) string {
	const width = 30
	filled := 0
	if total > 0 {
		filled = min(done, total) * width / total
	}
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	state := st.State
	if st.Reason != "" {
		state += " (" + st.Reason + ")"
	}
	return fmt.Sprintf("demo [%s] %3d/%d CDRs · queue %3d · in flight %2d/%d · answered %3d · failed %3d · %5.1fs · %-24s",
		bar, done, total, st.QueueLength, st.InFlight, st.Limit, st.Answered, st.Failed, el.Seconds(), state)
}

func must[T any](v T, _ error) T { return v }

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
