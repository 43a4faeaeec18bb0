package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Concurrent marks share script runs, every claim ends up marked exactly
// once, and a mark plus an ack cost about two commands per number inside
// Redis (one LREM each, one LPUSH per batch).
func TestConcurrentMarksShareOneScriptRun(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	k := l.Keys("")
	const n = 300
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf("n%03d", i)
	}
	if _, err := s.PushNumbers(ctx, "{q}", items); err != nil {
		t.Fatal(err)
	}
	claimN(t, l, n)
	before := r.CommandCalls(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Mark(ctx, it); err != nil {
				errs <- fmt.Errorf("mark %s: %w", it, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	after := r.CommandCalls(t)
	if lrem := after["lrem"] - before["lrem"]; lrem != n {
		t.Errorf("%d LREMs for %d marks, want one each", lrem, n)
	}
	// Each script run pushes its batch with one LPUSH.
	runs := after["lpush"] - before["lpush"]
	if runs < 1 || runs >= n {
		t.Errorf("%d LPUSHes for %d concurrent marks: want one per script run, fewer runs than marks", runs, n)
	}
	t.Logf("%d concurrent marks: %d script runs", n, runs)
	if m := lrange(t, r, k.Dialing); len(m) != n {
		t.Fatalf("dialing list holds %d, want %d", len(m), n)
	}
	if p := r.Client.LLen(ctx, k.Processing).Val(); p != 0 {
		t.Fatalf("processing list holds %d after marking every claim", p)
	}
	// The ack of a marked claim is one LREM inside its script.
	before = r.CommandCalls(t)
	for _, it := range items {
		if err := l.Ack(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	after = r.CommandCalls(t)
	inside := int64(0)
	for name, c := range after {
		if name != "evalsha" && name != "eval" && name != "info" {
			inside += c - before[name]
		}
	}
	if inside != n {
		t.Errorf("acks of %d marked claims ran %d commands inside their scripts, want %d", n, inside, n)
	}
	if e := r.Client.Exists(ctx, k.Processing, k.Dialing, k.Invited, k.Scores).Val(); e != 0 {
		t.Fatalf("%d ledger keys left after every ack", e)
	}
}

// A settle op spooled by a version before the dialing list (six keys, the
// marks counted in the invited HASH) is carried out the way that version
// did; a node of that version left behind for recovery is recovered with
// its marks.
func TestOpsAndClaimsOfTheInvitedHashLayout(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	k := l.Keys("")
	// What the earlier version left: three claims, "a" twice, one copy of
	// "a" and "b" marked.
	r.Client.RPush(ctx, k.Processing, "a", "b", "a", "c")
	r.Client.HSet(ctx, k.Invited, "a", 1, "b", 1)
	r.Client.SAdd(ctx, k.Holders, "n1")
	// Its spooled ack of "b", as that version encoded it.
	old := map[string]any{"ledger": "queue {q}", "keys": []string{k.Processing, k.Invited, k.Scores, k.Scores, k.Scores, k.Source},
		"member": "b", "how": "ack", "no_scores": true}
	raw, _ := json.Marshal(old)
	var op SettleOp
	if err := json.Unmarshal(raw, &op); err != nil {
		t.Fatal(err)
	}
	if op.Keys[6] != "" {
		t.Fatalf("an op of six keys decoded with a dialing key %q", op.Keys[6])
	}
	if err := s.Settle(ctx, op); err != nil {
		t.Fatalf("legacy ack: %v", err)
	}
	if p := strings.Join(lrange(t, r, k.Processing), ","); p != "a,a,c" {
		t.Fatalf("processing after the legacy ack %q", p)
	}
	if r.Client.HExists(ctx, k.Invited, "b").Val() {
		t.Fatal("the legacy ack left b's mark")
	}
	// The restarted node settles the rest: one "a" was marked (parked),
	// the other and "c" were not (requeued).
	res, err := l.SettleOwn(ctx)
	if err != nil || res != (RecoverResult{Requeued: 2, Interrupted: 1}) {
		t.Fatalf("settle own = %+v, %v", res, err)
	}
	in := lrange(t, r, k.Interrupted)
	if len(in) != 1 || decodeParked(t, in[0]).Item != "a" {
		t.Fatalf("interrupted %q", in)
	}
	if e := r.Client.Exists(ctx, k.Processing, k.Dialing, k.Invited).Val(); e != 0 {
		t.Fatalf("%d of the old layout's keys left", e)
	}
}

// A ZSET ledger keeps a member's score while any copy of it is held, in
// either list, and forgets it with the last one.
func TestMarkedScheduledClaimKeepsItsScore(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.ScheduleLedger()
	k := l.Keys("")
	now := schedRedisNow(t, r)
	s.AddScheduled(ctx, "m", now-3)
	if c, _, err := l.ClaimDue(ctx, 10); err != nil || len(c) != 1 {
		t.Fatalf("claim = %v, %v", c, err)
	}
	if err := l.Mark(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Client.HGet(ctx, k.Scores, "m").Float64(); err != nil || v != now-3 {
		t.Fatalf("score of the marked claim %v, %v", v, err)
	}
	if err := l.Interrupt(ctx, "m", "call lost"); err != nil {
		t.Fatal(err)
	}
	if r.Client.HExists(ctx, k.Scores, "m").Val() {
		t.Fatal("score kept after the last copy left")
	}
	if err := l.Interrupt(ctx, "m", "again"); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("second interrupt = %v, want ErrClaimGone", err)
	}
}
