package main

// Part 10, ceiling: what one Redis core sustains of the campaign path, and
// whether campaigns on differently tagged queues spread over the masters
// of a Redis Cluster (issue 14). Three cluster-enabled redis-server
// processes (masters only) serve one `redial serve` node on a
// redis-cluster:// URL; two queue dialer tasks dial a SIPp UAS from two
// queues whose hash tags land on different masters, first each alone,
// then both together, and every master's CPU and command counts are read
// around each phase.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/store"
	"redial/internal/testenv"
)

const (
	ceilMasters = 3
	// ceilPhaseFor is how long each task's numbers last at the rate the
	// calibration measured; the margin over 10 s covers a calibration
	// slower than the phases (it includes the ramp-up).
	ceilPhaseFor = 14 * time.Second
	ceilWarmup   = 3000  // numbers of the warm-up on queue A, which sizes the phases
	ceilMinBatch = 32000 // ≥ 10 s up to 3200 numbers/s, whatever the calibration said
	ceilMaxBatch = 100000
	ceilLimit    = 300 // each task's params.limit
	ceilLine     = "bench"
	ceilHost     = "bench" // the node's --host (startNodeProc)
	ceilPoll     = 20 * time.Millisecond
)

// ceilTask is one queue dialer task of the part.
type ceilTask struct {
	name   string // the task, and so the CDRs' campaign_ref
	queue  string // "{tag}:numbers"
	slot   int
	master int // index into ceilCluster.masters
}

// ceilMaster is one cluster-enabled redis-server.
type ceilMaster struct {
	addr   string
	cmd    *exec.Cmd
	client *redis.Client // direct: INFO, CLUSTER ...
	slots  [][2]int
}

func (m *ceilMaster) cpu() time.Duration { return procCPU(m.cmd.Process.Pid) }

// ceilCluster is a Redis Cluster of masters only, on loopback, with
// persistence off like the other parts' redis-server.
type ceilCluster struct {
	url     string
	masters []*ceilMaster
	client  *redis.ClusterClient
}

// startCeilCluster starts the masters as internal/testenv's StartCluster
// does (cluster-enabled, own bus port, joined by `redis-cli --cluster
// create`), without replicas or AOF, and waits for cluster_state:ok on
// every node.
func startCeilCluster(ctx context.Context, dir string) (*ceilCluster, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("ceiling: redis-server not found; install it (`make deps` does)")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, errors.New("ceiling: redis-cli not found; install it (`make deps` does)")
	}
	c := &ceilCluster{}
	var addrs []string
	for i := 0; i < ceilMasters; i++ {
		port, err := freePort()
		if err != nil {
			c.stop()
			return nil, err
		}
		bus, err := freePort()
		if err != nil {
			c.stop()
			return nil, err
		}
		d := filepath.Join(dir, fmt.Sprintf("redis%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			c.stop()
			return nil, err
		}
		m := &ceilMaster{addr: fmt.Sprintf("127.0.0.1:%d", port)}
		m.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "no",
			"--save", "", "--appendonly", "no", "--dir", d, "--logfile", filepath.Join(d, "redis.log"),
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", "5000")
		m.cmd.Dir = d
		if err := m.cmd.Start(); err != nil {
			c.stop()
			return nil, fmt.Errorf("ceiling: start redis-server %d: %w", i, err)
		}
		m.client = redis.NewClient(&redis.Options{Addr: m.addr, Protocol: 2, PoolSize: 2})
		c.masters = append(c.masters, m)
		addrs = append(addrs, m.addr)
		if err := ceilWait(ctx, 10*time.Second, func() error { return m.client.Ping(ctx).Err() }); err != nil {
			c.stop()
			return nil, fmt.Errorf("ceiling: redis-server %s: %w", m.addr, err)
		}
	}
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		c.stop()
		return nil, fmt.Errorf("ceiling: redis-cli --cluster create: %w\n%s", err, out)
	}
	c.url = "redis-cluster://" + strings.Join(addrs, ",")
	err = ceilWait(ctx, 30*time.Second, func() error {
		for _, m := range c.masters {
			info, err := m.client.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("%s: cluster_state not ok", m.addr)
			}
			raw, err := m.client.ClusterNodes(ctx).Result()
			if err != nil {
				return err
			}
			if n := len(parseClusterNodes(raw)); n != ceilMasters {
				return fmt.Errorf("%s sees %d masters with slots, want %d", m.addr, n, ceilMasters)
			}
		}
		return nil
	})
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("ceiling: cluster not ok: %w", err)
	}
	raw, err := c.masters[0].client.ClusterNodes(ctx).Result()
	if err != nil {
		c.stop()
		return nil, err
	}
	for _, n := range parseClusterNodes(raw) {
		for _, m := range c.masters {
			if m.addr == n.addr {
				m.slots = n.slots
			}
		}
	}
	c.client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Protocol: 2})
	if err := ceilWait(ctx, 10*time.Second, func() error { return c.client.Ping(ctx).Err() }); err != nil {
		c.stop()
		return nil, fmt.Errorf("ceiling: cluster client: %w", err)
	}
	return c, nil
}

func (c *ceilCluster) stop() {
	if c.client != nil {
		c.client.Close()
	}
	for _, m := range c.masters {
		m.client.Close()
		if m.cmd.Process != nil {
			m.cmd.Process.Kill()
			m.cmd.Wait()
		}
	}
}

// masterOf is the index of the master serving key's slot (CLUSTER
// KEYSLOT asks Redis itself, so the bench does not hash on its own).
func (c *ceilCluster) masterOf(ctx context.Context, key string) (slot, master int, err error) {
	s, err := c.masters[0].client.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("ceiling: CLUSTER KEYSLOT %s: %w", key, err)
	}
	for i, m := range c.masters {
		for _, r := range m.slots {
			if int(s) >= r[0] && int(s) <= r[1] {
				return int(s), i, nil
			}
		}
	}
	return int(s), 0, fmt.Errorf("ceiling: no master serves slot %d of %s", s, key)
}

func ceilWait(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not within %v: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clusterMasterSlots is one master of CLUSTER NODES with its slot ranges.
type clusterMasterSlots struct {
	addr  string
	slots [][2]int
}

// parseClusterNodes returns the masters of a CLUSTER NODES reply that
// serve slots (ranges being migrated, "[...]", are left out).
func parseClusterNodes(raw string) []clusterMasterSlots {
	var out []clusterMasterSlots
	for _, line := range strings.Split(strings.TrimSpace(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !slices.Contains(strings.Split(f[2], ","), "master") {
			continue
		}
		n := clusterMasterSlots{addr: strings.SplitN(f[1], "@", 2)[0]}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue
			}
			lo, hi, ranged := strings.Cut(r, "-")
			a, err := strconv.Atoi(lo)
			if err != nil {
				continue
			}
			b := a
			if ranged {
				if b, err = strconv.Atoi(hi); err != nil {
					continue
				}
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		if len(n.slots) > 0 {
			out = append(out, n)
		}
	}
	return out
}

// ceilSnap is what the bench reads before and after a phase.
type ceilSnap struct {
	at   time.Time
	cpu  []time.Duration // per master
	cmds []map[string]int64
	node time.Duration
	// uas, bench and machine: SIPp's CPU, this process's, and all the
	// machine's busy time, to tell what else ran during the phase.
	uas, bench, machine time.Duration
}

func ceilSnapshot(ctx context.Context, c *ceilCluster, node *nodeProc, uas *sippProc) (ceilSnap, error) {
	s := ceilSnap{node: node.cpu(), uas: procCPU(uas.cmd.Process.Pid), bench: processCPU(), machine: machineBusy()}
	for _, m := range c.masters {
		s.cpu = append(s.cpu, m.cpu())
		info, err := m.client.Info(ctx, "commandstats").Result()
		if err != nil {
			return s, fmt.Errorf("ceiling: INFO commandstats on %s: %w", m.addr, err)
		}
		s.cmds = append(s.cmds, testenv.ParseCommandStats(info))
	}
	s.at = time.Now()
	return s, nil
}

// ceilPhase is one measured phase.
type ceilPhase struct {
	name  string
	tasks []int // indices into the tasks
	n     int   // numbers pushed per task
	wall  time.Duration
	// doneAt is, per task of the phase, when its last number was settled
	// (queue and processing list empty), from the push.
	doneAt []time.Duration
	// firstDone and doneThen: when the first task of the phase finished,
	// and how many numbers each had settled by then.
	firstDone time.Duration
	doneThen  []int64
	masterCPU []time.Duration
	cmds      []map[string]int64 // per master, calls in the phase
	nodeCPU   time.Duration
	uasCPU    time.Duration
	benchCPU  time.Duration
	// otherCPU is the machine's busy time not spent by the node, the
	// masters, SIPp or the bench: other work on the shared machine.
	otherCPU time.Duration
	quiet    quietWait // the wait for a quiet machine before the phase
	// Correctness.
	cdrs                map[string]int // CDRs per campaign_ref
	lost, dup, wrongRef int
	notAnswered         int
	invites, uasFailed  int // SIPp UAS calls created and failed in the phase
}

func (p *ceilPhase) numbers() int { return p.n * len(p.tasks) }

// perNumber is d per number of the phase, in µs.
func (p *ceilPhase) perNumber(d time.Duration) float64 {
	return float64(d.Nanoseconds()) / 1e3 / float64(p.numbers())
}

func (p *ceilPhase) rate(i int) float64 { return float64(p.n) / p.doneAt[i].Seconds() }

func (p *ceilPhase) totalRate() float64 { return float64(p.numbers()) / p.wall.Seconds() }

func (p *ceilPhase) redisCPU() time.Duration {
	var t time.Duration
	for _, d := range p.masterCPU {
		t += d
	}
	return t
}

func ceilNumber(phase, task, i int) string { return fmt.Sprintf("19%d%d%07d", phase, task, i) }

// ceilRun pushes n numbers into each task's queue of the phase and waits
// until every one is settled, sampling each queue's progress.
func ceilRun(ctx context.Context, c *ceilCluster, st *store.Store, node *nodeProc, uas *sippProc, tasks []ceilTask,
	p *ceilPhase, idx int) error {
	cdrList := st.CampaignsListKey()
	if err := c.client.Del(ctx, cdrList).Err(); err != nil {
		return err
	}
	uas0, err := uas.Stats()
	if err != nil {
		return fmt.Errorf("ceiling: %s: %w", p.name, err)
	}
	items := make([][]string, len(p.tasks))
	for k, ti := range p.tasks {
		items[k] = make([]string, p.n)
		for i := range items[k] {
			items[k][i] = ceilNumber(idx, ti, i)
		}
	}
	before, err := ceilSnapshot(ctx, c, node, uas)
	if err != nil {
		return err
	}
	start := time.Now()
	var wg sync.WaitGroup
	pushErr := make([]error, len(p.tasks))
	for k, ti := range p.tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, pushErr[k] = st.PushNumbers(ctx, tasks[ti].queue, items[k])
		}()
	}
	wg.Wait()
	if err := errors.Join(pushErr...); err != nil {
		return fmt.Errorf("ceiling: %s: push: %w", p.name, err)
	}
	p.doneAt = make([]time.Duration, len(p.tasks))
	p.doneThen = make([]int64, len(p.tasks))
	deadline := start.Add(5 * time.Minute)
	for {
		pipe := c.client.Pipeline()
		lens := make([][2]*redis.IntCmd, len(p.tasks))
		for k, ti := range p.tasks {
			keys := st.QueueLedger(tasks[ti].queue, false).Keys(ceilHost)
			lens[k] = [2]*redis.IntCmd{pipe.LLen(ctx, keys.Source), pipe.LLen(ctx, keys.Processing)}
		}
		_, perr := pipe.Exec(ctx)
		now := time.Since(start)
		if perr == nil {
			left := false
			for k := range p.tasks {
				settled := int64(p.n) - lens[k][0].Val() - lens[k][1].Val()
				if settled >= int64(p.n) && p.doneAt[k] == 0 {
					p.doneAt[k] = now
					if p.firstDone == 0 {
						p.firstDone = now
						for j := range p.tasks {
							p.doneThen[j] = int64(p.n) - lens[j][0].Val() - lens[j][1].Val()
						}
					}
				}
				if p.doneAt[k] == 0 {
					left = true
				}
			}
			if !left {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("ceiling: %s: numbers not settled after %v (last poll error %v)\n%s", p.name,
				time.Since(start).Round(time.Second), perr, tail(readFileString(node.logPath), 2000))
		}
		time.Sleep(ceilPoll)
	}
	after, err := ceilSnapshot(ctx, c, node, uas)
	if err != nil {
		return err
	}
	p.wall = slices.Max(p.doneAt)
	p.nodeCPU, p.uasCPU = after.node-before.node, after.uas-before.uas
	p.benchCPU = after.bench - before.bench
	p.otherCPU = after.machine - before.machine - p.nodeCPU - p.uasCPU - p.benchCPU
	for m := range c.masters {
		p.masterCPU = append(p.masterCPU, after.cpu[m]-before.cpu[m])
		p.otherCPU -= after.cpu[m] - before.cpu[m]
		d := map[string]int64{}
		for name, v := range after.cmds[m] {
			if x := v - before.cmds[m][name]; x > 0 {
				d[name] = x
			}
		}
		p.cmds = append(p.cmds, d)
	}

	// Every number exactly one CDR, with its own task's campaign_ref.
	want := int64(p.numbers())
	if err := ceilWait(ctx, 30*time.Second, func() error {
		n, err := c.client.LLen(ctx, cdrList).Result()
		if err == nil && n < want {
			err = fmt.Errorf("%s holds %d CDRs, want %d", cdrList, n, want)
		}
		return err
	}); err != nil {
		return fmt.Errorf("ceiling: %s: %w", p.name, err)
	}
	raw, err := c.client.LRange(ctx, cdrList, 0, -1).Result()
	if err != nil {
		return err
	}
	owner := map[string]string{}
	for k, ti := range p.tasks {
		for _, n := range items[k] {
			owner[n] = tasks[ti].name
		}
	}
	p.cdrs = map[string]int{}
	seen := map[string]int{}
	for _, r := range raw {
		var env struct {
			Payload struct {
				Number      string `json:"client_number"`
				CampaignRef string `json:"campaign_ref"`
				Disposition string `json:"disposition"`
			} `json:"payload"`
		}
		if err := json.Unmarshal([]byte(r), &env); err != nil {
			return fmt.Errorf("ceiling: %s: a CDR: %w", p.name, err)
		}
		pl := env.Payload
		p.cdrs[pl.CampaignRef]++
		seen[pl.Number]++
		if owner[pl.Number] != pl.CampaignRef {
			p.wrongRef++
		}
		if pl.Disposition != "ANSWERED" {
			p.notAnswered++
		}
	}
	for n := range owner {
		switch c := seen[n]; {
		case c == 0:
			p.lost++
		case c > 1:
			p.dup += c - 1
		}
	}
	// SIPp dumps its statistics once a second.
	if err := sleepCtx(ctx, 1200*time.Millisecond); err != nil {
		return err
	}
	uas1, err := uas.Stats()
	if err != nil {
		return fmt.Errorf("ceiling: %s: %w", p.name, err)
	}
	p.invites, p.uasFailed = uas1.Created-uas0.Created, uas1.Failed-uas0.Failed
	return nil
}

// ceilPickQueues picks two queue names of the form {qX}:numbers whose
// slots land on two different masters, neither the one holding the line's
// leases (the heaviest key every call touches) when that leaves two.
func ceilPickQueues(ctx context.Context, c *ceilCluster, avoid int) ([]ceilTask, error) {
	var out []ceilTask
	used := map[int]bool{}
	for pass := 0; pass < 2 && len(out) < 2; pass++ {
		for ch := 'a'; ch <= 'z' && len(out) < 2; ch++ {
			q := fmt.Sprintf("{q%c}:numbers", ch)
			slot, m, err := c.masterOf(ctx, q)
			if err != nil {
				return nil, err
			}
			if used[m] || (pass == 0 && m == avoid) || slices.ContainsFunc(out, func(t ceilTask) bool { return t.queue == q }) {
				continue
			}
			used[m] = true
			out = append(out, ceilTask{queue: q, slot: slot, master: m})
		}
	}
	if len(out) < 2 {
		return nil, errors.New("ceiling: no two queue tags on different masters")
	}
	out[0].name, out[1].name = "ceil_a", "ceil_b"
	return out, nil
}

// runCeiling is part 10.
func runCeiling(ctx context.Context, b *bench) (string, error) {
	began := time.Now()
	loadBefore := loadAverage()
	dir := filepath.Join(b.work, "ceiling")
	uasXML, err := scenarioPath(b.root, "uas_bench.xml")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	fmt.Println("ceiling: building redial")
	bin, err := buildRedial(ctx, b.root, dir)
	if err != nil {
		return "", err
	}
	cl, err := startCeilCluster(ctx, dir)
	if err != nil {
		return "", err
	}
	defer cl.stop()
	st := store.NewWithClient(cl.client, store.Config{Host: ceilHost})

	// Where the keys every call shares live, and the two queues.
	shared := []struct{ what, key string }{
		{"line leases", st.LineLeasesKey(ceilLine)},
		{"CDR list", st.CampaignsListKey()},
		{"CDR stream", st.CDRStreamKey()},
		{"dialplan", st.DialplanKey()},
		{"node directory", st.NodesInfoKey()},
	}
	type placed struct {
		what, key    string
		slot, master int
	}
	var layout []placed
	for _, s := range shared {
		slot, m, err := cl.masterOf(ctx, s.key)
		if err != nil {
			return "", err
		}
		layout = append(layout, placed{s.what, s.key, slot, m})
	}
	tasks, err := ceilPickQueues(ctx, cl, layout[0].master)
	if err != nil {
		return "", err
	}

	uas, err := startSipp(sippOpts{Scenario: uasXML, BuffSize: b.sippBuff, Dir: filepath.Join(dir, "uas")})
	if err != nil {
		return "", err
	}
	defer uas.Kill()
	for _, kv := range [][3]string{
		{st.LinesKey(), ceilLine, fmt.Sprintf(`{"params":{"group":%q,"uri":"sip:%s","limit":2000,"enable":true}}`, benchGroup, uas.Addr)},
		{st.DialplanKey(), "default:bench", `{"type":"hangup"}`},
	} {
		if err := cl.client.HSet(ctx, kv[0], kv[1], kv[2]).Err(); err != nil {
			return "", fmt.Errorf("ceiling: write %s: %w", kv[0], err)
		}
	}
	for _, t := range tasks {
		task := fmt.Sprintf(`{"params":{"enable":true,"line_group":[%q],"limit":%d,"number_queue":%q,"destination_extension":"bench"}}`,
			benchGroup, ceilLimit, t.queue)
		if err := st.SetTask(ctx, "", t.name, task); err != nil {
			return "", fmt.Errorf("ceiling: %w", err)
		}
	}
	// startNodeProc reads only the URL of the server it is given.
	node, err := startNodeProc(ctx, bin, &redisServer{URL: cl.url}, filepath.Join(dir, "node"))
	if err != nil {
		return "", fmt.Errorf("ceiling: %w", err)
	}
	defer node.stop()

	// Warm-up: both tasks loaded and dialing; A's rate sizes the phases.
	warm := &ceilPhase{name: "warm-up", tasks: []int{0, 1}, n: ceilWarmup / 2}
	fmt.Printf("ceiling: queues %s (master %d) and %s (master %d); warm-up\n", tasks[0].queue, tasks[0].master+1, tasks[1].queue, tasks[1].master+1)
	if err := ceilRun(ctx, cl, st, node, uas, tasks, warm, 0); err != nil {
		return "", err
	}
	calib := &ceilPhase{name: "calibration", tasks: []int{0}, n: ceilWarmup}
	if err := ceilRun(ctx, cl, st, node, uas, tasks, calib, 1); err != nil {
		return "", err
	}
	n := int(calib.rate(0)*ceilPhaseFor.Seconds()/1000+1) * 1000
	n = min(max(n, ceilMinBatch), ceilMaxBatch)
	fmt.Printf("ceiling: calibration %.0f numbers/s; %d numbers per task and phase\n", calib.rate(0), n)

	phases := []*ceilPhase{
		{name: "A alone", tasks: []int{0}, n: n},
		{name: "B alone", tasks: []int{1}, n: n},
		{name: "A and B", tasks: []int{0, 1}, n: n},
		// A again: whether the node or Redis got slower over the run,
		// rather than queue B or the pair being slower.
		{name: "A again", tasks: []int{0}, n: n},
	}
	pids := []int{node.pid, uas.cmd.Process.Pid}
	for _, m := range cl.masters {
		pids = append(pids, m.cmd.Process.Pid)
	}
	var errs []error
	var done []*ceilPhase
	for i, p := range phases {
		// Others measure on this machine too: start on a quiet one.
		p.quiet = waitQuiet(ctx, 20*time.Second, pids...)
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		fmt.Printf("ceiling: %s, %d numbers\n", p.name, p.numbers())
		if err := ceilRun(ctx, cl, st, node, uas, tasks, p, i+2); err != nil {
			errs = append(errs, err)
			break
		}
		done = append(done, p)
		fmt.Printf("  %.0f numbers/s in %s, node CPU %.0f µs/number, Redis CPU %.1f µs/number (%s)\n", p.totalRate(),
			p.wall.Round(time.Millisecond), p.perNumber(p.nodeCPU), p.perNumber(p.redisCPU()), ceilMasterCPUs(p))
	}
	warns, firstWarn := node.warnLines()
	var mlines []string
	for i, m := range cl.masters {
		mlines = append(mlines, fmt.Sprintf("M%d %s slots %s", i+1, m.addr, ceilRanges(m.slots)))
	}
	var lay []string
	for _, l := range layout {
		lay = append(lay, fmt.Sprintf("%s `%s` slot %d → M%d", l.what, l.key, l.slot, l.master+1))
	}
	rep := ceilReport{b: b, tasks: tasks, phases: done, masters: mlines, layout: lay, calib: calib.rate(0),
		warns: warns, firstWarn: firstWarn, loadBefore: loadBefore, loadAfter: loadAverage(), took: time.Since(began)}
	return rep.String(), errors.Join(errs...)
}

func ceilMasterCPUs(p *ceilPhase) string {
	var s []string
	for i, d := range p.masterCPU {
		s = append(s, fmt.Sprintf("M%d %.1f", i+1, p.perNumber(d)))
	}
	return strings.Join(s, ", ")
}

func ceilRanges(rs [][2]int) string {
	var s []string
	for _, r := range rs {
		if r[0] == r[1] {
			s = append(s, strconv.Itoa(r[0]))
		} else {
			s = append(s, fmt.Sprintf("%d-%d", r[0], r[1]))
		}
	}
	return strings.Join(s, ",")
}

// ceilTop lists the commands of m with the most calls per number.
func ceilTop(m map[string]int64, numbers, k int) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if m[a] != m[b] {
			if m[a] > m[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	var s []string
	for i, n := range names {
		if i == k {
			break
		}
		s = append(s, fmt.Sprintf("%s %.2f", strings.ToUpper(n), float64(m[n])/float64(numbers)))
	}
	return strings.Join(s, ", ")
}

func ceilTotal(m map[string]int64) int64 {
	var t int64
	for _, v := range m {
		t += v
	}
	return t
}
