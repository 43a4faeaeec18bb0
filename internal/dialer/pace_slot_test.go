package dialer

import (
	"testing"
	"time"
)

// At a whole cps, no second holds more than cps calls, and a claim's own
// latency costs the rate only once per window, not once per call.
func TestCPSWindowKeepsTheRate(t *testing.T) {
	var w cpsWindow
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	start := now
	var times []time.Time
	for len(times) < 5000 {
		if d := w.wait(now, 1000); d > 0 {
			now = now.Add(d)
			continue
		}
		times = append(times, now)
		w.record(now, 1000)
		now = now.Add(400 * time.Microsecond) // the claim's round trip
	}
	for i := 1000; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1000]); gap < time.Second {
			t.Fatalf("calls %d and %d are %v apart: more than 1000 in a second", i-999, i+1, gap)
		}
	}
	rate := float64(len(times)) / now.Sub(start).Seconds()
	if rate < 990 {
		t.Fatalf("rate %.0f calls/s at cps 1000", rate)
	}
	// A fractional cps: 0.5 is one call per two seconds.
	var h cpsWindow
	h.record(start, 0.5)
	if d := h.wait(start.Add(time.Second), 0.5); d != time.Second {
		t.Fatalf("cps 0.5: wait %v, want 1s", d)
	}
	// A changed cps starts over.
	h.record(start, 4)
	if d := h.wait(start, 4); d != 0 {
		t.Fatalf("after a change to cps 4: wait %v", d)
	}
}
