// Package batch combines concurrent requests for the same key into one
// round trip (group commit). The node's hot Redis paths (line leases, claim
// marks, acknowledgements) each cost a script run per call; thousands of
// calls a second arrive in bursts, and one script run that handles a whole
// burst costs Redis one EVALSHA and one multi-member command instead of
// one of each per call.
//
// Nothing waits for a batch to fill: a request that finds no run in flight
// for its key runs at once, on its own goroutine; requests arriving while
// a run is in flight queue up and go together in the next run, led by the
// first of them. Under light load every request is a batch of one, with no
// added latency; under heavy load batches grow with the round trip time.
// No goroutine is started, so there is nothing to stop.
package batch

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// RunFunc carries out one batch for key: one result per request, in
// order, or an error that fails the whole batch. It runs on the goroutine
// of the batch's first request, with that request's context stripped of
// its cancellation (the other requests are riding on the run): it must
// bound itself, as Redis calls do with their timeouts.
type RunFunc[K comparable, Req, Res any] func(ctx context.Context, key K, reqs []Req) ([]Res, error)

// Group combines requests per key. The zero value is not usable; build it
// with New.
type Group[K comparable, Req, Res any] struct {
	max int
	run RunFunc[K, Req, Res]

	// waiters recycles requests' waiters, each with its channel: thousands
	// of requests a second otherwise cost two objects each (issue 14).
	waiters sync.Pool

	mu     sync.Mutex
	queues map[K]*queue[Req, Res]
	// spare is a retired queue kept for the next key to start a run, with
	// its pending slice: a run per burst otherwise costs a queue and the
	// growth of its slice.
	spare *queue[Req, Res]
}

type queue[Req, Res any] struct {
	pending []*waiter[Req, Res]
}

type waiter[Req, Res any] struct {
	ctx context.Context
	// deadline, when set, ends the request like a context deadline would.
	deadline time.Time
	req      Req
	res      Res
	err      error
	// wake receives true when res and err are set, false when this
	// request is to lead the next run.
	wake chan bool
}

// New returns a Group that runs at most limit requests per batch (limit
// < 1 means 1).
func New[K comparable, Req, Res any](limit int, run RunFunc[K, Req, Res]) *Group[K, Req, Res] {
	return &Group[K, Req, Res]{max: max(1, limit), run: run, queues: map[K]*queue[Req, Res]{}}
}

// Do runs req for key, combined with whatever other requests for key are
// waiting, and returns its result. A request whose context ends before its
// batch starts is left out and gets the context's error; once its batch
// has started, Do waits for the result.
func (g *Group[K, Req, Res]) Do(ctx context.Context, key K, req Req) (Res, error) {
	return g.DoBy(ctx, time.Time{}, key, req)
}

// DoBy is Do for a request that must start by deadline (none when zero):
// one whose batch has not started by then is left out with
// context.DeadlineExceeded, as if ctx had that deadline. Only the start is
// bounded, as with Do, so a caller that would otherwise derive a context
// with a timeout per request saves its timer and context.
func (g *Group[K, Req, Res]) DoBy(ctx context.Context, deadline time.Time, key K, req Req) (Res, error) {
	w, _ := g.waiters.Get().(*waiter[Req, Res])
	if w == nil {
		w = &waiter[Req, Res]{wake: make(chan bool, 1)}
	}
	w.ctx, w.deadline, w.req = ctx, deadline, req
	g.mu.Lock()
	q, running := g.queues[key]
	if !running {
		// A key has a queue exactly while a run for it is in flight.
		q, g.spare = g.spare, nil
		if q == nil {
			q = &queue[Req, Res]{}
		}
		g.queues[key] = q
	}
	q.pending = append(q.pending, w)
	g.mu.Unlock()
	if !running || !<-w.wake {
		g.lead(ctx, key, q)
	}
	res, err := w.res, w.err
	// Every wake-up has been received (a leader gets none), so the
	// channel is empty for the waiter's next use.
	var zero waiter[Req, Res]
	zero.wake = w.wake
	*w = zero
	g.waiters.Put(w)
	return res, err
}

// expired returns why w is to be left out of its batch, if it is.
func (w *waiter[Req, Res]) expired() error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if !w.deadline.IsZero() && !time.Now().Before(w.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// lead runs one batch from the front of q (whose first waiter is the
// caller), then hands the lead to the next waiting request, or retires the
// queue when none waits.
func (g *Group[K, Req, Res]) lead(ctx context.Context, key K, q *queue[Req, Res]) {
	g.mu.Lock()
	n := min(len(q.pending), g.max)
	batch := make([]*waiter[Req, Res], n)
	copy(batch, q.pending)
	// Moved down rather than resliced, so the queue keeps its capacity
	// for the runs after.
	m := copy(q.pending, q.pending[n:])
	clear(q.pending[m:])
	q.pending = q.pending[:m]
	g.mu.Unlock()

	leader := batch[0]
	live := batch[:0]
	for _, w := range batch {
		if err := w.expired(); err != nil {
			w.err = err
			if w != leader {
				w.wake <- true
			}
			continue
		}
		live = append(live, w)
	}
	if len(live) > 0 {
		reqs := make([]Req, len(live))
		for i, w := range live {
			reqs[i] = w.req
		}
		res, err := g.run(withoutCancel(ctx), key, reqs)
		if err == nil && len(res) != len(reqs) {
			err = fmt.Errorf("batch: run returned %d results for %d requests", len(res), len(reqs))
		}
		for i, w := range live {
			if err != nil {
				w.err = err
			} else {
				w.res = res[i]
			}
			if w != leader {
				w.wake <- true
			}
		}
	}

	g.mu.Lock()
	if len(q.pending) == 0 {
		delete(g.queues, key)
		g.spare = q
		g.mu.Unlock()
		return
	}
	next := q.pending[0]
	g.mu.Unlock()
	next.wake <- false
}

// withoutCancel is context.WithoutCancel, but returns a context that
// cannot be cancelled (ctx.Done() nil) as it is rather than wrapping it:
// the callers often strip the cancellation already.
func withoutCancel(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}
