// Package batch combines concurrent requests for the same key into one
// round trip (group commit). The node's hot Redis paths (line leases, claim
// marks, acknowledgements) each cost a script run per call; thousands of
// calls a second arrive in bursts, and one script run that handles a whole
// burst costs Redis one EVALSHA and one multi-member command instead of
// one of each per call.
//
// By default nothing waits for a batch to fill: a request that finds no
// run in flight for its key runs at once, on its own goroutine; requests
// arriving while a run is in flight queue up and go together in the next
// run, led by the first of them. Under light load every request is a batch
// of one, with no added latency; under heavy load batches grow with the
// round trip time. No goroutine is started, so there is nothing to stop.
//
// A Group built with the Linger option trades latency for round trips: a
// request that finds no run in flight waits up to the linger for others to
// join before it runs the batch, or less when the batch fills or its own
// context or deadline ends first. At a few thousand requests a second a
// linger of a millisecond turns a round trip per request into one per
// handful, and each round trip costs the node and Redis a syscall and a
// wake-up (issue 14). Use it only off the latency path, for requests
// nobody is waiting on to make progress (releases and records at the end
// of a call); never for a step of call setup.
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
	max    int
	linger time.Duration
	run    RunFunc[K, Req, Res]

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
	// lingering is set while the leader, pending[0], waits for the batch
	// to fill. The request that fills the batch clears it and sends the
	// leader its one wake-up; a leader that stops waiting for another
	// reason clears it itself, so that no wake-up comes.
	lingering bool
}

type waiter[Req, Res any] struct {
	ctx context.Context
	// deadline, when set, ends the request like a context deadline would.
	deadline time.Time
	req      Req
	res      Res
	err      error
	// wake receives true when res and err are set, false when this
	// request is to lead the next run or, while it lingers as a leader,
	// when its batch has filled.
	wake chan bool
	// timer bounds a leader's linger. It stays with the waiter through
	// the pool, so a lingering batch costs no timer of its own; it is
	// stopped or expired whenever the waiter is idle.
	timer *time.Timer
}

// Option configures a Group.
type Option func(*options)

type options struct {
	linger time.Duration
}

// Linger makes a request that finds no run in flight for its key wait up
// to d for others to join its batch before running it (none when d <= 0).
// It stops waiting as soon as the batch is full or its context ends, and
// does not wait at all when its deadline (DoBy's or its context's) would
// pass first. Requests that queued behind a run go as soon as it ends, as
// without a linger: they have waited already. See the package
// documentation for when to use it.
func Linger(d time.Duration) Option {
	return func(o *options) { o.linger = d }
}

// New returns a Group that runs at most limit requests per batch (limit
// < 1 means 1).
func New[K comparable, Req, Res any](limit int, run RunFunc[K, Req, Res], opts ...Option) *Group[K, Req, Res] {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return &Group[K, Req, Res]{max: max(1, limit), linger: max(0, o.linger), run: run, queues: map[K]*queue[Req, Res]{}}
}

// Do runs req for key, combined with whatever other requests for key are
// waiting, and returns its result. A request whose context ends before its
// batch starts is left out and gets the context's error when the batch
// starts (after the run in flight, or the linger); once its batch has
// started, Do waits for the result.
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
	linger := false
	if !running {
		// A key has a queue exactly while a batch for it lingers or a run
		// for it is in flight.
		q, g.spare = g.spare, nil
		if q == nil {
			q = &queue[Req, Res]{}
		}
		g.queues[key] = q
		// A batch of one is full already.
		linger = g.linger > 0 && g.max > 1
		q.lingering = linger
	}
	q.pending = append(q.pending, w)
	if q.lingering && len(q.pending) == g.max {
		// Under the lock, so the leader learns from the flag whether this
		// wake-up is on its way; the channel is empty (a lingering leader
		// has had no other), so the send does not block.
		q.lingering = false
		q.pending[0].wake <- false
	}
	g.mu.Unlock()
	if linger {
		g.wait(ctx, w, q)
	}
	if !running || !<-w.wake {
		g.lead(ctx, key, q)
	}
	res, err := w.res, w.err
	// Every wake-up has been received (a leader gets none but the one
	// saying its lingering batch filled, which wait receives), so the
	// channel is empty for the waiter's next use, and the timer is
	// stopped or expired.
	var zero waiter[Req, Res]
	zero.wake, zero.timer = w.wake, w.timer
	*w = zero
	g.waiters.Put(w)
	return res, err
}

// wait holds w, the leader of q's lingering batch, until the linger has
// passed, the batch has filled or w's context has ended. A leader whose
// deadline would pass first does not wait: it would only be left out of
// its own batch.
func (g *Group[K, Req, Res]) wait(ctx context.Context, w *waiter[Req, Res], q *queue[Req, Res]) {
	d := g.linger
	deadline := w.deadline
	if cd, ok := ctx.Deadline(); ok && (deadline.IsZero() || cd.Before(deadline)) {
		deadline = cd
	}
	if !deadline.IsZero() && time.Until(deadline) <= d {
		d = 0
	}
	if d > 0 {
		if w.timer == nil {
			w.timer = time.NewTimer(d)
		} else {
			w.timer.Reset(d)
		}
		select {
		case <-w.wake:
			// The batch filled; the flag is cleared already.
			w.timer.Stop()
			return
		case <-w.timer.C:
		case <-ctx.Done():
			w.timer.Stop()
		}
	}
	g.mu.Lock()
	filled := !q.lingering
	q.lingering = false
	g.mu.Unlock()
	if filled {
		// The batch filled as the wait ended: its wake-up was sent under
		// the lock, so it is in the channel. Received, so the channel is
		// empty for the waiter's next use.
		<-w.wake
	}
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
