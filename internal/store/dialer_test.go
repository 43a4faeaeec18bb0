package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	return NewWithClient(r.Client, Config{Domain: "acme", Host: host}), r
}

// claimN claims n items or fails.
func claimN(t *testing.T, s *Store, k DialerKeys, n int) []string {
	t.Helper()
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		raw, ok, err := s.Claim(context.Background(), k, time.Second)
		if err != nil || !ok {
			t.Fatalf("claim %d of %d: ok=%v err=%v", i+1, n, ok, err)
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

func TestDialerKeysShareTheQueueHashSlot(t *testing.T) {
	s := NewWithClient(nil, Config{})
	k := s.DialerKeys("{sales}:numbers", "n1")
	want := DialerKeys{
		Queue: "{sales}:numbers", Processing: "{sales}:numbers:processing:n1",
		Invited: "{sales}:numbers:invited:n1", Holders: "{sales}:numbers:holders",
		Retry: "{sales}:numbers:retry", Interrupted: "{sales}:numbers:interrupted",
		Invalid: "{sales}:numbers:invalid", Host: "n1", Alive: "redial:node:n1:alive",
	}
	if k != want {
		t.Fatalf("keys = %+v\nwant   %+v", k, want)
	}
	for _, key := range []string{k.Processing, k.Invited, k.Holders, k.Retry, k.Interrupted, k.Invalid} {
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
	k := s.DialerKeys("{q}", "n1")
	type res struct {
		raw string
		ok  bool
		err error
		at  time.Time
	}
	done := make(chan res, 1)
	go func() {
		raw, ok, err := s.Claim(ctx, k, 10*time.Second)
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
	if p := lrange(t, r, k.Processing); len(p) != 1 || p[0] != "13800000000" {
		t.Fatalf("processing = %q", p)
	}
	if n := r.Client.LLen(ctx, "{q}").Val(); n != 0 {
		t.Fatalf("queue length %d after claim", n)
	}
}

func TestClaimTimesOutOnEmptyQueue(t *testing.T) {
	s, _ := newDialerStore(t, "n1")
	raw, ok, err := s.Claim(context.Background(), s.DialerKeys("{q}", "n1"), 100*time.Millisecond)
	if err != nil || ok || raw != "" {
		t.Fatalf("claim on empty queue = %q, %v, %v", raw, ok, err)
	}
}

func TestClaimIsFIFOWithLPushProducers(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	k := s.DialerKeys("{q}", "n1")
	for i := 1; i <= 3; i++ {
		r.Client.LPush(ctx, "{q}", fmt.Sprint(i))
	}
	if n, err := s.PushNumbers(ctx, "{q}", []string{"4", "5"}); err != nil || n != 2 {
		t.Fatalf("push = %d, %v", n, err)
	}
	r.Client.LPush(ctx, "{q}", "6")
	got := claimN(t, s, k, 6)
	if strings.Join(got, ",") != "1,2,3,4,5,6" {
		t.Fatalf("claim order %v", got)
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
	k := s.DialerKeys("{q}", "n1")
	s.PushNumbers(ctx, "{q}", []string{"100", "100"})
	claimN(t, s, k, 2)
	if err := s.MarkInvited(ctx, k, "100"); err != nil {
		t.Fatal(err)
	}
	ok, err := s.Ack(ctx, k, "100")
	if err != nil || !ok {
		t.Fatalf("ack = %v, %v", ok, err)
	}
	if p := lrange(t, r, k.Processing); len(p) != 1 || p[0] != "100" {
		t.Fatalf("processing after one ack = %q", p)
	}
	// The mark may belong to the remaining copy: it stays (a crash now
	// parks it rather than dialing it twice).
	if c := r.Client.HGet(ctx, k.Invited, "100").Val(); c != "1" {
		t.Fatalf("invited count %q, want 1", c)
	}
	if ok, err := s.Ack(ctx, k, "100"); err != nil || !ok {
		t.Fatalf("second ack = %v, %v", ok, err)
	}
	if ok, err := s.Ack(ctx, k, "100"); err != nil || ok {
		t.Fatalf("ack of a claim no longer held = %v, %v, want false", ok, err)
	}
	if n := r.Client.Exists(ctx, k.Processing, k.Invited).Val(); n != 0 {
		t.Fatalf("%d of processing/invited keys left after all acks", n)
	}
}

func TestMarkInvitedNeedsAnUnmarkedClaim(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	k := s.DialerKeys("{q}", "n1")
	s.PushNumbers(ctx, "{q}", []string{"100"})
	claimN(t, s, k, 1)
	if err := s.MarkInvited(ctx, k, "100"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkInvited(ctx, k, "100"); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("second mark of one claim = %v, want ErrClaimGone", err)
	}
	if err := s.MarkInvited(ctx, k, "200"); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("mark of an unclaimed item = %v, want ErrClaimGone", err)
	}
	if h := r.Client.SMembers(ctx, k.Holders).Val(); len(h) != 1 || h[0] != "n1" {
		t.Fatalf("holders = %v, want [n1]", h)
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
// cItem, d (claim order a first) and marks cItem as invited.
func setupDead(t *testing.T, s *Store) DialerKeys {
	t.Helper()
	ctx := context.Background()
	dk := s.DialerKeys("{q}", "dead")
	s.PushNumbers(ctx, "{q}", []string{"a", "b", cItem, "d"})
	if err := s.EnsureHolder(ctx, dk, "dead"); err != nil {
		t.Fatal(err)
	}
	claimN(t, s, dk, 3)
	if err := s.MarkInvited(ctx, dk, cItem); err != nil {
		t.Fatal(err)
	}
	return dk
}

func TestRecoverParksInvitedAndRequeuesTheRestInOrder(t *testing.T) {
	s, r := newDialerStore(t, "live")
	ctx := context.Background()
	dk := setupDead(t, s)
	lk := s.DialerKeys("{q}", "live")
	res, err := s.Recover(ctx, lk, "dead", false)
	if err != nil {
		t.Fatal(err)
	}
	if res != (RecoverResult{Requeued: 2, Interrupted: 1}) {
		t.Fatalf("result %+v", res)
	}
	// Never-dialed claims are dialed next, in their original order.
	got := claimN(t, s, lk, 3)
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
	if n := r.Client.Exists(ctx, dk.Processing, dk.Invited).Val(); n != 0 {
		t.Fatalf("%d of the dead host's keys left", n)
	}
	if r.Client.SIsMember(ctx, dk.Holders, "dead").Val() {
		t.Fatal("dead host still a holder")
	}
}

func TestRecoverRequeuesInterruptedWhenAsked(t *testing.T) {
	s, r := newDialerStore(t, "live")
	ctx := context.Background()
	dk := setupDead(t, s)
	res, err := s.Recover(ctx, dk, "dead", true)
	if err != nil {
		t.Fatal(err)
	}
	if res != (RecoverResult{Requeued: 2, RequeuedInterrupted: 1}) {
		t.Fatalf("result %+v", res)
	}
	got := claimN(t, s, s.DialerKeys("{q}", "live"), 4)
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
	dk := setupDead(t, s)
	if err := s.Heartbeat(ctx, "dead", time.Minute); err != nil {
		t.Fatal(err)
	}
	alive, err := s.Alive(ctx, []string{"dead", "other"})
	if err != nil || !alive["dead"] || alive["other"] {
		t.Fatalf("alive = %v, %v", alive, err)
	}
	res, err := s.Recover(ctx, dk, "dead", false)
	if !errors.Is(err, ErrHostAlive) || res != (RecoverResult{}) {
		t.Fatalf("recover of a live host = %+v, %v", res, err)
	}
	if n := r.Client.LLen(ctx, dk.Processing).Val(); n != 3 {
		t.Fatalf("processing length %d, want 3 untouched", n)
	}
	// The node itself, restarting under the same name, takes its leftovers.
	res, err = s.RecoverOwn(ctx, dk, false)
	if err != nil || res != (RecoverResult{Requeued: 2, Interrupted: 1}) {
		t.Fatalf("recover own = %+v, %v", res, err)
	}
}

func TestRecoverConcurrentlyMovesEachClaimOnce(t *testing.T) {
	s, r := newDialerStore(t, "live")
	ctx := context.Background()
	const total, claimed = 1000, 550
	items := make([]string, total)
	for i := range items {
		items[i] = fmt.Sprintf("n%04d", i)
	}
	s.PushNumbers(ctx, "{q}", items)
	dk := s.DialerKeys("{q}", "dead")
	s.EnsureHolder(ctx, dk, "dead")
	got := claimN(t, s, dk, claimed)
	marked := 0
	for i, raw := range got {
		if i%3 == 0 {
			if err := s.MarkInvited(ctx, dk, raw); err != nil {
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
			results[i], errs[i] = s.Recover(ctx, s.DialerKeys("{q}", fmt.Sprint("live", i)), "dead", false)
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
	}
	if sum.Requeued != claimed-marked || sum.Interrupted != marked {
		t.Fatalf("recovered %+v, want %d requeued and %d interrupted", sum, claimed-marked, marked)
	}
	seen := map[string]int{}
	for _, v := range lrange(t, r, "{q}") {
		seen[v]++
	}
	for _, v := range lrange(t, r, dk.Interrupted) {
		seen[decodeParked(t, v).Item]++
	}
	seen["processing"] = int(r.Client.LLen(ctx, dk.Processing).Val())
	if seen["processing"] != 0 {
		t.Fatalf("%d claims left in processing", seen["processing"])
	}
	delete(seen, "processing")
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
	k := s.DialerKeys("{q}", "n1")
	s.PushNumbers(ctx, "{q}", []string{"a", "b", "c"})
	claimN(t, s, k, 3)
	if err := s.MarkInvited(ctx, k, "c"); err != nil {
		t.Fatal(err)
	}
	// n1's heartbeat lapsed and another node recovered its claims.
	if _, err := s.Recover(ctx, s.DialerKeys("{q}", "n2"), "n1", false); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkInvited(ctx, k, "a"); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("mark after recovery = %v, want ErrClaimGone (must not dial)", err)
	}
	if err := s.Return(ctx, k, "a"); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("return after recovery = %v", err)
	}
	if err := s.Delay(ctx, k, "b", "b2", time.Now()); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("delay after recovery = %v", err)
	}
	if err := s.Invalid(ctx, k, "b", "bad", "n1"); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("invalid after recovery = %v", err)
	}
	if ok, err := s.Ack(ctx, k, "c"); err != nil || ok {
		t.Fatalf("ack after recovery = %v, %v", ok, err)
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
	k := s.DialerKeys("{q}", "n1")
	s.PushNumbers(ctx, "{q}", []string{"a", "b"})
	claimN(t, s, k, 1)
	if err := s.Return(ctx, k, "a"); err != nil {
		t.Fatal(err)
	}
	if got := claimN(t, s, k, 2); strings.Join(got, ",") != "a,b" {
		t.Fatalf("claims after return %v", got)
	}
	if n := r.Client.LLen(ctx, k.Processing).Val(); n != 2 {
		t.Fatalf("processing length %d", n)
	}
}

func TestInterruptParksOrRequeues(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	k := s.DialerKeys("{q}", "n1")
	s.PushNumbers(ctx, "{q}", []string{"a", "b", "c"})
	claimN(t, s, k, 2)
	for _, raw := range []string{"a", "b"} {
		if err := s.MarkInvited(ctx, k, raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Interrupt(ctx, k, "a", "call lost", "n1", false); err != nil {
		t.Fatal(err)
	}
	if err := s.Interrupt(ctx, k, "b", "call lost", "n1", true); err != nil {
		t.Fatal(err)
	}
	in := lrange(t, r, k.Interrupted)
	if len(in) != 1 {
		t.Fatalf("interrupted %q", in)
	}
	if p := decodeParked(t, in[0]); p.Item != "a" || p.Reason != "call lost" || p.Host != "n1" {
		t.Fatalf("interrupted entry %+v", p)
	}
	if got := claimN(t, s, k, 2); strings.Join(got, ",") != "b,c" {
		t.Fatalf("claims after requeue %v", got)
	}
	if n := r.Client.Exists(ctx, k.Invited).Val(); n != 0 {
		t.Fatalf("invited hash left after both claims ended")
	}
}

func TestInvalidRecordShape(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	k := s.DialerKeys("{q}", "n1")
	bad := `{"params":{"number":42}`
	s.PushNumbers(ctx, "{q}", []string{bad, "\xff\xfe"})
	claimN(t, s, k, 2)
	before := time.Now().Add(-time.Second)
	if err := s.Invalid(ctx, k, bad, "params.number: want string or array, got 42", "n1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Invalid(ctx, k, "\xff\xfe", "not UTF-8", "n1"); err != nil {
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
	k := s.DialerKeys("{q}", "n1")
	s.PushNumbers(ctx, "{q}", []string{"a", "b", "c", "d"})
	claimN(t, s, k, 4)
	if err := s.MarkInvited(ctx, k, "a"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// Two equal new items must both survive (members are made unique).
	if err := s.Delay(ctx, k, "a", "X", now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delay(ctx, k, "b", "X", now.Add(-2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delay(ctx, k, "c", "Y", now.Add(-3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Hour)
	if err := s.Delay(ctx, k, "d", "Z", later); err != nil {
		t.Fatal(err)
	}
	if n := r.Client.Exists(ctx, k.Processing, k.Invited).Val(); n != 0 {
		t.Fatalf("%d of processing/invited left after delaying every claim", n)
	}
	// max bounds one call; the earliest due go first and are claimed
	// first; the id prefix is gone.
	moved, next, err := s.PromoteDue(ctx, k, 2)
	if err != nil || moved != 2 || next.UnixMilli() != now.Add(-time.Minute).UnixMilli() {
		t.Fatalf("promote = %d, %v, %v", moved, next, err)
	}
	if got := claimN(t, s, k, 2); strings.Join(got, ",") != "Y,X" {
		t.Fatalf("claims after promote %q", got)
	}
	moved, next, err = s.PromoteDue(ctx, k, 100)
	if err != nil || moved != 1 {
		t.Fatalf("second promote = %d, %v", moved, err)
	}
	if next.UnixMilli() != later.UnixMilli() {
		t.Fatalf("next due %v, want %v", next, later)
	}
	if got := claimN(t, s, k, 1); got[0] != "X" {
		t.Fatalf("claim after second promote %q", got)
	}
	st, err := s.QueueStats(ctx, "{q}")
	if err != nil || st.Retry != 1 || st.NextRetry.UnixMilli() != later.UnixMilli() {
		t.Fatalf("stats %+v, %v", st, err)
	}
}

func TestPromoteDueWaitsForTheDueTime(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	k := s.DialerKeys("{q}", "n1")
	s.PushNumbers(ctx, "{q}", []string{"a"})
	claimN(t, s, k, 1)
	due := time.Now().Add(300 * time.Millisecond)
	if err := s.Delay(ctx, k, "a", "a2", due); err != nil {
		t.Fatal(err)
	}
	moved, next, err := s.PromoteDue(ctx, k, 10)
	if err != nil || moved != 0 || next.UnixMilli() != due.UnixMilli() {
		t.Fatalf("early promote = %d, %v, %v", moved, next, err)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		moved, next, err := s.PromoteDue(ctx, k, 10)
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
	s, _ := newDialerStore(t, "n1")
	ctx := context.Background()
	items := make([]string, 10)
	for i := range items {
		items[i] = fmt.Sprint(i)
	}
	s.PushNumbers(ctx, "{q}", items)
	k1, k2 := s.DialerKeys("{q}", "n1"), s.DialerKeys("{q}", "n2")
	s.EnsureHolder(ctx, k1, "n1")
	s.EnsureHolder(ctx, k2, "n2")
	got1 := claimN(t, s, k1, 3)
	got2 := claimN(t, s, k2, 2)
	s.MarkInvited(ctx, k1, got1[0])
	s.Interrupt(ctx, k1, got1[0], "lost", "n1", false)
	s.Invalid(ctx, k2, got2[0], "bad", "n2")
	due := time.Now().Add(time.Hour)
	s.Delay(ctx, k1, got1[1], "x", due)
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
	items := make([]string, total)
	for i := range items {
		items[i] = fmt.Sprintf(`{"params":{"number":"1380000%04d"}}`, i)
	}
	if n, err := s.PushNumbers(ctx, "{camp}:numbers", items); err != nil || n != total {
		t.Fatalf("push = %d, %v", n, err)
	}
	dead := s.DialerKeys("{camp}:numbers", "dead")
	live := s.DialerKeys("{camp}:numbers", "live")
	var acked []string
	if err := s.Heartbeat(ctx, "dead", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	s.EnsureHolder(ctx, dead, "dead")
	s.EnsureHolder(ctx, live, "live")
	// The dead node: 60 claims, 40 dialed, 15 of those finished.
	deadClaims := claimN(t, s, dead, 60)
	for i, raw := range deadClaims[:40] {
		if err := s.MarkInvited(ctx, dead, raw); err != nil {
			t.Fatal(err)
		}
		if i < 15 {
			if ok, err := s.Ack(ctx, dead, raw); err != nil || !ok {
				t.Fatalf("ack = %v, %v", ok, err)
			}
			acked = append(acked, raw)
		}
	}
	// The live node works on while the dead node's heartbeat runs out.
	if err := s.Heartbeat(ctx, "live", time.Minute); err != nil {
		t.Fatal(err)
	}
	liveClaims := claimN(t, s, live, 30)
	for _, raw := range liveClaims[:20] {
		s.MarkInvited(ctx, live, raw)
		if ok, err := s.Ack(ctx, live, raw); err != nil || !ok {
			t.Fatalf("ack = %v, %v", ok, err)
		}
		acked = append(acked, raw)
	}
	var res RecoverResult
	testenv.WaitFor(t, 5*time.Second, func() error {
		holders, err := s.Holders(ctx, live)
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
			if res, err = s.Recover(ctx, live, h, false); err != nil {
				return err
			}
			return nil
		}
		return fmt.Errorf("no dead holder among %v (alive %v)", holders, alive)
	})
	if res != (RecoverResult{Requeued: 20, Interrupted: 25}) {
		t.Fatalf("recovered %+v, want 20 requeued, 25 interrupted", res)
	}
	if h, _ := s.Holders(ctx, live); len(h) != 1 || h[0] != "live" {
		t.Fatalf("holders after recovery %v", h)
	}
	seen := map[string]int{}
	for _, v := range acked {
		seen[v]++
	}
	for _, v := range lrange(t, r, live.Queue) {
		seen[v]++
	}
	for _, v := range lrange(t, r, live.Processing) {
		seen[v]++
	}
	for _, v := range lrange(t, r, dead.Processing) {
		seen[v]++
	}
	for _, v := range lrange(t, r, live.Interrupted) {
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
	st, err := s.QueueStats(ctx, live.Queue)
	if err != nil {
		t.Fatal(err)
	}
	if st.Queue+st.Processing["live"]+st.Interrupted+int64(len(acked)) != total {
		t.Fatalf("stats %+v + %d acked != %d", st, len(acked), total)
	}
}
