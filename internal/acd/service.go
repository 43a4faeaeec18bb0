// Package acd runs the inbound queues of seed 001: callers wait on the
// node their call arrived on, hearing music on hold, while one line per
// queue, kept in Redis, orders them cluster-wide; one atomic step in Redis
// offers the first in line to the agent the queue's strategy prefers, so an
// agent never rings for two callers nor a caller for two offers. The call
// package rings the agent and bridges; this package decides who and when.
package acd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/cluster"
	"redial/internal/files"
	"redial/internal/store"
)

// Config tunes the queues.
type Config struct {
	// Reload is how often the queues are read again from
	// cti_acd_queue@<domain> (live reload). Default 1s.
	Reload time.Duration
	// Poll is the longest a waiting caller goes without another offer
	// attempt when no change notice arrives. Default 1s.
	Poll time.Duration
	// ServiceLevel is the answer time the service level counts within.
	// Default 20s.
	ServiceLevel time.Duration
	// Prompts is the store directory of the position announcements:
	// position.wav ("you are caller number") then <n>.wav for each digit of
	// the position. Default ":GS_PUB/queue".
	Prompts string
}

// Deps are what the queues use.
type Deps struct {
	Store *store.Store
	// Bus carries change notices between nodes (an agent freed, a caller
	// left), so waiting callers everywhere try again at once; nil keeps
	// them to this node (tests) and the poll.
	Bus *cluster.Bus
	// Recoverer drops the callers of dead nodes and frees their agents.
	Recoverer *cluster.Recoverer
	// Files resolves music on hold and prompts.
	Files    *files.Stores
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Now      func() time.Time
}

// changeTopic is the bus topic of change notices: payload = queue name,
// or empty for "any queue" (an agent's state changed).
const changeTopic = "acd.changed"

// Service is the inbound queues of one node.
type Service struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time

	mu     sync.Mutex
	queues map[string]store.Queue
	bad    map[string]string
	loaded bool
	lines  map[string]*line
	// registered caches which agents have a live binding, for a second.
	registered map[string]regEntry
	wg         sync.WaitGroup
	// runCtx ends the dispatchers; set by Run.
	runDone chan struct{}

	ledgerWait func(ctx context.Context) error

	mWaiting  *prometheus.GaugeVec
	mOutcomes *prometheus.CounterVec
	mOffers   *prometheus.CounterVec
	mBad      prometheus.Gauge
}

type regEntry struct {
	ok bool
	at time.Time
}

// New builds the queues.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Store == nil {
		return nil, errors.New("acd: needs the store")
	}
	if cfg.Reload <= 0 {
		cfg.Reload = time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.ServiceLevel <= 0 {
		cfg.ServiceLevel = 20 * time.Second
	}
	if cfg.Prompts == "" {
		cfg.Prompts = ":GS_PUB/queue"
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &Service{cfg: cfg, deps: deps, log: deps.Logger.With("component", "acd"), now: deps.Now,
		queues: map[string]store.Queue{}, bad: map[string]string{}, lines: map[string]*line{},
		registered: map[string]regEntry{}, runDone: make(chan struct{}),
		mWaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "redial_queue_waiting",
			Help: "Callers waiting in a queue on this node (ringing an agent included)."}, []string{"queue"}),
		mOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_queue_calls_total",
			Help: "Queue calls on this node by outcome (connected, abandoned, overflow, refused, failed)."}, []string{"queue", "outcome"}),
		mOffers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_queue_offers_total",
			Help: "Offers of a caller to agents by result (answered, no_answer, released)."}, []string{"result"}),
		mBad: prometheus.NewGauge(prometheus.GaugeOpts{Name: "redial_queue_config_invalid",
			Help: "Entries of cti_acd_queue@<domain> skipped because they do not decode."}),
	}
	if deps.Registry != nil {
		deps.Registry.MustRegister(s.mWaiting, s.mOutcomes, s.mOffers, s.mBad)
	}
	return s, nil
}

// Run reloads the queues, takes change notices from other nodes, and has
// the Recoverer look after the waiting callers' ledger, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	defer s.wg.Wait()
	defer close(s.runDone)
	if s.deps.Recoverer != nil {
		wait, unregister := s.deps.Recoverer.Register(s.deps.Store.ACDLedger())
		defer unregister()
		s.mu.Lock()
		s.ledgerWait = wait
		s.mu.Unlock()
	}
	var notices <-chan cluster.Message
	if s.deps.Bus != nil {
		sub := s.deps.Bus.Subscribe(changeTopic, 256)
		defer sub.Close()
		notices = sub.C
	}
	s.reload(ctx)
	t := time.NewTicker(s.cfg.Reload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.reload(ctx)
		case m, ok := <-notices:
			if !ok {
				notices = nil
				continue
			}
			if m.Gap {
				s.wakeAll()
				continue
			}
			if m.From == s.deps.Store.Host() {
				continue // woken locally when published
			}
			s.wake(string(m.Payload))
		}
	}
}

// reload reads every queue; entries that do not decode are logged once
// per change, counted, and skipped, the others keep working.
func (s *Service) reload(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	qs, bad, err := s.deps.Store.Queues(rctx)
	if err != nil {
		s.log.Debug("acd: queues not reloaded; keeping the last ones", "error", err)
		return
	}
	m := make(map[string]store.Queue, len(qs))
	for _, q := range qs {
		m[q.Name] = q
	}
	badText := make(map[string]string, len(bad))
	for name, e := range bad {
		badText[name] = e.Error()
	}
	s.mu.Lock()
	old := s.bad
	s.queues, s.bad, s.loaded = m, badText, true
	s.mu.Unlock()
	for name, e := range badText {
		if old[name] != e {
			s.log.Warn("acd: queue entry skipped", "queue", name, "key", s.deps.Store.QueuesKey(), "error", e)
		}
	}
	s.mBad.Set(float64(len(bad)))
}

// Queue returns the queue of that name as last loaded (read at once when
// nothing was loaded yet); err names a malformed entry.
func (s *Service) Queue(ctx context.Context, name string) (store.Queue, bool, error) {
	s.mu.Lock()
	loaded := s.loaded
	q, ok := s.queues[name]
	e := s.bad[name]
	s.mu.Unlock()
	if !loaded || (!ok && e == "") {
		// Not loaded yet, or added since the last reload: read it now.
		return s.deps.Store.Queue(ctx, name)
	}
	if e != "" {
		return q, false, errors.New(e)
	}
	return q, ok, nil
}

// Notify tells waiting callers of queue ("" any queue) on every node that
// an agent may be free or the line moved.
func (s *Service) Notify(ctx context.Context, queue string) {
	s.wake(queue)
	if s.deps.Bus != nil {
		if err := s.deps.Bus.Publish(context.WithoutCancel(ctx), changeTopic, []byte(queue)); err != nil {
			s.log.Debug("acd: change notice not published; other nodes poll", "queue", queue, "error", err)
		}
	}
}

// SetAgentState sets an agent's state by hand (the API, the agent page):
// available, paused with a reason, or logged_out; see
// store.SetAgentState. Waiting callers try again at once.
func (s *Service) SetAgentState(ctx context.Context, ext, state, reason string) error {
	if err := s.deps.Store.SetAgentState(ctx, ext, state, reason, s.now()); err != nil {
		return err
	}
	s.Notify(ctx, "")
	return nil
}

// AgentRegistered is the registrar's notice of a new binding: an agent
// that was logged out becomes available (seed 001's agents log in by
// registering).
func (s *Service) AgentRegistered(ctx context.Context, ext string) {
	s.mu.Lock()
	delete(s.registered, ext)
	s.mu.Unlock()
	became, err := s.deps.Store.AgentRegistered(ctx, ext, s.now())
	if err != nil {
		s.log.Warn("acd: agent state not updated at registration", "ext", ext, "error", err)
		return
	}
	if became {
		s.log.Info("acd: agent available (registered)", "ext", ext)
	}
	s.Notify(ctx, "")
}

// registeredAgents tells which of exts have a live binding, from a cache
// of one second: registrations change seldom, offers often.
func (s *Service) registeredAgents(ctx context.Context, exts []string) (map[string]bool, error) {
	now := s.now()
	out := make(map[string]bool, len(exts))
	var missing []string
	s.mu.Lock()
	for _, e := range exts {
		if r, ok := s.registered[e]; ok && now.Sub(r.at) < time.Second {
			out[e] = r.ok
		} else {
			missing = append(missing, e)
		}
	}
	s.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	got, err := s.deps.Store.Registered(ctx, missing, now)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	for _, e := range missing {
		out[e] = got[e]
		s.registered[e] = regEntry{ok: got[e], at: now}
	}
	s.mu.Unlock()
	return out, nil
}

// waitLedger waits until the ledger of waiting callers is settled after
// this node's start (callers a previous run left are dropped first).
func (s *Service) waitLedger(ctx context.Context) error {
	s.mu.Lock()
	w := s.ledgerWait
	s.mu.Unlock()
	if w == nil {
		return nil
	}
	if err := w(ctx); err != nil {
		return fmt.Errorf("acd: waiting callers' ledger not settled: %w", err)
	}
	return nil
}
