package call

import (
	"runtime/debug"
	"time"
)

// memReleaser decides when to give memory back to the kernel after a burst
// of calls. A Go process that falls idle after a burst keeps the burst's
// garbage until the runtime's forced collection (every two minutes) and
// returns freed pages only gradually after that, so its RSS stays near the
// burst's peak for minutes. One FreeOSMemory (a collection that returns
// every free page) once the calls are over fixes that; it stops the world
// for a moment, so it runs only when the calls in progress have fallen to
// a tenth of a large peak and as few start each second (short calls at a
// high rate keep few in progress: that is load), never under steady load,
// and at most once per interval.
type memReleaser struct {
	free     func()
	minPeak  int // < 0: never release
	quiet    time.Duration
	interval time.Duration

	peak int       // most calls in progress since the last release
	low  time.Time // since when the calls are few; zero while they are many
	last time.Time // the last release; zero before the first
}

func newMemReleaser(cfg Config, free func()) *memReleaser {
	r := &memReleaser{free: free, minPeak: cfg.ReleaseAfterPeak, quiet: cfg.ReleaseQuiet, interval: cfg.ReleaseInterval}
	if r.free == nil {
		r.free = debug.FreeOSMemory
	}
	if r.minPeak == 0 {
		r.minPeak = 200
	}
	if r.quiet == 0 {
		r.quiet = 10 * time.Second
	}
	if r.interval == 0 {
		r.interval = 10 * time.Second
	}
	return r
}

// due is told, at now, the calls in progress, the most there were and how
// many started since the last call to due (a second ago); it reports
// whether to release memory now, and if so counts the release as done.
func (r *memReleaser) due(now time.Time, active, peak, started int) bool {
	if r.minPeak < 0 {
		return false
	}
	r.peak = max(r.peak, peak, active)
	if r.peak < r.minPeak || active > r.peak/10 || started > r.peak/10 {
		r.low = time.Time{}
		return false
	}
	if r.low.IsZero() {
		r.low = now
	}
	if now.Sub(r.low) < r.quiet || (!r.last.IsZero() && now.Sub(r.last) < r.interval) {
		return false
	}
	r.last, r.peak, r.low = now, active, time.Time{}
	return true
}

// checkRelease gives memory back to the kernel when a burst of calls is
// over (memReleaser); Run calls it every second.
func (m *Manager) checkRelease() {
	now := m.now()
	m.mu.Lock()
	active, peak, started := len(m.calls), m.peak, m.started
	m.peak, m.started = active, 0
	due := m.release.due(now, active, peak, started)
	if due && active == 0 {
		// A Go map never shrinks: drop the burst's buckets with it.
		m.calls = map[string]*Call{}
	}
	m.mu.Unlock()
	if !due {
		return
	}
	start := time.Now()
	m.release.free()
	m.log.Debug("call: burst over, memory returned to the kernel", "peak_calls", peak, "calls", active,
		"took", time.Since(start))
}
