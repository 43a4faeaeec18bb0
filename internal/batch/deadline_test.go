package batch

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestDeadlineLeavesOutALateRequest queues requests behind a held run:
// the one whose deadline has passed when its run starts is left out with
// DeadlineExceeded, the other goes in the run.
func TestDeadlineLeavesOutALateRequest(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var runs [][]int
	g := New(10, func(ctx context.Context, key string, reqs []int) ([]int, error) {
		runs = append(runs, append([]int(nil), reqs...))
		if len(runs) == 1 {
			started <- struct{}{}
			<-release
		}
		return reqs, nil
	})
	ctx := context.Background()
	first := make(chan error, 1)
	go func() {
		_, err := g.DoBy(ctx, time.Now().Add(time.Hour), "k", 1)
		first <- err
	}()
	<-started
	late, onTime := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := g.DoBy(ctx, time.Now().Add(-time.Millisecond), "k", 2)
		late <- err
	}()
	go func() {
		got, err := g.DoBy(ctx, time.Time{}, "k", 3)
		if err == nil && got != 3 {
			err = errors.New("wrong answer")
		}
		onTime <- err
	}()
	for {
		g.mu.Lock()
		n := len(g.queues["k"].pending)
		g.mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("first request: %v", err)
	}
	if err := <-late; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("late request: got %v, want DeadlineExceeded", err)
	}
	if err := <-onTime; err != nil {
		t.Errorf("request without deadline: %v", err)
	}
	if len(runs) != 2 || len(runs[1]) != 1 || runs[1][0] != 3 {
		t.Errorf("runs %v, want [[1] [3]]", runs)
	}
}

// BenchmarkDo measures the cost of one uncontended request.
func BenchmarkDo(b *testing.B) {
	g := New(10, func(ctx context.Context, key string, reqs []int) ([]int, error) {
		return reqs, nil
	})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Do(ctx, "k", 1); err != nil {
			b.Fatal(err)
		}
	}
}
