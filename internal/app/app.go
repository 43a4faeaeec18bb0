// Package app wires one redial node: it builds every component from the
// configuration, starts them in dependency order and stops them in reverse.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"redial/internal/acd"
	"redial/internal/auth"
	"redial/internal/call"
	"redial/internal/callback"
	"redial/internal/cluster"
	"redial/internal/config"
	"redial/internal/dashboard"
	"redial/internal/dialer"
	"redial/internal/dialplan"
	"redial/internal/files"
	"redial/internal/gcpace"
	"redial/internal/ivr"
	"redial/internal/ivrapi"
	"redial/internal/lines"
	"redial/internal/media"
	"redial/internal/media/kfwd"
	"redial/internal/notify"
	"redial/internal/schedule"
	"redial/internal/sip"
	"redial/internal/store"
	"redial/internal/web"
	"redial/webui"
)

// Version is this build's version, registered in the node directory; set
// at link time with -ldflags "-X redial/internal/app.Version=v1.2.3".
var Version = "dev"

// App is one node.
type App struct {
	Cfg      *config.Node
	Log      *slog.Logger
	Registry *prometheus.Registry
	Store    *store.Store
	Notify   *notify.Publisher
	// GCPace raises the GC percent while the node allocates fast, unless
	// GOGC is set.
	GCPace   *gcpace.Pacer
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
	Auth     *auth.Authenticator
	// Fetcher brings files in from URLs; Links hands out signed links to
	// files; IVRAPI is seed 002's WebSocket API.
	Fetcher *files.Fetcher
	Links   *files.Links
	IVRAPI  *ivrapi.Service
	// Registrar keeps agents' registrations (cti_user@<domain>).
	Registrar *sip.Registrar
	// ACD runs the inbound queues (cti_acd_queue@<domain>).
	ACD *acd.Service
	// DataLoss watches Redis for a restart that lost every key this node
	// knew, and raises the /healthz alarm.
	DataLoss *cluster.DataLossDetector
	Web      *web.Server
	// Dashboard is the live page of the cluster at / (docs/dashboard.md).
	Dashboard *dashboard.Service

	// Directory registers this node and watches the others; Bus carries
	// messages and requests between nodes.
	Directory *cluster.Directory
	Bus       *cluster.Bus
	// Recoverer settles this node's leftover claims and recovers dead
	// nodes' claims, for every claim ledger.
	Recoverer *cluster.Recoverer

	started time.Time
	parts   []part
}

// part is a long-lived component in start order.
type part struct {
	name string
	run  func(ctx context.Context) error
	// ready, when set, is closed once the part serves; the parts after it
	// start only then (the dialer must not send an INVITE before the SIP
	// listeners are up: sipgo would bind a socket of its own to the
	// listener's address and fail).
	ready <-chan struct{}
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
	a := &App{Cfg: cfg, Log: log, Registry: prometheus.NewRegistry(), started: time.Now()}
	// The default Go metrics, plus the live heap as the last collection
	// marked it (go_gc_heap_live_bytes): what the node holds, where the
	// heap's alloc figure also counts garbage not yet collected.
	a.Registry.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var err error
	if a.Store, err = store.New(store.Config{URL: cfg.Redis, Domain: cfg.Domain, Host: cfg.Host, NotifyPrefix: cfg.NotifyPrefix}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Notify, err = notify.New(notify.Config{SpoolDir: filepath.Join(cfg.Data, "spool")},
		notify.Deps{Store: a.Store, Logger: log, Registry: a.Registry}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	// GOGC in the environment, whatever its value, is the operator's
	// choice and turns the node's own pacing off.
	_, gogcSet := os.LookupEnv("GOGC")
	if a.GCPace, err = gcpace.New(gcpace.Config{GOGCSet: gogcSet}, gcpace.Deps{Logger: log, Registry: a.Registry}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Lines, err = lines.New(lines.Config{NodeID: cfg.Host}, lines.Deps{Store: a.Store, Logger: log, Registry: a.Registry}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Ports, err = media.NewPortPool(cfg.RTPMin, cfg.RTPMax); err != nil {
		return nil, fmt.Errorf("app: rtp ports: %w", err)
	}
	if a.SIP, err = sip.New(sip.Config{Listeners: cfg.SIP, PublicIP: cfg.SIPPublicIP}, sip.Deps{Logger: log, Ports: a.Ports, Secret: a.Store.DigestSecret, Registry: a.Registry}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Directory, err = cluster.NewDirectory(cluster.DirectoryConfig{Self: a.nodeInfo(), TTL: cfg.HeartbeatTTL},
		cluster.DirectoryDeps{Store: a.Store, Logger: log, Registry: a.Registry}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Bus, err = cluster.NewBus(cluster.BusConfig{Host: cfg.Host},
		cluster.BusDeps{Store: a.Store, Directory: a.Directory, Logger: log, Registry: a.Registry}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Recoverer, err = cluster.NewRecoverer(cluster.RecovererConfig{Every: cfg.HeartbeatTTL / 2},
		cluster.RecovererDeps{Liveness: a.Directory, SpoolReplayed: a.Notify.Replayed(), Logger: log, Registry: a.Registry}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a.Dialplan = dialplan.New(a.Store)
	if a.Files, err = files.New(files.Config{Root: cfg.Data, Domain: cfg.Domain}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	// Recordings of bridges and the call records that dispositions and
	// downloads find by call_ref.
	records, err := call.NewRecords(call.RecordsConfig{Host: cfg.Host},
		call.RecordsDeps{Store: a.Store, Files: a.Files, Registry: a.Registry, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Calls, err = call.NewManager(call.Config{}, call.Deps{Lines: a.Lines, SIP: a.SIP, Dialplan: a.Dialplan,
		Notify: a.Notify, Logger: log, Registry: a.Registry, Nodes: clusterNodes{dir: a.Directory, self: cfg.Host},
		Records: records}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a.SIP.SetInviteHandler(a.Calls.HandleInbound)
	if a.IVR, err = ivr.New(ivr.Config{Domain: cfg.Domain, Host: cfg.Host},
		ivr.Deps{Store: a.Store, Files: a.Files, Logger: log, Registry: a.Registry, Now: o.now}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a.Calls.RegisterConnector(dialplan.TypeIVR, &call.IVRConnector{Engine: a.IVR, Manager: a.Calls})
	users := &call.UserConnector{Engine: a.SIP, Agents: agentBindings{st: a.Store},
		Nodes: clusterNodes{dir: a.Directory, self: cfg.Host}, Self: cfg.Host, Notify: a.Notify}
	a.Calls.RegisterConnector(dialplan.TypeUser, users)
	if a.ACD, err = acd.New(acd.Config{}, acd.Deps{Store: a.Store, Bus: a.Bus, Recoverer: a.Recoverer, Files: a.Files,
		Logger: log, Registry: a.Registry, Now: o.now}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a.Calls.RegisterConnector(dialplan.TypeQueue, &call.QueueConnector{ACD: a.ACD, Users: users, Manager: a.Calls,
		Legacy: cfg.NotifyFormat == "legacy"})
	if a.Dialer, err = dialer.New(dialer.Config{Host: cfg.Host, Location: cfg.Timezone, Resync: cfg.Resync},
		dialer.Deps{Store: a.Store, Calls: a.Calls, Recoverer: a.Recoverer, Settler: a.Notify, Lines: a.Lines,
			Logger: log, Registry: a.Registry, Now: o.now}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Schedule, err = schedule.New(schedule.Config{Host: cfg.Host},
		schedule.Deps{Store: a.Store, Calls: a.Calls, Recoverer: a.Recoverer, Settler: a.Notify, Logger: log, Registry: a.Registry, Now: o.now}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Callback, err = callback.New(callback.Config{Host: cfg.Host},
		callback.Deps{Store: a.Store, Calls: a.Calls, Recoverer: a.Recoverer, Settler: a.Notify, Logger: log, Registry: a.Registry, Now: o.now}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Auth, err = auth.New(auth.Config{Listen: cfg.HTTP, Domain: cfg.Domain, Host: cfg.Host, PublicURL: cfg.HTTPPublicURL,
		AllowHosts: cfg.HTTPAllowHosts}, auth.Deps{Store: a.Store, Logger: log, Registry: a.Registry}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.DataLoss, err = cluster.NewDataLossDetector(cluster.DataLossConfig{Host: cfg.Host},
		cluster.DataLossDeps{Store: a.Store, Logger: log, Registry: a.Registry}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Registrar, err = sip.NewRegistrar(sip.RegistrarConfig{Domain: cfg.Domain, Node: cfg.Host},
		agentUsers{st: a.Store, log: log}, agentBindings{st: a.Store, acd: a.ACD, log: log}, log, a.Registry); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a.SIP.SetRegistrar(a.Registrar)
	// The agent page reads and sets its own queue state over SIP MESSAGE
	// (digest, no API token).
	a.Registrar.SetAgentStates(agentStates{a.ACD})
	a.SIP.OnWSClosed(func(source string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := a.Registrar.SocketClosed(ctx, source); err != nil {
			log.Warn("app: bindings of a closed WebSocket not removed; they expire by themselves", "source", source, "error", err)
		}
	})
	if a.Web, err = web.New(web.Config{Addr: cfg.HTTP, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey}, web.Deps{Calls: a.Calls, Dialer: a.Dialer, Schedule: a.Schedule, Callback: a.Callback, Lines: a.Lines, Dialplan: a.Dialplan,
		Store: a.Store, Notify: a.Notify, Registry: a.Registry, Logger: log, Directory: a.Directory, Auth: a.Auth,
		Alarms: a.DataLoss.Alarms, ACD: a.ACD}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Fetcher, err = files.NewFetcher(files.FetchConfig{Allow: cfg.FetchAllow, MaxBytes: cfg.FetchMaxBytes}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.Links, err = files.NewLinks(files.LinksConfig{Dir: filepath.Join(cfg.Data, "links"), Host: cfg.Host, PublicURL: a.PublicURL},
		files.LinksDeps{Secret: a.Store.DigestSecret, Locate: a.locate, Now: o.now, Logger: log}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if a.IVRAPI, err = ivrapi.New(ivrapi.Config{Host: cfg.Host, Domain: cfg.Domain, Grace: cfg.IVRAPIGrace},
		ivrapi.Deps{IVR: a.IVR, Bus: a.Bus, Directory: a.Directory, Auth: a.Auth, Files: a.Files, Fetcher: a.Fetcher,
			Links: a.Links, Logger: log, Registry: a.Registry, Now: o.now}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a.Web.HandleAny("GET /api/v1/ws", []string{auth.IVRAPI, auth.Files}, a.IVRAPI)
	a.Web.HandlePublic("GET "+files.LinksPrefix, a.Links)
	// SIP over WebSocket (seed 001's ws://<server>:8088/ws): agents prove
	// who they are with SIP digest, so the route takes no API token.
	a.Web.HandlePublic("GET /ws", a.SIP.WSHandler())
	// The agent page: agents log in with SIP digest over /ws, so the page
	// itself needs no token.
	modules := cfg.WebUIModules
	if modules == "" {
		modules = webui.DefaultModulesDir()
	}
	agentPage := webui.Handler(modules)
	a.Web.HandlePublic("GET /agent", agentPage)
	a.Web.HandlePublic("GET /agent/", agentPage)
	if a.Dashboard, err = dashboard.New(dashboard.Config{Host: cfg.Host, Version: Version, Started: a.started, Location: cfg.Timezone},
		dashboard.Deps{Calls: a.Calls, Dialer: a.Dialer, Lines: a.Lines, ACD: a.ACD, IVR: a.IVR, IVRAPI: a.IVRAPI, Directory: a.Directory,
			Bus: a.Bus, Store: a.Store, Auth: a.Auth, Logger: log, Registry: a.Registry}); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	for _, rt := range a.Dashboard.Routes() {
		a.Web.Handle(rt.Pattern, auth.Dashboard, rt.Handler)
	}
	// The page at / takes ?token= once and keeps a session; its scripts
	// and styles carry no data and need none.
	dashPage := webui.DashboardHandler(modules)
	a.Web.HandlePage("GET /{$}", auth.Dashboard, dashPage)
	a.Web.HandlePublic("GET /dashboard/", dashPage)
	registerProfiling(a)
	// The HTTP address is known now that web has bound it.
	if err := a.Directory.SetSelf(a.nodeInfo()); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a.parts = []part{
		{name: "notify", run: a.Notify.Run},
		{name: "gcpace", run: a.GCPace.Run},
		{name: "directory", run: a.Directory.Run},
		// Early, so it records what exists before anything else writes.
		{name: "dataloss", run: a.DataLoss.Run},
		{name: "bus", run: a.Bus.Run},
		{name: "recoverer", run: a.Recoverer.Run},
		{name: "agents", run: agentJanitor{dir: a.Directory, st: a.Store, log: log}.Run},
		// Before calls: in reverse order the calls stop first, and their
		// callers leave the queues while the ACD still runs.
		{name: "acd", run: a.ACD.Run},
		{name: "lines", run: func(ctx context.Context) error {
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
		{name: "sip", run: a.SIP.Run, ready: a.SIP.Ready()},
		{name: "calls", run: a.Calls.Run},
		{name: "dialer", run: a.Dialer.Run},
		{name: "schedule", run: a.Schedule.Run},
		{name: "callback", run: a.Callback.Run},
		{name: "auth", run: a.Auth.Run},
		{name: "links", run: a.Links.Run},
		{name: "ivrapi", run: a.IVRAPI.Run, ready: a.IVRAPI.Ready()},
		{name: "dashboard", run: a.Dashboard.Run},
		{name: "web", run: a.Web.Run},
	}
	registerRuntimeGauges(a)
	return a, nil
}

// nodeInfo is what this node registers in the directory: its listeners
// as the other nodes can reach them (a wildcard bind address is replaced
// by the public IP).
func (a *App) nodeInfo() cluster.NodeInfo {
	info := cluster.NodeInfo{Host: a.Cfg.Host, SIP: map[string]string{}, Version: Version, Started: a.started}
	for _, l := range a.Cfg.SIP {
		if addr := a.SIP.Addr(l.Network); addr != "" {
			info.SIP[l.Network] = reachable(addr, a.Cfg.SIPPublicIP)
		}
	}
	if a.Web != nil {
		info.HTTP = a.Web.Addr()
		info.PublicURL = a.PublicURL()
	}
	return info
}

// PublicURL is the base of the links this node hands out: --http-public-url,
// or derived from the bound address when --http asked for port 0.
func (a *App) PublicURL() string {
	if a.Cfg.HTTPPublicURL != "" || a.Web == nil {
		return a.Cfg.HTTPPublicURL
	}
	host, port, _ := net.SplitHostPort(a.Web.Addr())
	u := config.DefaultPublicURL(host, port, a.Cfg.SIPPublicIP)
	if a.Cfg.TLSCert != "" {
		u = "https://" + strings.TrimPrefix(u, "http://")
	}
	return u
}

// locate is the public URL of another live node, for a file link it
// holds.
func (a *App) locate(ctx context.Context, host string) (string, bool) {
	nodes, err := a.Directory.Nodes(ctx)
	if err != nil {
		return "", false
	}
	for _, n := range nodes {
		if n.Host == host && n.Alive && n.PublicURL != "" {
			return n.PublicURL, true
		}
	}
	return "", false
}

// reachable replaces an unspecified host (0.0.0.0, ::) in addr by ip.
func reachable(addr, ip string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || ip == "" {
		return addr
	}
	if h := net.ParseIP(host); host == "" || (h != nil && h.IsUnspecified()) {
		return net.JoinHostPort(ip, port)
	}
	return addr
}

func registerRuntimeGauges(a *App) {
	a.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "redial_rtp_ports_in_use",
		Help: "RTP ports allocated on this node."}, func() float64 { return float64(a.Ports.InUse()) }))
	a.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "redial_rtp_kernel_forwarding",
		Help: "1 while bridged calls' settled RTP is forwarded in the kernel (--rtp-kernel), else 0."}, func() float64 {
		if a.Ports.KernelForwarding() {
			return 1
		}
		return 0
	}))
	a.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "redial_rtp_kernel_forwarded_packets_total",
		Help: "RTP packets the kernel forwarded for bridged calls, counted when a call's rule is taken out (its end, or a change of remote or codec)."},
		func() float64 { return float64(a.Ports.KernelForwarded()) }))
}

// Run starts the parts in order and, when ctx is cancelled or a part fails,
// stops them in reverse order, each after the ones that depend on it.
func (a *App) Run(ctx context.Context) error {
	if err := a.Store.Ping(ctx); err != nil {
		// Not fatal: CDRs spool and lines reload once Redis is back.
		a.Log.Warn("app: redis not reachable at start; continuing", "error", err)
	}
	// The forwarder's eBPF links belong to this process and this Run, so
	// a node that never runs attaches nothing, and one that dies takes
	// them with it.
	kern, err := a.startKernelForwarding()
	if err != nil {
		return err
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
		if p.ready != nil {
			select {
			case <-p.ready:
			case <-r.done:
				r.done <- nil // the part ended at once; its error is in failed
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
				a.Log.Error("app: part not ready after 10s; starting the others anyway", "part", p.name)
			}
		}
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
		a.waitStopped(started[i].name, started[i].done)
	}
	// Every session's user has stopped: the RTP sockets parked for reuse
	// are closed now rather than holding their ports after the node
	// (another node, or a node started again, may bind the same range).
	if err := a.Ports.Close(); err != nil {
		a.Log.Warn("app: closing parked rtp sockets", "error", err)
	}
	if kern != nil {
		a.Ports.SetKernelForwarder(nil)
		if err := kern.Close(); err != nil {
			a.Log.Warn("app: detaching the kernel rtp forwarder", "error", err)
		}
	}
	// Only now: a part still running would fail on a closed store.
	a.Store.Close()
	return runErr
}

// startKernelForwarding loads the in-kernel RTP forwarder as
// --rtp-kernel asks; nil when it is off or, with auto, unavailable.
func (a *App) startKernelForwarding() (*kfwd.Forwarder, error) {
	if a.Cfg.RTPKernel == "off" {
		return nil, nil
	}
	f, err := kfwd.New(kfwd.Config{})
	if err != nil {
		if a.Cfg.RTPKernel == "on" {
			return nil, fmt.Errorf("app: --rtp-kernel on: %w", err)
		}
		a.Log.Info("app: bridged rtp is forwarded in userspace; in-kernel forwarding is unavailable", "error", err)
		return nil, nil
	}
	a.Ports.SetKernelForwarder(f)
	a.Log.Info("app: bridged rtp is forwarded in the kernel once settled", "interfaces", f.Interfaces())
	return f, nil
}

// waitStopped waits for a part to return, however long it takes: the
// parts before it (and the store) must outlive it. A part that hangs is
// named in an ERROR every 30 s.
func (a *App) waitStopped(name string, done <-chan error) {
	start := time.Now()
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			a.Log.Error("app: component has not stopped yet; still waiting", "component", name,
				"waited", time.Since(start).Round(time.Second))
		}
	}
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
