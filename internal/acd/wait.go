package acd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"redial/internal/media"
	"redial/internal/store"
)

// Caller is a call waiting in a queue, as the call package hands it over.
type Caller struct {
	Queue   string
	CallRef string
	// Media is the caller's leg: music on hold, announcements and the exit
	// key go through it.
	Media *media.Session
	// Gone is closed when the caller hangs up.
	Gone <-chan struct{}
	Log  *slog.Logger
}

// Ringer rings agents for a caller, as the call package does: every
// binding of every ext at once, the first to answer wins and the others
// get CANCEL. It returns the ext that answered ("" none) after at most
// timeout, which of exts were rung at all (an agent not reached was not
// rung), and which losers are still being ended when it returns (a CANCEL
// crossing their answer): it calls ended with each of those once its
// phone is free, and not after the bridge it returned for has ended.
type Ringer func(ctx context.Context, exts []string, timeout time.Duration, ended func(ext string)) (answered string, rung, pending []string)

// Outcome is how a caller's wait ended.
type Outcome int

// Outcomes of Wait.
const (
	// Connected: an agent answered (Result.Ext); the caller bridges to it
	// and calls Ended when the call is over.
	Connected Outcome = iota
	// Abandoned: the caller hung up waiting.
	Abandoned
	// Overflow: max_wait_s passed, the queue was full or nobody could
	// answer, or the caller pressed the exit key; Result.Overflow says
	// where to go.
	Overflow
	// Refused: as Overflow, with no overflow configured: the call ends.
	Refused
	// Failed: the queue is missing or malformed, or Redis failed.
	Failed
)

// Result is how a caller's wait ended.
type Result struct {
	Outcome Outcome
	Ext     string
	// Hold is how long the caller was in the queue.
	Hold     time.Duration
	Overflow *store.QueueOverflow
	Reason   string
}

// waiter is one caller of this node waiting in a queue.
type waiter struct {
	ref    string
	joined time.Time
	// offers receives the agents the dispatcher offered the caller to.
	offers chan []string
	// busy is true while the caller rings agents (guarded by line.mu).
	busy  bool
	tried map[string]bool
}

// line is this node's callers of one queue, first in line first, and the
// dispatcher that makes their offers.
type line struct {
	name string
	mu   sync.Mutex
	ws   []*waiter
	kick chan struct{}
}

// poke wakes the line's dispatcher; call it with Service.mu held (the
// line's kick is closed under it when the line empties).
func (l *line) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

func (s *Service) wake(queue string) {
	if queue == "" {
		s.wakeAll()
		return
	}
	// Under s.mu: removeWaiter closes a line's kick under it too.
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.lines[queue]; l != nil {
		l.poke()
	}
}

func (s *Service) wakeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		l.poke()
	}
}

// addWaiter registers w in its queue's local line, starting the line's
// dispatcher when it is the first.
func (s *Service) addWaiter(queue string, w *waiter) (*line, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.runDone:
		return nil, errors.New("acd: stopped")
	default:
	}
	l := s.lines[queue]
	if l == nil {
		l = &line{name: queue, kick: make(chan struct{}, 1)}
		s.lines[queue] = l
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.dispatch(l)
		}()
	}
	l.mu.Lock()
	l.ws = append(l.ws, w)
	sort.SliceStable(l.ws, func(i, j int) bool { return l.ws[i].joined.Before(l.ws[j].joined) })
	l.mu.Unlock()
	l.poke()
	s.mWaiting.WithLabelValues(queue).Inc()
	return l, nil
}

// removeWaiter takes w off its line; an offer made meanwhile is returned
// so that its agents can be released.
func (s *Service) removeWaiter(l *line, w *waiter) []string {
	s.mu.Lock()
	l.mu.Lock()
	for i, x := range l.ws {
		if x == w {
			l.ws = append(l.ws[:i], l.ws[i+1:]...)
			break
		}
	}
	empty := len(l.ws) == 0
	if empty && s.lines[l.name] == l {
		delete(s.lines, l.name)
		close(l.kick) // ends the dispatcher
	}
	l.mu.Unlock()
	s.mu.Unlock()
	s.mWaiting.WithLabelValues(l.name).Dec()
	select {
	case agents := <-w.offers:
		return agents
	default:
		return nil
	}
}

// dispatch makes the offers of one queue's local callers: on every notice
// (and at least every Poll) it tries them first in line first, and stops
// at the first that the free agents do not reach, since those behind it
// are further back in the cluster-wide line.
func (s *Service) dispatch(l *line) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-l.kick:
			if !ok {
				return
			}
		case <-timer.C:
		case <-s.runDone:
			return
		}
		next := s.dispatchOnce(l)
		d := s.cfg.Poll
		if !next.IsZero() {
			if w := next.Sub(s.now()); w < d {
				d = max(w, 10*time.Millisecond)
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(d)
	}
}

// dispatchOnce runs one pass over l and returns the earliest end of a
// candidate's wrap-up seen (zero if none).
func (s *Service) dispatchOnce(l *line) time.Time {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var next time.Time
	q, ok, err := s.Queue(ctx, l.name)
	if err != nil || !ok {
		return next // each waiter finds out on its own and leaves
	}
	l.mu.Lock()
	ws := make([]*waiter, 0, len(l.ws))
	for _, w := range l.ws {
		if !w.busy && len(w.offers) == 0 {
			ws = append(ws, w)
		}
	}
	l.mu.Unlock()
	if len(ws) == 0 {
		return next
	}
	order, err := s.candidates(ctx, q)
	if err != nil {
		s.log.Debug("acd: agents not read; trying again", "queue", q.Name, "error", err)
		return next
	}
	for _, w := range ws {
		cands := untried(order, w)
		res, err := s.deps.Store.Offer(ctx, q.Name, w.ref, cands, q.Strategy == store.StrategyRingAll,
			q.Strategy == store.StrategyRoundRobin, s.now())
		if err != nil {
			s.log.Warn("acd: offer failed; trying again", "queue", q.Name, "call_ref", w.ref, "error", err)
			return next
		}
		if !res.NextFree.IsZero() && (next.IsZero() || res.NextFree.Before(next)) {
			next = res.NextFree
		}
		if res.Gone {
			continue
		}
		if len(res.Agents) == 0 {
			if res.Free <= res.Ahead {
				break
			}
			continue
		}
		l.mu.Lock()
		w.busy = true
		l.mu.Unlock()
		w.offers <- res.Agents // buffered, and empty: checked above
		if q.Strategy == store.StrategyRingAll {
			break // the others are not first in line
		}
		// The agents just offered are not free any more; the others keep
		// their order (the offer script checks freshness itself).
		order = slices.DeleteFunc(order, func(c store.Candidate) bool { return slices.Contains(res.Agents, c.Ext) })
	}
	return next
}

// untried is order without the agents w already rang in this wait; once
// it has rung them all it starts again.
func untried(order []store.Candidate, w *waiter) []store.Candidate {
	out := make([]store.Candidate, 0, len(order))
	for _, c := range order {
		if !w.tried[c.Ext] {
			out = append(out, c)
		}
	}
	if len(out) == 0 && len(order) > 0 {
		clear(w.tried)
		return order
	}
	return out
}

// Wait puts c in its queue and waits until an agent answers (ringing them
// with ring), the caller hangs up, or the queue sends it to its overflow.
// A Connected result must be followed by Ended when the call is over.
func (s *Service) Wait(ctx context.Context, c Caller, ring Ringer) Result {
	start := s.now()
	log := c.Log
	if log == nil {
		log = s.log.With("call_ref", c.CallRef)
	}
	log = log.With("queue", c.Queue)
	q, ok, err := s.Queue(ctx, c.Queue)
	switch {
	case err != nil:
		return s.finish(c.Queue, Result{Outcome: Failed, Reason: fmt.Sprintf("queue %q in %s: %v", c.Queue, s.deps.Store.QueuesKey(), err)})
	case !ok:
		return s.finish(c.Queue, Result{Outcome: Failed, Reason: fmt.Sprintf("queue %q not in %s", c.Queue, s.deps.Store.QueuesKey())})
	}
	if err := s.waitLedger(ctx); err != nil {
		return s.finish(q.Name, Result{Outcome: Failed, Reason: err.Error()})
	}
	if !q.JoinEmpty {
		if n, err := s.canAnswer(ctx, q); err == nil && n == 0 {
			return s.finish(q.Name, s.overflow(q, "nobody can answer"))
		}
	}
	if _, err := s.deps.Store.JoinQueue(ctx, q.Name, c.CallRef, q.MaxLen, start); err != nil {
		if errors.Is(err, store.ErrQueueFull) {
			return s.finish(q.Name, s.overflow(q, "queue full"))
		}
		return s.finish(q.Name, Result{Outcome: Failed, Reason: err.Error()})
	}
	log.Info("acd: caller joined the queue")
	w := &waiter{ref: c.CallRef, joined: start, offers: make(chan []string, 1), tried: map[string]bool{}}
	l, err := s.addWaiter(q.Name, w)
	if err != nil {
		s.leave(ctx, q.Name, c.CallRef, "", 0)
		return s.finish(q.Name, Result{Outcome: Failed, Reason: err.Error()})
	}
	hold := newHolder(s, q, c, log)
	hold.start(ctx)
	res := s.waitLoop(ctx, q, c, ring, w, l, hold, log, start)
	hold.stop()
	if leftover := s.removeWaiter(l, w); len(leftover) > 0 {
		s.releaseAll(ctx, c.CallRef, leftover)
	}
	res.Hold = s.now().Sub(start)
	switch res.Outcome {
	case Abandoned:
		s.leave(ctx, q.Name, c.CallRef, store.OutcomeAbandoned, res.Hold)
	case Overflow, Refused:
		s.leave(ctx, q.Name, c.CallRef, store.OutcomeOverflow, res.Hold)
	case Failed:
		s.leave(ctx, q.Name, c.CallRef, "", res.Hold)
	}
	log.Info("acd: caller left the queue", "outcome", res.Outcome.String(), "ext", res.Ext, "hold", res.Hold.Round(time.Millisecond), "reason", res.Reason)
	return s.finish(q.Name, res)
}

func (s *Service) waitLoop(ctx context.Context, q store.Queue, c Caller, ring Ringer, w *waiter, l *line, hold *holder, log *slog.Logger, start time.Time) Result {
	var maxWait <-chan time.Time
	if q.MaxWait > 0 {
		t := time.NewTimer(q.MaxWait)
		defer t.Stop()
		maxWait = t.C
	}
	check := time.NewTicker(max(s.cfg.Poll, time.Second))
	defer check.Stop()
	for {
		select {
		case <-c.Gone:
			return Result{Outcome: Abandoned, Reason: "caller hung up in the queue"}
		case <-ctx.Done():
			return Result{Outcome: Abandoned, Reason: "call ended: " + context.Cause(ctx).Error()}
		case <-maxWait:
			return s.overflow(q, fmt.Sprintf("max_wait_s %d passed", int(q.MaxWait/time.Second)))
		case <-hold.exit:
			return s.overflow(q, "caller pressed the exit key "+q.ExitKey)
		case <-check.C:
			// A queue whose agents all left does not keep its callers.
			if cur, ok, err := s.Queue(ctx, q.Name); err == nil && ok {
				q.JoinEmpty, q.Overflow = cur.JoinEmpty, cur.Overflow
				if !q.JoinEmpty {
					if n, err := s.canAnswer(ctx, cur); err == nil && n == 0 {
						return s.overflow(q, "nobody can answer")
					}
				}
			}
		case agents := <-w.offers:
			answered, rung := s.ringAgents(ctx, q, c, ring, agents, start, log)
			if answered != "" {
				return Result{Outcome: Connected, Ext: answered}
			}
			for _, ext := range rung {
				w.tried[ext] = true
			}
			select {
			case <-c.Gone:
				return Result{Outcome: Abandoned, Reason: "caller hung up while agents rang"}
			default:
			}
			if ok, err := s.deps.Store.Unoffer(ctx, q.Name, c.CallRef); err != nil || !ok {
				return Result{Outcome: Failed, Reason: fmt.Sprintf("caller not put back in line (gone: %v, error: %v)", !ok, err)}
			}
			l.mu.Lock()
			w.busy = false
			l.mu.Unlock()
			s.Notify(ctx, q.Name)
		}
	}
}

// ringAgents rings the agents offered and settles their states: the one
// who answered goes on_call, those rung without answer count a miss (and
// may be paused), the others are released.
func (s *Service) ringAgents(ctx context.Context, q store.Queue, c Caller, ring Ringer, agents []string, joined time.Time, log *slog.Logger) (answered string, rung []string) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.Gone:
			cancel()
		case <-rctx.Done():
		}
	}()
	ended := func(ext string) {
		// A loser's phone is free only now: released before, it could be
		// offered another caller while still in this call.
		if err := s.deps.Store.ReleaseAgent(context.WithoutCancel(ctx), ext, c.CallRef, s.now()); err != nil && !errors.Is(err, store.ErrAgentNotHeld) {
			log.Warn("acd: agent not released", "ext", ext, "error", err)
		}
		s.mOffers.WithLabelValues("released").Inc()
		s.Notify(context.WithoutCancel(ctx), "")
	}
	answered, rung, pending := ring(rctx, agents, q.RingTimeout, ended)
	now := s.now()
	sctx := context.WithoutCancel(ctx)
	gone := false
	select {
	case <-c.Gone:
		gone = true
	default:
	}
	for _, ext := range agents {
		if slices.Contains(pending, ext) {
			continue // released by ended
		}
		wasRung := false
		for _, r := range rung {
			wasRung = wasRung || r == ext
		}
		switch {
		case ext == answered:
			if err := s.deps.Store.CallAnswered(sctx, ext, c.CallRef, now); err != nil {
				log.Warn("acd: agent answered but its state was taken meanwhile", "ext", ext, "error", err)
			}
			s.mOffers.WithLabelValues("answered").Inc()
		case wasRung && answered == "" && !gone:
			paused, err := s.deps.Store.CallNotAnswered(sctx, ext, c.CallRef, q.MaxNoAnswer, now)
			if err != nil {
				log.Warn("acd: unanswered agent's state not settled", "ext", ext, "error", err)
			} else if paused {
				log.Warn("acd: agent paused after unanswered offers", "ext", ext, "max_no_answer", q.MaxNoAnswer)
			}
			s.mOffers.WithLabelValues("no_answer").Inc()
		default:
			if err := s.deps.Store.ReleaseAgent(sctx, ext, c.CallRef, now); err != nil && !errors.Is(err, store.ErrAgentNotHeld) {
				log.Warn("acd: agent not released", "ext", ext, "error", err)
			}
			s.mOffers.WithLabelValues("released").Inc()
		}
	}
	if answered == "" {
		s.Notify(sctx, "")
	} else {
		if err := s.deps.Store.CallerConnected(sctx, q.Name, c.CallRef, answered, now.Sub(joined), now); err != nil {
			log.Warn("acd: connection not recorded", "ext", answered, "error", err)
		}
	}
	return answered, rung
}

// releaseAll frees agents offered to a caller that left before it rang
// them.
func (s *Service) releaseAll(ctx context.Context, ref string, agents []string) {
	for _, ext := range agents {
		if err := s.deps.Store.ReleaseAgent(context.WithoutCancel(ctx), ext, ref, s.now()); err != nil && !errors.Is(err, store.ErrAgentNotHeld) {
			s.log.Warn("acd: agent not released", "call_ref", ref, "ext", ext, "error", err)
		}
	}
	s.Notify(ctx, "")
}

// Ended settles a connected call that is over: the agent goes to wrap-up
// (then available) and the caller leaves the line's ledger.
func (s *Service) Ended(ctx context.Context, queue, ref, ext string) {
	ctx = context.WithoutCancel(ctx)
	wrapup := store.DefaultQueueWrapup
	if q, ok, err := s.Queue(ctx, queue); err == nil && ok {
		wrapup = q.Wrapup
	}
	if err := s.deps.Store.CallEnded(ctx, ext, ref, wrapup, s.now()); err != nil {
		s.log.Warn("acd: agent's state not settled after the call", "call_ref", ref, "ext", ext, "error", err)
	}
	s.leave(ctx, queue, ref, "", 0)
}

func (s *Service) leave(ctx context.Context, queue, ref, outcome string, hold time.Duration) {
	if err := s.deps.Store.LeaveQueue(context.WithoutCancel(ctx), queue, ref, outcome, hold, s.now()); err != nil {
		s.log.Warn("acd: caller not taken off the line; a recovery will", "call_ref", ref, "queue", queue, "error", err)
	}
	s.Notify(ctx, queue)
}

// overflow is where a caller goes when it cannot (or may no longer) wait.
func (s *Service) overflow(q store.Queue, reason string) Result {
	if q.Overflow == nil {
		return Result{Outcome: Refused, Reason: reason}
	}
	return Result{Outcome: Overflow, Overflow: q.Overflow, Reason: reason}
}

func (s *Service) finish(queue string, r Result) Result {
	s.mOutcomes.WithLabelValues(queue, r.Outcome.String()).Inc()
	return r
}

// String names an outcome in logs and metrics.
func (o Outcome) String() string {
	switch o {
	case Connected:
		return "connected"
	case Abandoned:
		return "abandoned"
	case Overflow:
		return "overflow"
	case Refused:
		return "refused"
	}
	return "failed"
}
