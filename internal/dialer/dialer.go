// Package dialer runs queue dialer tasks (campaigns, seed 004): it reads
// task configs from Redis, follows their change notices, claims numbers
// from the tasks' queues and places the calls, so that no number is lost
// and none is dialed twice, on any number of nodes.
package dialer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/call"
	"redial/internal/cluster"
	"redial/internal/lines"
	"redial/internal/logtext"
	"redial/internal/store"
)

// Config tunes a node's dialer.
type Config struct {
	// Host is this node's name (processing lists, heartbeat).
	Host string
	// Location is the default zone of task windows (--timezone).
	Location *time.Location
	// Resync re-reads every task this often, in case a change notice was
	// missed (pub/sub drops messages while disconnected). Default 30s.
	Resync time.Duration
	// ClaimTimeout bounds one blocking claim, so a task notices config
	// changes while its queue is empty. Default 1s.
	ClaimTimeout time.Duration
}

// Settler finishes claims with the durability of the CDRs before them
// (the notify publisher).
type Settler interface {
	Settle(ctx context.Context, op store.SettleOp) error
}

// Deps are what the dialer drives.
type Deps struct {
	Store *store.Store
	Calls *call.Manager
	// Recoverer settles this node's leftover claims and recovers dead
	// nodes' claims of every queue a task uses.
	Recoverer *cluster.Recoverer
	// Settler acknowledges claims after their calls' CDRs.
	Settler Settler
	// Lines grants global_limit slots; nil disables global_limit.
	Lines    *lines.Manager
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Now is the clock of task windows (tests inject one).
	Now func() time.Time
}

// Dialer runs this node's tasks.
type Dialer struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time
	// outage logs Redis failures of every task and of the task sync
	// once per outage, not once per retry.
	outage *logtext.Outage

	mu      sync.Mutex
	runners map[string]*runner
	errors  map[string]string // task name -> config error
	wg      sync.WaitGroup
	stopped bool

	resyncNow chan struct{}
	synced    chan struct{} // closed after the first sync
	syncOnce  sync.Once

	m metrics
}

type metrics struct {
	claimed, invalid *prometheus.CounterVec
	configErrors     prometheus.Counter
	inflight         *prometheus.GaugeVec
}

// New builds a dialer.
func New(cfg Config, deps Deps) (*Dialer, error) {
	if deps.Store == nil || deps.Calls == nil || deps.Recoverer == nil || deps.Settler == nil {
		return nil, errors.New("dialer: needs store, call manager, recoverer and settler")
	}
	if cfg.Host == "" {
		return nil, errors.New("dialer: host name required")
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.ClaimTimeout <= 0 {
		cfg.ClaimTimeout = time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	d := &Dialer{cfg: cfg, deps: deps, log: deps.Logger.With("component", "dialer"), now: deps.Now,
		runners: map[string]*runner{}, errors: map[string]string{},
		resyncNow: make(chan struct{}, 1), synced: make(chan struct{})}
	d.outage = logtext.NewOutage(d.log, logtext.OutageConfig{Name: "dialer"})
	d.m = metrics{
		claimed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_dialer_numbers_claimed_total",
			Help: "Numbers claimed from task queues."}, []string{"task"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_dialer_numbers_invalid_total",
			Help: "Malformed queue items moved to <queue>:invalid."}, []string{"task"}),
		configErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_dialer_task_errors_total",
			Help: "Task configs rejected as malformed."}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "redial_dialer_inflight_calls",
			Help: "Calls in progress per task on this node."}, []string{"task"}),
	}
	if deps.Registry != nil {
		deps.Registry.MustRegister(d.m.claimed, d.m.invalid, d.m.configErrors, d.m.inflight)
	}
	return d, nil
}

// Run follows task configs and runs the tasks until ctx is cancelled; then
// it stops claiming, lets calls in progress finish and returns.
func (d *Dialer) Run(ctx context.Context) error {
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		d.follow(ctx)
	}()
	go func() {
		defer d.wg.Done()
		d.followConnections(ctx)
	}()
	t := time.NewTicker(d.cfg.Resync)
	defer t.Stop()
	for {
		if err := d.sync(ctx); err != nil && ctx.Err() == nil {
			d.outage.Fail("dialer: reading tasks failed; retrying", err)
		} else if err == nil {
			d.outage.OK()
		}
		select {
		case <-ctx.Done():
			d.mu.Lock()
			d.stopped = true
			for _, r := range d.runners {
				r.stop()
			}
			d.mu.Unlock()
			d.wg.Wait()
			return nil
		case <-t.C:
		case <-d.resyncNow:
		}
	}
}

// Synced is closed after the first successful read of the task tables.
func (d *Dialer) Synced() <-chan struct{} { return d.synced }

// Resync asks for an immediate re-read of the task tables.
func (d *Dialer) Resync() {
	select {
	case d.resyncNow <- struct{}{}:
	default:
	}
}

// sync reads both task hashes, starts new tasks, updates changed ones and
// stops removed ones. Runners run on ctx, Run's context.
func (d *Dialer) sync(ctx context.Context) error {
	tmpl, host, err := d.deps.Store.Tasks(ctx)
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for n := range tmpl {
		names[n] = true
	}
	for n := range host {
		names[n] = true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped || ctx.Err() != nil {
		return nil
	}
	errs := map[string]string{}
	for name := range names {
		tk, err := ParseTask(d.deps.Store.TaskHostKey(d.cfg.Host), d.deps.Store.TaskTemplateKey(), name, tmpl[name], host[name], d.cfg.Location)
		if err != nil {
			errs[name] = err.Error()
			if d.errors[name] != err.Error() {
				d.m.configErrors.Inc()
				d.log.Error("dialer: task config rejected; the task keeps its last good config (or stays stopped)", "task", name, "error", err)
			}
			continue
		}
		if r := d.runners[name]; r != nil {
			r.update(tk)
			continue
		}
		for _, w := range tk.Warnings {
			d.log.Warn("dialer: task config", "task", name, "warning", w)
		}
		r := newRunner(d, tk)
		d.runners[name] = r
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			r.run(ctx)
		}()
	}
	d.errors = errs
	if len(names) == 0 && len(d.runners) > 0 {
		// Operators retire tasks one at a time; all of them at once is
		// what a Redis that lost its data looks like.
		gone := make([]string, 0, len(d.runners))
		for name := range d.runners {
			gone = append(gone, name)
		}
		sort.Strings(gone)
		d.log.Warn("dialer: every task vanished from Redis at once; if nobody deleted them, Redis lost its data",
			"tasks", gone, "template_key", d.deps.Store.TaskTemplateKey(), "host_key", d.deps.Store.TaskHostKey(d.cfg.Host))
	}
	for name, r := range d.runners {
		if !names[name] {
			// Deleted: stop claiming; calls in progress finish.
			r.stop()
			delete(d.runners, name)
			d.log.Info("dialer: task removed", "task", name)
		}
	}
	d.syncOnce.Do(func() { close(d.synced) })
	return nil
}

// follow listens to config@all and config@<host>. Every (re)subscription
// triggers a full re-read, because notices published while the connection
// was down are lost.
func (d *Dialer) follow(ctx context.Context) {
	err := cluster.Listen(ctx, d.deps.Store, d.deps.Store.ConfigChannels(), func(channel, payload string) {
		var n store.ConfigNotice
		if err := json.Unmarshal([]byte(payload), &n); err != nil {
			d.log.Warn("dialer: malformed config notice; re-reading all tasks", "channel", channel,
				"payload", logtext.Truncate(payload, 200), "error", err)
		} else if n.Table != "" && n.Table != store.TaskTable {
			return
		}
		d.Resync()
	}, d.Resync)
	if err != nil && ctx.Err() == nil {
		d.log.Error("dialer: following config notices stopped; tasks are re-read every resync period", "error", err)
	}
}

// Statuses describes every task, including rejected configs.
func (d *Dialer) Statuses(ctx context.Context) []TaskStatus {
	d.mu.Lock()
	runners := make([]*runner, 0, len(d.runners))
	for _, r := range d.runners {
		runners = append(runners, r)
	}
	errs := make(map[string]string, len(d.errors))
	for k, v := range d.errors {
		errs[k] = v
	}
	d.mu.Unlock()
	out := make([]TaskStatus, 0, len(runners)+len(errs))
	for _, r := range runners {
		st := r.status(ctx)
		if e, ok := errs[st.Name]; ok {
			st.ConfigError = e
			delete(errs, st.Name)
		}
		out = append(out, st)
	}
	for name, e := range errs {
		out = append(out, TaskStatus{Name: name, State: "invalid", ConfigError: e, Reason: "config rejected: " + e})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// TaskStatus is what `redial task status` shows.
type TaskStatus struct {
	Name string `json:"name"`
	// State is dialing, idle (queue empty), waiting (window closed, no
	// line, limit reached) or invalid.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// NextOpen is when a closed window opens next.
	NextOpen    *time.Time `json:"next_open,omitempty"`
	Queue       string     `json:"queue"`
	QueueLength int64      `json:"queue_length"`
	Retrying    int64      `json:"retrying"`
	// Enable is params.enable; Limit is params.limit (per node) and
	// GlobalLimit params.global_limit (0: none).
	Enable      bool  `json:"enable"`
	Limit       int   `json:"limit"`
	GlobalLimit int   `json:"global_limit"`
	InFlight    int   `json:"in_flight"`
	Dialed      int64 `json:"dialed"`
	Answered    int64 `json:"answered"`
	Failed      int64 `json:"failed"`
	Invalid     int64 `json:"invalid"`
	// Interrupted and ParkedInvalid are the lengths of the queue's
	// :interrupted and :invalid lists (cluster-wide, all time).
	Interrupted   int64  `json:"interrupted"`
	ParkedInvalid int64  `json:"parked_invalid"`
	ConfigError   string `json:"config_error,omitempty"`
}

func (s TaskStatus) String() string {
	return fmt.Sprintf("%s: %s %s", s.Name, s.State, s.Reason)
}
