package notify

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"redial/internal/store"
)

// CDRs and acks of calls ending together share Redis commands: every CDR
// reaches the list and the stream once, every claim is acknowledged once,
// and both cost fewer LPUSHes and script runs than records.
func TestConcurrentCDRsAndAcksShareCommands(t *testing.T) {
	f := newFixture(t)
	p := f.publisher(t)
	run(t, p)
	ctx := context.Background()
	st := store.NewWithClient(f.r.Client, store.Config{Host: "n1"})
	l := st.QueueLedger("{q}", false)
	const n = 200
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf("%04d", i)
	}
	if _, err := st.PushNumbers(ctx, "{q}", items); err != nil {
		t.Fatal(err)
	}
	claimed, err := l.ClaimBatch(ctx, n)
	if err != nil || len(claimed) != n {
		t.Fatalf("claimed %d, %v", len(claimed), err)
	}
	for _, it := range claimed {
		if err := l.Mark(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	before := f.r.CommandCalls(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, it := range claimed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.PublishCDR(ctx, testCDR("ref-"+it)); err != nil {
				errs <- err
				return
			}
			if err := p.Settle(ctx, l.AckOp(it)); err != nil {
				errs <- fmt.Errorf("ack %s: %w", it, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	after := f.r.CommandCalls(t)
	lpush, xadd, lrem := after["lpush"]-before["lpush"], after["xadd"]-before["xadd"], after["lrem"]-before["lrem"]
	runs := after["evalsha"] + after["eval"] - before["evalsha"] - before["eval"]
	t.Logf("%d calls: %d LPUSH, %d XADD, %d LREM, %d script runs", n, lpush, xadd, lrem, runs)
	if xadd != n || lrem != n {
		t.Errorf("%d XADD and %d LREM for %d calls, want one each", xadd, lrem, n)
	}
	if lpush < 1 || lpush >= n {
		t.Errorf("%d LPUSHes for %d CDRs ending together, want fewer than CDRs", lpush, n)
	}
	if runs < 1 || runs >= n {
		t.Errorf("%d ack script runs for %d claims, want fewer than claims", runs, n)
	}
	refs := listRefs(t, f)
	want := make([]string, n)
	for i, it := range claimed {
		want[i] = "ref-" + it
	}
	slices.Sort(refs)
	slices.Sort(want)
	if !slices.Equal(refs, want) {
		t.Fatalf("CDRs on the list: %d, want each of %d once", len(refs), n)
	}
	if got := f.r.Client.XLen(ctx, st.CDRStreamKey()).Val(); got != n {
		t.Fatalf("stream holds %d CDRs, want %d", got, n)
	}
	k := l.Keys("")
	if e := f.r.Client.Exists(ctx, k.Processing, k.Dialing).Val(); e != 0 {
		t.Fatal("claims left after every ack")
	}
	// An ack of a claim no longer held is reported as such, not spooled.
	if err := p.Settle(ctx, l.AckOp(claimed[0])); err == nil || p.Spooled() != 0 {
		t.Fatalf("ack of a gone claim = %v, %d spooled", err, p.Spooled())
	}
}
