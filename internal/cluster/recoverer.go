package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/logtext"
	"redial/internal/store"
)

// Recoverable is a claim ledger the Recoverer looks after (*store.Ledger
// is one).
type Recoverable interface {
	// Name identifies the ledger in logs and metrics; ledgers with the
	// same name are the same ledger.
	Name() string
	// Holders lists the hosts that have (had) claims in the ledger.
	Holders(ctx context.Context) ([]string, error)
	// Recover settles the claims of a dead host; it must refuse (with
	// store.ErrHostAlive) while that host's heartbeat is alive.
	Recover(ctx context.Context, deadHost string) (store.RecoverResult, error)
	// SettleOwn settles what a previous run of this node left claimed.
	SettleOwn(ctx context.Context) (store.RecoverResult, error)
}

// Liveness tells which nodes are alive (the Directory).
type Liveness interface {
	Self() string
	Alive(ctx context.Context, hosts []string) (map[string]bool, error)
	// Trusted is false until this node has heartbeated without a break
	// for one TTL: right after a Redis outage every node's heartbeat has
	// lapsed, and nobody may be buried before it had time to beat again.
	Trusted() bool
	Deaths() (<-chan string, func())
}

// RecovererConfig tunes the Recoverer.
type RecovererConfig struct {
	// Every is how often every ledger is checked for dead holders, besides
	// the death notices. Default 5s.
	Every time.Duration
}

// RecovererDeps are what the Recoverer needs.
type RecovererDeps struct {
	Liveness Liveness
	// SpoolReplayed is closed once the notify spool holds nothing a
	// previous run left: only then are this node's own leftover claims
	// settled, so that a claim whose CDR and acknowledgement wait in the
	// spool is acknowledged rather than parked as interrupted. Nil: no
	// wait.
	SpoolReplayed <-chan struct{}
	Logger        *slog.Logger
	Registry      *prometheus.Registry
}

// Recoverer is the one place where claims of dead nodes are recovered and
// a node's own leftovers are settled, for every claim ledger of every
// component: the queue dialer, the scheduled dialer, callback events and
// plans, and whatever comes next registers here.
type Recoverer struct {
	cfg  RecovererConfig
	deps RecovererDeps
	log  *slog.Logger
	// outage logs failed passes once per Redis outage, not once per
	// ledger and pass.
	outage *logtext.Outage

	mu      sync.Mutex
	ledgers map[string]*registration
	kick    chan struct{}

	mRecovered *prometheus.CounterVec
	mErrors    *prometheus.CounterVec
	mDeferred  prometheus.Counter
}

type registration struct {
	l    Recoverable
	refs int
	// settled is closed once this node's leftovers in the ledger are
	// settled (or settling failed and was logged); err says which.
	settled chan struct{}
	err     error
	once    sync.Once
}

// NewRecoverer builds a Recoverer.
func NewRecoverer(cfg RecovererConfig, deps RecovererDeps) (*Recoverer, error) {
	if deps.Liveness == nil {
		return nil, errors.New("cluster: recoverer needs liveness (the node directory)")
	}
	if cfg.Every <= 0 {
		cfg.Every = 5 * time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	r := &Recoverer{cfg: cfg, deps: deps, log: deps.Logger.With("component", "recoverer"),
		ledgers: map[string]*registration{}, kick: make(chan struct{}, 1),
		mRecovered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_claims_recovered_total",
			Help: "Claims of dead nodes (and of this node's previous run) settled, by ledger and where they went."},
			[]string{"ledger", "to"}),
		mErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_claims_recover_errors_total",
			Help: "Failed recoveries of claims, by ledger."}, []string{"ledger"}),
		mDeferred: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_claims_recover_deferred_total",
			Help: "Recovery passes skipped because this node's own heartbeat has not been steady for one TTL yet (after an outage)."}),
	}
	if deps.Registry != nil {
		deps.Registry.MustRegister(r.mRecovered, r.mErrors, r.mDeferred,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "redial_claims_ledgers",
				Help: "Claim ledgers this node looks after (queues of its tasks, schedule, callback events and plans)."},
				func() float64 { n, _ := r.ledgerCounts(); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "redial_claims_ledgers_unsettled",
				Help: "Ledgers whose claims left by this node's previous run are not settled yet; nothing is claimed from them until they are."},
				func() float64 { _, n := r.ledgerCounts(); return float64(n) }))
	}
	r.outage = logtext.NewOutage(r.log, logtext.OutageConfig{Name: "cluster"})
	return r, nil
}

// Register adds a ledger to those looked after and settles this node's
// own leftovers in it once (after the notify spool is replayed). It
// returns a function that waits until those leftovers are settled — call
// it before the first claim, since leftovers settled later would take a
// fresh claim for an old one — and an unregister function. Registering a
// ledger of the same name again only counts a reference.
func (r *Recoverer) Register(l Recoverable) (wait func(ctx context.Context) error, unregister func()) {
	r.mu.Lock()
	reg := r.ledgers[l.Name()]
	if reg == nil {
		reg = &registration{l: l, settled: make(chan struct{})}
		r.ledgers[l.Name()] = reg
	} else {
		// A task's config change may rebuild its ledger with another
		// policy (redial_interrupted): the newest one decides.
		reg.l = l
	}
	reg.refs++
	r.mu.Unlock()
	r.poke()
	wait = func(ctx context.Context) error {
		select {
		case <-reg.settled:
			return reg.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var once sync.Once
	unregister = func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if reg.refs--; reg.refs == 0 && r.ledgers[l.Name()] == reg {
				delete(r.ledgers, l.Name())
			}
		})
	}
	return wait, unregister
}

// ledgerCounts returns how many ledgers are registered and how many of
// them still wait for their own leftovers to be settled.
func (r *Recoverer) ledgerCounts() (all, unsettled int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, reg := range r.ledgers {
		all++
		select {
		case <-reg.settled:
		default:
			unsettled++
		}
	}
	return all, unsettled
}

func (r *Recoverer) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run settles own leftovers of newly registered ledgers and recovers dead
// nodes' claims every cfg.Every and on every death notice, until ctx is
// cancelled.
func (r *Recoverer) Run(ctx context.Context) error {
	deaths, stop := r.deps.Liveness.Deaths()
	defer stop()
	t := time.NewTicker(r.cfg.Every)
	defer t.Stop()
	// replayed turns nil once the spool is replayed; until then the loop
	// also wakes when it is.
	replayed := r.deps.SpoolReplayed
	for {
		var wait <-chan struct{}
		if replayed != nil {
			select {
			case <-replayed:
				replayed = nil
			default:
				wait = replayed
			}
		}
		if replayed == nil {
			r.settleOwn(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wait:
		case <-r.kick:
		case h := <-deaths:
			r.log.Warn("cluster: node died; recovering its claims", "dead_host", h)
			r.recoverAll(ctx)
		case <-t.C:
			r.recoverAll(ctx)
		}
	}
}

func (r *Recoverer) snapshot() []*registration {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*registration, 0, len(r.ledgers))
	for _, reg := range r.ledgers {
		out = append(out, reg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].l.Name() < out[j].l.Name() })
	return out
}

// settleOwn settles this node's leftovers in every ledger not settled yet.
// A failure (Redis away) is retried on the next pass; waiters are released
// only once it succeeded, so nobody claims on top of unsettled leftovers.
func (r *Recoverer) settleOwn(ctx context.Context) {
	for _, reg := range r.snapshot() {
		select {
		case <-reg.settled:
			continue
		default:
		}
		res, err := reg.l.SettleOwn(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.mErrors.WithLabelValues(reg.l.Name()).Inc()
				r.outage.Fail("cluster: settling this node's leftover claims failed; retrying", err, "ledger", reg.l.Name())
			}
			continue
		}
		r.outage.OK()
		r.count(reg.l.Name(), res)
		if res.Total() > 0 {
			r.log.Warn("cluster: settled claims left by this node's previous run", "ledger", reg.l.Name(),
				"requeued", res.Requeued, "interrupted", res.Interrupted, "requeued_interrupted", res.RequeuedInterrupted)
		}
		reg.once.Do(func() { close(reg.settled) })
	}
}

// recoverAll recovers the claims of every dead holder of every ledger.
func (r *Recoverer) recoverAll(ctx context.Context) {
	lv := r.deps.Liveness
	if !lv.Trusted() {
		r.mDeferred.Inc()
		return
	}
	for _, reg := range r.snapshot() {
		if err := r.recoverLedger(ctx, reg.l); err != nil && ctx.Err() == nil {
			r.mErrors.WithLabelValues(reg.l.Name()).Inc()
			r.outage.Fail("cluster: recovering dead nodes' claims failed; retrying", err, "ledger", reg.l.Name())
		} else if err == nil {
			r.outage.OK()
		}
	}
}

func (r *Recoverer) recoverLedger(ctx context.Context, l Recoverable) error {
	lv := r.deps.Liveness
	holders, err := l.Holders(ctx)
	if err != nil || len(holders) == 0 {
		return err
	}
	alive, err := lv.Alive(ctx, holders)
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range holders {
		if h == lv.Self() || alive[h] {
			continue
		}
		// The pass may have stalled on Redis since recoverAll checked:
		// a heartbeat of ours that failed meanwhile means the holder's
		// silence may be the same outage, not its death.
		if !lv.Trusted() {
			r.mDeferred.Inc()
			return errors.Join(errs...)
		}
		res, err := l.Recover(ctx, h)
		r.count(l.Name(), res)
		if err != nil {
			if errors.Is(err, store.ErrHostAlive) {
				continue // came back meanwhile
			}
			errs = append(errs, fmt.Errorf("dead host %s: %w", h, err))
		}
		if res.Total() > 0 {
			r.log.Warn("cluster: recovered claims of a dead node", "ledger", l.Name(), "dead_host", h,
				"requeued", res.Requeued, "interrupted", res.Interrupted, "requeued_interrupted", res.RequeuedInterrupted)
		}
	}
	return errors.Join(errs...)
}

func (r *Recoverer) count(ledger string, res store.RecoverResult) {
	if res.Requeued > 0 {
		r.mRecovered.WithLabelValues(ledger, "source").Add(float64(res.Requeued))
	}
	if res.Interrupted > 0 {
		r.mRecovered.WithLabelValues(ledger, "interrupted").Add(float64(res.Interrupted))
	}
	if res.RequeuedInterrupted > 0 {
		r.mRecovered.WithLabelValues(ledger, "source_interrupted").Add(float64(res.RequeuedInterrupted))
	}
}
