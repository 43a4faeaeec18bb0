package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"redial/internal/logtext"
	"redial/internal/sim"
	"redial/internal/sip"
	"redial/internal/store"
)

func demo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	redisURL := fs.String("redis", os.Getenv("REDIAL_REDIS"), "Redis URL; empty starts a private redis-server on a free port")
	calls := fs.Int("calls", 200, "numbers in the demo campaign")
	limit := fs.Int("limit", 20, "channels on the simulated line")
	seed := fs.Uint64("seed", 7, "seed of the simulated carrier's outcomes")
	verbose := fs.Bool("v", false, "log every call")
	stay := fs.Duration("stay", 0, "keep the node up this long after the campaign, with the inbound traffic going, for the dashboard and the agent page (e.g. 10m)")
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
	store.RouteClientLogs(log)
	sip.SetLibraryLogger(log, logtext.LimitConfig{})

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
	// The line has room for the scheduled calls besides the campaign's.
	line := fmt.Sprintf(`{"params":{"group":"sim","uri":"sip:%s","transport":"udp","limit":%d,"cps":100,"enable":true},"variables":{"origination_caller_id_number":"15550000000"}}`, carrier.Addr(), *limit+demoSchedules)
	if err := ds.SetLine(ctx, "sim-carrier", line); err != nil {
		return fmt.Errorf("demo: write line: %w", err)
	}
	if err := ds.SetDialplanEntry(ctx, "default:8888", fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, dest.Addr())); err != nil {
		return fmt.Errorf("demo: write dialplan: %w", err)
	}
	rdb.Del(ctx, ds.CampaignsListKey())
	// A token before the node starts, so the node never runs open: the
	// demo uses the API as an integrator would.
	token, err := demoToken(ctx, ds)
	if err != nil {
		return err
	}

	cfg := &config.Node{Redis: *redisURL, Host: "demo", Domain: "default",
		SIP: []config.Listener{{Network: "udp", Addr: "127.0.0.1:0"}}, SIPPublicIP: "127.0.0.1",
		RTPMin: 20000, RTPMax: 29999, HTTP: "127.0.0.1:0", Timezone: time.Local, Data: filepath.Join(work, "data"),
		NotifyPrefix: store.DefaultNotifyPrefix, NotifyFormat: "v3", LogLevel: level}
	node, err := app.New(cfg, log)
	if err != nil {
		return err
	}
	// The node stops last, however the demo ends (Ctrl-C included): the
	// simulated agents unregister from it first and its calls end before
	// Redis stops.
	nctx, stopNode := context.WithCancel(context.WithoutCancel(ctx))
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(nctx) }()
	defer func() { stopNode(); <-nodeDone }()
	api := "http://" + node.Web.Addr()
	fmt.Printf("redial node: SIP %s, API %s\n", node.SIP.Addr("udp"), api)
	fmt.Printf("dashboard: %s/?token=%s\n", api, token)
	fmt.Printf("API token (rest,dashboard): %s\n  try: curl -H 'Authorization: Bearer %s' %s/api/v1/tasks\n", token, token, api)
	fmt.Printf("  CDRs: %s cdr stats --redis %s\n", os.Args[0], *redisURL)
	<-node.SIP.Ready()
	// The inbound traffic stops (its callers hang up and its agents
	// unregister) before the node does.
	tctx, stopTraffic := context.WithCancel(ctx)
	traffic, err := setupDemoTraffic(tctx, ds, node.Files, node.SIP.Addr("udp"), *seed, log)
	if err != nil {
		stopTraffic()
		return err
	}
	defer func() { stopTraffic(); traffic.Wait() }()
	if err := setupDemoAgent(ctx, ds, traffic.callers.Addr()); err != nil {
		return err
	}
	fmt.Printf("agent page: %s/agent  (extension %s, password %s): log in and the demo calls inbound number %s, which rings you\n",
		api, demoAgentExt, demoAgentPassword, demoInboundNumber)
	traffic.goTracked(func() { ringDemoAgent(tctx, ds, traffic) })
	traffic.waitAgents(tctx, api, token, 5*time.Second)
	fmt.Printf("queue %q: %d of %d simulated agents (%s) registered; simulated callers (%s) dial %s (the queue, every 2-4 s) and %s (IVR script %q, every 8-16 s)\n",
		demoQueue, traffic.registered(), len(demoQueueAgents), strings.Join(demoQueueAgents, ","), traffic.callers.Addr(), demoQueueNumber, demoIVRNumber, demoIVRScript)
	traffic.goTracked(func() { traffic.run(tctx, *seed) })
	if err := scheduleDemoCalls(tctx, api, token); err != nil {
		return err
	}
	fmt.Printf("%d calls scheduled from +5 s, 3 s apart (config %q): GET %s/api/v1/schedules\n\n", demoSchedules, demoScheduleConfig, api)

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
	var status dialer.TaskStatus
	for {
		if s, err := demoTaskStatus(ctx, api, token, "demo"); err != nil {
			if ctx.Err() != nil {
				fmt.Println()
				return ctx.Err()
			}
			return fmt.Errorf("demo: task status from the API: %w", err)
		} else if s != nil {
			status = *s
		}
		done := len(demoCampaignCDRs(must(rdb.LRange(ctx, ds.CampaignsListKey(), 0, -1).Result())))
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
		cdrs = demoCampaignCDRs(must(rdb.LRange(ctx, ds.CampaignsListKey(), 0, -1).Result()))
		if len(cdrs) >= *calls {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	printSummary(os.Stdout, cdrs, time.Since(start), carrier.Stats(), demoSchedules)
	if *stay > 0 {
		fmt.Printf("\nthe node stays up %v with the inbound traffic going, for the dashboard (%s/?token=%s)\nand the agent page (%s/agent); Ctrl-C ends it\n",
			*stay, api, token, api)
		end := time.After(*stay)
		t.Reset(time.Second)
	stay:
		for {
			select {
			case <-ctx.Done():
				break stay
			case <-end:
				break stay
			case <-t.C:
				fmt.Printf("\r%s", traffic.statusLine(time.Since(start)))
			}
		}
		fmt.Println()
	}
	return nil
}

// demoTokenName is the token the demo creates and uses.
const demoTokenName = "demo"

// demoToken returns a rest,dashboard token for the demo: a new one, or the
// one an earlier demo run against the same Redis created, whose secret it
// kept in the user's cache directory. A "demo" token whose secret is not
// known here is replaced.
func demoToken(ctx context.Context, st *store.Store) (string, error) {
	caps := []string{store.CapabilityRest, store.CapabilityDashboard}
	cache := ""
	if dir, err := os.UserCacheDir(); err == nil {
		cache = filepath.Join(dir, "redial", "demo-token")
	}
	tok, _, err := st.CreateToken(ctx, demoTokenName, caps, "default")
	if errors.Is(err, store.ErrTokenExists) {
		if b, rerr := os.ReadFile(cache); rerr == nil && cache != "" {
			old := strings.TrimSpace(string(b))
			if t, found, lerr := st.LookupToken(ctx, store.TokenDigest(old)); lerr == nil && found && t.Name == demoTokenName &&
				t.Has(store.CapabilityRest) && t.Has(store.CapabilityDashboard) && t.Domain == "default" {
				fmt.Println("reusing the API token an earlier demo created")
				return old, nil
			}
		}
		fmt.Printf("replacing the %q API token an earlier demo left in this Redis (its secret is not known here)\n", demoTokenName)
		if err := st.RevokeToken(ctx, demoTokenName); err != nil {
			return "", fmt.Errorf("demo: %w", err)
		}
		tok, _, err = st.CreateToken(ctx, demoTokenName, caps, "default")
	}
	if err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	if cache != "" {
		// Best effort: without it the next run against this Redis simply
		// replaces the token.
		if os.MkdirAll(filepath.Dir(cache), 0o700) == nil {
			os.WriteFile(cache, []byte(tok+"\n"), 0o600)
		}
	}
	return tok, nil
}

// demoTaskStatus reads one task's status from the node's API with the
// token; nil when the node does not list the task yet.
func demoTaskStatus(ctx context.Context, api, token, name string) (*dialer.TaskStatus, error) {
	resp, err := apiDo(ctx, http.MethodGet, api+"/api/v1/tasks", token, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var body struct {
		Tasks []dialer.TaskStatus `json:"tasks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	for _, t := range body.Tasks {
		if t.Name == name {
			return &t, nil
		}
	}
	return nil, nil
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

// demoCampaignCDRs keeps the CDRs of the demo's campaign (task "demo")
// from the campaigns list, which also carries those of the scheduled and
// inbound calls and other notices.
func demoCampaignCDRs(raw []string) []string {
	var out []string
	for _, s := range raw {
		var env struct {
			Type    string `json:"type"`
			Payload struct {
				CampaignRef string `json:"campaign_ref"`
			} `json:"payload"`
		}
		if json.Unmarshal([]byte(s), &env) == nil && env.Type == "cdr" && env.Payload.CampaignRef == "demo" {
			out = append(out, s)
		}
	}
	return out
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
