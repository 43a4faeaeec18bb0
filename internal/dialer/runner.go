package dialer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"redial/internal/call"
	"redial/internal/dialplan"
	"redial/internal/lines"
	"redial/internal/logtext"
	"redial/internal/store"
)

// noLineBackoff is how long a task waits after finding no free line before
// claiming again (a call ending on this node wakes it sooner).
const noLineBackoff = 200 * time.Millisecond

// claimBatch bounds how many numbers one claim takes at once while the
// queue has numbers: one script moves them all to the processing list, so
// a busy task costs a fraction of a round trip per number instead of one
// BLMOVE each. It is small enough that a task whose config changes (a
// lower limit, a disable) overshoots by little.
const claimBatch = 50

// holderEvery is how often a task re-registers this node as a holder of its
// queue.
const holderEvery = 5 * time.Second

// runner runs one task on this node.
type runner struct {
	d    *Dialer
	name string
	task atomic.Pointer[Task]

	inflight atomic.Int64
	wake     chan struct{}
	stopOnce sync.Once
	stopped  chan struct{}
	calls    sync.WaitGroup

	dialed, answered, failed, invalid atomic.Int64

	// pace holds the task back while its queue has too few free agents.
	pace *pacer

	mu       sync.Mutex
	state    string
	reason   string
	nextOpen time.Time
	cps      cpsWindow // the task's cps pacing
}

func newRunner(d *Dialer, tk *Task) *runner {
	r := &runner{d: d, name: tk.Name, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	r.pace = newPacer(d.deps.Store, d.now, d.log.With("task", tk.Name))
	r.task.Store(tk)
	return r
}

// update swaps in a new config; a lower limit or a disable applies to the
// next claim, calls in progress finish.
func (r *runner) update(tk *Task) {
	old := r.task.Swap(tk)
	if old.Queue != tk.Queue {
		r.d.log.Info("dialer: task now uses another queue", "task", tk.Name, "from", old.Queue, "to", tk.Queue)
	}
	r.poke()
}

func (r *runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *runner) stop() { r.stopOnce.Do(func() { close(r.stopped) }) }

func (r *runner) setState(state, reason string, next time.Time) {
	r.mu.Lock()
	changed := r.state != state || r.reason != reason
	r.state, r.reason, r.nextOpen = state, reason, next
	r.mu.Unlock()
	if changed {
		r.d.log.Debug("dialer: task state", "task", r.name, "state", state, "reason", reason)
	}
}

// sleep waits for d, a poke, or the end.
func (r *runner) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.wake:
	case <-r.stopped:
		return false
	case <-ctx.Done():
		return false
	}
	return true
}

func (r *runner) run(ctx context.Context) {
	defer r.calls.Wait()
	tk := r.task.Load()
	led, unregister := r.adopt(ctx, tk)
	defer func() { unregister() }()
	if !store.QueueHashTagged(tk.Queue) && r.d.deps.Store.IsCluster() {
		r.d.log.Warn("dialer: on Redis Cluster a number_queue needs a {hash tag} so its processing lists share its slot", "task", r.name, "queue", tk.Queue)
	}
	var nextPromote time.Time
	lastHolder := r.d.now()
	for {
		select {
		case <-r.stopped:
			r.setState("stopped", "task removed or node stopping", time.Time{})
			return
		case <-ctx.Done():
			return
		default:
		}
		tk := r.task.Load()
		if tk.Queue != led.source || tk.RedialInterrupted != led.requeue {
			unregister()
			led, unregister = r.adopt(ctx, tk)
		}
		now := r.d.now()
		if now.Sub(lastHolder) > holderEvery {
			// Recovery drops a host that looked dead from the holders;
			// re-register so a wrongly buried node's claims stay visible.
			led.EnsureHolder(ctx)
			lastHolder = now
		}
		if !tk.Enable {
			r.setState("waiting", string(ReasonDisabled), time.Time{})
			r.sleep(ctx, time.Minute)
			continue
		}
		if open, why, next := tk.Window(now); !open {
			r.setState("waiting", string(why), next)
			wait := time.Minute
			if !next.IsZero() && next.Sub(now) < wait {
				wait = next.Sub(now)
			}
			r.sleep(ctx, wait)
			continue
		}
		if r.inflight.Load() >= int64(tk.Limit) {
			r.setState("waiting", "limit reached", time.Time{})
			r.sleep(ctx, time.Second)
			continue
		}
		ok, room := r.paced(ctx, tk)
		if !ok {
			r.sleep(ctx, paceEvery)
			continue
		}
		if tk.CPS > 0 {
			r.mu.Lock()
			wait := r.cps.wait(now, tk.CPS)
			r.mu.Unlock()
			if wait > 0 {
				r.sleep(ctx, wait)
				continue
			}
		}
		if !nextPromote.After(now) {
			// Delayed items (retries, callee windows) become claimable
			// when due.
			_, due, err := r.d.deps.Store.PromoteDue(ctx, led.Ledger, 100)
			nextPromote = now.Add(time.Second)
			if err == nil && !due.IsZero() && due.Before(nextPromote) {
				nextPromote = due
			}
		}
		// As many as the limit (and the agents, and cps) allow, without
		// waiting; when the queue is empty, wait for the next number.
		n := min(claimBatch, tk.Limit-int(r.inflight.Load()))
		if room >= 0 {
			n = min(n, room)
		}
		if tk.CPS > 0 {
			n = 1
		}
		batch, err := led.ClaimBatch(ctx, n)
		if err == nil && len(batch) == 0 {
			var raw string
			var ok bool
			raw, ok, err = led.ClaimBlocking(ctx, r.d.cfg.ClaimTimeout)
			if err == nil && !ok {
				r.d.outage.OK()
				r.setState("idle", "queue empty", time.Time{})
				continue
			}
			batch = []string{raw}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.d.outage.Fail("dialer: claiming numbers failed; retrying", err, "task", r.name, "queue", tk.Queue)
			r.setState("waiting", "redis unreachable: "+err.Error(), time.Time{})
			r.sleep(ctx, time.Second)
			continue
		}
		r.d.outage.OK()
		r.d.m.claimed.WithLabelValues(r.name).Add(float64(len(batch)))
		for _, raw := range batch {
			r.handle(ctx, tk, led.Ledger, raw)
		}
	}
}

// queueLedger is a task's ledger with what it was built from.
type queueLedger struct {
	*store.Ledger
	source  string
	requeue bool
}

// adopt builds the ledger of tk's queue, registers it with the recoverer
// and waits until this node's leftovers in it (a crash, kill -9) are
// settled: never-dialed ones back to the queue, maybe-dialed ones to
// <queue>:interrupted.
func (r *runner) adopt(ctx context.Context, tk *Task) (queueLedger, func()) {
	l := r.d.deps.Store.QueueLedger(tk.Queue, tk.RedialInterrupted)
	if err := l.EnsureHolder(ctx); err != nil {
		r.d.outage.Fail("dialer: registering as queue holder failed", err, "task", r.name, "queue", tk.Queue)
	}
	wait, unregister := r.d.deps.Recoverer.Register(l)
	if err := wait(ctx); err != nil && ctx.Err() == nil {
		r.d.log.Warn("dialer: settling this node's old claims failed", "task", r.name, "error", err)
	}
	return queueLedger{Ledger: l, source: tk.Queue, requeue: tk.RedialInterrupted}, unregister
}

// handle decides what to do with one claimed item; calls run in their own
// goroutine.
func (r *runner) handle(ctx context.Context, tk *Task, led *store.Ledger, raw string) {
	bg := context.WithoutCancel(ctx)
	it, err := ParseItem(raw)
	if err != nil {
		r.invalid.Add(1)
		r.d.m.invalid.WithLabelValues(r.name).Inc()
		reason := fmt.Sprintf("dialer: task %q: item in %s: %v", r.name, tk.Queue, err)
		r.d.log.Warn("dialer: malformed number moved aside", "task", r.name, "queue", tk.Queue, "error", err, "item", logtext.Truncate(raw, 200))
		if err := led.Invalid(bg, raw, reason); err != nil {
			r.d.log.Error("dialer: moving malformed item aside failed; it stays claimed until recovery", "task", r.name, "error", err)
		}
		return
	}
	if it.Location != nil {
		if open, why, next := tk.CalleeWindow(r.d.now(), it.Location); !open {
			if next.IsZero() {
				next = r.d.now().Add(24 * time.Hour)
			}
			r.d.log.Debug("dialer: callee outside their window; delayed", "task", r.name, "reason", why, "until", next)
			if err := led.Delay(bg, raw, raw, next); err != nil {
				r.d.log.Error("dialer: delaying item failed", "task", r.name, "error", err)
			}
			return
		}
	}
	if tk.CPS > 0 {
		r.mu.Lock()
		r.cps.record(r.d.now(), tk.CPS)
		r.mu.Unlock()
	}
	r.setState("dialing", "", time.Time{})
	r.inflight.Add(1)
	r.d.m.inflight.WithLabelValues(r.name).Inc()
	// The call counts against the queue's agents from now until it is
	// connected or ends.
	ref := call.NewRef()
	r.pace.track(ref)
	r.calls.Add(1)
	go func() {
		defer r.calls.Done()
		defer func() {
			r.pace.untrack(ref)
			r.inflight.Add(-1)
			r.d.m.inflight.WithLabelValues(r.name).Dec()
			r.poke()
		}()
		r.place(bg, tk, led, it, ref)
	}()
}

// giveBack returns a never-dialed claim to the queue and paces this call
// slot, so a missing line or slot does not spin (other slots keep going).
func (r *runner) giveBack(ctx context.Context, led *store.Ledger, raw string) {
	// Through the spool like an ack: a return lost to a Redis failover
	// would leave the claim on this live node, which nobody recovers.
	if err := r.d.deps.Settler.Settle(ctx, led.ReturnOp(raw, time.Time{})); err != nil && !errors.Is(err, store.ErrClaimGone) {
		r.d.log.Error("dialer: returning an undialed number failed; recovery will requeue it", "task", r.name, "error", err)
	}
	t := time.NewTimer(noLineBackoff)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.stopped:
	}
}

func (r *runner) place(ctx context.Context, tk *Task, led *store.Ledger, it Item, ref string) {
	vars := lines.MergeVariables(it.Variables, tk.Variables)
	// A disposition's callback_at puts the number back in this queue.
	vars[call.VarNumberQueue] = tk.Queue
	req := call.Request{
		Numbers: it.Numbers, LineGroups: tk.LineGroups, Variables: vars,
		Destination: dialplan.Destination{Extension: tk.Destination.Extension, Dialplan: tk.Destination.Dialplan, Context: tk.Destination.Context},
		ContactRef:  it.ContactRef, CampaignRef: tk.Name, ReturnOnNoLine: true, CallRef: ref,
		OnInvite: func() error { return led.Mark(ctx, it.Raw) },
	}
	if tk.GlobalLimit > 0 && r.d.deps.Lines != nil {
		slot, err := r.d.deps.Lines.AcquireSlot(ctx, "task:"+tk.Name, tk.GlobalLimit, it.Raw)
		if err != nil {
			r.setState("waiting", "global_limit reached", time.Time{})
			r.giveBack(ctx, led, it.Raw)
			return
		}
		defer slot.Release(ctx)
	}
	out, err := r.d.deps.Calls.Place(ctx, req)
	if err != nil || out.NotDialed {
		// Never dialed: back to the front of the queue.
		if out.NoLine {
			r.setState("waiting", "no free line", time.Time{})
		}
		if err != nil {
			r.d.log.Warn("dialer: call not placed", "task", r.name, "error", err)
		}
		r.giveBack(ctx, led, it.Raw)
		return
	}
	r.dialed.Add(int64(out.Invites))
	if out.Connected {
		r.answered.Add(1)
	} else {
		r.failed.Add(1)
	}
	// The CDRs are written (or spooled): finish the claim through the
	// same spool, so it is acknowledged even if Redis is away right now.
	op := led.AckOp(it.Raw)
	disp := string(out.Disposition)
	if rule, ok := tk.Retry[disp]; ok && !out.Connected && it.RetryCount[disp] < rule.Attempts {
		op = led.DelayOp(it.Raw, it.WithRetry(disp), r.d.now().Add(rule.Delay)).AfterMark()
	}
	if err := r.d.deps.Settler.Settle(ctx, op); errors.Is(err, store.ErrClaimGone) {
		r.d.log.Warn("dialer: claim was gone at ack (recovered by another node while this one looked dead?)", "task", r.name, "item", logtext.Truncate(it.Raw, 200))
	} else if err != nil {
		r.d.log.Error("dialer: finishing the claim failed; recovery will park it", "task", r.name, "error", err)
	}
}

func (r *runner) status(ctx context.Context) TaskStatus {
	tk := r.task.Load()
	r.mu.Lock()
	st := TaskStatus{Name: r.name, State: r.state, Reason: r.reason, Queue: tk.Queue, Limit: tk.Limit,
		Enable: tk.Enable, GlobalLimit: tk.GlobalLimit,
		InFlight: int(r.inflight.Load()), Dialed: r.dialed.Load(), Answered: r.answered.Load(),
		Failed: r.failed.Load(), Invalid: r.invalid.Load()}
	if !r.nextOpen.IsZero() {
		n := r.nextOpen
		st.NextOpen = &n
	}
	r.mu.Unlock()
	if qs, err := r.d.deps.Store.QueueStats(ctx, tk.Queue); err == nil {
		st.QueueLength, st.Retrying = qs.Queue, qs.Retry
		st.Interrupted, st.ParkedInvalid = qs.Interrupted, qs.Invalid
	}
	return st
}

// cpsWindow paces a task's new calls: at most n calls in any window of
// n/cps seconds, n = ceil(cps) (for a whole cps, at most cps calls in any
// second). A call waits only for the one n calls before it, so the time
// each claim takes does not add to every gap: counted from the previous
// call, cps 1000 dialed about 580 calls/s.
type cpsWindow struct {
	times []time.Time // the last n calls' times; times[next] is the oldest once full
	next  int
}

func cpsSize(cps float64) (int, time.Duration) {
	n := int(math.Ceil(cps))
	return n, time.Duration(float64(n) / cps * float64(time.Second))
}

// wait is how long until a call may go at now.
func (w *cpsWindow) wait(now time.Time, cps float64) time.Duration {
	n, span := cpsSize(cps)
	if cap(w.times) != n || len(w.times) < n {
		return 0
	}
	return w.times[w.next].Add(span).Sub(now)
}

// record notes a call placed at now.
func (w *cpsWindow) record(now time.Time, cps float64) {
	n, _ := cpsSize(cps)
	if cap(w.times) != n {
		// First call, or the task's cps changed: start over.
		w.times, w.next = make([]time.Time, 0, n), 0
	}
	if len(w.times) < n {
		w.times = append(w.times, now)
		return
	}
	w.times[w.next] = now
	w.next = (w.next + 1) % n
}
