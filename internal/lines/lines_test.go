package lines

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"redial/internal/store"
	"redial/internal/testenv"
)

type node struct {
	*Manager
	st   *store.Store
	logs *testenv.SyncBuffer
	reg  *prometheus.Registry
}

// newNode builds a Manager with its own Redis connection, as another redial
// node would have.
func newNode(t testing.TB, r *testenv.Redis, id string, cfg Config) *node {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, PoolSize: 64})
	t.Cleanup(func() { rdb.Close() })
	st := store.NewWithClient(rdb, store.Config{Domain: "default", Host: id})
	logs := &testenv.SyncBuffer{}
	reg := prometheus.NewRegistry()
	cfg.NodeID = id
	m, err := New(cfg, Deps{Store: st, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return &node{Manager: m, st: st, logs: logs, reg: reg}
}

// run starts Run and returns a func that stops it (without releasing) and
// waits for it to return.
func (n *node) run(t testing.TB) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func setLines(t testing.TB, r *testenv.Redis, lines map[string]string) {
	t.Helper()
	for name, v := range lines {
		if err := r.Client.HSet(context.Background(), "cti_line@default", name, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func lineJSON(group string, limit, cps int) string {
	p := fmt.Sprintf(`"group": %q, "uri": "sip:carrier.example.com:5060", "enable": true`, group)
	if limit >= 0 {
		p += fmt.Sprintf(`, "limit": %d`, limit)
	}
	if cps >= 0 {
		p += fmt.Sprintf(`, "cps": %d`, cps)
	}
	return `{"params": {` + p + `}, "variables": {"sip_h_X-Line": "yes"}}`
}

func TestMalformedLinesAreSkippedAndReported(t *testing.T) {
	r := testenv.StartRedis(t)
	setLines(t, r, map[string]string{
		"l1": lineJSON("g", 2, -1),
		"l2": `{"params": {"group": "g", "uri": "sip:h", "limit": "ten"}}`,
		"l3": `{"params": {"group": "g", "uri": `,
		"l4": `{"params": {"group": "g"}}`,
		"l5": `{"params": {"group": "g", "uri": "http://carrier.example.com"}}`,
		"l6": `{"params": {"group": "g", "uri": "sip:h", "transport": "sctp"}}`,
		"l7": `{"params": {"group": "g", "uri": "sip:h", "limit": 1, "future_field": [1, 2]}, "variables": {"v": 5, "w": true}, "meta": {}}`,
	})
	n := newNode(t, r, "n1", Config{})
	ctx := context.Background()
	if err := n.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	st := n.Statuses(ctx)
	names := make([]string, len(st))
	errs := map[string]string{}
	for i, s := range st {
		names[i] = s.Name
		errs[s.Name] = s.Error
	}
	if !slices.Equal(names, []string{"l1", "l2", "l3", "l4", "l5", "l6", "l7"}) {
		t.Fatalf("statuses = %v", names)
	}
	const l2 = `lines: line "l2" in cti_line@default: params.limit: want number, got "ten"`
	if errs["l2"] != l2 {
		t.Errorf("l2 error = %q, want %q", errs["l2"], l2)
	}
	for name, field := range map[string]string{"l3": "invalid JSON", "l4": "params.uri: missing", "l5": "params.uri: want a sip: URI", "l6": "params.transport"} {
		if !strings.Contains(errs[name], field) || !strings.Contains(errs[name], `line "`+name+`" in cti_line@default`) {
			t.Errorf("%s error = %q, want it to name the key and %q", name, errs[name], field)
		}
	}
	if errs["l1"] != "" || errs["l7"] != "" {
		t.Errorf("good lines have errors: %q, %q", errs["l1"], errs["l7"])
	}
	if !strings.Contains(n.logs.String(), `lines: line \"l2\" in cti_line@default: params.limit: want number, got \"ten\"`) {
		t.Errorf("l2 not logged; logs:\n%s", n.logs)
	}
	if v, _ := testenv.Metric(t, n.reg, "redial_config_errors_total", map[string]string{"kind": "line"}); v != 5 {
		t.Errorf("redial_config_errors_total{kind=line} = %v, want 5", v)
	}

	// The well-formed lines of the group keep working.
	got := map[string]bool{}
	for i := 0; i < 3; i++ {
		lease, err := n.Acquire(ctx, "g", fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatalf("acquire %d: %v", i, err)
		}
		got[lease.Line.Name] = true
		if lease.Line.Name == "l7" && (lease.Line.Variables["v"] != "5" || lease.Line.Variables["w"] != "true") {
			t.Errorf("l7 variables = %v", lease.Line.Variables)
		}
	}
	if !got["l1"] || !got["l7"] || len(got) != 2 {
		t.Errorf("leases on %v, want l1 and l7", got)
	}

	// A reload of the same bad value is not counted again; fixing it makes
	// the line usable.
	if err := n.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := testenv.Metric(t, n.reg, "redial_config_errors_total", map[string]string{"kind": "line"}); v != 5 {
		t.Errorf("after reload: redial_config_errors_total = %v, want still 5", v)
	}
	setLines(t, r, map[string]string{"l2": `{"params": {"group": "g2", "uri": "sip:h", "limit": "10"}}`})
	if err := n.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	lease, err := n.Acquire(ctx, "g2", "c9")
	if err != nil || lease.Line.Name != "l2" || lease.Line.Limit != 10 {
		t.Fatalf("fixed l2: %+v, %v", lease, err)
	}
	if v, ok := testenv.Metric(t, n.reg, "redial_line_channels_in_use", map[string]string{"line": "l2"}); !ok || v != 1 {
		t.Errorf("redial_line_channels_in_use{line=l2} = %v (%v), want 1", v, ok)
	}
}

func TestLimitHoldsAcrossTwoNodes(t *testing.T) {
	r := testenv.StartRedis(t)
	const limit = 5
	setLines(t, r, map[string]string{"l1": lineJSON("g", limit, -1)})
	nodes := []*node{newNode(t, r, "n1", Config{}), newNode(t, r, "n2", Config{})}
	for _, n := range nodes {
		n.run(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const workers, rounds = 20, 10 // per node
	var cur, peak, done, refused atomic.Int64
	var wg sync.WaitGroup
	for ni, n := range nodes {
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < rounds; {
					lease, err := n.Acquire(ctx, "g", fmt.Sprintf("n%d-w%d-%d", ni, w, i))
					if errors.Is(err, ErrNoLine) {
						refused.Add(1)
						time.Sleep(time.Millisecond) // back off before trying again
						continue
					}
					if err != nil {
						t.Errorf("acquire: %v", err)
						return
					}
					c := cur.Add(1)
					for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
					}
					time.Sleep(2 * time.Millisecond) // the call
					cur.Add(-1)
					if err := lease.Release(ctx); err != nil {
						t.Errorf("release: %v", err)
						return
					}
					done.Add(1)
					i++
				}
			}()
		}
	}
	wg.Wait()
	if p := peak.Load(); p > limit {
		t.Fatalf("%d channels held at once, limit %d", p, limit)
	}
	if d := done.Load(); d != 2*workers*rounds {
		t.Fatalf("%d calls completed, want %d", d, 2*workers*rounds)
	}
	if refused.Load() == 0 {
		t.Fatalf("the limit never refused anyone: the test did not contend")
	}
	t.Logf("peak %d, refusals %d", peak.Load(), refused.Load())
	for _, s := range nodes[0].Statuses(ctx) {
		if s.InUse != 0 {
			t.Errorf("%s: %d in use after every release", s.Name, s.InUse)
		}
	}
	if nodes[0].Held()+nodes[1].Held() != 0 {
		t.Errorf("nodes still hold leases")
	}
}

// serverMillis is Redis's clock, the one leases expire by.
func serverMillis(t testing.TB, r *testenv.Redis) int64 {
	tm, err := r.Client.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return tm.UnixMilli()
}

func TestDeadNodeLeasesExpire(t *testing.T) {
	r := testenv.StartRedis(t)
	setLines(t, r, map[string]string{"l1": lineJSON("g", 2, -1)})
	cfg := Config{LeaseTTL: 300 * time.Millisecond, RenewEvery: 50 * time.Millisecond}
	n1, n2 := newNode(t, r, "n1", cfg), newNode(t, r, "n2", cfg)
	stop := n1.run(t)
	ctx := context.Background()
	a, err := n1.Acquire(ctx, "g", "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Acquire(ctx, "g", "b"); err != nil {
		t.Fatal(err)
	}
	key := n1.st.LineLeasesKey("l1")
	firstExpiry, err := r.Client.ZScore(ctx, key, a.ID).Result()
	if err != nil {
		t.Fatal(err)
	}

	// While n1 lives it renews: past the first expiry its leases still
	// hold the line and n2 gets nothing.
	testenv.WaitFor(t, 5*time.Second, func() error {
		if now := serverMillis(t, r); float64(now) <= firstExpiry+100 {
			return fmt.Errorf("server time %d not yet past first expiry %v", now, firstExpiry)
		}
		return nil
	})
	if _, err := n2.Acquire(ctx, "g", "c"); !errors.Is(err, ErrNoLine) {
		t.Fatalf("n2 acquired on a line n1 fills (renewal failed?): %v", err)
	}
	if v, ok := testenv.Metric(t, n1.reg, "redial_line_channels_in_use", map[string]string{"line": "l1"}); !ok || v != 2 {
		t.Errorf("n1 gauge in use = %v (%v), want 2", v, ok)
	}

	// n1 dies without releasing: its channels come back after the TTL.
	stop()
	var got *Lease
	testenv.WaitFor(t, 5*time.Second, func() error {
		l, err := n2.Acquire(ctx, "g", "c")
		if err != nil {
			return err
		}
		got = l
		return nil
	})
	if got.Line.Name != "l1" {
		t.Fatalf("lease on %q", got.Line.Name)
	}
	if _, err := n2.Acquire(ctx, "g", "d"); err != nil {
		t.Fatalf("second channel of the dead node not free: %v", err)
	}
}

func TestLeaseLostWhileAwayIsTakenBack(t *testing.T) {
	r := testenv.StartRedis(t)
	setLines(t, r, map[string]string{"l1": lineJSON("g", 1, -1)})
	n := newNode(t, r, "n1", Config{LeaseTTL: 300 * time.Millisecond, RenewEvery: 50 * time.Millisecond})
	ctx := context.Background()
	lease, err := n.Acquire(ctx, "g", "call-1")
	if err != nil {
		t.Fatal(err)
	}
	// As if Redis had been unreachable longer than the TTL.
	r.Client.ZRem(ctx, n.st.LineLeasesKey("l1"), lease.ID)
	n.run(t)
	testenv.WaitFor(t, 5*time.Second, func() error {
		if err := r.Client.ZScore(ctx, n.st.LineLeasesKey("l1"), lease.ID).Err(); err != nil {
			return fmt.Errorf("lease not back: %w", err)
		}
		return nil
	})
	if !strings.Contains(n.logs.String(), "call_ref=call-1") {
		t.Errorf("re-add not logged with call_ref:\n%s", n.logs)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if c, _ := r.Client.ZCard(ctx, n.st.LineLeasesKey("l1")).Result(); c != 0 {
		t.Fatalf("%d leases after release", c)
	}
}

func TestCPSHoldsAcrossTwoNodes(t *testing.T) {
	r := testenv.StartRedis(t)
	const cps, calls = 5, 12
	setLines(t, r, map[string]string{"l1": lineJSON("g", -1, cps)})
	nodes := []*node{newNode(t, r, "n1", Config{}), newNode(t, r, "n2", Config{})}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	var grants []time.Time
	var wg sync.WaitGroup
	for i := 0; i < calls; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lease, err := nodes[i%2].Acquire(ctx, "g", fmt.Sprintf("c%d", i))
			if err != nil {
				t.Errorf("acquire %d: %v", i, err) // must wait, not fail
				return
			}
			mu.Lock()
			grants = append(grants, lease.GrantedAt)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(grants) != calls {
		t.Fatalf("%d grants, want %d", len(grants), calls)
	}
	slices.SortFunc(grants, func(a, b time.Time) int { return a.Compare(b) })
	for i := 0; i+cps < len(grants); i++ {
		if d := grants[i+cps].Sub(grants[i]); d < time.Second {
			t.Errorf("grants %d..%d within %v: more than %d in one second", i, i+cps, d, cps)
		}
	}
	// 12 calls at 5/s need two full windows; waiting must not stretch that much.
	if span := grants[calls-1].Sub(grants[0]); span > 3*time.Second {
		t.Errorf("12 grants took %v at cps 5", span)
	}
}

func TestCPSWaitEndsWithContext(t *testing.T) {
	r := testenv.StartRedis(t)
	setLines(t, r, map[string]string{"l1": lineJSON("g", -1, 1)})
	n := newNode(t, r, "n1", Config{})
	if _, err := n.Acquire(context.Background(), "g", "a"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := n.Acquire(ctx, "g", "b")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNoLine) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
}

func TestGroupOrderAndFailover(t *testing.T) {
	r := testenv.StartRedis(t)
	setLines(t, r, map[string]string{
		"l1": lineJSON("g", 2, -1),
		"l2": lineJSON("g", 1, -1),
		"l3": lineJSON("g", 1, -1), // disabled below
		"b1": lineJSON("h", 1, -1),
		"b2": lineJSON("h", 3, -1),
		"z0": lineJSON("zero", 0, -1),
		"z1": lineJSON("zero", -1, 0),
	})
	setLines(t, r, map[string]string{"l3": `{"params": {"group": "g", "uri": "sip:h", "enable": false}}`})
	n1, n2 := newNode(t, r, "n1", Config{}), newNode(t, r, "n2", Config{})
	ctx := context.Background()
	if err := n1.Reload(ctx); err != nil {
		t.Fatal(err)
	}

	// Most free channels first.
	if l, err := n1.Acquire(ctx, "h", "x"); err != nil || l.Line.Name != "b2" {
		t.Fatalf("group h: %v, %v; want b2 (3 free) before b1 (1 free)", l, err)
	}

	// n2 fills l1 behind n1's back: n1 still believes l1 is the freest,
	// finds it full and falls to l2.
	var held []*Lease
	for i := 0; i < 2; i++ {
		l, err := n2.Acquire(ctx, "g", fmt.Sprintf("n2-%d", i))
		if err != nil || l.Line.Name != "l1" {
			t.Fatalf("n2 acquire %d: %v, %v; want l1", i, l, err)
		}
		held = append(held, l)
	}
	l, err := n1.Acquire(ctx, "g", "a")
	if err != nil || l.Line.Name != "l2" {
		t.Fatalf("n1: %v, %v; want l2", l, err)
	}
	if l.Line.Variables["sip_h_X-Line"] != "yes" {
		t.Errorf("lease variables = %v", l.Line.Variables)
	}
	_, err = n1.Acquire(ctx, "g", "b")
	if !errors.Is(err, ErrNoLine) || !strings.Contains(err.Error(), `"g"`) {
		t.Fatalf("all full: err = %v, want ErrNoLine naming the group", err)
	}
	if err := held[0].Release(ctx); err != nil {
		t.Fatal(err)
	}
	if l, err := n1.Acquire(ctx, "g", "c"); err != nil || l.Line.Name != "l1" {
		t.Fatalf("after release: %v, %v; want l1", l, err)
	}

	for _, g := range []string{"zero", "nope"} {
		if _, err := n1.Acquire(ctx, g, "d"); !errors.Is(err, ErrNoLine) {
			t.Errorf("group %q: err = %v, want ErrNoLine", g, err)
		}
	}
	if logs := n1.logs.String(); !strings.Contains(logs, `params.limit is 0`) || !strings.Contains(logs, `params.cps is 0`) {
		t.Errorf("unusable lines not logged:\n%s", logs)
	}
}

func TestReleaseAll(t *testing.T) {
	r := testenv.StartRedis(t)
	setLines(t, r, map[string]string{"l1": lineJSON("g", 3, -1), "l2": lineJSON("g", 3, -1)})
	n := newNode(t, r, "n1", Config{})
	ctx := context.Background()
	var leases []*Lease
	for i := 0; i < 5; i++ {
		l, err := n.Acquire(ctx, "g", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	if err := leases[0].Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.ReleaseAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range n.Statuses(ctx) {
		if s.InUse != 0 {
			t.Errorf("%s: %d in use after ReleaseAll", s.Name, s.InUse)
		}
	}
	if err := leases[1].Release(ctx); err != nil {
		t.Errorf("release after ReleaseAll: %v", err)
	}
}

func TestNewRejectsRenewSlowerThanTTL(t *testing.T) {
	st := store.NewWithClient(nil, store.Config{})
	if _, err := New(Config{RenewEvery: time.Second, LeaseTTL: time.Second}, Deps{Store: st}); err == nil {
		t.Fatal("accepted")
	}
}

// BenchmarkAcquireRelease measures one node's acquire+release throughput:
// one script round trip to acquire, one ZREM to release.
func BenchmarkAcquireRelease(b *testing.B) {
	r := testenv.StartRedis(b)
	setLines(b, r, map[string]string{
		"l1": lineJSON("limit", 100000, -1), "l2": lineJSON("limit", 100000, -1),
		// cps high enough never to wait: measures the CPS window's cost.
		"c1": lineJSON("cps", 100000, 1000000),
	})
	n := newNode(b, r, "n1", Config{})
	ctx := context.Background()
	if err := n.Reload(ctx); err != nil {
		b.Fatal(err)
	}
	for _, group := range []string{"limit", "cps"} {
		b.Run(group, func(b *testing.B) {
			b.SetParallelism(4)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l, err := n.Acquire(ctx, group, "bench")
					if err != nil {
						b.Error(err)
						return
					}
					if err := l.Release(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "acquires/s")
		})
	}
}
