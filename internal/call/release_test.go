package call

import (
	"testing"
	"time"
)

// The memory release runs once after a burst's calls are over, never while
// calls are many, and at most once per interval.
func TestReleaseAfterBurst(t *testing.T) {
	now := time.Unix(1700000000, 0)
	m := newTestManager(Config{KeepEnded: time.Hour, MaxEnded: 100000, MaxEndedBytes: 1 << 30}, &now)
	released := 0
	m.release = newMemReleaser(Config{ReleaseAfterPeak: 100, ReleaseQuiet: 5 * time.Second, ReleaseInterval: 10 * time.Second},
		func() { released++ })
	tick := func(n int) {
		for i := 0; i < n; i++ {
			now = now.Add(time.Second)
			m.checkRelease()
		}
	}
	var live []*Call
	start := func(n int) {
		for i := 0; i < n; i++ {
			c := newCall(Request{CallRef: NewRef(), Numbers: []string{"1"}}, now)
			m.mu.Lock()
			m.addLocked(c)
			m.mu.Unlock()
			live = append(live, c)
		}
	}
	end := func(n int) {
		for _, c := range live[:n] {
			m.finish(c)
		}
		live = live[n:]
	}

	// Steady load: 150 calls in progress for a minute, turning over.
	start(150)
	for i := 0; i < 60; i++ {
		end(20)
		start(20)
		tick(1)
	}
	if released != 0 {
		t.Fatalf("released %d times under steady load", released)
	}
	// The burst ends: down to 10 of a peak of 150 (at most a tenth).
	end(140)
	tick(4)
	if released != 0 {
		t.Fatalf("released before the calls stayed few for ReleaseQuiet")
	}
	tick(2)
	if released != 1 {
		t.Fatalf("released %d times after the burst, want 1", released)
	}
	if len(m.calls) != 10 {
		t.Fatalf("%d calls in progress, want 10", len(m.calls))
	}
	// Idle afterwards: no more releases.
	tick(60)
	if released != 1 {
		t.Fatalf("released %d times while idle after the burst, want 1", released)
	}
	// A burst that ends within the interval after the last release waits
	// for the interval.
	end(10)
	tick(30)
	if released != 1 {
		t.Fatalf("released again after a drop from a small peak")
	}
	start(300)
	tick(1)
	end(300)
	tick(6)
	if released != 2 {
		t.Fatalf("released %d times after the second burst, want 2", released)
	}
	start(300)
	tick(1)
	end(300)
	tick(8) // quiet for long enough, but 9 s after the last release
	if released != 2 {
		t.Fatalf("released within the interval of the last release")
	}
	tick(1)
	if released != 3 {
		t.Fatalf("released %d times after the interval, want 3", released)
	}
	// A burst shorter than a tick still counts: its peak is recorded
	// when the calls start.
	start(200)
	end(200)
	tick(9)
	if released != 3 {
		t.Fatalf("released within the interval after a short burst")
	}
	tick(1)
	if released != 4 {
		t.Fatalf("released %d times after a burst between two checks, want 4", released)
	}
	// Short calls at a high rate keep few in progress, but they are load:
	// after a burst, 500 calls a second that each end within the second
	// never look like the end of the burst.
	tick(20)
	start(1000)
	tick(1)
	end(1000)
	before := released
	for i := 0; i < 60; i++ {
		start(500)
		end(500)
		tick(1)
	}
	if released != before {
		t.Fatalf("released %d times under 500 short calls a second", released-before)
	}
	// When they stop, the burst is over.
	tick(6)
	if released != before+1 {
		t.Fatalf("released %d times once the short calls stopped, want 1", released-before)
	}
	// Never releases when switched off.
	off := newMemReleaser(Config{ReleaseAfterPeak: -1}, func() { t.Fatal("released while off") })
	for i := 0; i < 100; i++ {
		off.due(now.Add(time.Duration(i)*time.Second), 0, 1000, 0)
	}
}
