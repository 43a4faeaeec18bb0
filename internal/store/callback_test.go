package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"redial/internal/testenv"
)

func cbRedisTime(t *testing.T, r *testenv.Redis) time.Time {
	t.Helper()
	tm, err := r.Client.Time(context.Background()).Result()
	if err != nil {
		t.Fatalf("TIME: %v", err)
	}
	return tm
}

// claimPlans claims up to max due plans for l's host or fails.
func claimPlans(t *testing.T, l *Ledger, max int) []Claim {
	t.Helper()
	c, _, err := l.ClaimDue(context.Background(), max)
	if err != nil {
		t.Fatalf("claim plans for %s: %v", l.Host(), err)
	}
	return c
}

func TestEventAndPlanKeysShareTheirHashSlots(t *testing.T) {
	s := NewWithClient(nil, Config{Host: "n1"})
	if s.EventsKey() != "redial:events" {
		t.Fatalf("events key %q", s.EventsKey())
	}
	el := s.EventsLedger()
	ek := el.Keys("")
	if el.Name() != "events" || el.Shape() != ShapeList || ek.Source != s.EventsKey() ||
		ek.Processing != "redial:{redial:events}:processing:n1" || ek.Retry != "" || ek.Payload != "" {
		t.Fatalf("events ledger %q %q keys %+v", el.Name(), el.Shape(), ek)
	}
	for _, k := range []string{ek.Processing, ek.Dialing, ek.Invited, ek.Scores, ek.Holders, ek.Interrupted, ek.Invalid} {
		if !strings.HasPrefix(k, "redial:") || hashTag(k) != s.EventsKey() {
			t.Errorf("%s hashes on %q, want %q", k, hashTag(k), s.EventsKey())
		}
	}
	pl := s.PlansLedger()
	pk := pl.Keys("n2")
	if pl.Name() != "plans" || pl.Shape() != ShapeZSet || pk.Source != s.PlansDueKey() || pk.Payload != s.PlansKey() ||
		pk.Processing != "redial:{callback}:claimed:n2" || pk.Alive != "redial:{nodes}:alive:n2" {
		t.Fatalf("plans ledger %q %q keys %+v", pl.Name(), pl.Shape(), pk)
	}
	for _, k := range []string{s.PlansKey(), s.PlansDueKey(), s.PlansEndedKey(), pk.Processing, pk.Dialing, pk.Invited,
		pk.Scores, pk.Holders, pk.Interrupted, pk.Invalid} {
		if !strings.HasPrefix(k, "redial:") || hashTag(k) != "callback" {
			t.Errorf("%s hashes on %q, want callback", k, hashTag(k))
		}
	}
}

func TestClaimEventOldestFirstAckAndInvalid(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	l := s.EventsLedger()
	for _, e := range []string{"e1", "e2", "e3"} {
		if err := s.PushEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if got := claimN(t, l, 3); strings.Join(got, " ") != "e1 e2 e3" {
		t.Fatalf("claimed %q, want oldest first", got)
	}
	if c, err := l.Claims(ctx); err != nil || strings.Join(c, " ") != "e3 e2 e1" {
		t.Fatalf("claimed events = %q, %v", c, err)
	}
	if err := l.Ack(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Ack(ctx, "e1"); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("second ack = %v, want ErrClaimGone", err)
	}
	if err := l.Invalid(ctx, "e2", "no account_id"); err != nil {
		t.Fatal(err)
	}
	if err := l.Invalid(ctx, "e2", "again"); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("second invalid = %v, want ErrClaimGone", err)
	}
	k := l.Keys("")
	in := lrange(t, r, k.Invalid)
	if len(in) != 1 {
		t.Fatalf("invalid = %q", in)
	}
	if p := decodeParked(t, in[0]); p.Item != "e2" || p.Reason != "no account_id" || p.Host != "n1" {
		t.Fatalf("invalid entry %+v", p)
	}
	if c := lrange(t, r, k.Processing); len(c) != 1 || c[0] != "e3" {
		t.Fatalf("processing = %q", c)
	}
	// Events requeue instead of parking: an event cut short is read again.
	if err := l.Interrupt(ctx, "e3", "handler failed"); err != nil {
		t.Fatal(err)
	}
	if n := r.Client.LLen(ctx, k.Interrupted).Val(); n != 0 {
		t.Fatalf("interrupted has %d events", n)
	}
	if got := claimN(t, l, 1); got[0] != "e3" {
		t.Fatalf("claim after interrupt %q", got)
	}
	l.Ack(ctx, "e3")
	if e, ok, err := l.ClaimBlocking(ctx, 10*time.Millisecond); err != nil || ok {
		t.Fatalf("claim of an empty list = %q, %v, %v", e, ok, err)
	}
}

func TestRecoverEventsRequeuesInOrder(t *testing.T) {
	s, r := newDialerStore(t, "live")
	ctx := context.Background()
	const total, claimed = 250, 230 // more than one recover batch
	for i := range total {
		s.PushEvent(ctx, fmt.Sprint("e", i))
	}
	dead := hostStore(r, "dead").EventsLedger()
	if err := dead.EnsureHolder(ctx); err != nil {
		t.Fatal(err)
	}
	claimN(t, dead, claimed)
	live := s.EventsLedger()
	s.Heartbeat(ctx, "dead", time.Minute)
	if res, err := live.Recover(ctx, "dead"); !errors.Is(err, ErrHostAlive) || res.Total() != 0 {
		t.Fatalf("recover of a live host = %+v, %v", res, err)
	}
	r.Client.Del(ctx, s.AliveKey("dead"), s.LegacyAliveKey("dead"))
	if res, err := live.Recover(ctx, "dead"); err != nil || res != (RecoverResult{Requeued: claimed}) {
		t.Fatalf("recover = %+v, %v", res, err)
	}
	for i := range total {
		e, ok, err := live.ClaimBlocking(ctx, time.Second)
		if err != nil || !ok || e != fmt.Sprint("e", i) {
			t.Fatalf("claim %d after recovery = %q, %v, %v", i, e, ok, err)
		}
	}
	// The dead host is gone from the holders; the claims since registered
	// the live one.
	if h, err := live.Holders(ctx); err != nil || len(h) != 1 || h[0] != "live" {
		t.Fatalf("holders after recovery and claims = %v, %v, want [live]", h, err)
	}
	if res, err := live.SettleOwn(ctx); err != nil || res != (RecoverResult{Requeued: total}) {
		t.Fatalf("settle own = %+v, %v", res, err)
	}
	if n := r.Client.LLen(ctx, s.EventsKey()).Val(); n != total {
		t.Fatalf("events list holds %d after settle own, want %d", n, total)
	}
}

func TestCreatePlanOncePerVMBox(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	field := PlanField("acc1", "vm1")
	if field != "acc1/vm1" {
		t.Fatalf("plan field %q", field)
	}
	due := cbRedisTime(t, r).Add(-time.Second)
	created := make([]bool, 10)
	var wg sync.WaitGroup
	for i := range created {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := hostStore(r, fmt.Sprint("n", i)).CreatePlan(ctx, field, fmt.Sprintf(`{"node":%d}`, i), due)
			if err != nil {
				t.Error(err)
			}
			created[i] = ok
		}()
	}
	wg.Wait()
	winner := -1
	for i, ok := range created {
		if ok {
			if winner >= 0 {
				t.Fatalf("plan created by %d and %d", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no plan created")
	}
	want := fmt.Sprintf(`{"node":%d}`, winner)
	if js, ok, err := s.Plan(ctx, field); err != nil || !ok || js != want {
		t.Fatalf("plan = %q, %v, %v", js, ok, err)
	}
	if n := r.Client.ZCard(ctx, s.PlansDueKey()).Val(); n != 1 {
		t.Fatalf("%d due entries", n)
	}
	// The claim carries the plan's JSON. While it is being attempted, the
	// same event still adds nothing.
	l := s.PlansLedger()
	if p := claimPlans(t, l, 10); len(p) != 1 || p[0].Member != field || p[0].Payload != want {
		t.Fatalf("claim = %+v", p)
	}
	if ok, err := s.CreatePlan(ctx, field, "{}", due); err != nil || ok {
		t.Fatalf("create during an attempt = %v, %v", ok, err)
	}
	if n := r.Client.ZCard(ctx, s.PlansDueKey()).Val(); n != 0 {
		t.Fatalf("%d due entries during the attempt", n)
	}
	plans, times, err := s.Plans(ctx)
	if err != nil || len(plans) != 1 || plans[field] != want || len(times) != 0 {
		t.Fatalf("plans during the attempt = %v, %v, %v", plans, times, err)
	}
}

func TestClaimDuePlansTwoHostsClaimEachPlanOnce(t *testing.T) {
	s, r := newDialerStore(t, "a")
	ctx := context.Background()
	now := cbRedisTime(t, r)
	const due, future = 200, 5
	dueAt := map[string]time.Time{}
	for i := range due + future {
		f := PlanField("acc", fmt.Sprint("vm", i))
		at := now.Add(-time.Duration(i) * time.Second).Truncate(time.Millisecond)
		if i >= due {
			at = now.Add(time.Hour + time.Duration(i)*time.Second).Truncate(time.Millisecond)
		}
		dueAt[f] = at
		if ok, err := s.CreatePlan(ctx, f, `{"f":"`+f+`"}`, at); err != nil || !ok {
			t.Fatalf("create %s = %v, %v", f, ok, err)
		}
	}
	type result struct {
		plans []Claim
		next  float64
		err   error
	}
	ledgers := []*Ledger{s.PlansLedger(), hostStore(r, "b").PlansLedger()}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for h, l := range ledgers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p, next, err := l.ClaimDue(ctx, 9)
				if err != nil || len(p) == 0 {
					results[h].next, results[h].err = next, err
					return
				}
				results[h].plans = append(results[h].plans, p...)
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	wantNext := dueAt[PlanField("acc", fmt.Sprint("vm", due))]
	for h, res := range results {
		if res.err != nil {
			t.Fatal(res.err)
		}
		// Plan scores are unix ms.
		if next := time.UnixMilli(int64(res.next)); !next.Equal(wantNext) {
			t.Errorf("host %d: next %v, want %v", h, next, wantNext)
		}
		for _, p := range res.plans {
			if seen[p.Member] {
				t.Fatalf("plan %s claimed twice", p.Member)
			}
			seen[p.Member] = true
			if p.Payload != `{"f":"`+p.Member+`"}` || !p.Due(true).Equal(dueAt[p.Member]) {
				t.Fatalf("claimed %+v (due %v), want due %v", p, p.Due(true), dueAt[p.Member])
			}
			if p.Due(true).After(now) {
				t.Fatalf("plan %s claimed before it was due", p.Member)
			}
		}
	}
	if len(seen) != due {
		t.Fatalf("%d plans claimed, want %d", len(seen), due)
	}
	plans, times, err := s.Plans(ctx)
	if err != nil || len(plans) != due+future || len(times) != future {
		t.Fatalf("plans: %d plans, %d due times, %v", len(plans), len(times), err)
	}
	if h, err := ledgers[0].Holders(ctx); err != nil || len(h) == 0 {
		t.Fatalf("plan holders = %v, %v", h, err)
	}
}

// A claim of a plan whose document is gone (ended by an operator while it
// waited) is dropped, not handed out.
func TestClaimDuePlansDropsAPlanWithoutDocument(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	f := PlanField("acc", "vm")
	s.CreatePlan(ctx, f, "{}", time.Unix(1, 0))
	r.Client.HDel(ctx, s.PlansKey(), f)
	c, next, err := s.PlansLedger().ClaimDue(ctx, 10)
	if err != nil || len(c) != 0 || !math.IsNaN(next) {
		t.Fatalf("claim of an orphan due entry = %+v, next %v, %v", c, next, err)
	}
	if n := r.Client.ZCard(ctx, s.PlansDueKey()).Val(); n != 0 {
		t.Fatalf("orphan due entry left (%d)", n)
	}
	if n := r.Client.LLen(ctx, s.PlansLedger().Keys("").Processing).Val(); n != 0 {
		t.Fatalf("orphan due entry claimed (%d)", n)
	}
}

func TestWriteBackPlanWritesTheNextAttempt(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	f := PlanField("acc", "vm")
	now := cbRedisTime(t, r)
	s.CreatePlan(ctx, f, `{"attempt":0}`, now.Add(-time.Second))
	l, l2 := s.PlansLedger(), hostStore(r, "n2").PlansLedger()
	if p := claimPlans(t, l, 1); len(p) != 1 {
		t.Fatalf("claim = %v", p)
	}
	if err := l.Mark(ctx, f); err != nil {
		t.Fatal(err)
	}
	if err := l2.WriteBack(ctx, f, `{"attempt":9}`, now); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("write-back by a node without the claim = %v, want ErrClaimGone", err)
	}
	if js, _, _ := s.Plan(ctx, f); js != `{"attempt":0}` {
		t.Fatalf("refused write-back changed the plan to %s", js)
	}
	next := now.Add(-time.Millisecond).Truncate(time.Millisecond)
	if err := l.WriteBack(ctx, f, `{"attempt":1}`, next); err != nil {
		t.Fatal(err)
	}
	k := l.Keys("")
	if r.Client.Exists(ctx, k.Processing, k.Dialing, k.Invited, k.Scores).Val() != 0 {
		t.Fatal("claim left after write-back")
	}
	p := claimPlans(t, l2, 5)
	if len(p) != 1 || p[0].Payload != `{"attempt":1}` || !p[0].Due(true).Equal(next) {
		t.Fatalf("claim after write-back = %+v", p)
	}
}

func TestEndPlanStopsItWhoeverHoldsIt(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	f := PlanField("acc", "vm")
	s.CreatePlan(ctx, f, `{"attempt":2}`, time.Unix(1, 0))
	n2 := hostStore(r, "n2").PlansLedger()
	if p := claimPlans(t, n2, 1); len(p) != 1 {
		t.Fatalf("claim = %v", p)
	}
	if err := n2.Mark(ctx, f); err != nil {
		t.Fatal(err)
	}
	// n1 learns the callback was answered while n2 holds the plan: the
	// end is forced past n2's claim.
	js, _, _ := s.Plan(ctx, f)
	if err := s.Settle(ctx, s.PlanEndOp(f, js, "answered")); err != nil {
		t.Fatal(err)
	}
	if err := n2.WriteBack(ctx, f, `{"attempt":3}`, time.Unix(1, 0)); !errors.Is(err, ErrPlanGone) {
		t.Fatalf("write-back of an ended plan = %v, want ErrPlanGone", err)
	}
	k2 := n2.Keys("")
	if _, ok, _ := s.Plan(ctx, f); ok || r.Client.ZCard(ctx, s.PlansDueKey()).Val() != 0 ||
		r.Client.Exists(ctx, k2.Processing, k2.Dialing, k2.Invited, k2.Scores).Val() != 0 {
		t.Fatal("ended plan came back or left a claim")
	}
	if err := s.EndPlan(ctx, f, "again"); !errors.Is(err, ErrPlanGone) {
		t.Fatalf("second end = %v, want ErrPlanGone", err)
	}
	if err := s.Settle(ctx, s.PlanEndOp(f, js, "again")); !errors.Is(err, ErrPlanGone) {
		t.Fatalf("second end op = %v, want ErrPlanGone", err)
	}
	ended, err := s.EndedPlans(ctx, 10)
	if err != nil || len(ended) != 1 {
		t.Fatalf("ended = %v, %v", ended, err)
	}
	e := ended[0]
	if e.Field != f || string(e.Plan) != `{"attempt":2}` || e.Reason != "answered" || e.Host != "n1" {
		t.Fatalf("ended record %+v", e)
	}
	if _, err := time.Parse(time.RFC3339, e.At); err != nil {
		t.Fatalf("ended at %q: %v", e.At, err)
	}
	// A plan claimed and then ended by an operator: the claim is refused.
	s.CreatePlan(ctx, f, "not json", time.Unix(1, 0))
	claimPlans(t, n2, 1)
	if err := hostStore(r, "cli").EndPlan(ctx, f, "cancelled"); err != nil {
		t.Fatal(err)
	}
	if err := n2.Mark(ctx, f); !errors.Is(err, ErrPlanGone) {
		t.Fatalf("mark of an ended plan = %v, want ErrPlanGone", err)
	}
	if r.Client.Exists(ctx, k2.Processing, k2.Scores).Val() != 0 {
		t.Fatal("refused mark left the claim")
	}
	ended, _ = s.EndedPlans(ctx, 1)
	if len(ended) != 1 || string(ended[0].Plan) != `"not json"` || ended[0].Host != "cli" || ended[0].Reason != "cancelled" {
		t.Fatalf("ended record of a non-JSON plan %+v", ended)
	}
	// The holder itself ends a plan it holds.
	s.CreatePlan(ctx, f, "{}", time.Unix(1, 0))
	claimPlans(t, n2, 1)
	if err := hostStore(r, "n2").EndPlan(ctx, f, "schedule used up"); err != nil {
		t.Fatal(err)
	}
	if r.Client.Exists(ctx, k2.Processing, k2.Scores, s.PlansKey(), s.PlansDueKey()).Val() != 0 {
		t.Fatal("plan ended by its holder left something")
	}
}

func TestEndedPlansAreCapped(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	for i := range EndedPlansCap + 5 {
		f := fmt.Sprint("acc/vm", i)
		s.CreatePlan(ctx, f, "{}", time.Unix(1, 0))
		if err := s.EndPlan(ctx, f, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Client.LLen(ctx, s.PlansEndedKey()).Val(); n != EndedPlansCap {
		t.Fatalf("ended list holds %d, want %d", n, EndedPlansCap)
	}
	if e, err := s.EndedPlans(ctx, 1); err != nil || e[0].Field != fmt.Sprint("acc/vm", EndedPlansCap+4) {
		t.Fatalf("newest ended = %+v, %v", e, err)
	}
}

func TestRecoverPlansResumesTheSameAttempt(t *testing.T) {
	s, r := newDialerStore(t, "live")
	ctx := context.Background()
	for _, vm := range []string{"vm1", "vm2"} {
		s.CreatePlan(ctx, PlanField("acc", vm), `{"attempt":1,"vm":"`+vm+`"}`, time.Unix(1, 0))
	}
	dead, live := hostStore(r, "dead").PlansLedger(), s.PlansLedger()
	if p := claimPlans(t, dead, 10); len(p) != 2 {
		t.Fatalf("claim = %v", p)
	}
	if err := dead.Mark(ctx, PlanField("acc", "vm1")); err != nil {
		t.Fatal(err)
	}
	s.Heartbeat(ctx, "dead", time.Minute)
	if res, err := live.Recover(ctx, "dead"); !errors.Is(err, ErrHostAlive) || res.Total() != 0 {
		t.Fatalf("recover of a live host = %+v, %v", res, err)
	}
	r.Client.Del(ctx, s.AliveKey("dead"), s.LegacyAliveKey("dead"))
	before := cbRedisTime(t, r).Truncate(time.Millisecond)
	// Plans are requeued whether or not their INVITE went out: the marked
	// one counts as requeued-interrupted.
	if res, err := live.Recover(ctx, "dead"); err != nil || res != (RecoverResult{Requeued: 1, RequeuedInterrupted: 1}) {
		t.Fatalf("recover = %+v, %v", res, err)
	}
	after := cbRedisTime(t, r)
	if n := r.Client.LLen(ctx, live.Keys("").Interrupted).Val(); n != 0 {
		t.Fatalf("%d plans parked", n)
	}
	p := claimPlans(t, live, 10)
	if len(p) != 2 {
		t.Fatalf("claim after recovery = %v", p)
	}
	for _, pl := range p {
		var v struct{ Attempt int }
		json.Unmarshal([]byte(pl.Payload), &v)
		// Due now (not at the original score, 1970), same attempt.
		if v.Attempt != 1 || pl.Due(true).Before(before) || pl.Due(true).After(after) {
			t.Fatalf("recovered plan %+v (due %v, want between %v and %v)", pl, pl.Due(true), before, after)
		}
	}
	if err := dead.WriteBack(ctx, p[0].Member, "{}", time.Now()); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("write-back by the recovered node = %v, want ErrClaimGone", err)
	}
	if h, _ := live.Holders(ctx); len(h) != 1 || h[0] != "live" {
		t.Fatalf("plan holders = %v", h)
	}
	if res, err := live.SettleOwn(ctx); err != nil || res != (RecoverResult{Requeued: 2}) {
		t.Fatalf("settle own = %+v, %v", res, err)
	}
	// A recovered plan whose document was removed meanwhile is dropped.
	claimPlans(t, dead, 10)
	r.Client.HDel(ctx, s.PlansKey(), PlanField("acc", "vm2"))
	if res, err := live.Recover(ctx, "dead"); err != nil || res.Total() != 1 {
		t.Fatalf("recover with a plan gone = %+v, %v", res, err)
	}
	if m := r.Client.ZRange(ctx, s.PlansDueKey(), 0, -1).Val(); len(m) != 1 || m[0] != PlanField("acc", "vm1") {
		t.Fatalf("due after recovery = %q", m)
	}
}

func TestDocs(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	for key, want := range map[string]string{
		s.AccountDocsKey(): "account", s.UserDocsKey("a1"): "user@a1", s.VMBoxDocsKey("a1"): "vmbox@a1",
		s.CallflowDocsKey("a1"): "callflow@a1", s.SystemConfigKey(): "system_config",
	} {
		if key != want {
			t.Errorf("document key %q, want %q", key, want)
		}
	}
	r.Client.HSet(ctx, "vmbox@a1", "vm1", `{"owner_id":"u1"}`)
	if v, ok, err := s.Doc(ctx, s.VMBoxDocsKey("a1"), "vm1"); err != nil || !ok || v != `{"owner_id":"u1"}` {
		t.Fatalf("doc = %q, %v, %v", v, ok, err)
	}
	if _, ok, err := s.Doc(ctx, s.VMBoxDocsKey("a1"), "nope"); err != nil || ok {
		t.Fatalf("missing doc = %v, %v", ok, err)
	}
	s.SetDoc(ctx, s.CallflowDocsKey("a1"), "cf1", "{}")
	s.SetDoc(ctx, s.CallflowDocsKey("a1"), "cf2", "[]")
	if m, err := s.Docs(ctx, s.CallflowDocsKey("a1")); err != nil || len(m) != 2 || m["cf2"] != "[]" {
		t.Fatalf("docs = %v, %v", m, err)
	}
}

func TestCronTickOnceAcrossCallers(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	tick := time.Date(2026, 3, 2, 9, 23, 0, 0, time.UTC)
	var wins sync.WaitGroup
	results := make([]bool, 10)
	for i := range results {
		wins.Add(1)
		go func() {
			defer wins.Done()
			ok, err := s.CronTickOnce(ctx, "e1", tick, 300*time.Millisecond)
			if err != nil {
				t.Error(err)
			}
			results[i] = ok
		}()
	}
	wins.Wait()
	n := 0
	for _, ok := range results {
		if ok {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d callers ran the tick, want 1", n)
	}
	key := s.CronTickKey("e1", tick)
	if key != fmt.Sprint("redial:cron:e1:", tick.Unix()) {
		t.Fatalf("tick key %q", key)
	}
	if ttl := r.Client.PTTL(ctx, key).Val(); ttl <= 0 || ttl > 300*time.Millisecond {
		t.Fatalf("tick key TTL %v", ttl)
	}
	for name, args := range map[string]struct {
		id   string
		tick time.Time
	}{"next tick": {"e1", tick.Add(time.Minute)}, "other entry": {"e2", tick}} {
		if ok, err := s.CronTickOnce(ctx, args.id, args.tick, time.Minute); err != nil || !ok {
			t.Fatalf("%s = %v, %v", name, ok, err)
		}
	}
	// The guard only lives for its TTL.
	testenv.WaitFor(t, 5*time.Second, func() error {
		ok, err := s.CronTickOnce(ctx, "e1", tick, time.Minute)
		if err == nil && !ok {
			err = fmt.Errorf("tick still guarded")
		}
		return err
	})
}
