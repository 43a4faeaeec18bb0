package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestRequestsArrivingDuringARunGoTogether holds the first run until more
// requests queue behind it, then checks that they went in one run, each
// got its own result, and the batch bound was kept.
func TestRequestsArrivingDuringARunGoTogether(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var mu sync.Mutex
	var sizes []int
	g := New(3, func(ctx context.Context, key string, reqs []int) ([]int, error) {
		mu.Lock()
		sizes = append(sizes, len(reqs))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			started <- struct{}{}
			<-release
		}
		out := make([]int, len(reqs))
		for i, r := range reqs {
			out[i] = r * 10
		}
		return out, nil
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make([]int, 6)
	wg.Add(1)
	go func() {
		defer wg.Done()
		results[0], _ = g.Do(ctx, "k", 0)
	}()
	<-started
	for i := 1; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = g.Do(ctx, "k", i)
		}()
	}
	// Wait until all five are queued behind the held run.
	for {
		g.mu.Lock()
		n := len(g.queues["k"].pending)
		g.mu.Unlock()
		if n == 5 {
			break
		}
	}
	close(release)
	wg.Wait()
	for i, r := range results {
		if r != i*10 {
			t.Errorf("request %d got %d, want %d", i, r, i*10)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 3 || sizes[0] != 1 || sizes[1] != 3 || sizes[2] != 2 {
		t.Errorf("batch sizes %v, want [1 3 2]", sizes)
	}
	if len(g.queues) != 0 {
		t.Errorf("%d queues left after the last run", len(g.queues))
	}
}

func TestErrorsAndCancelledRequests(t *testing.T) {
	boom := errors.New("boom")
	g := New(10, func(ctx context.Context, key string, reqs []int) ([]int, error) {
		if key == "bad" {
			return nil, boom
		}
		return make([]int, len(reqs)+1), nil // one too many
	})
	if _, err := g.Do(context.Background(), "bad", 1); !errors.Is(err, boom) {
		t.Errorf("whole-batch error: got %v", err)
	}
	if _, err := g.Do(context.Background(), "short", 1); err == nil {
		t.Error("a run returning the wrong number of results was not an error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	g2 := New(10, func(ctx context.Context, key string, reqs []int) ([]int, error) {
		ran = true
		return reqs, nil
	})
	if _, err := g2.Do(ctx, "k", 1); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: got %v", err)
	}
	if ran {
		t.Error("a batch of only cancelled requests ran")
	}
}

// TestManyConcurrentRequests checks under -race that every request gets
// its own answer whatever the interleaving, with and without a linger
// (batches filling, lingering out and queueing behind runs), over rounds
// that reuse the pooled waiters: a wake-up left in a waiter's channel
// would hand a later request a wrong answer or a second leader.
func TestManyConcurrentRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{{"no linger", nil}, {"linger", []Option{Linger(time.Millisecond)}}} {
		t.Run(tc.name, func(t *testing.T) {
			g := New(7, func(ctx context.Context, key int, reqs []int) ([]int, error) {
				out := make([]int, len(reqs))
				for i, r := range reqs {
					out[i] = r + key
				}
				return out, nil
			}, tc.opts...)
			for round := range 3 {
				var wg sync.WaitGroup
				errs := make(chan string, 1000)
				for i := range 1000 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						key := i % 3
						got, err := g.Do(context.Background(), key, i)
						if err != nil || got != i+key {
							errs <- fmt.Sprintf("round %d request %d: got %d, %v", round, i, got, err)
						}
					}()
				}
				wg.Wait()
				close(errs)
				for e := range errs {
					t.Fatal(e)
				}
			}
			if n := len(g.queues); n != 0 {
				t.Errorf("%d queues left after the last run", n)
			}
		})
	}
}
