package dialer

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"redial/internal/call"
	"redial/internal/dialplan"
	"redial/internal/store"
	"redial/internal/validate"
)

// Progressive dialing into a queue (issue 12): a task whose destination is
// a {"type":"queue"} target keeps at most floor(available agents x
// params.agent_ratio) of its calls on this node "not yet connected to an
// agent": ringing at the callee, or answered and waiting in the queue. A
// waiting customer is what hurts (abandoned calls), so both count until an
// agent takes the call.

// paceEvery is how often a task held back by pacing re-reads the agents'
// states; a call of the task ending or connecting wakes it sooner.
const paceEvery = 200 * time.Millisecond

// paceConfigEvery is how long the destination's dialplan entry and the
// queue's agent list are reused, so each pacing decision costs one Redis
// round trip (the agents' states) and edits still apply within a second.
const paceConfigEvery = time.Second

// allowedCalls is how many calls of a task may be waiting for an agent:
// floor(available x ratio). The epsilon keeps 3 x 0.1 x 10 style products
// from flooring one below what the operator wrote.
func allowedCalls(available int, ratio float64) int {
	if available <= 0 || ratio <= 0 {
		return 0
	}
	return int(math.Floor(float64(available)*ratio + 1e-9))
}

// pacer holds one runner's pacing state. decide runs on the runner's loop
// only; track, untrack, connected and invalidate are safe from any
// goroutine.
type pacer struct {
	st  *store.Store
	now func() time.Time // the clock of agents' wrap-ups (injected in tests)
	log *slog.Logger

	// stale forces the next decision to re-read the agents' states (a call
	// of the task ended or connected).
	stale atomic.Bool

	mu sync.Mutex
	// calls are the task's calls on this node by call_ref; true once the
	// call is known to be connected (it entered the bridged state).
	calls map[string]bool

	// Loop-only caches, aged by the monotonic clock (a test's frozen
	// wall clock must not freeze them).
	destKey   string    // the destination the cached target belongs to
	destAt    time.Time // when the target was read
	destQueue string    // the queue the destination names; "" when not a queue
	qName     string
	qAt       time.Time
	qAgents   []string
	qProblem  string // why the queue cannot take calls; "" when it can
	readAt    time.Time
	available int
	held      map[string]bool // call_refs an agent of the queue rings for or talks to
	warned    string          // last destination problem logged
}

func newPacer(st *store.Store, now func() time.Time, log *slog.Logger) *pacer {
	return &pacer{st: st, now: now, log: log, calls: map[string]bool{}}
}

// track registers a call of the task before it is placed, so it counts as
// waiting for an agent from the start.
func (p *pacer) track(ref string) {
	p.mu.Lock()
	p.calls[ref] = false
	p.mu.Unlock()
}

// untrack forgets an ended call; the agents it held may be free now.
func (p *pacer) untrack(ref string) {
	p.mu.Lock()
	delete(p.calls, ref)
	p.mu.Unlock()
	p.stale.Store(true)
}

// connected marks a call of the task as connected to its destination;
// false when the call is not one of the task's calls in progress.
func (p *pacer) connected(ref string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.calls[ref]; !ok {
		return false
	}
	p.calls[ref] = true
	p.stale.Store(true)
	return true
}

// waiting counts the task's calls not yet connected to an agent. A call an
// agent of the queue is ringing for (or talking to) counts as connected:
// that agent no longer reads as available, so counting the call as well
// would count the pair twice.
func (p *pacer) waiting(held map[string]bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for ref, bridged := range p.calls {
		if !bridged && !held[ref] {
			n++
		}
	}
	return n
}

// paceDecision is the outcome of one pacing check.
type paceDecision struct {
	// OK allows one more call.
	OK bool
	// Reason says why not, for the task status.
	Reason string
	// Queue is the queue the destination names; "" when it names none
	// and pacing does not apply.
	Queue     string
	Available int
	Allowed   int
	Waiting   int
}

// decide tells whether tk may start one more call now. An error (Redis
// unreachable) means no call: dialing blind could flood the queue.
func (p *pacer) decide(ctx context.Context, tk *Task) (paceDecision, error) {
	q, err := p.destination(ctx, tk)
	if err != nil || q == "" {
		return paceDecision{OK: err == nil}, err
	}
	d := paceDecision{Queue: q}
	agents, problem, err := p.queue(ctx, q)
	if err != nil {
		return d, err
	}
	if problem != "" {
		d.Reason = fmt.Sprintf("waiting for agents (queue %s: %s)", q, problem)
		return d, nil
	}
	mono := time.Now()
	if p.stale.Swap(false) || p.held == nil || mono.Sub(p.readAt) >= paceEvery {
		states, err := p.st.AgentStates(ctx, agents, p.now())
		if err != nil {
			p.stale.Store(true)
			return d, err
		}
		p.available, p.held, p.readAt = 0, map[string]bool{}, mono
		for _, a := range states {
			switch a.State {
			case store.AgentAvailable:
				p.available++
			case store.AgentRinging, store.AgentOnCall:
				if a.CallRef != "" {
					p.held[a.CallRef] = true
				}
			}
		}
	}
	d.Available, d.Allowed, d.Waiting = p.available, allowedCalls(p.available, tk.AgentRatio), p.waiting(p.held)
	if d.Waiting < d.Allowed {
		d.OK = true
		return d, nil
	}
	if d.Available == 0 {
		d.Reason = fmt.Sprintf("waiting for agents (queue %s: 0 available)", q)
	} else {
		d.Reason = fmt.Sprintf("waiting for agents (queue %s: %d available, agent_ratio %s, %d calls not yet connected)",
			q, d.Available, strconv.FormatFloat(tk.AgentRatio, 'g', -1, 64), d.Waiting)
	}
	return d, nil
}

// destination returns the queue tk's destination names, "" when it names
// another kind of target or nothing at all: such a task is not paced (its
// calls fail at answer as they always did, with a CDR saying why).
func (p *pacer) destination(ctx context.Context, tk *Task) (string, error) {
	dst := tk.Destination
	key := dst.Dialplan + "\x00" + dst.Context + "\x00" + dst.Extension
	mono := time.Now()
	if key == p.destKey && mono.Sub(p.destAt) < paceConfigEvery {
		return p.destQueue, nil
	}
	q, problem := "", ""
	if strings.EqualFold(dst.Dialplan, "XML") {
		raw, found, err := p.st.DialplanEntry(ctx, dst.Context, dst.Extension)
		if err != nil {
			return "", fmt.Errorf("dialer: pacing: reading the destination: %w", err)
		}
		if found {
			t, err := dialplan.Parse(p.st.DialplanKey(), dst.Context+":"+dst.Extension, raw)
			switch {
			case err != nil:
				problem = err.Error()
			case t.Type == dialplan.TypeQueue:
				q = t.Queue
			}
		}
	}
	if problem != "" && problem != p.warned {
		p.log.Warn("dialer: destination does not parse; the task is not paced by agents", "error", problem)
	}
	p.warned = problem
	p.destKey, p.destAt, p.destQueue = key, mono, q
	return q, nil
}

// queue returns the extensions of queue name, or why it cannot take
// calls (missing or malformed entry).
func (p *pacer) queue(ctx context.Context, name string) (agents []string, problem string, err error) {
	mono := time.Now()
	if name == p.qName && mono.Sub(p.qAt) < paceConfigEvery {
		return p.qAgents, p.qProblem, nil
	}
	q, found, err := p.st.Queue(ctx, name)
	switch {
	case err != nil && !found && isDecodeError(err):
		problem = validate.Truncate(err.Error(), 200)
	case err != nil:
		return nil, "", fmt.Errorf("dialer: pacing: reading queue %q: %w", name, err)
	case !found:
		problem = "not in " + p.st.QueuesKey()
	default:
		for _, a := range q.Agents {
			agents = append(agents, a.Ext)
		}
	}
	if p.qName != name || p.qProblem != problem {
		// A queue whose agents were just read anew may differ in who
		// is available.
		p.held = nil
	}
	p.qName, p.qAt, p.qAgents, p.qProblem = name, mono, agents, problem
	return agents, problem, nil
}

// isDecodeError tells a queue entry that does not decode (the operator
// must fix it; the task waits and says why) from a failed read. store names
// the queue in front of decoding errors only; a failed read names the
// Redis command.
func isDecodeError(err error) bool {
	return strings.HasPrefix(err.Error(), "store: queue ")
}

// paced reports whether the runner may claim a number now as far as the
// queue's agents go (when not, the task status says why), and how many
// calls it may start at once: -1 when no agent pacing applies.
func (r *runner) paced(ctx context.Context, tk *Task) (ok bool, room int) {
	d, err := r.pace.decide(ctx, tk)
	if err != nil {
		if ctx.Err() == nil {
			r.d.outage.Fail("dialer: reading the queue's agents failed; retrying", err, "task", r.name)
			r.setState("waiting", "redis unreachable: "+err.Error(), time.Time{})
		}
		return false, 0
	}
	if !d.OK {
		r.setState("waiting", d.Reason, time.Time{})
		return false, 0
	}
	if d.Queue == "" {
		return true, -1
	}
	return true, max(1, d.Allowed-d.Waiting)
}

// followConnections marks the calls of the dialer's tasks that reach their
// destination (the bridged event), so a paced task counts them as
// connected at once. A dropped event only delays that until the agent's
// state or the call's end says so.
func (d *Dialer) followConnections(ctx context.Context) {
	sub := d.deps.Calls.Subscribe(1024)
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-sub.C:
			if !ok {
				return
			}
			if ev.Type != call.EventBridged || ev.CampaignRef == "" {
				continue
			}
			d.mu.Lock()
			r := d.runners[ev.CampaignRef]
			d.mu.Unlock()
			if r != nil && r.pace.connected(ev.CallRef) {
				r.poke()
			}
		}
	}
}
