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
	// from their numbers, references, variables and CDRs (approxBytes), so
	// calls with large variables cannot fill memory within MaxEnded. The
	// oldest are forgotten first. Default 64 MiB.
	MaxEndedBytes int
	// DrainTimeout bounds the wait for calls to hang up on shutdown.
	DrainTimeout time.Duration
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
}

// Manager runs calls and keeps them addressable by call_ref.
type Manager struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time

	connMu     sync.RWMutex
	connectors map[string]Connector

	mu    sync.Mutex
	calls map[string]*Call
	ended map[string]time.Time
	order []string // ended call refs, oldest first
	// endedSize is approxBytes of each ended call kept; endedBytes their
	// sum.
	endedSize  map[string]int
	endedBytes int
	wg         sync.WaitGroup
	closed     bool

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
		connectors: map[string]Connector{}, calls: map[string]*Call{}, ended: map[string]time.Time{}, endedSize: map[string]int{},
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

// Run prunes ended calls; on ctx cancel it hangs up every call and waits
// for their CDRs (bounded by DrainTimeout).
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.shutdown()
			return nil
		case <-t.C:
			m.prune()
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

func (m *Manager) prune() {
	m.mu.Lock()
	defer m.mu.Unlock()
	cut := m.now().Add(-m.cfg.KeepEnded)
	i := 0
	for ; i < len(m.order); i++ {
		ref := m.order[i]
		if !m.ended[ref].Before(cut) {
			break
		}
		m.forgetLocked(ref)
	}
	m.order = append([]string(nil), m.order[i:]...)
}

// keepEnded records c as ended, visible to Get until pruned, and forgets
// the oldest ended calls while more than MaxEnded of them, or more than
// MaxEndedBytes, are kept.
func (m *Manager) keepEnded(c *Call) {
	size := c.approxBytes()
	ref := c.req.CallRef
	m.mu.Lock()
	defer m.mu.Unlock()
	// An ended call is only read for Info, Outcome and Done until it is
	// pruned: let go of what only its run needed (the context, the
	// request's variables and callbacks), which thousands of ended calls
	// would otherwise keep. Its CDRs keep their own variables.
	c.cancel = nil
	c.req.Variables, c.req.OnInvite, c.req.LineGroups = nil, nil, nil
	m.ended[ref] = m.now()
	m.endedSize[ref] = size
	m.endedBytes += size
	m.order = append(m.order, ref)
	for len(m.order) > 0 && (len(m.order) > m.cfg.MaxEnded || m.endedBytes > m.cfg.MaxEndedBytes) {
		m.forgetLocked(m.order[0])
		m.order = m.order[1:]
	}
}

// forgetLocked drops an ended call; m.mu is held and the caller removes
// ref from m.order.
func (m *Manager) forgetLocked(ref string) {
	delete(m.ended, ref)
	delete(m.calls, ref)
	m.endedBytes -= m.endedSize[ref]
	delete(m.endedSize, ref)
}

// approxBytes estimates the memory an ended call holds: its request and
// its CDRs (whose variables are the bulk), plus a fixed overhead for the
// structures around them.
func (c *Call) approxBytes() int {
	const overhead, perCDR, perEntry = 2048, 512, 48
	vars := func(m map[string]string) int {
		n := 0
		for k, v := range m {
			n += len(k) + len(v) + perEntry
		}
		return n
	}
	n := overhead + len(c.req.CallRef) + len(c.req.ContactRef) + len(c.req.CampaignRef) + vars(c.req.Variables)
	for _, s := range c.req.Numbers {
		n += len(s) + perEntry
	}
	for _, s := range c.req.LineGroups {
		n += len(s) + perEntry
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.info.CDRs {
		n += perCDR + len(r.CallRef) + len(r.ContactRef) + len(r.CampaignRef) + len(r.ClientNumber) + len(r.DialNumber) +
			len(r.Line) + len(r.HangupCause) + vars(r.Variables)
	}
	// The outcome holds the same CDRs; their maps are shared.
	return n + perCDR*len(c.out.CDRs)
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
func (m *Manager) start(ctx context.Context, c *Call, run func(ctx context.Context, c *Call)) error {
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
	if _, ok := m.calls[ref]; ok {
		m.mu.Unlock()
		return nil, fmt.Errorf("call: %q: %w", ref, ErrDuplicateRef)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	c.cancel = cancel
	m.calls[ref] = c
	m.wg.Add(1)
	m.mu.Unlock()
	m.mActive.Inc()
	c.emit(EventCreated)
	return cctx, nil
}

// runRegistered runs a registered call to its end.
func (m *Manager) runRegistered(cctx context.Context, c *Call, run func(ctx context.Context, c *Call)) {
	defer m.wg.Done()
	defer m.mActive.Dec()
	run(cctx, c)
	c.cancel(nil)
	m.finish(c)
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
	m.runRegistered(cctx, c, m.run)
	return c.Outcome(), nil
}

// Get returns a call by reference.
func (m *Manager) Get(ref string) (*Call, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.calls[ref]
	return c, ok
}

// Hangup ends a call: cancels it while ringing, sends BYE when answered.
// It returns false when no such call is running.
func (m *Manager) Hangup(ref string) bool {
	m.mu.Lock()
	c, ok := m.calls[ref]
	_, ended := m.ended[ref]
	var cancel context.CancelCauseFunc
	if ok {
		cancel = c.cancel // keepEnded clears it under m.mu
	}
	m.mu.Unlock()
	if !ok || ended || cancel == nil {
		return false
	}
	cancel(errHangupRequested)
	return true
}

// Active is the number of calls in progress.
func (m *Manager) Active() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.calls) - len(m.ended)
}

// Calls lists the calls in progress.
func (m *Manager) Calls() []Info {
	m.mu.Lock()
	list := make([]*Call, 0, len(m.calls))
	for ref, c := range m.calls {
		if _, ended := m.ended[ref]; !ended {
			list = append(list, c)
		}
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
