package gcpace

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"redial/internal/testenv"
)

const mib = 1 << 20

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeGC stands in for the runtime: what Read reports, the percent in
// force, and every SetPercent call.
type fakeGC struct {
	mu      sync.Mutex
	alloc   uint64
	live    uint64
	perRead uint64 // added to alloc at every Read (Run's tests)
	reads   int
	percent int
	sets    []int
}

func (f *fakeGC) Read() (uint64, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	f.alloc += f.perRead
	return f.alloc, f.live
}

func (f *fakeGC) Percent() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.percent
}

func (f *fakeGC) SetPercent(n int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.percent
	f.percent = n
	f.sets = append(f.sets, n)
	return old
}

func (f *fakeGC) Sets() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sets)
}

func (f *fakeGC) Reads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

func (f *fakeGC) deps(reg *prometheus.Registry) Deps {
	return Deps{Logger: discard, Registry: reg, Read: f.Read, Percent: f.Percent, SetPercent: f.SetPercent}
}

// stepper drives a pacer's measurements one simulated second at a time,
// as Run's ticker would, without a goroutine in between.
type stepper struct {
	t   *testing.T
	p   *Pacer
	f   *fakeGC
	reg *prometheus.Registry
	now time.Time
}

func newStepper(t *testing.T, cfg Config) *stepper {
	t.Helper()
	f := &fakeGC{percent: 100}
	reg := prometheus.NewRegistry()
	p, err := New(cfg, f.deps(reg))
	if err != nil {
		t.Fatal(err)
	}
	s := &stepper{t: t, p: p, f: f, reg: reg, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	p.start()
	p.step(s.now)
	return s
}

// second is one second in which the node allocated rate bytes with live
// bytes live as of the last collection; it returns the percent in force
// after the pacer's measurement.
func (s *stepper) second(rate, live uint64) int {
	s.f.mu.Lock()
	s.f.alloc += rate
	s.f.live = live
	s.f.mu.Unlock()
	s.now = s.now.Add(time.Second)
	s.p.step(s.now)
	return s.f.Percent()
}

func TestHighRateRaisesPercent(t *testing.T) {
	s := newStepper(t, Config{})
	// 150 MiB/s over 40 MiB live: one second of garbage is 3.75 live heaps.
	if got := s.second(150*mib, 40*mib); got != 375 {
		t.Fatalf("percent after a second at 150 MiB/s with 40 MiB live = %d, want 375", got)
	}
	if got := testenv.MustMetric(t, s.reg, "redial_gc_percent", nil); got != 375 {
		t.Errorf("redial_gc_percent = %v, want 375", got)
	}
	if got := testenv.MustMetric(t, s.reg, "redial_gc_alloc_rate_bytes", nil); got != 150*mib {
		t.Errorf("redial_gc_alloc_rate_bytes = %v, want %v", got, 150*mib)
	}
	// A shorter budget asks for collections more often.
	s = newStepper(t, Config{Budget: 500 * time.Millisecond})
	if got := s.second(150*mib, 40*mib); got != 188 {
		t.Fatalf("percent with a 0.5 s budget = %d, want 188", got)
	}
}

func TestLowRateKeepsBase(t *testing.T) {
	// The memory bench's setup of held calls: a few MiB a second over a
	// heap of held calls. Raising the percent there would raise each held
	// call's share of RSS.
	s := newStepper(t, Config{})
	for i := range 10 {
		if got := s.second(5*mib, 30*mib); got != 100 {
			t.Fatalf("second %d at 5 MiB/s with 30 MiB live: percent %d, want 100", i, got)
		}
	}
	if sets := s.f.Sets(); len(sets) != 0 {
		t.Fatalf("SetPercent called %v at low rates; want no call", sets)
	}
	// A node just started has a tiny live heap; 3 MiB/s over 1 MiB live
	// would be 300% without the 4 MiB floor.
	s = newStepper(t, Config{})
	for i := range 5 {
		if got := s.second(3*mib, 1*mib); got != 100 {
			t.Fatalf("second %d at 3 MiB/s with 1 MiB live: percent %d, want 100", i, got)
		}
	}
}

func TestMaxCapsPercent(t *testing.T) {
	s := newStepper(t, Config{})
	if got := s.second(2048*mib, 40*mib); got != 800 {
		t.Fatalf("percent at 2 GiB/s with 40 MiB live = %d, want the default Max 800", got)
	}
	s = newStepper(t, Config{Max: 300})
	if got := s.second(150*mib, 40*mib); got != 300 {
		t.Fatalf("percent at 150 MiB/s with Max 300 = %d, want 300", got)
	}
}

func TestFallsBackToBase(t *testing.T) {
	s := newStepper(t, Config{})
	for range 3 {
		s.second(150*mib, 40*mib)
	}
	prev := s.f.Percent()
	if prev != 375 {
		t.Fatalf("percent under load = %d, want 375", prev)
	}
	var seen []int
	for range 10 {
		got := s.second(5*mib, 40*mib)
		seen = append(seen, got)
		if got > prev {
			t.Fatalf("percent rose while the rate fell: %v", seen)
		}
		prev = got
	}
	if prev != 100 {
		t.Fatalf("percent 10 s after the rate fell to 5 MiB/s: %v, want back to 100", seen)
	}
	if seen[0] == 100 {
		t.Errorf("percent dropped to 100 after one quiet second (%v); a lull between bursts should not flip it", seen)
	}
}

// TestReturnsToBaseFromJustAbove: a percent within a tenth of Base, which
// the rule against small changes would keep, still goes back to Base when
// the rate falls.
func TestReturnsToBaseFromJustAbove(t *testing.T) {
	s := newStepper(t, Config{})
	if got := s.second(48*mib, 40*mib); got != 120 {
		t.Fatalf("percent at 48 MiB/s = %d, want 120", got)
	}
	if got := s.second(uint64(428*mib/10), 40*mib); got != 107 {
		t.Fatalf("percent at 42.8 MiB/s = %d, want 107", got)
	}
	if got := s.second(5*mib, 40*mib); got != 100 {
		t.Fatalf("percent once the rate fell to 5 MiB/s = %d, want 100", got)
	}
}

func TestSmallChangesKeepPercent(t *testing.T) {
	s := newStepper(t, Config{})
	s.second(150*mib, 40*mib)
	// 155 MiB/s asks for 388: within a tenth of 375.
	if got := s.second(155*mib, 40*mib); got != 375 {
		t.Fatalf("percent after a 3%% rise in rate = %d, want 375 kept", got)
	}
	if sets := s.f.Sets(); !slices.Equal(sets, []int{375}) {
		t.Fatalf("SetPercent calls = %v, want only [375]", sets)
	}
	// A real change still goes through.
	if got := s.second(200*mib, 40*mib); got != 500 {
		t.Fatalf("percent at 200 MiB/s = %d, want 500", got)
	}
	if got := testenv.MustMetric(t, s.reg, "redial_gc_percent_changes_total", nil); got != 2 {
		t.Errorf("redial_gc_percent_changes_total = %v, want 2", got)
	}
}

// runPacer runs p until the returned stop is called, which waits for Run
// to return and fails the test on its error.
func runPacer(t *testing.T, p *Pacer) (done <-chan error, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-ch:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return within 10s of its context's cancel")
			}
		})
	}
	t.Cleanup(stop)
	return ch, stop
}

func TestRunRestoresPercent(t *testing.T) {
	// 150 is what "was in force" (a debug.SetGCPercent of the caller's):
	// Run must put that back, not Base.
	f := &fakeGC{percent: 150, perRead: 150 * mib, live: 40 * mib}
	ticks := make(chan time.Time)
	deps := f.deps(prometheus.NewRegistry())
	deps.Ticks = ticks
	p, err := New(Config{}, deps)
	if err != nil {
		t.Fatal(err)
	}
	_, stop := runPacer(t, p)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Run takes a tick only once it has handled the one before, so the
	// third send returns after the second tick's measurement.
	for i := range 3 {
		ticks <- t0.Add(time.Duration(i) * time.Second)
	}
	if got := f.Percent(); got != 375 {
		t.Fatalf("percent while running at 150 MiB/s = %d, want 375", got)
	}
	stop()
	if got := f.Percent(); got != 150 {
		t.Fatalf("percent after Run returned = %d, want 150 (in force when Run started)", got)
	}
	if sets := f.Sets(); !slices.Equal(sets, []int{375, 150}) {
		t.Fatalf("SetPercent calls = %v, want [375 150]", sets)
	}
}

func TestGOGCSetLeavesPercent(t *testing.T) {
	// As if GOGC=200 were in the environment, under a rate that would
	// otherwise raise the percent at the second tick.
	f := &fakeGC{percent: 200, perRead: 1024 * mib, live: 40 * mib}
	ticks := make(chan time.Time, 3)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		ticks <- t0.Add(time.Duration(i) * time.Second)
	}
	var logs testenv.SyncBuffer
	reg := prometheus.NewRegistry()
	deps := f.deps(reg)
	deps.Ticks = ticks
	deps.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	p, err := New(Config{GOGCSet: true}, deps)
	if err != nil {
		t.Fatal(err)
	}
	done, stop := runPacer(t, p)
	testenv.WaitFor(t, 5*time.Second, func() error {
		if !strings.Contains(logs.String(), "GOGC is set") {
			return fmt.Errorf("no INFO line about GOGC; log: %q", logs.String())
		}
		return nil
	})
	if n := strings.Count(logs.String(), "GOGC is set"); n != 1 {
		t.Errorf("GOGC line logged %d times, want once: %q", n, logs.String())
	}
	select {
	case <-done:
		t.Fatal("Run returned before its context was cancelled")
	default:
	}
	if got := testenv.MustMetric(t, reg, "redial_gc_percent", nil); got != 200 {
		t.Errorf("redial_gc_percent = %v, want the operator's 200", got)
	}
	stop()
	if sets := f.Sets(); len(sets) != 0 {
		t.Fatalf("SetPercent called %v with GOGC set; want never", sets)
	}
	if n := f.Reads(); n != 0 {
		t.Fatalf("allocation read %d times with GOGC set; want never", n)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Max: 50}, "gcpace: config: Max: want ≥ Base (100), got 50"},
		{Config{Base: 200, Max: 150}, "gcpace: config: Max: want ≥ Base (200), got 150"},
		{Config{Base: -1}, "gcpace: config: Base: want > 0, got -1"},
		{Config{Interval: -time.Second}, "gcpace: config: Interval: want > 0, got -1s"},
		{Config{Budget: -time.Second}, "gcpace: config: Budget: want > 0, got -1s"},
	} {
		_, err := New(tc.cfg, Deps{Logger: discard})
		if err == nil || err.Error() != tc.want {
			t.Errorf("New(%+v) error = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestRealRuntime runs pacers on this process's own runtime: garbage made
// fast raises the GC percent; a second node's pacer in the same process
// leaves the percent to the first; once both stop, the percent is the one
// they found.
func TestRealRuntime(t *testing.T) {
	// 100 whatever GOGC the test binary was started with, so there is
	// room to raise it.
	const orig = 100
	prev := debug.SetGCPercent(orig)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	reg := prometheus.NewRegistry()
	p, err := New(Config{Interval: 50 * time.Millisecond}, Deps{Logger: discard, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	_, stop := runPacer(t, p)
	// A non-constant size keeps every piece on the heap.
	size, pieces := 4096, 8192
	var keep []byte
	garbage := func() {
		for range pieces { // 32 MiB
			keep = make([]byte, size)
		}
	}
	testenv.WaitFor(t, 20*time.Second, func() error {
		garbage()
		if got := testenv.MustMetric(t, reg, "redial_gc_percent", nil); got <= orig {
			return fmt.Errorf("redial_gc_percent = %v while allocating fast, want above %d (rate gauge %v B/s)",
				got, orig, testenv.MustMetric(t, reg, "redial_gc_alloc_rate_bytes", nil))
		}
		return nil
	})

	// Started now, the second would take the raised percent for the one
	// to put back.
	var logs testenv.SyncBuffer
	reg2 := prometheus.NewRegistry()
	p2, err := New(Config{Interval: 50 * time.Millisecond}, Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registry: reg2})
	if err != nil {
		t.Fatal(err)
	}
	_, stop2 := runPacer(t, p2)
	testenv.WaitFor(t, 5*time.Second, func() error {
		garbage()
		if !strings.Contains(logs.String(), "another node in this process paces the GC") {
			return fmt.Errorf("second pacer did not say it leaves the GC alone; log: %q", logs.String())
		}
		return nil
	})
	_ = keep
	stop()
	stop2()
	if got := testenv.MustMetric(t, reg2, "redial_gc_percent_changes_total", nil); got != 0 {
		t.Errorf("second pacer changed the percent %v times; want never", got)
	}
	if got := runtimePercent(); got != orig {
		t.Fatalf("runtime GC percent after both pacers stopped = %d, want %d", got, orig)
	}
	if got := testenv.MustMetric(t, reg, "redial_gc_percent", nil); got != orig {
		t.Fatalf("redial_gc_percent after Run returned = %v, want %d", got, orig)
	}
}
