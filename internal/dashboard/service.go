// Package dashboard serves the live page of the whole cluster (docs/
// dashboard.md): every node collects its own figures from its call events
// and, while anybody views the page anywhere, reports them on the cluster
// bus a few times a second; the nodes with viewers merge the reports with
// what only Redis knows (nodes, lines in use, queues) once a second and
// push the result to their viewers as server-sent events. Each frame is
// encoded once per node, whatever the number of viewers, and Redis is
// read once a second per node with viewers, never per viewer.
package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/acd"
	"redial/internal/auth"
	"redial/internal/call"
	"redial/internal/cluster"
	"redial/internal/dialer"
	"redial/internal/ivr"
	"redial/internal/ivrapi"
	"redial/internal/lines"
	"redial/internal/store"
)

// Bus topics and methods of the dashboard.
const (
	topicNode     = "dashboard.node"
	topicWant     = "dashboard.want"
	methodHistory = "dashboard.history"
	methodHangup  = "dashboard.hangup"
)

// maxCalls is how many calls in progress a node reports and the page
// lists; the count of all of them comes along.
const maxCalls = 200

// Config tunes the dashboard; zero fields take the defaults.
type Config struct {
	// Host and Version name this node; Started is when it started.
	Host    string
	Version string
	Started time.Time
	// Report is how often a node reports while viewed (default 250ms): the
	// bound on a CDR's way to the page.
	Report time.Duration
	// Tick is how often viewers get the merged state (default 1s).
	Tick time.Duration
	// WantTTL is how long a node keeps reporting after the last sign of a
	// viewer anywhere (default 6s); viewers' nodes renew it every WantTTL/3.
	WantTTL time.Duration
	// MaxViewers bounds this node's open streams (default 64).
	MaxViewers int
	// Location is the zone task windows are read in (default time.Local),
	// for the campaign changes the page makes.
	Location *time.Location
}

// Deps are the components the page shows and controls. Dialer, Lines,
// ACD, IVR, IVRAPI and Auth may be nil.
type Deps struct {
	Calls     *call.Manager
	Dialer    *dialer.Dialer
	Lines     *lines.Manager
	ACD       *acd.Service
	IVR       *ivr.Engine
	IVRAPI    *ivrapi.Service
	Directory *cluster.Directory
	Bus       *cluster.Bus
	Store     *store.Store
	Auth      *auth.Authenticator
	Logger    *slog.Logger
	Registry  *prometheus.Registry
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Service is one node's part of the dashboard.
type Service struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time
	col  *collector
	hub  *hub

	// wantedUntil (unix ns) is until when this node reports.
	wantedUntil atomic.Int64
	mViewers    prometheus.Gauge
	mDropped    prometheus.Counter
}

// New builds the service; it does no I/O.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Calls == nil || deps.Bus == nil || deps.Store == nil || deps.Directory == nil {
		return nil, errors.New("dashboard: calls, bus, store and directory are required")
	}
	if cfg.Report <= 0 {
		cfg.Report = 250 * time.Millisecond
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.WantTTL <= 0 {
		cfg.WantTTL = 6 * time.Second
	}
	if cfg.MaxViewers <= 0 {
		cfg.MaxViewers = 64
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &Service{cfg: cfg, deps: deps, log: deps.Logger.With("component", "dashboard"), now: deps.Now,
		col: newCollector(cfg.Host),
		mViewers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "redial_dashboard_viewers",
			Help: "Dashboard event streams open on this node."}),
		mDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_dashboard_viewers_dropped_total",
			Help: "Dashboard viewers disconnected because they fell behind (their page reconnects)."}),
	}
	s.hub = newHub(s)
	if deps.Registry != nil {
		deps.Registry.MustRegister(s.mViewers, s.mDropped)
	}
	return s, nil
}

// Run collects this node's figures, reports them while the page is viewed
// anywhere, and feeds this node's viewers, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	events := s.deps.Calls.Subscribe(16384)
	defer events.Close()
	wants := s.deps.Bus.Subscribe(topicWant, 16)
	defer wants.Close()
	reports := s.deps.Bus.Subscribe(topicNode, 256)
	defer reports.Close()
	s.deps.Bus.Handle(methodHistory, func(ctx context.Context, from string, req []byte) ([]byte, error) {
		return json.Marshal(s.col.history(s.now()))
	})
	s.deps.Bus.Handle(methodHangup, func(ctx context.Context, from string, req []byte) ([]byte, error) {
		var ref string
		if err := json.Unmarshal(req, &ref); err != nil {
			return nil, fmt.Errorf("dashboard: hangup request: %w", err)
		}
		return json.Marshal(s.deps.Calls.Hangup(ref))
	})
	defer s.deps.Bus.Handle(methodHistory, nil)
	defer s.deps.Bus.Handle(methodHangup, nil)

	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		s.collect(ctx, events)
	}()
	go func() {
		defer wg.Done()
		s.report(ctx, wants)
	}()
	go func() {
		defer wg.Done()
		s.hub.run(ctx, reports)
	}()
	wg.Wait()
	return nil
}

// collect counts this node's call events.
func (s *Service) collect(ctx context.Context, events *call.EventSub) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events.C:
			if !ok {
				return
			}
			switch ev.Type {
			case call.EventCreated:
				s.col.started(ev.Time)
			case call.EventEnded:
				if len(ev.CDRs) > 0 {
					s.col.ended(ev.CDRs)
				}
			}
		}
	}
}

// report publishes this node's report every Report while wanted.
func (s *Service) report(ctx context.Context, wants *cluster.Subscription) {
	t := time.NewTicker(s.cfg.Report)
	defer t.Stop()
	var (
		proc      procSampler
		heavyAt   time.Time
		granted   map[string]uint64
		grantedAt time.Time
		cps       map[string]float64
	)
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-wants.C:
			if !ok {
				return
			}
			if !m.Gap {
				s.wantedUntil.Store(s.now().Add(s.cfg.WantTTL).UnixNano())
			}
			continue
		case <-t.C:
		}
		now := s.now()
		if now.UnixNano() > s.wantedUntil.Load() {
			// Nobody looks: the collector keeps counting, nothing is sent.
			s.col.takeCDRs()
			continue
		}
		var r nodeReport
		if now.Sub(heavyAt) >= s.cfg.Tick {
			heavyAt = now
			r = s.heavy(ctx, now, &proc)
			if s.deps.Lines != nil {
				g := s.deps.Lines.Granted()
				cps = linesCPS(granted, g, now.Sub(grantedAt))
				granted, grantedAt = g, now
			}
			r.Lines = make(map[string]line, len(cps))
			fo := s.col.failoverCounts()
			for name, v := range cps {
				r.Lines[name] = line{CPS: v, Failovers: fo[name]}
			}
			for name, n := range fo {
				if _, ok := r.Lines[name]; !ok {
					r.Lines[name] = line{Failovers: n}
				}
			}
		} else {
			// The calls and tasks change at most once a Tick on the page:
			// between full reports only the fast parts travel.
			r = nodeReport{Host: s.cfg.Host, Light: true}
		}
		r.Time = now
		r.ActiveCalls = s.deps.Calls.Active()
		r.CPS, r.Disp = s.col.recent(now, recentCPS)
		r.CDRs = s.col.takeCDRs()
		b, err := json.Marshal(r)
		if err != nil {
			s.log.Error("dashboard: encode report", "err", err)
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := s.deps.Bus.Publish(pctx, topicNode, b); err != nil && ctx.Err() == nil {
			s.log.Warn("dashboard: publish report", "err", err)
		}
		cancel()
	}
}

// heavy gathers the parts of a report refreshed once a Tick: the process
// figures, the dialer's tasks (one Redis pipeline per task), the calls in
// progress and the IVR sessions under external control.
func (s *Service) heavy(ctx context.Context, now time.Time, proc *procSampler) nodeReport {
	r := nodeReport{Host: s.cfg.Host, Version: s.cfg.Version, Started: s.cfg.Started, Goroutines: runtime.NumGoroutine()}
	r.CPUPct, r.RSSBytes = proc.sample(now)
	if s.deps.Dialer != nil {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		r.Tasks = s.deps.Dialer.Statuses(tctx)
		cancel()
	}
	infos := s.deps.Calls.Calls()
	r.CallsTotal = len(infos)
	r.Calls = newestCalls(s.cfg.Host, infos, maxCalls)
	if s.deps.IVR != nil {
		grace := map[string]bool{}
		if s.deps.IVRAPI != nil {
			for _, ss := range s.deps.IVRAPI.Sessions() {
				grace[ss.IVRID] = ss.Grace
			}
		}
		for _, in := range s.deps.IVR.Sessions() {
			r.IVR = append(r.IVR, ivrRow{Node: s.cfg.Host, IVRID: in.IVRID, CallRef: in.CallRef, Script: in.ScriptID,
				Component: in.Component, Started: in.Started, Key: in.ControlKey, Owner: in.Owner, Grace: grace[in.IVRID]})
		}
	}
	r.CampDisp = s.col.campaigns(now)
	return r
}

// linesCPS turns two readings of the grant counters into grants per
// second.
func linesCPS(prev, cur map[string]uint64, over time.Duration) map[string]float64 {
	out := make(map[string]float64, len(cur))
	for name, n := range cur {
		if prev == nil || over <= 0 {
			out[name] = 0
			continue
		}
		p, ok := prev[name]
		if !ok || p > n {
			p = n
		}
		out[name] = float64(n-p) / over.Seconds()
	}
	return out
}

// wanted tells every node that this node has viewers.
func (s *Service) wanted(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.deps.Bus.Publish(pctx, topicWant, []byte(`{}`)); err != nil && ctx.Err() == nil {
		s.log.Warn("dashboard: publish want", "err", err)
	}
}
