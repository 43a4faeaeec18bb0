package logtext

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// OutageConfig names what an Outage reports on.
type OutageConfig struct {
	// Name prefixes the recovery message, as the component prefixes its
	// other messages ("dialer" gives "dialer: redis reachable again").
	Name string
	// Dependency is what fails; default "redis".
	Dependency string
	// Quiet is how long no attempt may have failed before a success ends
	// the outage; default 5s, longer than the retry period of every loop
	// that shares one Outage. Without it a component whose calls partly
	// fail (one Redis Cluster shard away, the others fine) would log a
	// WARN and an INFO per retry.
	Quiet time.Duration
	// Now is the clock of the durations reported (tests); default
	// time.Now.
	Now func() time.Time
}

// Outage turns the outcomes of a component's calls to a dependency into
// a few log lines per change of state instead of one per retry, so an
// outage cannot fill the disk however long it lasts and however fast the
// component retries. The first failure logs a WARN with its error; the
// following ones are counted and logged at DEBUG; the first success after
// them (once no attempt has failed for Quiet) logs one INFO saying how
// long the dependency was away and how many attempts failed.
//
// One Outage serves every loop of a component; it is safe for concurrent
// use, and OK costs one atomic load while nothing is failing. It has no
// goroutine or timer of its own: the recovery is logged by the first OK
// at least Quiet after the last failure, so a component calls OK on every
// success and keeps trying while Down (a loop does anyway; an event-driven
// component polls while Down).
type Outage struct {
	cfg OutageConfig
	log *slog.Logger
	msg string

	down atomic.Bool

	mu sync.Mutex
	// since is the first failure of the outage (zero while none),
	// lastFail the latest, okSince the first success after it (zero
	// after a failure).
	since, lastFail, okSince time.Time
	failures                 int
}

// NewOutage returns an Outage logging to l.
func NewOutage(l *slog.Logger, cfg OutageConfig) *Outage {
	if cfg.Dependency == "" {
		cfg.Dependency = "redis"
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	msg := cfg.Dependency + " reachable again"
	if cfg.Name != "" {
		msg = cfg.Name + ": " + msg
	}
	return &Outage{cfg: cfg, log: l, msg: msg}
}

// Fail records a failed attempt. The first of an outage is logged at WARN
// as msg with err and args; later ones at DEBUG with the count so far.
// It reports whether this failure began the outage.
func (o *Outage) Fail(msg string, err error, args ...any) bool {
	now := o.cfg.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	first := o.since.IsZero()
	if first {
		o.since, o.failures = now, 0
		o.down.Store(true)
	}
	o.failures++
	o.lastFail, o.okSince = now, time.Time{}
	if first {
		o.log.Warn(msg, append([]any{"error", err}, args...)...)
	} else {
		o.log.Debug(msg, append([]any{"error", err, "failed_attempts", o.failures}, args...)...)
	}
	return first
}

// OK records a successful attempt. It ends the outage when no attempt has
// failed for Quiet; the duration reported runs to the first success after
// the last failure.
func (o *Outage) OK() {
	if !o.down.Load() {
		return
	}
	now := o.cfg.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return
	}
	if o.okSince.IsZero() {
		o.okSince = now
	}
	if now.Sub(o.lastFail) < o.cfg.Quiet {
		return
	}
	o.log.Info(o.msg, "after", o.okSince.Sub(o.since).Round(time.Millisecond).String(), "failed_attempts", o.failures)
	o.since, o.lastFail, o.okSince, o.failures = time.Time{}, time.Time{}, time.Time{}, 0
	o.down.Store(false)
}

// Down reports whether an outage is in progress.
func (o *Outage) Down() bool { return o.down.Load() }
