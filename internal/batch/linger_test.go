package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"redial/internal/testenv"
)

// runLog is a RunFunc that answers each request with itself times ten and
// records the size of every run.
type runLog struct {
	mu    sync.Mutex
	sizes []int
	reqs  [][]int
}

func (l *runLog) run(ctx context.Context, key string, reqs []int) ([]int, error) {
	l.mu.Lock()
	l.sizes = append(l.sizes, len(reqs))
	l.reqs = append(l.reqs, append([]int(nil), reqs...))
	l.mu.Unlock()
	out := make([]int, len(reqs))
	for i, r := range reqs {
		out[i] = r * 10
	}
	return out, nil
}

func (l *runLog) runs() ([]int, [][]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.sizes...), append([][]int(nil), l.reqs...)
}

// pendingFor returns how many requests wait in key's queue.
func (g *Group[K, Req, Res]) pendingFor(key K) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if q := g.queues[key]; q != nil {
		return len(q.pending)
	}
	return 0
}

// waitPending waits until n requests wait in key's queue.
func waitPending[K comparable, Req, Res any](t *testing.T, g *Group[K, Req, Res], key K, n int) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, func() error {
		if got := g.pendingFor(key); got != n {
			return fmt.Errorf("%d requests pending in %v, want %d", got, key, n)
		}
		return nil
	})
}

// TestLingerGathersConcurrentRequests starts 20 requests together on a
// Group with a linger: they go in one run (two if the machine is slow to
// start the goroutines), not one each, and the first waited out the
// linger as the batch never filled.
func TestLingerGathersConcurrentRequests(t *testing.T) {
	const linger = 300 * time.Millisecond
	var log runLog
	g := New(100, log.run, Linger(linger))
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got, err := g.Do(context.Background(), "k", i)
			if err == nil && got != i*10 {
				err = fmt.Errorf("request %d got %d", i, got)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(began)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sizes, _ := log.runs()
	total := 0
	for _, n := range sizes {
		total += n
	}
	if total != 20 || len(sizes) > 2 {
		t.Errorf("run sizes %v, want one run of 20 (two at most)", sizes)
	}
	if elapsed < linger {
		t.Errorf("requests returned after %v, before the linger of %v: the batch did not wait", elapsed, linger)
	}
	if n := len(g.queues); n != 0 {
		t.Errorf("%d queues left after the last run", n)
	}
}

// TestFullBatchDoesNotWaitOutTheLinger fills a batch during a long
// linger: it runs at once.
func TestFullBatchDoesNotWaitOutTheLinger(t *testing.T) {
	var log runLog
	g := New(4, log.run, Linger(10*time.Second))
	began := time.Now()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := g.Do(context.Background(), "k", i); err != nil || got != i*10 {
				t.Errorf("request %d: got %d, %v", i, got, err)
			}
		}()
	}
	wg.Wait()
	if elapsed := time.Since(began); elapsed > 2*time.Second {
		t.Errorf("a full batch took %v: it waited for the linger", elapsed)
	}
	if sizes, _ := log.runs(); len(sizes) != 1 || sizes[0] != 4 {
		t.Errorf("run sizes %v, want [4]", sizes)
	}
}

// TestCancelDuringLinger cancels a lingering leader: it gets the
// context's error and the requests that joined it run at once without
// it. A joiner cancelled during the linger is left out likewise.
func TestCancelDuringLinger(t *testing.T) {
	t.Run("leader", func(t *testing.T) {
		var log runLog
		g := New(10, log.run, Linger(10*time.Second))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		began := time.Now()
		leader := make(chan error, 1)
		go func() {
			_, err := g.Do(ctx, "k", 1)
			leader <- err
		}()
		waitPending(t, g, "k", 1)
		joiners := make(chan error, 2)
		for _, r := range []int{2, 3} {
			go func() {
				got, err := g.Do(context.Background(), "k", r)
				if err == nil && got != r*10 {
					err = fmt.Errorf("request %d got %d", r, got)
				}
				joiners <- err
			}()
		}
		waitPending(t, g, "k", 3)
		cancel()
		if err := <-leader; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled leader: got %v, want context.Canceled", err)
		}
		for range 2 {
			if err := <-joiners; err != nil {
				t.Error(err)
			}
		}
		if elapsed := time.Since(began); elapsed > 5*time.Second {
			t.Errorf("took %v: the batch waited out the linger after its leader was cancelled", elapsed)
		}
		if _, reqs := log.runs(); len(reqs) != 1 || len(reqs[0]) != 2 {
			t.Errorf("runs %v, want one run of the two joiners", reqs)
		}
	})
	t.Run("joiner", func(t *testing.T) {
		var log runLog
		g := New(3, log.run, Linger(10*time.Second))
		results := make(chan error, 2)
		ask := func(r int) {
			got, err := g.Do(context.Background(), "k", r)
			if err == nil && got != r*10 {
				err = fmt.Errorf("request %d got %d", r, got)
			}
			results <- err
		}
		go ask(1)
		waitPending(t, g, "k", 1)
		ctx, cancel := context.WithCancel(context.Background())
		joiner := make(chan error, 1)
		go func() {
			_, err := g.Do(ctx, "k", 2)
			joiner <- err
		}()
		waitPending(t, g, "k", 2)
		cancel()
		go ask(3) // fills the batch
		if err := <-joiner; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled joiner: got %v, want context.Canceled", err)
		}
		for range 2 {
			if err := <-results; err != nil {
				t.Error(err)
			}
		}
		if _, reqs := log.runs(); len(reqs) != 1 || len(reqs[0]) != 2 || reqs[0][0] != 1 || reqs[0][1] != 3 {
			t.Errorf("runs %v, want [[1 3]]", reqs)
		}
	})
}

// TestNearDeadlineDoesNotLinger checks that a leader whose deadline comes
// within the linger runs at once rather than lingering past its own
// deadline and being left out of its batch.
func TestNearDeadlineDoesNotLinger(t *testing.T) {
	var log runLog
	g := New(10, log.run, Linger(10*time.Second))
	began := time.Now()
	got, err := g.DoBy(context.Background(), time.Now().Add(time.Second), "k", 4)
	if err != nil || got != 40 {
		t.Errorf("request with a deadline within the linger: got %d, %v", got, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	got, err = g.Do(ctx, "k", 5)
	if err != nil || got != 50 {
		t.Errorf("request with a context deadline within the linger: got %d, %v", got, err)
	}
	if elapsed := time.Since(began); elapsed > 900*time.Millisecond {
		t.Errorf("took %v: a leader lingered towards its deadline", elapsed)
	}
}

// BenchmarkDoLinger measures an uncontended request that waits out a
// (minimal) linger: the cost of the timer path, which reuses the
// waiter's timer.
func BenchmarkDoLinger(b *testing.B) {
	g := New(10, func(ctx context.Context, key string, reqs []int) ([]int, error) {
		return reqs, nil
	}, Linger(time.Nanosecond))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Do(ctx, "k", 1); err != nil {
			b.Fatal(err)
		}
	}
}
