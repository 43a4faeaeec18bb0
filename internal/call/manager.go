package call

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/dialplan"
	"redial/internal/lines"
	"redial/internal/notify"
	"redial/internal/sip"
)

// Config tunes the call manager.
type Config struct {
	// KeepEnded is how long an ended call stays visible to GET
	// /api/v1/calls/{ref} (its CDRs are in Redis for good).
	KeepEnded time.Duration
	// MaxEnded caps how many ended calls are kept, so memory stays bounded
	// at thousands of calls per second.
	MaxEnded int
	// MaxEndedBytes caps the memory of the ended calls kept, as estimated
	// from their numbers, references and CDRs (endedCall.approxBytes), so
	// calls with large variables cannot fill memory within MaxEnded. The
	// oldest are forgotten first. Default 64 MiB.
	MaxEndedBytes int
	// DrainTimeout bounds the wait for calls to hang up on shutdown.
	DrainTimeout time.Duration
	// ReleaseAfterPeak is how many calls in progress make a burst after
	// which memory is given back to the kernel: once the calls in progress
	// have stayed at a tenth of their peak or less for ReleaseQuiet, the
	// manager runs Deps.FreeOSMemory, at most once per ReleaseInterval.
	// Without it an idle node keeps the burst's garbage until the runtime's
	// two-minute collection and its pages for minutes after. Default 200;
	// negative never releases.
	ReleaseAfterPeak int
	// ReleaseQuiet is how long the calls must have been few before the
	// release, so that what the ended calls leave behind for a moment (the
	// INVITE transactions, 2 s; the BYE transactions, Timer K 5 s) is
	// freed with it. Default 10 s.
	ReleaseQuiet time.Duration
	// ReleaseInterval is the least time between two releases. Default 10 s.
	ReleaseInterval time.Duration
}

// Deps are the components a call passes through.
type Deps struct {
	Lines    *lines.Manager
	SIP      *sip.Engine
	Dialplan *dialplan.Dialplan
	Notify   *notify.Publisher
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Now      func() time.Time
	// Nodes recognises INVITEs from other nodes (calls relayed to agents
	// registered here); nil treats every INVITE as from outside.
	Nodes Nodes
	// Records records bridged calls (agent calls, record_call=true) and
	// keeps call records for dispositions and recording downloads; nil
	// records nothing (NewRecords builds the node's).
	Records CallRecorder
	// FreeOSMemory runs a collection and returns the freed memory to the
	// kernel once a burst of calls is over (see Config.ReleaseAfterPeak);
	// nil uses runtime/debug.FreeOSMemory.
	FreeOSMemory func()
}

// Manager runs calls and keeps them addressable by call_ref.
type Manager struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time

	connMu     sync.RWMutex
	connectors map[string]Connector

	mu sync.Mutex
	// calls are the calls in progress; ended the compact records of the
	// calls that ended within KeepEnded.
	calls map[string]*Call
	ended map[string]*endedCall
	order []string // ended call refs, oldest first
	// endedBytes is the sum of the ended records' approxBytes.
	endedBytes int
	// peak is the most calls in progress since the release check last
	// read it.
	peak int
	// started counts the calls started since the release check last read
	// it: short calls at a high rate keep few in progress, and are load.
	started int
	release *memReleaser
	wg      sync.WaitGroup
	closed  bool

	events *eventBus

	mCalls   *prometheus.CounterVec
	mActive  prometheus.Gauge
	mSetup   prometheus.Histogram
	mInbound *prometheus.CounterVec
	mDropped prometheus.Counter
}

// ErrDuplicateRef is returned when a call with the same call_ref is still
// known.
var ErrDuplicateRef = errors.New("call_ref already in use")

// ErrStopped is returned when the manager is shutting down.
var ErrStopped = errors.New("call manager stopped")

var errHangupRequested = errors.New("hangup requested")

// NewManager builds a call manager.
func NewManager(cfg Config, deps Deps) (*Manager, error) {
	if deps.Lines == nil || deps.SIP == nil || deps.Dialplan == nil || deps.Notify == nil {
		return nil, errors.New("call: manager needs lines, sip, dialplan and notify")
	}
	if cfg.KeepEnded == 0 {
		cfg.KeepEnded = 2 * time.Minute
	}
	if cfg.MaxEnded == 0 {
		cfg.MaxEnded = 10000
	}
	if cfg.MaxEndedBytes == 0 {
		cfg.MaxEndedBytes = 64 << 20
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	m := &Manager{cfg: cfg, deps: deps, log: deps.Logger.With("component", "call"), now: deps.Now,
		connectors: map[string]Connector{}, calls: map[string]*Call{}, ended: map[string]*endedCall{},
		mCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_calls_total",
			Help: "Call attempts (one per CDR) by disposition."}, []string{"disposition"}),
		mActive: prometheus.NewGauge(prometheus.GaugeOpts{Name: "redial_active_calls", Help: "Calls in progress on this node."}),
		mSetup: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "redial_call_setup_seconds",
			Help: "Time from INVITE to answer.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		mInbound: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_inbound_calls_total",
			Help: "Inbound INVITEs by outcome (answered, forbidden, no_route, failed)."}, []string{"result"}),
		mDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_call_events_dropped_total",
			Help: "Call events not delivered to a local subscriber whose buffer was full."}),
	}
	m.events = newEventBus(m.mDropped)
	m.release = newMemReleaser(cfg, deps.FreeOSMemory)
	if deps.Registry != nil {
		deps.Registry.MustRegister(m.mCalls, m.mActive, m.mSetup, m.mInbound, m.mDropped)
	}
	m.RegisterConnector(dialplan.TypeSIP, &SIPBridge{Engine: deps.SIP})
	m.RegisterConnector(dialplan.TypeHangup, hangupConnector{})
	return m, nil
}

// RegisterConnector installs the handler of a dialplan target type.
func (m *Manager) RegisterConnector(targetType string, c Connector) {
	m.connMu.Lock()
	m.connectors[targetType] = c
	m.connMu.Unlock()
}

// Run prunes ended calls and gives memory back to the kernel after a
// burst of calls (memReleaser); on ctx cancel it hangs up every call and
// waits for their CDRs (bounded by DrainTimeout).
func (m *Manager) Run(ctx context.Context) error {
	prune := time.NewTicker(10 * time.Second)
	defer prune.Stop()
	check := time.NewTicker(time.Second)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			m.shutdown()
			return nil
		case <-prune.C:
			m.prune()
		case <-check.C:
			m.checkRelease()
		}
	}
}

func (m *Manager) shutdown() {
	m.mu.Lock()
	m.closed = true
	for _, c := range m.calls {
		if c.cancel != nil {
			c.cancel(ErrStopped)
		}
	}
	m.mu.Unlock()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(m.cfg.DrainTimeout):
		m.log.Warn("call: calls still running after drain timeout")
	}
}

// newCall builds a call that reports its events to the manager's
// subscribers.
func (m *Manager) newCall(req Request) *Call {
	c := newCall(req, m.now())
	c.events, c.now = m.events, m.now
	return c
}

// NewRef returns a random call reference.
func NewRef() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Validate checks a request before it is accepted; errors name the field.
func Validate(req Request) error {
	if len(req.Numbers) == 0 {
		return errors.New("number: required")
	}
	for i, n := range req.Numbers {
		if err := ValidateNumber(n); err != nil {
			return fmt.Errorf("number[%d]: %w", i, err)
		}
	}
	if len(req.LineGroups) == 0 {
		return errors.New("line_group: required")
	}
	for i, g := range req.LineGroups {
		if g == "" {
			return fmt.Errorf("line_group[%d]: empty", i)
		}
	}
	if req.Destination.Extension == "" {
		return errors.New("destination.extension: required")
	}
	return nil
}

// Originate validates and starts a call in the background.
func (m *Manager) Originate(ctx context.Context, req Request) (*Call, error) {
	if err := Validate(req); err != nil {
		return nil, err
	}
	if req.CallRef == "" {
		req.CallRef = NewRef()
	}
	c := m.newCall(req)
	if err := m.start(ctx, c, m.run); err != nil {
		return nil, err
	}
	return c, nil
}

// start registers call c under its call_ref and runs it with run on a
// goroutine of its own, tracked until it ends. The call outlives ctx (the
// HTTP request that started it), keeping only its values.
func (m *Manager) start(ctx context.Context, c *Call, run runFunc) error {
	cctx, err := m.register(context.WithoutCancel(ctx), c)
	if err != nil {
		return err
	}
	go m.runRegistered(cctx, c, run)
	return nil
}

// register records call c under its call_ref, tracked until it ends, and
// returns the call's context, derived from ctx.
func (m *Manager) register(ctx context.Context, c *Call) (context.Context, error) {
	ref := c.req.CallRef
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrStopped
	}
	_, live := m.calls[ref]
	if _, ended := m.ended[ref]; live || ended {
		m.mu.Unlock()
		return nil, fmt.Errorf("call: %q: %w", ref, ErrDuplicateRef)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	c.cancel = cancel
	m.addLocked(c)
	m.wg.Add(1)
	m.mu.Unlock()
	m.mActive.Inc()
	c.emit(EventCreated)
	return cctx, nil
}

// runFunc runs a registered call and calls done once it is over: before
// it returns, or later from a goroutine a connector started (see
// HandoffConnector).
type runFunc func(ctx context.Context, c *Call, done func())

// waited makes a runFunc of a run that returns when the call is over.
func waited(run func(ctx context.Context, c *Call)) runFunc {
	return func(ctx context.Context, c *Call, done func()) {
		run(ctx, c)
		done()
	}
}

// runRegistered runs a registered call; when it is over, the call is
// finished and untracked.
func (m *Manager) runRegistered(cctx context.Context, c *Call, run runFunc) {
	run(cctx, c, func() {
		c.cancel(nil)
		m.finish(c)
		m.mActive.Dec()
		m.wg.Done()
	})
}

// Place runs a call to its end and returns the outcome (the dialers' entry
// point). Cancelling ctx hangs the call up. The call runs on the caller's
// goroutine: at thousands of calls a second a goroutine and a wait per call
// are worth saving.
func (m *Manager) Place(ctx context.Context, req Request) (Outcome, error) {
	if err := Validate(req); err != nil {
		return Outcome{}, err
	}
	if req.CallRef == "" {
		req.CallRef = NewRef()
	}
	c := m.newCall(req)
	// The call's context is ctx's child: cancelling ctx cancels the call
	// with ctx's cause, as Hangup and shutdown do with theirs.
	cctx, err := m.register(ctx, c)
	if err != nil {
		return Outcome{}, err
	}
	m.runRegistered(cctx, c, m.runHere)
	return c.Outcome(), nil
}

// addLocked records call c as in progress; m.mu is held.
func (m *Manager) addLocked(c *Call) {
	m.calls[c.req.CallRef] = c
	m.peak = max(m.peak, len(m.calls))
	m.started++
}

// Get returns a call by reference: one in progress, or one that ended
// within KeepEnded, rebuilt from its record (its Info, Outcome and Done
// answer as the call's did; Done is closed).
func (m *Manager) Get(ref string) (*Call, bool) {
	m.mu.Lock()
	c, ok := m.calls[ref]
	e, ended := m.ended[ref]
	m.mu.Unlock()
	if ok {
		return c, true
	}
	if ended {
		return e.call(), true
	}
	return nil, false
}

// Hangup ends a call: cancels it while ringing, sends BYE when answered.
// It returns false when no such call is running.
func (m *Manager) Hangup(ref string) bool {
	m.mu.Lock()
	c, ok := m.calls[ref]
	var cancel context.CancelCauseFunc
	if ok {
		cancel = c.cancel // keepEnded clears it under m.mu
	}
	m.mu.Unlock()
	if !ok || cancel == nil {
		return false
	}
	cancel(errHangupRequested)
	return true
}

// Active is the number of calls in progress.
func (m *Manager) Active() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.calls)
}

// Calls lists the calls in progress.
func (m *Manager) Calls() []Info {
	m.mu.Lock()
	list := make([]*Call, 0, len(m.calls))
	for _, c := range m.calls {
		list = append(list, c)
	}
	m.mu.Unlock()
	out := make([]Info, 0, len(list))
	for _, c := range list {
		out = append(out, c.Info())
	}
	return out
}

// Record writes a CDR for a call that was never dialed (an EXPIRED
// scheduled number): one record with the request's references, the first
// number and the given disposition.
func (m *Manager) Record(ctx context.Context, req Request, d Disposition, reason string) error {
	if req.CallRef == "" {
		req.CallRef = NewRef()
	}
	number := ""
	if len(req.Numbers) > 0 {
		number = req.Numbers[0]
	}
	now := m.now()
	c := newCall(req, now)
	cause := NormalUnspecified
	if d == Expired {
		cause = RecoveryOnTimerExpire
	}
	_, err := m.publishCDR(ctx, c, 1, attemptRecord{number: number, vars: req.Variables, start: now, end: now,
		disposition: d, cause: cause, reason: reason, dialNumber: req.Variables["origination_caller_id_number"]})
	if err != nil {
		return fmt.Errorf("call: %s CDR for %s: %w", d, number, err)
	}
	return nil
}
