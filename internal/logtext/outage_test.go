package logtext

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

func newTestOutage(level slog.Level, quiet time.Duration, now func() time.Time) (*Outage, *syncBuffer) {
	buf := &syncBuffer{}
	l := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level}))
	return NewOutage(l, OutageConfig{Name: "dialer", Quiet: quiet, Now: now}), buf
}

// A thousand failed retries make one WARN (with the first error) and the
// success after them one INFO with the duration and the count; at DEBUG
// every retry is still there.
func TestOutageLogsStateChangesNotRetries(t *testing.T) {
	clock := time.Unix(1000, 0)
	o, buf := newTestOutage(slog.LevelInfo, time.Second, func() time.Time { return clock })
	o.OK() // nothing failing: silent
	for i := 0; i < 1000; i++ {
		if first := o.Fail("dialer: claim failed", fmt.Errorf("dial tcp: refused #%d", i), "task", "t1"); first != (i == 0) {
			t.Fatalf("failure %d reported first=%v", i, first)
		}
		clock = clock.Add(10 * time.Millisecond)
	}
	if !o.Down() {
		t.Fatal("not down after failures")
	}
	clock = clock.Add(2 * time.Second)
	o.OK()
	o.OK()
	out := buf.String()
	if n := strings.Count(out, "\n"); n != 2 {
		t.Fatalf("%d lines for an outage of 1000 retries, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, `level=WARN msg="dialer: claim failed" error="dial tcp: refused #0" task=t1`) {
		t.Fatalf("first failure not logged with its error and attributes:\n%s", out)
	}
	if !strings.Contains(out, `level=INFO msg="dialer: redis reachable again" after=12s failed_attempts=1000`) {
		t.Fatalf("recovery line missing or wrong:\n%s", out)
	}
	if o.Down() {
		t.Fatal("still down after recovery")
	}
	// A new outage is reported again.
	buf.Reset()
	o.Fail("dialer: claim failed", errors.New("again"))
	if !strings.Contains(buf.String(), `level=WARN`) {
		t.Fatalf("second outage not reported: %q", buf.String())
	}

	d, dbuf := newTestOutage(slog.LevelDebug, time.Second, func() time.Time { return clock })
	for i := 0; i < 5; i++ {
		d.Fail("x: failed", errors.New("e"))
	}
	if got := strings.Count(dbuf.String(), "level=DEBUG"); got != 4 || !strings.Contains(dbuf.String(), "failed_attempts=5") {
		t.Fatalf("repeats at DEBUG: %d lines:\n%s", got, dbuf.String())
	}
}

// While some calls fail and others succeed (one Redis Cluster shard
// away), the state does not flap: one WARN, and the INFO only once no
// call has failed for Quiet.
func TestOutagePartialFailureDoesNotFlap(t *testing.T) {
	clock := time.Unix(1000, 0)
	o, buf := newTestOutage(slog.LevelInfo, time.Hour, func() time.Time { return clock })
	for i := 0; i < 500; i++ {
		o.Fail("schedule: claim failed", errors.New("CLUSTERDOWN"))
		clock = clock.Add(100 * time.Millisecond)
		o.OK()
		clock = clock.Add(100 * time.Millisecond)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("%d lines while half the calls failed, want 1:\n%s", n, buf.String())
	}
	clock = clock.Add(time.Hour)
	o.OK()
	if !strings.Contains(buf.String(), `msg="dialer: redis reachable again" after=1m39.9s failed_attempts=500`) {
		t.Fatalf("recovery: %s", buf.String())
	}
}

// The outage ends with the first success at least Quiet after the last
// failure; the duration runs to the first success after that failure, and
// a failure in between starts the wait again.
func TestOutageRecoveryWaitsForQuiet(t *testing.T) {
	clock := time.Unix(1000, 0)
	o, buf := newTestOutage(slog.LevelInfo, 5*time.Second, func() time.Time { return clock })
	o.Fail("notify: push failed", errors.New("refused"))
	clock = clock.Add(time.Second)
	o.OK() // first success, 1 s after the failure
	clock = clock.Add(3 * time.Second)
	o.OK()
	if strings.Contains(buf.String(), "reachable again") || !o.Down() {
		t.Fatalf("recovered 4 s after the last failure, Quiet 5 s:\n%s", buf.String())
	}
	clock = clock.Add(time.Second)
	o.OK()
	if !strings.Contains(buf.String(), `msg="dialer: redis reachable again" after=1s failed_attempts=1`) || o.Down() {
		t.Fatalf("no recovery once quiet:\n%s", buf.String())
	}

	buf.Reset()
	o.Fail("notify: push failed", errors.New("refused"))
	clock = clock.Add(4 * time.Second)
	o.OK()
	o.Fail("notify: push failed", errors.New("refused again"))
	clock = clock.Add(4 * time.Second)
	o.OK()
	if strings.Contains(buf.String(), "reachable again") || !o.Down() {
		t.Fatalf("recovered 4 s after a failure:\n%s", buf.String())
	}
	clock = clock.Add(2 * time.Second)
	o.OK()
	if !strings.Contains(buf.String(), `after=8s failed_attempts=2`) {
		t.Fatalf("recovery: %s", buf.String())
	}
}
