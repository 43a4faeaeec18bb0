package lines

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"redial/internal/testenv"
)

func scriptRuns(t *testing.T, r *testenv.Redis) int64 {
	return r.CommandCalls(t)["evalsha"] + r.CommandCalls(t)["eval"]
}

// A burst of acquires on one line is answered in few script runs, keeps the
// limit across two nodes, and its releases share ZREMs.
func TestConcurrentAcquiresShareScriptRuns(t *testing.T) {
	r := testenv.StartRedis(t)
	const limit, callers = 150, 200
	setLines(t, r, map[string]string{"l1": lineJSON("g", limit, -1), "w1": lineJSON("warm", -1, -1)})
	nodes := []*node{newNode(t, r, "n1", Config{}), newNode(t, r, "n2", Config{})}
	ctx := context.Background()
	for _, n := range nodes {
		if err := n.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		// Loads the acquire script, so NOSCRIPT fallbacks do not count.
		l, err := n.Acquire(ctx, "warm", "warm-up")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}

	before := scriptRuns(t, r)
	start := make(chan struct{})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		leases  []*Lease
		refused atomic.Int64
	)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			l, err := nodes[i%2].Acquire(ctx, "g", fmt.Sprintf("c%d", i))
			switch {
			case errors.Is(err, ErrNoLine):
				refused.Add(1)
			case err != nil:
				t.Errorf("acquire %d: %v", i, err)
			default:
				mu.Lock()
				leases = append(leases, l)
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	runs := scriptRuns(t, r) - before
	if len(leases) != limit || refused.Load() != callers-limit {
		t.Fatalf("%d granted, %d refused; want %d and %d", len(leases), refused.Load(), limit, callers-limit)
	}
	if runs >= callers {
		t.Errorf("%d script runs for %d acquires: not combined", runs, callers)
	}
	key := nodes[0].st.LineLeasesKey("l1")
	if n := r.Client.ZCard(ctx, key).Val(); n != limit {
		t.Fatalf("ZCARD %d after the burst, want %d", n, limit)
	}
	if held := nodes[0].Held() + nodes[1].Held(); held != limit {
		t.Fatalf("nodes hold %d leases, want %d", held, limit)
	}
	t.Logf("%d acquires in %d script runs", callers, runs)

	zrem := r.CommandCalls(t)["zrem"]
	release := make(chan struct{})
	for _, l := range leases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release
			if err := l.Release(ctx); err != nil {
				t.Errorf("release %s: %v", l, err)
			}
		}()
	}
	close(release)
	wg.Wait()
	zrems := r.CommandCalls(t)["zrem"] - zrem
	if n := r.Client.ZCard(ctx, key).Val(); n != 0 {
		t.Fatalf("ZCARD %d after every release", n)
	}
	if zrems >= limit {
		t.Errorf("%d ZREM for %d releases: not combined", zrems, limit)
	}
	if held := nodes[0].Held() + nodes[1].Held(); held != 0 {
		t.Errorf("nodes hold %d leases after every release", held)
	}
	t.Logf("%d releases in %d ZREM", limit, zrems)
	logs := nodes[0].logs.String() + nodes[1].logs.String()
	for _, l := range leases {
		for _, msg := range []string{"acquired", "released"} {
			if want := fmt.Sprintf(`msg="lines: %s" call_ref=%s line=l1`, msg, l.CallRef); !strings.Contains(logs, want) {
				t.Errorf("no log %s", want)
			}
		}
	}
}

func TestConcurrentSlotAcquiresKeepTheLimit(t *testing.T) {
	r := testenv.StartRedis(t)
	n := newNode(t, r, "n1", Config{})
	ctx := context.Background()
	const limit, callers = 5, 40
	var granted, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			l, err := n.AcquireSlot(ctx, "task-7", limit, fmt.Sprintf("c%d", i))
			switch {
			case errors.Is(err, ErrNoLine):
				if !strings.Contains(err.Error(), `slot "task-7"`) {
					t.Errorf("refusal %v does not name the slot", err)
				}
				refused.Add(1)
			case err != nil:
				t.Errorf("acquire slot: %v", err)
			default:
				if l.Line.Name != "slot:task-7" || l.Line.Limit != limit {
					t.Errorf("lease on %+v", l.Line)
				}
				granted.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if granted.Load() != limit || refused.Load() != callers-limit {
		t.Fatalf("%d granted, %d refused; want %d and %d", granted.Load(), refused.Load(), limit, callers-limit)
	}
	if c := r.Client.ZCard(ctx, n.st.LineLeasesKey("slot:task-7")).Val(); c != limit {
		t.Fatalf("ZCARD %d, want %d", c, limit)
	}
	if err := n.ReleaseAll(ctx); err != nil {
		t.Fatal(err)
	}
	if c := r.Client.ZCard(ctx, n.st.LineLeasesKey("slot:task-7")).Val(); c != 0 {
		t.Fatalf("ZCARD %d after ReleaseAll", c)
	}
}
