// Package app wires one redial node: it builds every component from the
// configuration, starts them in dependency order and stops them in reverse.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"redial/internal/call"
	"redial/internal/callback"
	"redial/internal/config"
	"redial/internal/dialer"
	"redial/internal/dialplan"
	"redial/internal/files"
	"redial/internal/ivr"
	"redial/internal/lines"
	"redial/internal/media"
	"redial/internal/notify"
	"redial/internal/schedule"
	"redial/internal/sip"
	"redial/internal/store"
	"redial/internal/web"
)

// App is one node.
type App struct {
	Cfg      *config.Node
	Log      *slog.Logger
	Registry *prometheus.Registry
	Store    *store.Store
	Notify   *notify.Publisher
	Lines    *lines.Manager
	Ports    *media.PortPool
	SIP      *sip.Engine
	Dialplan *dialplan.Dialplan
	Calls    *call.Manager
	Files    *files.Stores
	IVR      *ivr.Engine
	Dialer   *dialer.Dialer
	Schedule *schedule.Scheduler
	Callback *callback.Runner
	Web      *web.Server

	parts []part
}

// part is a long-lived component in start order.
type part struct {
	name string
	run  func(ctx context.Context) error
}

// Option adjusts how a node is built (tests).
type Option func(*options)

type options struct {
	now func() time.Time
}

// WithClock gives the node's time windows a clock other than the wall
// clock, so tests can run a task "in 2020".
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// New builds a node. Listeners are bound here, so port clashes and bad
// settings fail before anything runs.
func New(cfg *config.Node, log *slog.Logger, opts ...Option) (*App, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	a := &App{Cfg: cfg, Log: log, Registry: prometheus.NewRegistry()}
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var err error
	if a.Store, err = store.New(store.Config{URL: cfg.Redis, Domain: cfg.Domain, Host: cfg.Host, NotifyPrefix: cfg.NotifyPrefix}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Notify, err = notify.New(notify.Config{SpoolDir: filepath.Join(cfg.Data, "spool")},
		notify.Deps{Store: a.Store, Logger: log, Registry: a.Registry}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Lines, err = lines.New(lines.Config{NodeID: cfg.Host}, lines.Deps{Store: a.Store, Logger: log, Registry: a.Registry}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Ports, err = media.NewPortPool(cfg.RTPMin, cfg.RTPMax); err != nil {
		return nil, fmt.Errorf("app: rtp ports: %w", err)
	}
	if a.SIP, err = sip.New(sip.Config{Listeners: cfg.SIP, PublicIP: cfg.SIPPublicIP}, sip.Deps{Logger: log, Ports: a.Ports}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a.Dialplan = dialplan.New(a.Store)
	if a.Calls, err = call.NewManager(call.Config{}, call.Deps{Lines: a.Lines, SIP: a.SIP, Dialplan: a.Dialplan,
		Notify: a.Notify, Logger: log, Registry: a.Registry}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a.SIP.SetInviteHandler(a.Calls.HandleInbound)
	if a.Files, err = files.New(files.Config{Root: cfg.Data, Domain: cfg.Domain}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.IVR, err = ivr.New(ivr.Config{Domain: cfg.Domain, Host: cfg.Host},
		ivr.Deps{Store: a.Store, Files: a.Files, Logger: log, Registry: a.Registry, Now: o.now}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a.Calls.RegisterConnector(dialplan.TypeIVR, &call.IVRConnector{Engine: a.IVR, Manager: a.Calls})
	if a.Dialer, err = dialer.New(dialer.Config{Host: cfg.Host, Location: cfg.Timezone, Resync: cfg.Resync,
		HeartbeatTTL: cfg.HeartbeatTTL, RecoverEvery: cfg.HeartbeatTTL / 2},
		dialer.Deps{Store: a.Store, Calls: a.Calls, Lines: a.Lines, Logger: log, Registry: a.Registry, Now: o.now}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Schedule, err = schedule.New(schedule.Config{Host: cfg.Host, RecoverEvery: cfg.HeartbeatTTL / 2},
		schedule.Deps{Store: a.Store, Calls: a.Calls, Logger: log, Registry: a.Registry, Now: o.now}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Callback, err = callback.New(callback.Config{Host: cfg.Host, RecoverEvery: cfg.HeartbeatTTL / 2},
		callback.Deps{Store: a.Store, Calls: a.Calls, Logger: log, Registry: a.Registry, Now: o.now}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Web, err = web.New(web.Config{Addr: cfg.HTTP}, web.Deps{Calls: a.Calls, Dialer: a.Dialer, Schedule: a.Schedule, Callback: a.Callback, Lines: a.Lines, Dialplan: a.Dialplan,
		Store: a.Store, Notify: a.Notify, Registry: a.Registry, Logger: log}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a.parts = []part{
		{"notify", a.Notify.Run},
		{"lines", func(ctx context.Context) error {
			err := a.Lines.Run(ctx)
			// Calls have stopped by now (reverse order): free their channels
			// at once instead of letting the leases expire.
			rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if rerr := a.Lines.ReleaseAll(rctx); rerr != nil {
				a.Log.Warn("app: releasing line leases", "error", rerr)
			}
			return err
		}},
		{"sip", a.SIP.Run},
		{"calls", a.Calls.Run},
		{"dialer", a.Dialer.Run},
		{"schedule", a.Schedule.Run},
		{"callback", a.Callback.Run},
		{"web", a.Web.Run},
	}
	registerRuntimeGauges(a)
	return a, nil
}

func registerRuntimeGauges(a *App) {
	a.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "redial_rtp_ports_in_use",
		Help: "RTP ports allocated on this node."}, func() float64 { return float64(a.Ports.InUse()) }))
}

// Run starts the parts in order and, when ctx is cancelled or a part fails,
// stops them in reverse order, each after the ones that depend on it.
func (a *App) Run(ctx context.Context) error {
	if err := a.Store.Ping(ctx); err != nil {
		// Not fatal: CDRs spool and lines reload once Redis is back.
		a.Log.Warn("app: redis not reachable at start; continuing", "error", err)
	}
	type running struct {
		name   string
		cancel context.CancelFunc
		done   chan error
	}
	var started []running
	failed := make(chan error, len(a.parts))
	for _, p := range a.parts {
		pctx, cancel := context.WithCancel(context.Background())
		r := running{name: p.name, cancel: cancel, done: make(chan error, 1)}
		go func(p part) {
			err := p.run(pctx)
			if err != nil && pctx.Err() == nil {
				failed <- fmt.Errorf("app: %s: %w", p.name, err)
			}
			r.done <- err
		}(p)
		started = append(started, r)
	}
	if err := a.waitReady(ctx); err != nil {
		a.Log.Error("app: not ready", "error", err)
	}
	a.Log.Info("app: node running", "host", a.Cfg.Host, "domain", a.Cfg.Domain, "http", a.Web.Addr(),
		"sip_udp", a.SIP.Addr("udp"), "sip_tcp", a.SIP.Addr("tcp"))
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-failed:
		a.Log.Error("app: component failed, stopping", "error", runErr)
	}
	for i := len(started) - 1; i >= 0; i-- {
		started[i].cancel()
		select {
		case <-started[i].done:
		case <-time.After(30 * time.Second):
			a.Log.Error("app: component did not stop", "component", started[i].name)
		}
	}
	a.Store.Close()
	return runErr
}

func (a *App) waitReady(ctx context.Context) error {
	select {
	case <-a.SIP.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
		return errors.New("sip listeners not ready after 10s")
	}
}
