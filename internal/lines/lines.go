package lines

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/batch"
	"redial/internal/logtext"
	"redial/internal/store"
)

// ErrNoLine is returned (wrapped with the group name) by Acquire when no
// enabled line of the group has a free channel.
var ErrNoLine = errors.New("no free line")

// Status describes one line for dashboards and the REST API.
type Status struct {
	Name, Group string
	Enable      bool
	// Limit and CPS are Unlimited (-1) when the definition leaves them out.
	Limit, CPS int
	// InUse is the number of unexpired leases across all nodes, -1 when
	// Redis could not be asked.
	InUse int
	// Error is why the definition was rejected, naming key and field;
	// empty when the line is well-formed.
	Error string
}

// Config tunes a Manager; zero fields take the defaults.
type Config struct {
	// RenewEvery is how often held leases are renewed (default 5s). It must
	// be shorter than LeaseTTL.
	RenewEvery time.Duration
	// LeaseTTL is how long a lease outlives its last renewal (default 20s):
	// the time a dead node's channels stay taken.
	LeaseTTL time.Duration
	// Reload is how often cti_line@<domain> is re-read (default 5s).
	Reload time.Duration
	// NodeID starts every lease id, so an operator can tell whose lease it
	// is (default: the store's host, else the OS hostname).
	NodeID string
}

// Deps are the Manager's collaborators.
type Deps struct {
	Store    *store.Store
	Logger   *slog.Logger
	Registry *prometheus.Registry // may be nil: metrics are then not exported
}

// Manager loads lines and hands out leases on them.
type Manager struct {
	cfg Config
	st  *store.Store
	log *slog.Logger
	// outage logs failed reloads and lease renewals once per Redis
	// outage, not once per retry.
	outage *logtext.Outage

	configErrors prometheus.Counter
	inUse        *prometheus.GaugeVec

	// loadMu serialises reloads; seen* are only touched under it.
	loadMu   sync.Mutex
	seenBad  map[string]string // line -> raw value already logged as malformed
	seenWarn map[string]string // line -> raw value already logged as unusable

	mu   sync.RWMutex
	snap *snapshot            // nil until the first successful Reload
	rt   map[string]*lineLive // by line name; survives reloads

	heldMu sync.Mutex
	held   map[string]*Lease // by lease id
	// heldPeak is the most leases in held since it was last rebuilt
	// (shrinkHeldLocked).
	heldPeak int

	// acquires and releases combine concurrent lease requests per line
	// into one Redis round trip (see newBatches).
	acquires *batch.Group[acquireKey, string, store.LineGrant]
	releases *batch.Group[string, string, struct{}]
}

// snapshot is one immutable reading of cti_line@<domain>.
type snapshot struct {
	lines  map[string]*lineState // well-formed lines by name
	bad    map[string]Status     // malformed lines by name
	groups map[string][]*lineState
}

type lineState struct {
	line Line
	live *lineLive
}

// lineLive is what this node learns about a line between reloads.
type lineLive struct {
	// inUse is the last count Redis reported; it only orders a group's
	// lines, Redis alone decides whether a channel is free.
	inUse atomic.Int64
	// cpsUntil (unix ns) is when Redis said the next CPS slot opens, so
	// waiting callers on this node do not ask again before then.
	cpsUntil atomic.Int64
	// granted counts the channels this node was granted on the line, for
	// the dashboard's calls per second.
	granted atomic.Uint64
}

// New builds a Manager; it does no I/O. Lines are read by Run, Reload, or
// lazily by the first Acquire or Statuses.
func New(cfg Config, deps Deps) (*Manager, error) {
	if deps.Store == nil {
		return nil, errors.New("lines: no store")
	}
	if cfg.RenewEvery <= 0 {
		cfg.RenewEvery = 5 * time.Second
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 20 * time.Second
	}
	if cfg.Reload <= 0 {
		cfg.Reload = 5 * time.Second
	}
	if cfg.RenewEvery >= cfg.LeaseTTL {
		return nil, fmt.Errorf("lines: renew interval %v must be shorter than lease TTL %v", cfg.RenewEvery, cfg.LeaseTTL)
	}
	if cfg.NodeID == "" {
		cfg.NodeID = deps.Store.Host()
	}
	if cfg.NodeID == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("lines: no NodeID and no hostname: %w", err)
		}
		cfg.NodeID = h
	}
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{
		cfg:      cfg,
		st:       deps.Store,
		log:      log,
		seenBad:  map[string]string{},
		seenWarn: map[string]string{},
		rt:       map[string]*lineLive{},
		held:     map[string]*Lease{},
		outage:   logtext.NewOutage(log, logtext.OutageConfig{Name: "lines"}),
	}
	m.newBatches()
	errs, err := register(deps.Registry, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "redial_config_errors_total",
		Help: "Configuration entries rejected as malformed, by kind.",
	}, []string{"kind"}))
	if err != nil {
		return nil, err
	}
	m.configErrors = errs.WithLabelValues("line")
	if m.inUse, err = register(deps.Registry, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "redial_line_channels_in_use",
		Help: "Channels in use on a line across all nodes, as last seen in Redis.",
	}, []string{"line"})); err != nil {
		return nil, err
	}
	return m, nil
}

// register adds c to reg, reusing an identical collector another component
// registered first (redial_config_errors_total is shared by kind).
func register[C prometheus.Collector](reg *prometheus.Registry, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("lines: register metrics: %w", err)
	}
	return c, nil
}

// Run reloads lines every Config.Reload and renews this node's leases every
// Config.RenewEvery until ctx is cancelled. Stopping releases nothing: the
// node's leases expire after LeaseTTL, as if it had died, so stop Run only
// after the node's calls have ended, and call ReleaseAll on a clean
// shutdown.
func (m *Manager) Run(ctx context.Context) error {
	if err := m.Reload(ctx); err != nil && ctx.Err() == nil {
		m.outage.Fail("lines: initial load failed; retrying", err)
	} else if err == nil {
		m.outage.OK()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(m.cfg.RenewEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				m.renew(ctx)
			}
		}
	}()
	t := time.NewTicker(m.cfg.Reload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
			if err := m.Reload(ctx); err != nil && ctx.Err() == nil {
				m.outage.Fail("lines: reload failed; keeping the previous lines", err)
			} else if err == nil {
				m.outage.OK()
			}
		}
	}
}

// Reload reads cti_line@<domain> now and swaps in the new lines. Leases
// already held are unaffected. When Redis cannot be read the previous lines
// stay in force.
func (m *Manager) Reload(ctx context.Context) error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	return m.reloadLocked(ctx)
}

func (m *Manager) reloadLocked(ctx context.Context) error {
	key := m.st.LinesKey()
	raw, err := m.st.Lines(ctx)
	if err != nil {
		return fmt.Errorf("lines: read %s: %w", key, err)
	}
	snap := &snapshot{
		lines:  make(map[string]*lineState, len(raw)),
		bad:    map[string]Status{},
		groups: map[string][]*lineState{},
	}
	seenBad := make(map[string]string)
	seenWarn := make(map[string]string)
	for name, v := range raw {
		l, perr := parseLine(name, v)
		if perr != nil {
			msg := fmt.Sprintf("lines: line %q in %s: %v", name, key, perr)
			snap.bad[name] = Status{Name: name, Group: l.Group, Error: msg}
			if m.seenBad[name] != v {
				m.log.Error(msg, "line", name, "key", key)
				m.configErrors.Inc()
			}
			seenBad[name] = v
			continue
		}
		if l.Enable && !l.Usable() {
			if m.seenWarn[name] != v {
				field := "params.limit"
				if l.Limit != 0 {
					field = "params.cps"
				}
				m.log.Warn(fmt.Sprintf("lines: line %q in %s: %s is 0, the line is unusable", name, key, field),
					"line", name, "key", key)
			}
			seenWarn[name] = v
		}
		snap.lines[name] = &lineState{line: l}
	}
	m.seenBad, m.seenWarn = seenBad, seenWarn

	m.mu.Lock()
	rt := make(map[string]*lineLive, len(snap.lines))
	for name, ls := range snap.lines {
		live := m.rt[name]
		if live == nil {
			live = &lineLive{}
		}
		ls.live = live
		rt[name] = live
		if ls.line.Usable() {
			snap.groups[ls.line.Group] = append(snap.groups[ls.line.Group], ls)
		}
	}
	for _, g := range snap.groups {
		sort.Slice(g, func(i, j int) bool { return g[i].line.Name < g[j].line.Name })
	}
	old := m.snap
	m.snap, m.rt = snap, rt
	m.mu.Unlock()

	if old != nil {
		for name := range old.lines {
			if _, ok := raw[name]; !ok {
				m.inUse.DeleteLabelValues(name)
			}
		}
		for name := range old.bad {
			if _, ok := raw[name]; !ok {
				m.inUse.DeleteLabelValues(name)
			}
		}
	}
	switch {
	case old != nil && len(old.lines)+len(old.bad) > 0 && len(raw) == 0:
		// Operators retire lines one at a time; all of them at once is
		// what a Redis that lost its data looks like.
		m.log.Warn("lines: every line vanished from Redis at once; if nobody deleted them, Redis lost its data",
			"key", key, "lines_before", len(old.lines)+len(old.bad))
	case old == nil || len(old.lines) != len(snap.lines) || len(old.bad) != len(snap.bad):
		m.log.Info("lines: loaded", "key", key, "lines", len(snap.lines), "malformed", len(snap.bad), "groups", len(snap.groups))
	}
	if _, err := m.countInUse(ctx, snap); err != nil {
		m.log.Warn("lines: count channels in use", "err", err)
	}
	return nil
}

// countInUse asks Redis for every line's leases and updates the gauge and
// the ordering hints.
func (m *Manager) countInUse(ctx context.Context, snap *snapshot) (map[string]int, error) {
	names := make([]string, 0, len(snap.lines)+len(snap.bad))
	for n := range snap.lines {
		names = append(names, n)
	}
	for n := range snap.bad {
		names = append(names, n)
	}
	counts, err := m.st.LinesInUse(ctx, names)
	if err != nil {
		return nil, err
	}
	for n, c := range counts {
		m.inUse.WithLabelValues(n).Set(float64(c))
		if ls := snap.lines[n]; ls != nil {
			ls.live.inUse.Store(int64(c))
		}
	}
	return counts, nil
}

// current returns the loaded lines, reading them first if nothing was
// loaded yet.
func (m *Manager) current(ctx context.Context) (*snapshot, error) {
	m.mu.RLock()
	s := m.snap
	m.mu.RUnlock()
	if s != nil {
		return s, nil
	}
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	m.mu.RLock()
	s = m.snap
	m.mu.RUnlock()
	if s != nil {
		return s, nil
	}
	if err := m.reloadLocked(ctx); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.snap, nil
}

// Statuses describes every line, malformed ones included, sorted by name,
// with InUse counted in Redis now.
func (m *Manager) Statuses(ctx context.Context) []Status {
	snap, err := m.current(ctx)
	if err != nil {
		m.log.Warn("lines: statuses", "err", err)
		return nil
	}
	counts, err := m.countInUse(ctx, snap)
	if err != nil {
		m.log.Warn("lines: count channels in use", "err", err)
	}
	out := make([]Status, 0, len(snap.lines)+len(snap.bad))
	inUse := func(name string) int {
		if counts == nil {
			return -1
		}
		return counts[name]
	}
	for _, ls := range snap.lines {
		l := ls.line
		out = append(out, Status{Name: l.Name, Group: l.Group, Enable: l.Enable, Limit: l.Limit, CPS: l.CPS, InUse: inUse(l.Name)})
	}
	for _, st := range snap.bad {
		st.InUse = inUse(st.Name)
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Granted returns, per line this node knows, how many channels it was
// granted since it started; the dashboard turns it into calls per second.
func (m *Manager) Granted() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]uint64, len(m.rt))
	for name, live := range m.rt {
		out[name] = live.granted.Load()
	}
	return out
}

// Line returns the well-formed line called name, enabled or not.
func (m *Manager) Line(ctx context.Context, name string) (Line, bool) {
	snap, err := m.current(ctx)
	if err != nil {
		return Line{}, false
	}
	ls := snap.lines[name]
	if ls == nil {
		return Line{}, false
	}
	return cloneLine(ls.line), true
}

func cloneLine(l Line) Line {
	l.Variables = maps.Clone(l.Variables)
	l.Extra = maps.Clone(l.Extra)
	return l
}

// free is the ordering key of Acquire: channels left as last seen.
func (ls *lineState) free() int {
	if ls.line.Limit == Unlimited {
		return math.MaxInt
	}
	return ls.line.Limit - int(ls.live.inUse.Load())
}
