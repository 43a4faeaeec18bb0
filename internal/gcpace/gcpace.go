// Package gcpace paces the node's garbage collector: it raises the GC
// percent (GOGC) while the node allocates fast, so the collector runs about
// once a second instead of several times, and keeps Go's default while it
// allocates slowly, so memory stays as tight as without it.
//
// The policy is a garbage budget in seconds. With GC percent P the runtime
// lets the heap grow by live×P/100 of garbage before it collects again
// (goroutine stacks and globals count with live, which only makes cycles
// rarer), so at an allocation rate R a cycle comes every live×P/100/R
// seconds. The pacer picks
//
//	P = clamp(100 × R × Budget / max(live, 4 MiB), Base, Max)
//
// so that the heap holds about Budget's worth of garbage: each cycle marks
// the whole live heap, and at a few thousand calls a second GOGC=100 meant
// several cycles a second (GC marking was a sixth of the node's CPU). At
// the rates of a node holding many calls set up slowly, P works out below
// Base and the percent stays at Base, so the memory a held call costs is
// unchanged.
//
// An operator's choice wins: with GOGC set in the environment (any value,
// "off" included) the pacer changes nothing. GOMEMLIMIT needs no case of
// its own: the runtime collects more often as the heap nears its memory
// limit whatever the percent, so a raised percent does not take the node
// past it.
package gcpace

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Pacer.
type Config struct {
	// Interval is how often the allocation rate is measured (default 1s).
	Interval time.Duration
	// Budget is how long the allocation at the measured rate may take to
	// fill the garbage the heap is allowed before a collection (default
	// 1s): about the longest time between two collections under load.
	Budget time.Duration
	// Base is the GC percent at low allocation rates and the lowest the
	// pacer sets (default 100, Go's default).
	Base int
	// Max is the highest GC percent the pacer sets (default 800): with a
	// 40 MiB live heap, a 360 MiB heap goal.
	Max int
	// GOGCSet says the operator set GOGC in the process's environment; the
	// pacer then leaves the GC percent alone. The caller decides (the node
	// from os.LookupEnv("GOGC")), so tests do too.
	GOGCSet bool
}

// Deps are the pacer's collaborators; every one but Logger and Registry is
// for tests and defaults to the Go runtime.
type Deps struct {
	Logger *slog.Logger
	// Registry, when set, gets the pacer's metrics.
	Registry *prometheus.Registry
	// Read returns the bytes allocated on the heap since the process
	// started and the live heap as of the last collection (default:
	// runtime/metrics /gc/heap/allocs:bytes and /gc/heap/live:bytes).
	Read func() (allocTotal, live uint64)
	// Percent returns the GC percent in force without changing it
	// (default: runtime/metrics /gc/gogc:percent).
	Percent func() int
	// SetPercent sets the GC percent and returns the previous one
	// (default debug.SetGCPercent).
	SetPercent func(int) int
	// Ticks, when set, replaces the Interval ticker: each value received is
	// the time of a measurement.
	Ticks <-chan time.Time
}

// minLive is the live heap the percent is computed from at least. A node
// just started, or before its first collection, has a few MiB live; a
// cycle over so small a heap is cheap, so collecting it less often gains
// nothing, while a percent computed from it would swing far on a little
// allocation.
const minLive = 4 << 20

// fallTime is the time constant of the smoothed allocation rate. A rise
// takes effect at the next measurement (the rate used is the larger of the
// last interval's and the smoothed one), since a heap collected several
// times a second costs CPU at once; a fall is followed over a few seconds,
// so a quiet second between bursts of calls does not drop the percent only
// to raise it again, each change costing the runtime a recomputation of its
// pacing. While it falls, the price is a heap goal higher than needed for
// those few seconds.
const fallTime = 3 * time.Second

// pacing says a Pacer is setting this process's GC percent. The percent
// is the runtime's, one per process, while a process may run several
// nodes (tests, the bench): two pacers would undo each other's changes,
// and the later one would take the earlier one's raised percent for the
// one to put back when it stops. So the first pacer paces and the others
// wait, and a process's nodes leave the percent as they found it.
var pacing atomic.Bool

// Pacer sets the process's GC percent from the allocation rate. Only one
// Pacer on the real runtime paces at a time in a process; the others' Run
// only waits for its context.
type Pacer struct {
	cfg        Config
	log        *slog.Logger
	read       func() (uint64, uint64)
	percent    func() int
	setPercent func(int) int
	ticks      <-chan time.Time
	// process: the percent set is the process's (no SetPercent given).
	process bool

	// Only Run's goroutine touches these.
	orig      int // in force when Run started; put back when it ends
	cur       int // in force now, as far as the pacer knows
	measured  bool
	lastAt    time.Time
	lastAlloc uint64
	smoothed  float64 // bytes/s

	mRate    prometheus.Gauge
	mChanges prometheus.Counter
}

// New builds a pacer; Run paces.
func New(cfg Config, deps Deps) (*Pacer, error) {
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Budget == 0 {
		cfg.Budget = time.Second
	}
	if cfg.Base == 0 {
		cfg.Base = 100
	}
	if cfg.Max == 0 {
		cfg.Max = 800
	}
	switch {
	case cfg.Interval < 0:
		return nil, fmt.Errorf("gcpace: config: Interval: want > 0, got %v", cfg.Interval)
	case cfg.Budget < 0:
		return nil, fmt.Errorf("gcpace: config: Budget: want > 0, got %v", cfg.Budget)
	case cfg.Base < 0:
		return nil, fmt.Errorf("gcpace: config: Base: want > 0, got %d", cfg.Base)
	case cfg.Max < cfg.Base:
		return nil, fmt.Errorf("gcpace: config: Max: want ≥ Base (%d), got %d", cfg.Base, cfg.Max)
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Read == nil {
		deps.Read = runtimeRead()
	}
	if deps.Percent == nil {
		deps.Percent = runtimePercent
	}
	process := deps.SetPercent == nil
	if process {
		deps.SetPercent = debug.SetGCPercent
	}
	p := &Pacer{cfg: cfg, log: deps.Logger.With("component", "gcpace"), read: deps.Read,
		percent: deps.Percent, setPercent: deps.SetPercent, ticks: deps.Ticks, process: process,
		mRate: prometheus.NewGauge(prometheus.GaugeOpts{Name: "redial_gc_alloc_rate_bytes",
			Help: "Heap allocation rate, bytes per second, that the GC pacer acts on (smoothed as it falls)."}),
		mChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "redial_gc_percent_changes_total",
			Help: "Times the GC pacer changed the GC percent."}),
	}
	if deps.Registry != nil {
		// Read from the runtime, not from what the pacer last set: with
		// GOGC set, the operator's value is what is in force.
		mPercent := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "redial_gc_percent",
			Help: "The GC percent (GOGC) in force; -1 when collection is off."},
			func() float64 { return float64(p.percent()) })
		for _, c := range []prometheus.Collector{mPercent, p.mRate, p.mChanges} {
			if err := deps.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("gcpace: register metrics: %w", err)
			}
		}
	}
	return p, nil
}

// Run measures the allocation rate every Interval and sets the GC percent
// until ctx is cancelled, then puts back the percent that was in force
// when it started. With GOGC set it only waits for ctx.
func (p *Pacer) Run(ctx context.Context) error {
	if p.cfg.GOGCSet {
		p.log.Info("gcpace: GOGC is set in the environment; the GC percent is left as it says",
			"gc_percent", p.percent())
		<-ctx.Done()
		return nil
	}
	if p.process {
		if !pacing.CompareAndSwap(false, true) {
			p.log.Info("gcpace: another node in this process paces the GC; this one leaves it alone")
			<-ctx.Done()
			return nil
		}
		defer pacing.Store(false)
	}
	ticks := p.ticks
	if ticks == nil {
		t := time.NewTicker(p.cfg.Interval)
		defer t.Stop()
		ticks = t.C
	}
	p.start()
	defer p.restore()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-ticks:
			p.step(now)
		}
	}
}

// start forgets any earlier run's measurements: the first tick only takes
// a reading.
func (p *Pacer) start() {
	p.orig = p.percent()
	p.cur = p.orig
	p.measured = false
	p.smoothed = 0
	p.mRate.Set(0)
}

func (p *Pacer) restore() {
	if p.cur != p.orig {
		p.set(p.orig)
	}
}

// step takes a reading at now and sets the percent the rate since the
// last reading calls for.
func (p *Pacer) step(now time.Time) {
	alloc, live := p.read()
	// A tick no later than the last one (injected ticks) gives no rate:
	// it only becomes the reading the next rate is taken from.
	if !p.measured || !now.After(p.lastAt) {
		p.measured, p.lastAt, p.lastAlloc = true, now, alloc
		return
	}
	dt := now.Sub(p.lastAt)
	var rate float64
	if alloc > p.lastAlloc {
		rate = float64(alloc-p.lastAlloc) / dt.Seconds()
	}
	p.lastAt, p.lastAlloc = now, alloc
	p.smoothed += (1 - math.Exp(-dt.Seconds()/fallTime.Seconds())) * (rate - p.smoothed)
	rate = max(rate, p.smoothed)
	p.mRate.Set(rate)
	target := p.target(rate, live)
	if !p.worthChanging(target) {
		return
	}
	p.log.Debug("gcpace: GC percent changed", "from", p.cur, "to", target,
		"alloc_rate_bytes", uint64(rate), "live_bytes", live)
	p.set(target)
}

// target is the percent that makes the heap hold Budget's worth of
// garbage at rate (bytes/s) over live, within Base and Max.
func (p *Pacer) target(rate float64, live uint64) int {
	pct := 100 * rate * p.cfg.Budget.Seconds() / float64(max(live, minLive))
	return int(math.Round(min(max(pct, float64(p.cfg.Base)), float64(p.cfg.Max))))
}

// worthChanging keeps the percent unless target is more than a tenth away:
// the rate wavers from one second to the next and each change makes the
// runtime recompute its pacing. Base is always gone back to, so a node
// that fell quiet keeps no percent a little above Go's default.
func (p *Pacer) worthChanging(target int) bool {
	if target == p.cur {
		return false
	}
	if target == p.cfg.Base {
		return true
	}
	d := target - p.cur
	return 10*abs(d) > abs(p.cur)
}

func (p *Pacer) set(pct int) {
	p.setPercent(pct)
	p.cur = pct
	p.mChanges.Inc()
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// runtimeRead reads the runtime's cumulative allocation and live heap
// into samples of its own; only Run's goroutine calls it.
func runtimeRead() func() (uint64, uint64) {
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}
	return func() (uint64, uint64) {
		metrics.Read(samples)
		return sampleUint(samples[0]), sampleUint(samples[1])
	}
}

// runtimePercent is the GC percent in force, read without setting it
// (debug.SetGCPercent can only read by writing). Scrapes call it
// concurrently, so each call has its own sample.
func runtimePercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	// The runtime keeps "off" (-1) in a uint64.
	return int(int64(sampleUint(s[0])))
}

// sampleUint is a sample's value, 0 when this runtime does not know the
// metric (every one used here exists since Go 1.21).
func sampleUint(s metrics.Sample) uint64 {
	if s.Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s.Value.Uint64()
}
