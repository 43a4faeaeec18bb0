package lines

import (
	"context"
	"fmt"
	"testing"
	"time"

	"redial/internal/testenv"
)

// Issue 14: a Go map keeps the buckets of its peak, so the leases of a
// burst of calls left their buckets in the held map for good. Once the
// burst is over the map is rebuilt small, and what is still held stays
// held (and is released as before).
func TestHeldMapShrinksAfterBurst(t *testing.T) {
	r := testenv.StartRedis(t)
	setLines(t, r, map[string]string{"l1": lineJSON("g", 1000, -1)})
	n := newNode(t, r, "n1", Config{})
	n.run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const burst, kept = 400, 5
	var leases []*Lease
	for i := 0; i < burst; i++ {
		l, err := n.Acquire(ctx, "g", fmt.Sprint("call-", i))
		if err != nil {
			t.Fatalf("acquire %d: %v", i, err)
		}
		leases = append(leases, l)
	}
	for _, l := range leases[kept:] {
		if err := l.Release(ctx); err != nil {
			t.Fatalf("release: %v", err)
		}
	}
	n.heldMu.Lock()
	peak, held := n.heldPeak, len(n.held)
	n.heldMu.Unlock()
	if held != kept || n.Held() != kept {
		t.Fatalf("%d leases held after the burst, want %d", held, kept)
	}
	if peak > burst/16 {
		t.Errorf("held map not rebuilt after the burst: peak %d of %d leases", peak, burst)
	}
	for _, l := range leases[:kept] {
		if err := l.Release(ctx); err != nil {
			t.Fatalf("release after the rebuild: %v", err)
		}
	}
	if n.Held() != 0 {
		t.Errorf("%d leases held after all were released", n.Held())
	}
	if v, err := r.Client.ZCard(ctx, n.st.LineLeasesKey("l1")).Result(); err != nil || v != 0 {
		t.Errorf("%d leases left in Redis (%v)", v, err)
	}
}
