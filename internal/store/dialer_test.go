package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"redial/internal/testenv"
)

func newDialerStore(t *testing.T, host string) (*Store, *testenv.Redis) {
	t.Helper()
	r := testenv.StartRedis(t)
	return hostStore(r, host), r
}

// hostStore is the Store of another node on the same Redis.
func hostStore(r *testenv.Redis, host string) *Store {
	return NewWithClient(r.Client, Config{Domain: "acme", Host: host})
}

// claimN claims n items of a LIST ledger or fails.
func claimN(t *testing.T, l *Ledger, n int) []string {
	t.Helper()
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		raw, ok, err := l.ClaimBlocking(context.Background(), time.Second)
		if err != nil || !ok {
			t.Fatalf("%s: claim %d of %d: ok=%v err=%v", l.Name(), i+1, n, ok, err)
		}
		out = append(out, raw)
	}
	return out
}

func lrange(t *testing.T, r *testenv.Redis, key string) []string {
	t.Helper()
	v, err := r.Client.LRange(context.Background(), key, 0, -1).Result()
	if err != nil {
		t.Fatalf("LRANGE %s: %v", key, err)
	}
	return v
}

func hashTag(k string) string {
	i := strings.IndexByte(k, '{')
	if i < 0 {
		return k
	}
	j := strings.IndexByte(k[i+1:], '}')
	if j <= 0 {
		return k
	}
	return k[i+1 : i+1+j]
}

func TestQueueLedgerKeysShareTheQueueHashSlot(t *testing.T) {
	s := NewWithClient(nil, Config{Host: "n1"})
	l := s.QueueLedger("{sales}:numbers", false)
	if l.Name() != "queue {sales}:numbers" || l.Host() != "n1" || l.Shape() != ShapeList {
		t.Fatalf("ledger %q of %q, shape %q", l.Name(), l.Host(), l.Shape())
	}
	k := l.Keys("")
	want := LedgerKeys{
		Source: "{sales}:numbers", Processing: "{sales}:numbers:processing:n1",
		Dialing: "{sales}:numbers:dialing:n1",
		Invited: "{sales}:numbers:invited:n1", Scores: "{sales}:numbers:scores:n1",
		Holders: "{sales}:numbers:holders", Interrupted: "{sales}:numbers:interrupted",
		Invalid: "{sales}:numbers:invalid", Retry: "{sales}:numbers:retry", Alive: "redial:{nodes}:alive:n1", LegacyAlive: "redial:node:n1:alive",
	}
	if k != want {
		t.Fatalf("keys = %+v\nwant   %+v", k, want)
	}
	if k2 := l.Keys("n2"); k2.Processing != "{sales}:numbers:processing:n2" || k2.Dialing != "{sales}:numbers:dialing:n2" ||
		k2.Alive != "redial:{nodes}:alive:n2" || k2.Holders != k.Holders {
		t.Fatalf("keys of n2 = %+v", k2)
	}
	for _, key := range []string{k.Processing, k.Dialing, k.Invited, k.Scores, k.Holders, k.Retry, k.Interrupted, k.Invalid} {
		if hashTag(key) != "sales" {
			t.Fatalf("%s hashes on %q, want sales", key, hashTag(key))
		}
	}
	// A host name with braces must not move an untagged queue's keys
	// elsewhere unnoticed: such a queue is reported as untagged.
	for name, tagged := range map[string]bool{
		"{sales}:numbers": true, "q{x}": true, "numbers": false, "{}q": false,
		"q{": false, "q}{": false, "a{b": false,
	} {
		if got := QueueHashTagged(name); got != tagged {
			t.Errorf("QueueHashTagged(%q) = %v, want %v", name, got, tagged)
		}
	}
}

func blockedClients(ctx context.Context, r *testenv.Redis) (string, error) {
	info, err := r.Client.Info(ctx, "clients").Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "blocked_clients:"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no blocked_clients in INFO")
}

func TestClaimBlocksAndWakesOnPush(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	type res struct {
		raw string
		ok  bool
		err error
		at  time.Time
	}
	done := make(chan res, 1)
	go func() {
		raw, ok, err := l.ClaimBlocking(ctx, 10*time.Second)
		done <- res{raw, ok, err, time.Now()}
	}()
	testenv.WaitFor(t, 5*time.Second, func() error {
		v, err := blockedClients(ctx, r)
		if err != nil {
			return err
		}
		if v != "1" {
			return fmt.Errorf("blocked_clients = %s", v)
		}
		return nil
	})
	pushed := time.Now()
	if err := r.Client.LPush(ctx, "{q}", "13800000000").Err(); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.err != nil || !got.ok || got.raw != "13800000000" {
		t.Fatalf("claim = %+v", got)
	}
	// The claim must end on the push, not on the 10 s timeout.
	if d := got.at.Sub(pushed); d > 2*time.Second {
		t.Fatalf("claim returned %v after the push", d)
	}
	if p := lrange(t, r, l.Keys("").Processing); len(p) != 1 || p[0] != "13800000000" {
		t.Fatalf("processing = %q", p)
	}
	if c, err := l.Claims(ctx); err != nil || len(c) != 1 || c[0] != "13800000000" {
		t.Fatalf("claims = %q, %v", c, err)
	}
	if n := r.Client.LLen(ctx, "{q}").Val(); n != 0 {
		t.Fatalf("queue length %d after claim", n)
	}
}

func TestClaimTimesOutOnEmptyQueue(t *testing.T) {
	s, _ := newDialerStore(t, "n1")
	start := time.Now()
	raw, ok, err := s.QueueLedger("{q}", false).ClaimBlocking(context.Background(), 100*time.Millisecond)
	if err != nil || ok || raw != "" {
		t.Fatalf("claim on empty queue = %q, %v, %v", raw, ok, err)
	}
	// The timeout is rounded up to whole seconds (go-redis only extends its
	// read deadline for whole seconds), and not much longer.
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Fatalf("claim on empty queue returned after %v, want about 1 s", d)
	}
}

func TestClaimIsFIFOWithLPushProducers(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	for i := 1; i <= 3; i++ {
		r.Client.LPush(ctx, "{q}", fmt.Sprint(i))
	}
	if n, err := s.PushNumbers(ctx, "{q}", []string{"4", "5"}); err != nil || n != 2 {
		t.Fatalf("push = %d, %v", n, err)
	}
	r.Client.LPush(ctx, "{q}", "6")
	got := claimN(t, l, 6)
	if strings.Join(got, ",") != "1,2,3,4,5,6" {
		t.Fatalf("claim order %v", got)
	}
	// Claims lists newest first.
	if c, err := l.Claims(ctx); err != nil || strings.Join(c, ",") != "6,5,4,3,2,1" {
		t.Fatalf("claims = %q, %v", c, err)
	}
}

func TestPushNumbersKeepsOrderAcrossBatches(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	items := make([]string, 2500)
	for i := range items {
		items[i] = fmt.Sprint(i)
	}
	n, err := s.PushNumbers(ctx, "{q}", items)
	if err != nil || n != 2500 {
		t.Fatalf("push = %d, %v", n, err)
	}
	all := lrange(t, r, "{q}")
	if len(all) != 2500 {
		t.Fatalf("queue length %d", len(all))
	}
	// Right end first: the order of claims.
	for i := range items {
		if all[len(all)-1-i] != items[i] {
			t.Fatalf("claim #%d would be %q, want %q", i, all[len(all)-1-i], items[i])
		}
	}
}

func TestAckRemovesExactlyOneOfTwoIdenticalClaims(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	k := l.Keys("")
	s.PushNumbers(ctx, "{q}", []string{"100", "100"})
	claimN(t, l, 2)
	if err := l.Mark(ctx, "100"); err != nil {
		t.Fatal(err)
	}
	if m, u := copiesOf(t, r, k, "100"); m != 1 || u != 1 {
		t.Fatalf("after one mark: %d marked, %d unmarked copies", m, u)
	}
	// The ack of the dialed copy takes the marked one: the other copy
	// stays unmarked, so a crash now requeues it rather than parking it.
	if err := l.Ack(ctx, "100"); err != nil {
		t.Fatalf("ack = %v", err)
	}
	if m, u := copiesOf(t, r, k, "100"); m != 0 || u != 1 {
		t.Fatalf("after the ack: %d marked, %d unmarked copies", m, u)
	}
	if err := l.Ack(ctx, "100"); err != nil {
		t.Fatalf("second ack = %v", err)
	}
	if err := l.Ack(ctx, "100"); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("ack of a claim no longer held = %v, want ErrClaimGone", err)
	}
	if n := r.Client.Exists(ctx, k.Processing, k.Dialing, k.Invited, k.Scores).Val(); n != 0 {
		t.Fatalf("%d of processing/dialing/invited/scores keys left after all acks", n)
	}
}

// copiesOf counts the copies of member in the dialing list (marked) and
// in the processing list (unmarked).
func copiesOf(t *testing.T, r *testenv.Redis, k LedgerKeys, member string) (marked, unmarked int) {
	t.Helper()
	for _, v := range lrange(t, r, k.Dialing) {
		if v == member {
			marked++
		}
	}
	for _, v := range lrange(t, r, k.Processing) {
		if v == member {
			unmarked++
		}
	}
	return marked, unmarked
}

func TestEqualItemsKeepTheirMarksApart(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	k := l.Keys("")
	s.PushNumbers(ctx, "{q}", []string{"7", "7", "7", "x"})
	claimN(t, l, 4)
	for i := 1; i <= 3; i++ {
		if err := l.Mark(ctx, "7"); err != nil {
			t.Fatalf("mark %d of 3 copies: %v", i, err)
		}
		if m, u := copiesOf(t, r, k, "7"); m != i || u != 3-i {
			t.Fatalf("after mark %d: %d marked, %d unmarked", i, m, u)
		}
	}
	if err := l.Mark(ctx, "7"); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("mark of a fourth copy = %v, want ErrClaimGone", err)
	}
	// A return says the copy was never marked, but every copy is: it
	// takes a marked one (the claim is settled either way).
	if err := l.Return(ctx, "7", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if m, u := copiesOf(t, r, k, "7"); m != 2 || u != 0 {
		t.Fatalf("after return: %d marked, %d unmarked", m, u)
	}
	if err := l.Ack(ctx, "7"); err != nil {
		t.Fatal(err)
	}
	// A crash now parks the last copy (it may have been dialed) and
	// requeues the never-dialed x.
	res, err := hostStore(r, "n2").QueueLedger("{q}", false).Recover(ctx, "n1")
	if err != nil || res != (RecoverResult{Requeued: 1, Interrupted: 1}) {
		t.Fatalf("recover = %+v, %v", res, err)
	}
	// The returned copy waits in the queue; x went back behind it, to be
	// claimed first (it was claimed before).
	if q := lrange(t, r, "{q}"); strings.Join(q, ",") != "7,x" {
		t.Fatalf("queue %q", q)
	}
	in := lrange(t, r, k.Interrupted)
	if len(in) != 1 || decodeParked(t, in[0]).Item != "7" {
		t.Fatalf("interrupted %q", in)
	}
	if n := r.Client.Exists(ctx, k.Processing, k.Dialing, k.Invited, k.Scores).Val(); n != 0 {
		t.Fatalf("%d of n1's keys left", n)
	}
}

func TestMarkNeedsAnUnmarkedClaim(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	k := l.Keys("")
	s.PushNumbers(ctx, "{q}", []string{"100"})
	claimN(t, l, 1)
	if err := l.Mark(ctx, "100"); err != nil {
		t.Fatal(err)
	}
	if err := l.Mark(ctx, "100"); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("second mark of one claim = %v, want ErrClaimGone", err)
	}
	if err := l.Mark(ctx, "200"); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("mark of an unclaimed item = %v, want ErrClaimGone", err)
	}
	if d := lrange(t, r, k.Dialing); len(d) != 1 || d[0] != "100" {
		t.Fatalf("dialing list %q, want [100]", d)
	}
	if n := r.Client.LLen(ctx, k.Processing).Val(); n != 0 {
		t.Fatalf("processing list has %d items after the mark", n)
	}
}

func TestClaimBatchMovesLikeBLMOVEAndRegisters(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	k := l.Keys("")
	if got, err := l.ClaimBatch(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("batch claim of an empty queue = %v, %v", got, err)
	}
	if h := r.Client.SMembers(ctx, k.Holders).Val(); len(h) != 0 {
		t.Fatalf("holders = %v after claiming nothing", h)
	}
	s.PushNumbers(ctx, "{q}", []string{"a", "b", "c", "d", "e"})
	got, err := l.ClaimBatch(ctx, 3)
	if err != nil || !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("batch claim = %v, %v; want the three oldest, oldest first", got, err)
	}
	// The same lists as three BLMOVE RIGHT LEFT: newest claim at the left.
	if p := lrange(t, r, k.Processing); !slices.Equal(p, []string{"c", "b", "a"}) {
		t.Fatalf("processing = %v", p)
	}
	if q := lrange(t, r, k.Source); !slices.Equal(q, []string{"e", "d"}) {
		t.Fatalf("queue = %v", q)
	}
	// A claim that may be marked has its host registered.
	if h, err := l.Holders(ctx); err != nil || !slices.Equal(h, []string{"n1"}) {
		t.Fatalf("holders = %v, %v, want [n1]", h, err)
	}
	if err := l.Mark(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got, err := l.ClaimBatch(ctx, 10); err != nil || !slices.Equal(got, []string{"d", "e"}) {
		t.Fatalf("second batch claim = %v, %v", got, err)
	}
	// A dead node's batch-claimed items recover like any claims.
	r.Client.Del(ctx, s.AliveKey("n1"), s.LegacyAliveKey("n1"))
	res, err := hostStore(r, "other").QueueLedger("{q}", false).Recover(ctx, "n1")
	if err != nil || res != (RecoverResult{Requeued: 4, Interrupted: 1}) {
		t.Fatalf("recover = %+v, %v", res, err)
	}
	if q := lrange(t, r, k.Source); !slices.Equal(q, []string{"e", "d", "c", "a"}) {
		t.Fatalf("queue after recovery = %v, want the never-dialed claims back in order", q)
	}
}

func decodeParked(t *testing.T, v string) ParkedItem {
	t.Helper()
	var p ParkedItem
	if err := json.Unmarshal([]byte(v), &p); err != nil {
		t.Fatalf("parked entry %q is not JSON: %v", v, err)
	}
	if _, err := time.Parse(time.RFC3339, p.At); err != nil {
		t.Fatalf("parked entry %q: at is not RFC 3339: %v", v, err)
	}
	return p
}

const cItem = `{"params":{"number":"c/1","name":"\u00e9\"x\""}}`

// setupDead claims a, b, cItem for host dead out of a queue holding a, b,
// cItem, d (claim order a first) and marks cItem as invited. It returns
// the dead host's ledger.
func setupDead(t *testing.T, r *testenv.Redis) *Ledger {
	t.Helper()
	ctx := context.Background()
	dead := hostStore(r, "dead")
	dl := dead.QueueLedger("{q}", false)
	dead.PushNumbers(ctx, "{q}", []string{"a", "b", cItem, "d"})
	if err := dl.EnsureHolder(ctx); err != nil {
		t.Fatal(err)
	}
	claimN(t, dl, 3)
	if err := dl.Mark(ctx, cItem); err != nil {
		t.Fatal(err)
	}
	return dl
}

func TestRecoverParksInvitedAndRequeuesTheRestInOrder(t *testing.T) {
	s, r := newDialerStore(t, "live")
	ctx := context.Background()
	dk := setupDead(t, r).Keys("")
	ll := s.QueueLedger("{q}", false)
	res, err := ll.Recover(ctx, "dead")
	if err != nil {
		t.Fatal(err)
	}
	if res != (RecoverResult{Requeued: 2, Interrupted: 1}) || res.Total() != 3 {
		t.Fatalf("result %+v", res)
	}
	// Never-dialed claims are dialed next, in their original order.
	got := claimN(t, ll, 3)
	if want := []string{"a", "b", "d"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("claims after recovery %q, want %q", got, want)
	}
	in := lrange(t, r, dk.Interrupted)
	if len(in) != 1 {
		t.Fatalf("interrupted = %q", in)
	}
	p := decodeParked(t, in[0])
	if p.Item != cItem || p.Host != "dead" || !strings.Contains(p.Reason, "dead") {
		t.Fatalf("interrupted entry %+v", p)
	}
	if n := r.Client.Exists(ctx, dk.Processing, dk.Dialing, dk.Invited, dk.Scores).Val(); n != 0 {
		t.Fatalf("%d of the dead host's keys left", n)
	}
	if r.Client.SIsMember(ctx, dk.Holders, "dead").Val() {
		t.Fatal("dead host still a holder")
	}
}

func TestRecoverRequeuesInterruptedWhenAsked(t *testing.T) {
	s, r := newDialerStore(t, "live")
	ctx := context.Background()
	dk := setupDead(t, r).Keys("")
	// The task's redial_interrupted is the live node's ledger setting.
	ll := s.QueueLedger("{q}", true)
	res, err := ll.Recover(ctx, "dead")
	if err != nil {
		t.Fatal(err)
	}
	if res != (RecoverResult{Requeued: 2, RequeuedInterrupted: 1}) {
		t.Fatalf("result %+v", res)
	}
	got := claimN(t, ll, 4)
	if strings.Join(got, " ") != "a b "+cItem+" d" {
		t.Fatalf("claims after recovery %q", got)
	}
	if n := r.Client.LLen(ctx, dk.Interrupted).Val(); n != 0 {
		t.Fatalf("interrupted has %d entries", n)
	}
}

func TestRecoverRefusesWhileHeartbeatAlive(t *testing.T) {
	s, r := newDialerStore(t, "live")
	ctx := context.Background()
	dl := setupDead(t, r)
	dk := dl.Keys("")
	if err := s.Heartbeat(ctx, "dead", time.Minute); err != nil {
		t.Fatal(err)
	}
	alive, err := s.Alive(ctx, []string{"dead", "other"})
	if err != nil || !alive["dead"] || alive["other"] {
		t.Fatalf("alive = %v, %v", alive, err)
	}
	res, err := s.QueueLedger("{q}", false).Recover(ctx, "dead")
	if !errors.Is(err, ErrHostAlive) || res != (RecoverResult{}) {
		t.Fatalf("recover of a live host = %+v, %v", res, err)
	}
	if n := r.Client.LLen(ctx, dk.Processing).Val() + r.Client.LLen(ctx, dk.Dialing).Val(); n != 3 {
		t.Fatalf("processing and dialing lists hold %d, want 3 untouched", n)
	}
	// The node itself, restarting under the same name, takes its leftovers
	// although its heartbeat is alive.
	res, err = dl.SettleOwn(ctx)
	if err != nil || res != (RecoverResult{Requeued: 2, Interrupted: 1}) {
		t.Fatalf("settle own = %+v, %v", res, err)
	}
}

func TestRecoverConcurrentlyMovesEachClaimOnce(t *testing.T) {
	_, r := newDialerStore(t, "live")
	ctx := context.Background()
	const total, claimed = 1000, 550
	items := make([]string, total)
	for i := range items {
		items[i] = fmt.Sprintf("n%04d", i)
	}
	dead := hostStore(r, "dead")
	dead.PushNumbers(ctx, "{q}", items)
	dl := dead.QueueLedger("{q}", false)
	dk := dl.Keys("")
	dl.EnsureHolder(ctx)
	got := claimN(t, dl, claimed)
	marked := 0
	for i, raw := range got {
		if i%3 == 0 {
			if err := dl.Mark(ctx, raw); err != nil {
				t.Fatal(err)
			}
			marked++
		}
	}
	var wg sync.WaitGroup
	results := make([]RecoverResult, 2)
	errs := make([]error, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = hostStore(r, fmt.Sprint("live", i)).QueueLedger("{q}", false).Recover(ctx, "dead")
		}()
	}
	wg.Wait()
	var sum RecoverResult
	for i := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		sum.Requeued += results[i].Requeued
		sum.Interrupted += results[i].Interrupted
		sum.RequeuedInterrupted += results[i].RequeuedInterrupted
	}
	if sum != (RecoverResult{Requeued: claimed - marked, Interrupted: marked}) {
		t.Fatalf("recovered %+v, want %d requeued and %d interrupted", sum, claimed-marked, marked)
	}
	seen := map[string]int{}
	for _, v := range lrange(t, r, "{q}") {
		seen[v]++
	}
	for _, v := range lrange(t, r, dk.Interrupted) {
		seen[decodeParked(t, v).Item]++
	}
	if n := r.Client.LLen(ctx, dk.Processing).Val(); n != 0 {
		t.Fatalf("%d claims left in processing", n)
	}
	if len(seen) != total {
		t.Fatalf("%d distinct items after recovery, want %d", len(seen), total)
	}
	for v, n := range seen {
		if n != 1 {
			t.Fatalf("item %s is in %d places", v, n)
		}
	}
}

func TestClaimRecoveredFromUnderANodeIsGone(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	s.PushNumbers(ctx, "{q}", []string{"a", "b", "c"})
	claimN(t, l, 3)
	if err := l.Mark(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	// n1's heartbeat lapsed and another node recovered its claims.
	if _, err := hostStore(r, "n2").QueueLedger("{q}", false).Recover(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"mark":      l.Mark(ctx, "a"),
		"return":    l.Return(ctx, "a", time.Time{}),
		"delay":     l.Delay(ctx, "b", "b2", time.Now()),
		"invalid":   l.Invalid(ctx, "b", "bad"),
		"interrupt": l.Interrupt(ctx, "c", "lost"),
		"ack":       l.Ack(ctx, "c"),
	} {
		if !errors.Is(err, ErrClaimGone) {
			t.Errorf("%s after recovery = %v, want ErrClaimGone (must not dial or settle)", name, err)
		}
	}
	// Nothing was duplicated by the late calls.
	if q := lrange(t, r, "{q}"); strings.Join(q, ",") != "b,a" {
		t.Fatalf("queue %q", q)
	}
	st, err := s.QueueStats(ctx, "{q}")
	if err != nil {
		t.Fatal(err)
	}
	if st.Retry != 0 || st.Invalid != 0 || st.Interrupted != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestReturnPutsClaimNextInLine(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	s.PushNumbers(ctx, "{q}", []string{"a", "b"})
	claimN(t, l, 1)
	if err := l.Return(ctx, "a", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := claimN(t, l, 2); strings.Join(got, ",") != "a,b" {
		t.Fatalf("claims after return %v", got)
	}
	if n := r.Client.LLen(ctx, l.Keys("").Processing).Val(); n != 2 {
		t.Fatalf("processing length %d", n)
	}
}

func TestInterruptParksOrRequeues(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	requeue := s.QueueLedger("{q}", true) // redial_interrupted
	k := l.Keys("")
	s.PushNumbers(ctx, "{q}", []string{"a", "b", "c"})
	claimN(t, l, 2)
	for _, raw := range []string{"a", "b"} {
		if err := l.Mark(ctx, raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Interrupt(ctx, "a", "call lost"); err != nil {
		t.Fatal(err)
	}
	if err := requeue.Interrupt(ctx, "b", "call lost"); err != nil {
		t.Fatal(err)
	}
	in := lrange(t, r, k.Interrupted)
	if len(in) != 1 {
		t.Fatalf("interrupted %q", in)
	}
	if p := decodeParked(t, in[0]); p.Item != "a" || p.Reason != "call lost" || p.Host != "n1" {
		t.Fatalf("interrupted entry %+v", p)
	}
	if got := claimN(t, l, 2); strings.Join(got, ",") != "b,c" {
		t.Fatalf("claims after requeue %v", got)
	}
	if n := r.Client.Exists(ctx, k.Invited).Val(); n != 0 {
		t.Fatalf("invited hash left after both marked claims ended")
	}
}

func TestInvalidRecordShape(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	k := l.Keys("")
	bad := `{"params":{"number":42}`
	s.PushNumbers(ctx, "{q}", []string{bad, "\xff\xfe"})
	claimN(t, l, 2)
	before := time.Now().Add(-time.Second)
	if err := l.Invalid(ctx, bad, "params.number: want string or array, got 42"); err != nil {
		t.Fatal(err)
	}
	if err := l.Invalid(ctx, "\xff\xfe", "not UTF-8"); err != nil {
		t.Fatal(err)
	}
	in := lrange(t, r, k.Invalid)
	if len(in) != 2 {
		t.Fatalf("invalid list %q", in)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(in[1]), &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 4 || m["item"] != bad || m["reason"] != "params.number: want string or array, got 42" || m["host"] != "n1" {
		t.Fatalf("invalid entry %s", in[1])
	}
	at, err := time.Parse(time.RFC3339, m["at"].(string))
	if err != nil || at.Before(before) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("at = %v, %v", m["at"], err)
	}
	if p := decodeParked(t, in[0]); string(p.ItemBase64) != "\xff\xfe" {
		t.Fatalf("non-UTF-8 item not kept byte for byte: %+v", p)
	}
	if n := r.Client.LLen(ctx, k.Processing).Val(); n != 0 {
		t.Fatalf("processing length %d", n)
	}
}

func TestDelayAndPromoteDue(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	k := l.Keys("")
	s.PushNumbers(ctx, "{q}", []string{"a", "b", "c", "d"})
	claimN(t, l, 4)
	if err := l.Mark(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// Two equal new items must both survive (members are made unique).
	if err := l.Delay(ctx, "a", "X", now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := l.Delay(ctx, "b", "X", now.Add(-2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := l.Delay(ctx, "c", "Y", now.Add(-3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Hour)
	if err := l.Delay(ctx, "d", "Z", later); err != nil {
		t.Fatal(err)
	}
	if n := r.Client.Exists(ctx, k.Processing, k.Dialing, k.Invited).Val(); n != 0 {
		t.Fatalf("%d of processing/invited left after delaying every claim", n)
	}
	// max bounds one call; the earliest due go first and are claimed
	// first; the id prefix is gone.
	moved, next, err := s.PromoteDue(ctx, l, 2)
	if err != nil || moved != 2 || next.UnixMilli() != now.Add(-time.Minute).UnixMilli() {
		t.Fatalf("promote = %d, %v, %v", moved, next, err)
	}
	if got := claimN(t, l, 2); strings.Join(got, ",") != "Y,X" {
		t.Fatalf("claims after promote %q", got)
	}
	moved, next, err = s.PromoteDue(ctx, l, 100)
	if err != nil || moved != 1 {
		t.Fatalf("second promote = %d, %v", moved, err)
	}
	if next.UnixMilli() != later.UnixMilli() {
		t.Fatalf("next due %v, want %v", next, later)
	}
	if got := claimN(t, l, 1); got[0] != "X" {
		t.Fatalf("claim after second promote %q", got)
	}
	st, err := s.QueueStats(ctx, "{q}")
	if err != nil || st.Retry != 1 || st.NextRetry.UnixMilli() != later.UnixMilli() {
		t.Fatalf("stats %+v, %v", st, err)
	}
	// Ledgers without a retry set refuse to delay.
	el := s.EventsLedger()
	if err := el.Delay(ctx, "e", "e", now); err == nil || errors.Is(err, ErrClaimGone) {
		t.Fatalf("delay on a ledger without retry set = %v", err)
	}
	if _, _, err := s.PromoteDue(ctx, el, 1); err == nil {
		t.Fatal("promote on a ledger without retry set succeeded")
	}
}

func TestPromoteDueWaitsForTheDueTime(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.QueueLedger("{q}", false)
	s.PushNumbers(ctx, "{q}", []string{"a"})
	claimN(t, l, 1)
	due := time.Now().Add(300 * time.Millisecond)
	if err := l.Delay(ctx, "a", "a2", due); err != nil {
		t.Fatal(err)
	}
	moved, next, err := s.PromoteDue(ctx, l, 10)
	if err != nil || moved != 0 || next.UnixMilli() != due.UnixMilli() {
		t.Fatalf("early promote = %d, %v, %v", moved, next, err)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		moved, next, err := s.PromoteDue(ctx, l, 10)
		if err != nil {
			return err
		}
		if moved != 1 || !next.IsZero() {
			return fmt.Errorf("moved %d, next %v", moved, next)
		}
		return nil
	})
	if time.Now().Before(due.Add(-50 * time.Millisecond)) {
		t.Fatalf("promoted before its due time")
	}
	if q := lrange(t, r, "{q}"); len(q) != 1 || q[0] != "a2" {
		t.Fatalf("queue %q", q)
	}
}

func TestQueueStats(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	items := make([]string, 10)
	for i := range items {
		items[i] = fmt.Sprint(i)
	}
	s.PushNumbers(ctx, "{q}", items)
	l1, l2 := s.QueueLedger("{q}", false), hostStore(r, "n2").QueueLedger("{q}", false)
	l1.EnsureHolder(ctx)
	l2.EnsureHolder(ctx)
	got1 := claimN(t, l1, 3)
	got2 := claimN(t, l2, 2)
	l1.Mark(ctx, got1[0])
	l1.Interrupt(ctx, got1[0], "lost")
	l2.Invalid(ctx, got2[0], "bad")
	due := time.Now().Add(time.Hour)
	l1.Delay(ctx, got1[1], "x", due)
	st, err := s.QueueStats(ctx, "{q}")
	if err != nil {
		t.Fatal(err)
	}
	want := QueueStats{Queue: 5, Processing: map[string]int64{"n1": 1, "n2": 1}, Retry: 1,
		NextRetry: time.UnixMilli(due.UnixMilli()), Interrupted: 1, Invalid: 1}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Fatalf("stats %+v\nwant  %+v", st, want)
	}
	empty, err := s.QueueStats(ctx, "{none}")
	if err != nil || empty.Queue != 0 || len(empty.Processing) != 0 || !empty.NextRetry.IsZero() {
		t.Fatalf("stats of a missing queue %+v, %v", empty, err)
	}
}

func TestSetTaskPublishesNotice(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	if ch := s.ConfigChannels(); strings.Join(ch, " ") != "config@all config@n1" {
		t.Fatalf("channels %v", ch)
	}
	sub := r.Client.Subscribe(ctx, s.ConfigChannels()...)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // subscribe confirmation
		t.Fatal(err)
	}
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := sub.Channel()
	next := func() *redis.Message {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("no notice within 5 s")
			return nil
		}
	}
	if err := s.SetTask(ctx, "", "sales", `{"params":{"enable":true}}`); err != nil {
		t.Fatal(err)
	}
	m := next()
	if m.Channel != "config@all" || m.Payload != `{"type":"config_change","table":"cti_queue_dialer_task","key":"sales"}` {
		t.Fatalf("notice %s %s", m.Channel, m.Payload)
	}
	if err := s.SetTask(ctx, "n1", "sales", `{"params":{"limit":5}}`); err != nil {
		t.Fatal(err)
	}
	m = next()
	if m.Channel != "config@n1" || m.Payload != `{"type":"config_change","table":"cti_queue_dialer_task","key":"sales"}` {
		t.Fatalf("notice %s %s", m.Channel, m.Payload)
	}
	s.SetTask(ctx, "n2", "other", `{}`)
	tpl, host, err := s.Tasks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tpl) != 1 || tpl["sales"] != `{"params":{"enable":true}}` || len(host) != 1 || host["sales"] != `{"params":{"limit":5}}` {
		t.Fatalf("tasks template=%v host=%v", tpl, host)
	}
	if v := r.Client.HGet(ctx, "cti_queue_dialer_task@n2", "other").Val(); v != "{}" {
		t.Fatalf("n2's hash holds %q", v)
	}
}

// A node claims, marks and acks, then dies (its heartbeat expires) with
// claims in flight; a live node keeps working and recovers them. Every
// pushed number ends up exactly once: acked, in the queue, in a processing
// list or in :interrupted.
func TestCrashedNodeClaimsAreRecovered(t *testing.T) {
	s, r := newDialerStore(t, "live")
	ctx := context.Background()
	const total = 300
	const queue = "{camp}:numbers"
	items := make([]string, total)
	for i := range items {
		items[i] = fmt.Sprintf(`{"params":{"number":"1380000%04d"}}`, i)
	}
	if n, err := s.PushNumbers(ctx, queue, items); err != nil || n != total {
		t.Fatalf("push = %d, %v", n, err)
	}
	deadStore := hostStore(r, "dead")
	dead, live := deadStore.QueueLedger(queue, false), s.QueueLedger(queue, false)
	dk, lk := dead.Keys(""), live.Keys("")
	var acked []string
	if err := deadStore.Heartbeat(ctx, "dead", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	dead.EnsureHolder(ctx)
	live.EnsureHolder(ctx)
	// The dead node: 60 claims, 40 dialed, 15 of those finished.
	deadClaims := claimN(t, dead, 60)
	for i, raw := range deadClaims[:40] {
		if err := dead.Mark(ctx, raw); err != nil {
			t.Fatal(err)
		}
		if i < 15 {
			if err := dead.Ack(ctx, raw); err != nil {
				t.Fatalf("ack = %v", err)
			}
			acked = append(acked, raw)
		}
	}
	// The live node works on while the dead node's heartbeat runs out.
	if err := s.Heartbeat(ctx, "live", time.Minute); err != nil {
		t.Fatal(err)
	}
	liveClaims := claimN(t, live, 30)
	for _, raw := range liveClaims[:20] {
		live.Mark(ctx, raw)
		if err := live.Ack(ctx, raw); err != nil {
			t.Fatalf("ack = %v", err)
		}
		acked = append(acked, raw)
	}
	var res RecoverResult
	testenv.WaitFor(t, 5*time.Second, func() error {
		holders, err := live.Holders(ctx)
		if err != nil {
			return err
		}
		alive, err := s.Alive(ctx, holders)
		if err != nil {
			return err
		}
		for _, h := range holders {
			if alive[h] {
				continue
			}
			if res, err = live.Recover(ctx, h); err != nil {
				return err
			}
			return nil
		}
		return fmt.Errorf("no dead holder among %v (alive %v)", holders, alive)
	})
	if res != (RecoverResult{Requeued: 20, Interrupted: 25}) {
		t.Fatalf("recovered %+v, want 20 requeued, 25 interrupted", res)
	}
	if h, _ := live.Holders(ctx); len(h) != 1 || h[0] != "live" {
		t.Fatalf("holders after recovery %v", h)
	}
	seen := map[string]int{}
	for _, v := range acked {
		seen[v]++
	}
	for _, key := range []string{lk.Source, lk.Processing, dk.Processing} {
		for _, v := range lrange(t, r, key) {
			seen[v]++
		}
	}
	for _, v := range lrange(t, r, lk.Interrupted) {
		seen[decodeParked(t, v).Item]++
	}
	counted := 0
	for _, n := range seen {
		counted += n
	}
	if len(seen) != total || counted != total {
		keys := make([]string, 0, len(seen))
		for k, n := range seen {
			if n != 1 {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		t.Fatalf("%d distinct items in %d places, want %d; duplicated: %v", len(seen), counted, total, keys)
	}
	st, err := s.QueueStats(ctx, queue)
	if err != nil {
		t.Fatal(err)
	}
	if st.Queue+st.Processing["live"]+st.Interrupted+int64(len(acked)) != total {
		t.Fatalf("stats %+v + %d acked != %d", st, len(acked), total)
	}
}
