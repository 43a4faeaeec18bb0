package call

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Issue 9: ended calls were kept by count only, so calls with large
// variables (or, before validation, megabyte numbers) filled memory. The
// ended calls kept are bounded by bytes too, oldest forgotten first.
func TestEndedCallsBoundedByBytes(t *testing.T) {
	now := time.Unix(1700000000, 0)
	m := &Manager{cfg: Config{KeepEnded: time.Hour, MaxEnded: 1000, MaxEndedBytes: 1 << 20},
		calls: map[string]*Call{}, ended: map[string]time.Time{}, endedSize: map[string]int{},
		now: func() time.Time { return now }}
	vars := map[string]string{}
	for i := 0; i < 8; i++ {
		vars[fmt.Sprint("v", i)] = strings.Repeat("x", 4000)
	}
	const n = 100
	for i := 0; i < n; i++ {
		ref := fmt.Sprint("c", i)
		c := newCall(Request{CallRef: ref, Numbers: []string{"1001"}, LineGroups: []string{"g"}, Variables: vars}, now)
		m.mu.Lock()
		m.calls[ref] = c
		m.mu.Unlock()
		m.finish(c)
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
	if len(m.calls) != kept || len(m.endedSize) != kept {
		t.Errorf("calls %d, sizes %d, order %d", len(m.calls), len(m.endedSize), kept)
	}
	// Pruning by age keeps the byte count true.
	now = now.Add(2 * time.Hour)
	m.prune()
	if m.endedBytes != 0 || len(m.calls) != 0 || len(m.order) != 0 {
		t.Fatalf("after prune: %d bytes, %d calls, %d ordered", m.endedBytes, len(m.calls), len(m.order))
	}
	// The count bound still holds for small calls.
	m.cfg.MaxEnded = 5
	for i := 0; i < 10; i++ {
		ref := fmt.Sprint("s", i)
		c := newCall(Request{CallRef: ref, Numbers: []string{"1"}}, now)
		m.calls[ref] = c
		m.finish(c)
	}
	if len(m.order) != 5 || len(m.calls) != 5 {
		t.Fatalf("count bound: %d kept", len(m.order))
	}
}
