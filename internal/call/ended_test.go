package call

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"redial/internal/notify"
)

// newTestManager builds a manager with only what keeping ended calls needs.
func newTestManager(cfg Config, now *time.Time) *Manager {
	return &Manager{cfg: cfg, calls: map[string]*Call{}, ended: map[string]*endedCall{}, log: slog.New(slog.DiscardHandler),
		now: func() time.Time { return *now }, release: newMemReleaser(Config{ReleaseAfterPeak: -1}, nil)}
}

// endWith registers a call as in progress, gives it CDRs carrying vars and
// ends it as a run does.
func endWith(m *Manager, ref string, now time.Time, vars map[string]string) *Call {
	c := newCall(Request{CallRef: ref, Numbers: []string{"1001"}, LineGroups: []string{"g"}, Variables: vars}, now)
	m.mu.Lock()
	m.addLocked(c)
	m.mu.Unlock()
	cdr := notify.CDR{CallRef: ref, ClientNumber: "1001", Disposition: "ANSWERED", Variables: vars}
	c.mu.Lock()
	c.info.CDRs = append(c.info.CDRs, cdr)
	c.out.CDRs = append(c.out.CDRs, cdr)
	c.info.State = StateEnded
	c.mu.Unlock()
	m.finish(c)
	return c
}

// Issue 9: ended calls were kept by count only, so calls with large
// variables (or, before validation, megabyte numbers) filled memory. The
// ended calls kept are bounded by bytes too, oldest forgotten first.
func TestEndedCallsBoundedByBytes(t *testing.T) {
	now := time.Unix(1700000000, 0)
	m := newTestManager(Config{KeepEnded: time.Hour, MaxEnded: 1000, MaxEndedBytes: 1 << 20}, &now)
	vars := map[string]string{}
	for i := 0; i < 8; i++ {
		vars[fmt.Sprint("v", i)] = strings.Repeat("x", 4000)
	}
	const n = 100
	for i := 0; i < n; i++ {
		endWith(m, fmt.Sprint("c", i), now, vars)
		if m.endedBytes > m.cfg.MaxEndedBytes {
			t.Fatalf("after %d calls: %d bytes kept, limit %d", i+1, m.endedBytes, m.cfg.MaxEndedBytes)
		}
	}
	kept := len(m.order)
	if kept == 0 || kept >= n || kept < (1<<20)/40000 {
		t.Fatalf("%d of %d ended calls kept with %d bytes", kept, n, m.endedBytes)
	}
	if _, ok := m.Get(fmt.Sprint("c", n-1)); !ok {
		t.Errorf("newest ended call forgotten")
	}
	if _, ok := m.Get("c0"); ok {
		t.Errorf("oldest ended call still kept")
	}
	if len(m.ended) != kept || len(m.calls) != 0 || m.Active() != 0 {
		t.Errorf("ended %d, in progress %d, order %d", len(m.ended), len(m.calls), kept)
	}
	// Pruning by age keeps the byte count true.
	now = now.Add(2 * time.Hour)
	m.prune()
	if m.endedBytes != 0 || len(m.ended) != 0 || len(m.order) != 0 {
		t.Fatalf("after prune: %d bytes, %d ended, %d ordered", m.endedBytes, len(m.ended), len(m.order))
	}
	// The count bound still holds for small calls.
	m.cfg.MaxEnded = 5
	for i := 0; i < 10; i++ {
		endWith(m, fmt.Sprint("s", i), now, nil)
	}
	if len(m.order) != 5 || len(m.ended) != 5 {
		t.Fatalf("count bound: %d kept", len(m.order))
	}
}

// An ended call is kept as a compact record: its CDRs once, nothing of its
// run. The record must stay well under 1 KiB for a plain call, so that a
// burst's ended calls leave the heap nearly flat.
func TestEndedRecordIsCompact(t *testing.T) {
	now := time.Unix(1700000000, 0)
	m := newTestManager(Config{KeepEnded: time.Hour, MaxEnded: 1000, MaxEndedBytes: 1 << 30}, &now)
	ref := NewRef()
	c := endWith(m, ref, now, map[string]string{"origination_caller_id_number": "5550100"})
	e := m.ended[ref]
	if e == nil {
		t.Fatal("no ended record")
	}
	if !e.outCDRs || len(e.info.CDRs) != 1 {
		t.Errorf("CDRs: %d kept, shared with the outcome %v", len(e.info.CDRs), e.outCDRs)
	}
	if e.size >= 1024 || e.size < 512 {
		t.Errorf("ended record estimated at %d bytes, want < 1 KiB", e.size)
	}
	if _, ok := m.calls[ref]; ok {
		t.Errorf("ended *Call still kept")
	}
	got, ok := m.Get(ref)
	if !ok {
		t.Fatal("ended call not found")
	}
	select {
	case <-got.Done():
	default:
		t.Errorf("ended call's Done not closed")
	}
	if got.Ref() != ref {
		t.Errorf("Ref %q", got.Ref())
	}
	if out := got.Outcome(); len(out.CDRs) != 1 || out.CDRs[0].CallRef != ref {
		t.Errorf("outcome CDRs %+v", out.CDRs)
	}
	if gi, ci := fmt.Sprintf("%+v", got.Info()), fmt.Sprintf("%+v", c.Info()); gi != ci {
		t.Errorf("Info of the record\n%s\nof the call\n%s", gi, ci)
	}
	if m.Hangup(ref) {
		t.Errorf("Hangup of an ended call reported true")
	}
	// The ref stays taken while the record is kept.
	if _, err := m.register(t.Context(), newCall(Request{CallRef: ref}, now)); err == nil {
		t.Errorf("ref of an ended call registered again")
	}
}
