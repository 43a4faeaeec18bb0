// Package ivr runs IVR scripts on answered calls: scripts from the hash
// ivr_script@<domain>, made of components chosen by oType (seed 002's
// numbers for hangup, transfer, playback and record; redial's own from 301
// on), and the external control that lets an owner outside (the ivrapi
// WebSocket) take over a session and apply components one at a time.
//
// Decisions worth knowing:
//
//   - One media Listen runs for the whole session (media discards queued
//     packets when a Listen starts, and only one may run). Its digits go to
//     a queue the active component reads, so digits pressed between
//     components (type-ahead) reach the next one; its audio goes to the
//     active recorder, if any. A transfer stops the Listen, because the
//     bridge must be the only reader, and restarts it when the transfer
//     failed.
//   - An exit is followed through the component's `transfer` (exit
//     "transfer") or `transfers[exit]`. An exit with no route ends the
//     script (Result.Ended "end"), as does a missing next component.
//   - Scripts are parsed and validated when loaded and cached for
//     Config.ScriptCacheTTL, so edits apply to calls starting after that
//     without a restart. A malformed script fails only its own calls.
//   - The component registry belongs to an Engine (no package-level state):
//     New registers the built-in types, Register adds more.
package ivr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/files"
	"redial/internal/media"
	"redial/internal/store"
)

// Channel is the answered call leg a session runs on.
type Channel interface {
	// CallRef is the call's reference, carried on every log line.
	CallRef() string
	// Media is the leg's RTP session, codec and telephone-event PT already set.
	Media() *media.Session
	// Variables returns a copy of the channel variables.
	Variables() map[string]string
	// Done is closed when the caller hangs up.
	Done() <-chan struct{}
	// Hangup ends the call from redial's side.
	Hangup(ctx context.Context) error
	// Transfer connects the caller to number through the dialplan and
	// returns when that connection ends or fails.
	Transfer(ctx context.Context, number string, reinviteMode int) TransferResult
}

// TransferResult is how a Channel.Transfer went.
type TransferResult struct {
	// Connected is true when the caller was connected to the destination
	// (the transfer then ran until that connection ended).
	Connected bool
	// Reason says why a transfer failed (or how a connected one ended).
	Reason string
}

// Config configures an Engine.
type Config struct {
	// Domain is the tenant whose ivr_script@<domain> scripts run (the
	// Store's domain decides the key; this one names it in logs).
	Domain string
	// Host is this node's name, for logs.
	Host string
	// ScriptCacheTTL is how long a parsed script is reused before it is
	// read again; 0 means 2 s, a negative value reads it for every call.
	ScriptCacheTTL time.Duration
}

// Deps are what an Engine uses.
type Deps struct {
	Store    *store.Store
	Files    *files.Stores
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Now is the clock of timestamps (events, file names, voicemail).
	Now func() time.Time
}

// Result is how a session ended.
type Result struct {
	// IVRID is the session's id (ivrid in events).
	IVRID string
	// Ended is "hangup" (hangup component), "caller_hangup", "transfer"
	// (a connected transfer is over), "end" (no next component) or
	// "error" (the script could not run, or ctx was cancelled).
	Ended string
	// Transferred is true when a transfer connected.
	Transferred bool
	// Err is why the session could not run (Ended "error").
	Err error
	// Variables are the session variables at the end.
	Variables map[string]string
}

// The ways a session ends (Result.Ended).
const (
	EndedHangup       = "hangup"
	EndedCallerHangup = "caller_hangup"
	// EndedCancelled: the call was ended from redial's side (API hangup,
	// node shutdown) while the script ran.
	EndedCancelled = "cancelled"
	EndedTransfer  = "transfer"
	EndedEnd       = "end"
	EndedError     = "error"
)

// The exits every component may use; menus add their keys.
const (
	ExitTransfer = "transfer"
	ExitTimeout  = "timeout"
	ExitError    = "error"
)

// Errors of the external-control calls. They are wrapped with the session
// and key they concern.
var (
	// ErrNoSession: no session with that ivrid runs on this node.
	ErrNoSession = errors.New("no such IVR session")
	// ErrNotControlled: the session is not in an external control
	// component with that key.
	ErrNotControlled = errors.New("session is not waiting for external control with this key")
	// ErrOwned: another owner controls the session (use reaccept).
	ErrOwned = errors.New("session is controlled by another owner")
	// ErrNotOwner: the caller has not accepted control of the session.
	ErrNotOwner = errors.New("not the owner of this session")
	// ErrBusy: an applied component is still running.
	ErrBusy = errors.New("a component is still running")
	// ErrIdle: no applied component is running.
	ErrIdle = errors.New("no component is running")
)

// Engine runs IVR sessions. It is safe for concurrent use.
type Engine struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time

	regMu     sync.RWMutex
	factories map[int]registered

	cacheMu sync.Mutex
	cache   map[string]*cachedScript

	sessMu   sync.Mutex
	sessions map[string]*session

	bus *bus
	m   metrics
}

type metrics struct {
	active       prometheus.Gauge
	sessions     *prometheus.CounterVec
	components   *prometheus.CounterVec
	scriptErrors prometheus.Counter
	dropped      prometheus.Counter
}

// New builds an Engine with the built-in component types registered.
func New(cfg Config, deps Deps) (*Engine, error) {
	if deps.Store == nil || deps.Files == nil {
		return nil, errors.New("ivr: needs Store and Files")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if cfg.ScriptCacheTTL == 0 {
		cfg.ScriptCacheTTL = 2 * time.Second
	}
	e := &Engine{cfg: cfg, deps: deps, log: deps.Logger.With("component", "ivr", "domain", cfg.Domain), now: deps.Now,
		factories: map[int]registered{}, cache: map[string]*cachedScript{}, sessions: map[string]*session{}}
	e.m = metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "redial_ivr_sessions_active",
			Help: "IVR sessions running on this node."}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_ivr_sessions_total",
			Help: "IVR sessions finished, by how they ended."}, []string{"ended"}),
		components: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "redial_ivr_components_total",
			Help: "IVR components finished, by oType and exit."}, []string{"otype", "exit"}),
		scriptErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_ivr_script_errors_total",
			Help: "IVR scripts rejected as malformed when loaded."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_ivr_events_dropped_total",
			Help: "IVR events not delivered because a subscriber was too slow."}),
	}
	if deps.Registry != nil {
		deps.Registry.MustRegister(e.m.active, e.m.sessions, e.m.components, e.m.scriptErrors, e.m.dropped)
	}
	e.bus = newBus(e.m.dropped)
	for _, b := range builtins() {
		if err := e.register(b.oType, b.f, b.applicable); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Factory builds a component from its definition, validating its
// properties. Errors should name the property, e.g. "file: required" (use
// Props' accessors, whose errors do).
type Factory func(spec *Spec) (Component, error)

// Component is one step of a script. Run does the work and returns the
// exit it leaves by: ExitTransfer, ExitTimeout, ExitError or a menu key.
// It must return promptly when ctx is cancelled (the caller hung up, the
// owner terminated it, or the engine stops).
type Component interface {
	Run(ctx context.Context, x *Exec) string
}

type registered struct {
	f Factory
	// applicable is false for types an external owner may not apply
	// (external control itself).
	applicable bool
}

// Register adds a component type. Registering an oType twice is an error.
// Scripts cached before are parsed again, so a type registered late is
// picked up.
func (e *Engine) Register(oType int, f Factory) error {
	return e.register(oType, f, true)
}

func (e *Engine) register(oType int, f Factory, applicable bool) error {
	if f == nil {
		return fmt.Errorf("ivr: register oType %d: nil factory", oType)
	}
	e.regMu.Lock()
	defer e.regMu.Unlock()
	if _, dup := e.factories[oType]; dup {
		return fmt.Errorf("ivr: register oType %d: already registered", oType)
	}
	e.factories[oType] = registered{f: f, applicable: applicable}
	e.cacheMu.Lock()
	clear(e.cache)
	e.cacheMu.Unlock()
	return nil
}

func (e *Engine) factory(oType int) (registered, bool) {
	e.regMu.RLock()
	defer e.regMu.RUnlock()
	r, ok := e.factories[oType]
	return r, ok
}
