//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/store"
	"redial/internal/testenv"
)

// run is one scenario: a deployment, a SIPp carrier (answers, hangs up
// after 1 to 2 s) bridged to a SIPp destination, redial nodes and a CDR
// watcher.
type run struct {
	t       *testing.T
	fig     *figures
	dep     *deployment
	st      *store.Store
	carrier *testenv.Sipp
	nodes   []*nodeProc
	watch   *cdrWatch
	started time.Time
	// dialSince is when the current flow started dialing.
	dialSince time.Time
}

func newRun(t *testing.T, id, title string, k deploymentKind) *run {
	t.Helper()
	r := &run{t: t, started: time.Now(), fig: &figures{ID: id, Title: title}}
	r.fig.ResumeCDR, r.fig.ResumeDial = -1, -1
	t.Logf("scenario %s: %s", id, title)
	r.dep = startDeployment(t, k)
	r.fig.Deployment = r.dep.kind
	r.st = store.NewWithClient(r.dep.rdb, store.Config{Domain: "default"})
	// Calls of random length (1 to 2 s) keep a steady stream of writes
	// going, so a fault lands while claims, acks and CDRs are in flight.
	r.carrier = testenv.StartSipp(t, testenv.SippOptions{Scenario: chaosScenario("uas_answer_bye_random.xml"),
		Args: []string{"-trace_msg"}})
	dest := testenv.StartSipp(t, testenv.SippOptions{Scenario: sippScenario("uas_answer_wait_bye.xml")})
	r.watch = watchCDRs(t, r.dep, r.st)
	r.configure(dest.Addr)
	t.Cleanup(func() {
		r.fig.Took = time.Since(r.started)
		if t.Failed() && (len(r.fig.Failures) == 0 || r.fig.documented) {
			// Stopped before its figures were complete (a setup step or a
			// fault helper failed): never report it as passing.
			r.fig.documented = false
			r.fig.Failures = append(r.fig.Failures, "the scenario stopped before it was measured completely; see the test log")
		}
		results.add(*r.fig)
	})
	return r
}

// configure writes the line to the carrier and the destinations every
// flow uses. Called again after Redis lost its data.
func (r *run) configure(destAddr string) {
	r.t.Helper()
	ctx := context.Background()
	target := fmt.Sprintf(`{"type":"sip","uri":"sip:8888@%s"}`, destAddr)
	must(r.t, r.dep.rdb.HSet(ctx, r.st.LinesKey(), "l1",
		fmt.Sprintf(`{"params":{"group":"g1","uri":"sip:%s","enable":true},"variables":{"origination_caller_id_number":"15550001111"}}`, r.carrier.Addr)).Err())
	must(r.t, r.dep.rdb.HSet(ctx, r.st.DialplanKey(), "default:8888", target, "default:*97", target).Err())
	r.fig.destAddr = destAddr
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// startNodes starts n nodes named <scenario>-1..n and waits until each
// heartbeats.
func (r *run) startNodes(n int) {
	r.t.Helper()
	for i := 1; i <= n; i++ {
		r.nodes = append(r.nodes, startNode(r.t, r.dep.url, fmt.Sprintf("%s-%d", r.fig.ID, i)))
	}
	r.fig.Nodes = n
	r.waitOrFatal(60*time.Second, func() error {
		for _, nd := range r.nodes {
			if !nd.running() {
				return fmt.Errorf("node %s exited: %v", nd.host, nd.exit)
			}
			if x, err := r.dep.rdb.Exists(context.Background(), r.st.AliveKey(nd.host)).Result(); err != nil || x != 1 {
				return fmt.Errorf("node %s not heartbeating yet (%v)", nd.host, err)
			}
		}
		return nil
	})
}

func (r *run) hosts() []string {
	var out []string
	for _, n := range r.nodes {
		out = append(out, n.host)
	}
	return out
}

func (r *run) waitOrFatal(timeout time.Duration, cond func() error) {
	r.t.Helper()
	if err := waitUntil(timeout, cond); err != nil {
		r.t.Fatalf("scenario %s: %v", r.fig.ID, err)
	}
}

// flow is one contract numbers go through: a campaign, scheduled calls or
// callbacks.
type flow interface {
	// numbers are every number the flow dials, each once.
	numbers() []string
	// mine tells the flow's CDRs from others.
	mine(c seenCDR) bool
	// state reads which numbers are parked in :interrupted and which are
	// still pending (queued, claimed, due, delayed).
	state(ctx context.Context) (interrupted, pending map[string]bool, err error)
}

// holdersOf waits until every node has registered in l's holders, which a
// node's queue dialer does once it has settled its own leftovers and
// starts claiming.
func (r *run) holdersOf(l *store.Ledger) {
	r.t.Helper()
	r.waitOrFatal(60*time.Second, func() error {
		hs, err := r.dep.rdb.SMembers(context.Background(), l.Keys("").Holders).Result()
		if err != nil {
			return err
		}
		for _, h := range r.hosts() {
			if !contains(hs, h) {
				return fmt.Errorf("%s has not adopted %s yet (holders %v)", h, l.Name(), hs)
			}
		}
		return nil
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// campaignQueue carries a hash tag, so the same name works on a Cluster.
const campaignQueue = "{chaos}:numbers"

type campaign struct {
	r      *run
	task   string
	queue  string
	nums   []string
	ledger *store.Ledger
}

// campaign writes the task (limit per node) and pushes total numbers.
func (r *run) campaign(task string, total, limit int, prefix string) *campaign {
	r.t.Helper()
	c := &campaign{r: r, task: task, queue: campaignQueue, ledger: r.st.QueueLedger(campaignQueue, false)}
	ctx := context.Background()
	must(r.t, r.st.SetTask(ctx, "", task, fmt.Sprintf(`{"params":{"enable":true,"line_group":["g1"],"limit":%d,"number_queue":%q,"destination_extension":"8888"}}`, limit, c.queue)))
	r.holdersOf(c.ledger)
	for i := 0; i < total; i++ {
		c.nums = append(c.nums, fmt.Sprintf("%s%04d", prefix, i))
	}
	r.dialSince = time.Now()
	if _, err := r.st.PushNumbers(ctx, c.queue, c.nums); err != nil {
		r.t.Fatal(err)
	}
	r.fig.Pushed += total
	r.fig.Limit = limit
	return c
}

func (c *campaign) numbers() []string    { return c.nums }
func (c *campaign) mine(cd seenCDR) bool { return cd.Campaign == c.task }
func (c *campaign) hosts() []string      { return c.r.hosts() }

func (c *campaign) state(ctx context.Context) (map[string]bool, map[string]bool, error) {
	rdb := c.r.dep.rdb
	k := c.ledger.Keys("")
	intr, err := parked(ctx, c.r, k.Interrupted, func(s string) string { return s })
	if err != nil {
		return nil, nil, err
	}
	pending := map[string]bool{}
	lists := []string{k.Source}
	for _, h := range c.hosts() {
		lists = append(lists, c.ledger.Keys(h).Processing, c.ledger.Keys(h).Dialing)
	}
	for _, l := range lists {
		v, err := rdb.LRange(ctx, l, 0, -1).Result()
		if err != nil {
			return nil, nil, fmt.Errorf("LRANGE %s: %w", l, err)
		}
		for _, n := range v {
			pending[n] = true
		}
	}
	retry, err := rdb.ZRange(ctx, k.Retry, 0, -1).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("ZRANGE %s: %w", k.Retry, err)
	}
	for _, m := range retry {
		_, item, _ := strings.Cut(m, "|")
		pending[item] = true
	}
	return intr, pending, nil
}

// parked reads a ledger's :interrupted list, mapping each item to its
// number with num.
func parked(ctx context.Context, r *run, key string, num func(string) string) (map[string]bool, error) {
	raw, err := r.dep.rdb.LRange(ctx, key, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("LRANGE %s: %w", key, err)
	}
	out := map[string]bool{}
	for _, p := range raw {
		var it store.ParkedItem
		if err := json.Unmarshal([]byte(p), &it); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", key, p, err)
		}
		out[num(it.Item)] = true
	}
	return out, nil
}

type scheduled struct {
	r      *run
	config string
	nums   []string
	ledger *store.Ledger
}

func memberNumber(m string) string {
	var v struct {
		Params struct {
			Number string `json:"number"`
		} `json:"params"`
	}
	json.Unmarshal([]byte(m), &v)
	return v.Params.Number
}

// schedule adds total members due one every spacing from now.
func (r *run) schedule(total int, spacing time.Duration, prefix string) *scheduled {
	r.t.Helper()
	s := &scheduled{r: r, config: "remind", ledger: r.st.ScheduleLedger()}
	ctx := context.Background()
	// No wait for holders: a node registers in the schedule's holders when
	// it first claims (its start-up settlement drops it while it holds
	// nothing); both nodes poll the schedule from their start.
	must(r.t, r.st.SetScheduleConfig(ctx, s.config, `{"params":{"line_group":["g1"],"destination_extension":"8888","destination_dialplan":"XML","destination_context":"default"}}`))
	now := time.Now()
	r.dialSince = now
	for i := 0; i < total; i++ {
		n := fmt.Sprintf("%s%04d", prefix, i)
		s.nums = append(s.nums, n)
		at := now.Add(time.Duration(i) * spacing)
		member := fmt.Sprintf(`{"params":{"number":%q,"expires":0,"config":%q}}`, n, s.config)
		must(r.t, r.st.AddScheduled(ctx, member, float64(at.UnixMilli())/1000))
	}
	r.fig.Pushed += total
	return s
}

func (s *scheduled) numbers() []string   { return s.nums }
func (s *scheduled) mine(c seenCDR) bool { return c.Campaign == s.config }

func (s *scheduled) state(ctx context.Context) (map[string]bool, map[string]bool, error) {
	rdb := s.r.dep.rdb
	k := s.ledger.Keys("")
	intr, err := parked(ctx, s.r, k.Interrupted, memberNumber)
	if err != nil {
		return nil, nil, err
	}
	pending := map[string]bool{}
	due, err := rdb.ZRange(ctx, k.Source, 0, -1).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("ZRANGE %s: %w", k.Source, err)
	}
	for _, m := range due {
		pending[memberNumber(m)] = true
	}
	var held []string
	for _, h := range s.r.hosts() {
		held = append(held, s.ledger.Keys(h).Processing, s.ledger.Keys(h).Dialing)
	}
	for _, l := range held {
		v, err := rdb.LRange(ctx, l, 0, -1).Result()
		if err != nil {
			return nil, nil, fmt.Errorf("LRANGE %s: %w", l, err)
		}
		for _, m := range v {
			pending[memberNumber(m)] = true
		}
	}
	return intr, pending, nil
}

type callbacks struct {
	r       *run
	nums    []string
	byVmbox map[string]string // vmbox id -> owner's number
	plans   *store.Ledger
	events  *store.Ledger
	pushed  chan struct{}
}

// callbacks writes total vmboxes with an unread message, each owned by a
// user with its own callback number and a one-attempt schedule, and pushes
// their voicemail_saved events at perSecond in the background.
func (r *run) callbacks(total, perSecond int, prefix string) *callbacks {
	r.t.Helper()
	c := &callbacks{r: r, byVmbox: map[string]string{}, plans: r.st.PlansLedger(), events: r.st.EventsLedger(), pushed: make(chan struct{})}
	ctx := context.Background()
	must(r.t, r.st.SetDoc(ctx, r.st.AccountDocsKey(), "acc1", `{"name":"Acme","voicemail":{"notify":{"callback":{"timeout_s":10}}}}`))
	must(r.t, r.st.SetDoc(ctx, r.st.CallflowDocsKey("acc1"), "cf-vm", `{"numbers":["*97"],"flow":{"module":"voicemail","data":{"action":"check"}}}`))
	must(r.t, r.st.SetDoc(ctx, r.st.SystemConfigKey(), store.CallbackConfigField, `{"line_group":["g1"]}`))
	for i := 0; i < total; i++ {
		n := fmt.Sprintf("%s%04d", prefix, i)
		vb := fmt.Sprintf("vb%d", i)
		c.nums = append(c.nums, n)
		c.byVmbox[vb] = n
		must(r.t, r.st.SetDoc(ctx, r.st.UserDocsKey("acc1"), fmt.Sprintf("u%d", i), fmt.Sprintf(`{"voicemail":{"notify":{"callback":{"number":%q}}}}`, n)))
		must(r.t, r.st.SetDoc(ctx, r.st.VMBoxDocsKey("acc1"), vb, fmt.Sprintf(`{"owner_id":"u%d","notify":{"callback":{"schedule":[1]}},"messages":[{"folder":"new"}]}`, i)))
	}
	r.dialSince = time.Now()
	r.fig.Pushed += total
	go func() {
		defer close(c.pushed)
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for i := 0; i < total; i++ {
			<-tick.C
			ev := fmt.Sprintf(`{"event_name":"voicemail_saved","account_id":"acc1","vmbox_id":"vb%d"}`, i)
			for r.st.PushEvent(context.Background(), ev) != nil {
				<-tick.C
			}
		}
	}()
	return c
}

func (c *callbacks) numbers() []string   { return c.nums }
func (c *callbacks) mine(s seenCDR) bool { return strings.HasPrefix(s.Campaign, "callback:") }

// number maps a plan field ("acc1/vb3") or an event JSON to its number.
func (c *callbacks) number(s string) string {
	if _, vb, ok := strings.Cut(s, "/"); ok && !strings.HasPrefix(s, "{") {
		return c.byVmbox[vb]
	}
	var ev struct {
		Vmbox string `json:"vmbox_id"`
	}
	json.Unmarshal([]byte(s), &ev)
	return c.byVmbox[ev.Vmbox]
}

func (c *callbacks) state(ctx context.Context) (map[string]bool, map[string]bool, error) {
	rdb := c.r.dep.rdb
	pending := map[string]bool{}
	select {
	case <-c.pushed:
	default:
		// Events not pushed yet are pending too.
		for _, n := range c.nums {
			pending[n] = true
		}
	}
	fields, err := rdb.HKeys(ctx, c.r.st.PlansKey()).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("HKEYS %s: %w", c.r.st.PlansKey(), err)
	}
	for _, f := range fields {
		pending[c.number(f)] = true
	}
	lists := []string{c.events.Keys("").Source}
	for _, h := range c.r.hosts() {
		lists = append(lists, c.events.Keys(h).Processing, c.events.Keys(h).Dialing)
	}
	for _, l := range lists {
		v, err := rdb.LRange(ctx, l, 0, -1).Result()
		if err != nil {
			return nil, nil, fmt.Errorf("LRANGE %s: %w", l, err)
		}
		for _, e := range v {
			pending[c.number(e)] = true
		}
	}
	// Plans have no :interrupted list: a cut-short attempt is due again.
	return map[string]bool{}, pending, nil
}

// waitProgress waits until frac of f's numbers have a CDR.
func (r *run) waitProgress(f flow, frac float64) {
	r.t.Helper()
	want := int(float64(len(f.numbers())) * frac)
	r.waitOrFatal(3*time.Minute, func() error {
		got := map[string]bool{}
		for _, c := range r.watch.snapshot() {
			if f.mine(c) {
				got[c.Number] = true
			}
		}
		if len(got) < want {
			return fmt.Errorf("%d of %d numbers have a CDR, waiting for %d", len(got), len(f.numbers()), want)
		}
		return nil
	})
}

// waitSettled waits until every number of f has a CDR or is parked and
// nothing is pending. It returns the wait's error (recorded, not fatal:
// the figures say what is missing).
func (r *run) waitSettled(f flow, timeout time.Duration) error {
	return waitUntil(timeout, func() error {
		intr, pending, err := f.state(context.Background())
		if err != nil {
			return err
		}
		if len(pending) > 0 {
			return fmt.Errorf("%d numbers pending", len(pending))
		}
		has := map[string]bool{}
		for _, c := range r.watch.snapshot() {
			if f.mine(c) {
				has[c.Number] = true
			}
		}
		missing := 0
		for _, n := range f.numbers() {
			if !has[n] && !intr[n] {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d numbers have neither a CDR nor an :interrupted entry", missing)
		}
		return nil
	})
}

// describer is a flow that can say where a pending number sits, for
// failure messages.
type describer interface {
	describe(ctx context.Context, number string) string
}

func (c *callbacks) describe(ctx context.Context, number string) string {
	rdb := c.r.dep.rdb
	var vb string
	for v, n := range c.byVmbox {
		if n == number {
			vb = v
		}
	}
	field := store.PlanField("acc1", vb)
	plan, _ := rdb.HGet(ctx, c.r.st.PlansKey(), field).Result()
	where := "not due"
	if sc, err := rdb.ZScore(ctx, c.r.st.PlansDueKey(), field).Result(); err == nil {
		where = fmt.Sprintf("due at %s", time.UnixMilli(int64(sc)).Format("15:04:05.000"))
	}
	for _, h := range c.r.hosts() {
		if pos, err := rdb.LPos(ctx, c.plans.Keys(h).Processing, field, redis.LPosArgs{}).Result(); err == nil {
			where += fmt.Sprintf(", claimed by %s (position %d, not marked)", h, pos)
		}
		if pos, err := rdb.LPos(ctx, c.plans.Keys(h).Dialing, field, redis.LPosArgs{}).Result(); err == nil {
			where += fmt.Sprintf(", claimed by %s (position %d, marked)", h, pos)
		}
	}
	return fmt.Sprintf("%s: plan %s %s", number, plan, where)
}

func (c *campaign) describe(ctx context.Context, number string) string {
	rdb := c.r.dep.rdb
	k := c.ledger.Keys("")
	var where []string
	parked, _ := rdb.LRange(ctx, k.Interrupted, 0, -1).Result()
	for _, p := range parked {
		if strings.Contains(p, `"item":"`+number+`"`) {
			where = append(where, "parked "+p)
		}
	}
	for _, h := range c.hosts() {
		if pos, err := rdb.LPos(ctx, c.ledger.Keys(h).Processing, number, redis.LPosArgs{}).Result(); err == nil {
			where = append(where, fmt.Sprintf("claimed by %s (position %d, not marked)", h, pos))
		}
		if pos, err := rdb.LPos(ctx, c.ledger.Keys(h).Dialing, number, redis.LPosArgs{}).Result(); err == nil {
			where = append(where, fmt.Sprintf("claimed by %s (position %d, marked)", h, pos))
		}
	}
	var cdrs []string
	for _, cd := range c.r.watch.snapshot() {
		if cd.Number == number {
			cdrs = append(cdrs, fmt.Sprintf("CDR %s %s read at %s", cd.ID, cd.Disposition, cd.At.Format("15:04:05.000")))
		}
	}
	return fmt.Sprintf("%s: %s; %s", number, strings.Join(where, "; "), strings.Join(cdrs, "; "))
}
