package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"redial/internal/store"
	"redial/internal/testenv"
)

// fakeLiveness is a directory whose answers the test sets.
type fakeLiveness struct {
	self    string
	trusted atomic.Bool
	mu      sync.Mutex
	alive   map[string]bool
	deaths  chan string
}

func (f *fakeLiveness) Self() string  { return f.self }
func (f *fakeLiveness) Trusted() bool { return f.trusted.Load() }
func (f *fakeLiveness) Alive(_ context.Context, hosts []string) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]bool{}
	for _, h := range hosts {
		out[h] = f.alive[h]
	}
	return out, nil
}
func (f *fakeLiveness) Deaths() (<-chan string, func()) { return f.deaths, func() {} }

func startRecoverer(t *testing.T, lv Liveness, replayed <-chan struct{}) *Recoverer {
	t.Helper()
	r, err := NewRecoverer(RecovererConfig{Every: 50 * time.Millisecond},
		RecovererDeps{Liveness: lv, SpoolReplayed: replayed, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// claimOne pushes item and claims it as st's host, marked invited.
func claimOne(t *testing.T, st *store.Store, l *store.Ledger, queue, item string) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.PushNumbers(ctx, queue, []string{item}); err != nil {
		t.Fatal(err)
	}
	raw, ok, err := l.ClaimBlocking(ctx, time.Second)
	if err != nil || !ok || raw != item {
		t.Fatalf("claim: %q %v %v", raw, ok, err)
	}
	if err := l.Mark(ctx, raw); err != nil {
		t.Fatal(err)
	}
}

// Own leftovers are settled only after the spool is replayed, and whoever
// waits to claim is released only then; a dead holder is recovered only
// while this node trusts its own liveness, and exactly once.
func TestRecovererSettlesOwnAfterSpoolAndRecoversDeadWhenTrusted(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	self := store.NewWithClient(r.Client, store.Config{Host: "self"})
	dead := store.NewWithClient(r.Client, store.Config{Host: "dead"})
	claimOne(t, self, self.QueueLedger("{q}", false), "{q}", "own-leftover")
	claimOne(t, dead, dead.QueueLedger("{q}", false), "{q}", "dead-claim")

	lv := &fakeLiveness{self: "self", alive: map[string]bool{}, deaths: make(chan string, 1)}
	replayed := make(chan struct{})
	rec := startRecoverer(t, lv, replayed)
	wait, unregister := rec.Register(self.QueueLedger("{q}", false))
	defer unregister()

	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := wait(wctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait returned %v before the spool was replayed", err)
	}
	if n, _ := r.Client.LLen(ctx, "{q}:dialing:self").Result(); n != 1 {
		t.Fatalf("own leftover settled before the spool was replayed")
	}
	close(replayed)
	if err := wait(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.Client.LLen(ctx, "{q}:dialing:self").Result(); n != 0 {
		t.Fatalf("own leftover still claimed after wait returned")
	}

	// Not trusted (say, right after a Redis outage): the dead holder's
	// claim stays where it is.
	lv.deaths <- "dead"
	testenv.WaitFor(t, 5*time.Second, func() error {
		if n := counterValue(rec.mDeferred); n < 3 {
			return fmt.Errorf("%v recover passes deferred so far", n)
		}
		return nil
	})
	if n, _ := r.Client.LLen(ctx, "{q}:dialing:dead").Result(); n != 1 {
		t.Fatalf("a dead holder was recovered while this node did not trust its own liveness")
	}
	lv.trusted.Store(true)
	testenv.WaitFor(t, 5*time.Second, func() error {
		if n, _ := r.Client.LLen(ctx, "{q}:dialing:dead").Result(); n != 0 {
			return fmt.Errorf("dead holder still has %d claims", n)
		}
		return nil
	})
	parked, _ := r.Client.LRange(ctx, "{q}:interrupted", 0, -1).Result()
	if len(parked) != 2 {
		t.Fatalf("interrupted = %v, want the own leftover and the dead node's claim", parked)
	}
	got := counterValue(rec.mRecovered.WithLabelValues("queue {q}", "interrupted"))
	if got != 2 {
		t.Fatalf("recovered metric = %v, want 2", got)
	}
}

// failing is a ledger whose recovery always fails.
type failing struct{ calls atomic.Int64 }

func (f *failing) Name() string                              { return "broken" }
func (f *failing) Holders(context.Context) ([]string, error) { return []string{"gone"}, nil }
func (f *failing) SettleOwn(context.Context) (store.RecoverResult, error) {
	return store.RecoverResult{}, nil
}
func (f *failing) Recover(context.Context, string) (store.RecoverResult, error) {
	f.calls.Add(1)
	return store.RecoverResult{}, errors.New("redis said no")
}

// A failed recovery is counted (and logged), never silently dropped, and
// retried on the next pass.
func TestRecovererCountsFailures(t *testing.T) {
	lv := &fakeLiveness{self: "self", alive: map[string]bool{}, deaths: make(chan string)}
	lv.trusted.Store(true)
	rec := startRecoverer(t, lv, nil)
	f := &failing{}
	_, unregister := rec.Register(f)
	defer unregister()
	testenv.WaitFor(t, 5*time.Second, func() error {
		if n := counterValue(rec.mErrors.WithLabelValues("broken")); n < 2 {
			return fmt.Errorf("%v failures counted", n)
		}
		return nil
	})
	if f.calls.Load() < 2 {
		t.Fatalf("recovery tried %d times", f.calls.Load())
	}
}

// counterValue reads one counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
