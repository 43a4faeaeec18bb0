package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

func TestEventAndPlanKeysShareTheirHashSlots(t *testing.T) {
	s := NewWithClient(nil, Config{})
	if s.EventsKey() != "redial:events" {
		t.Fatalf("events key %q", s.EventsKey())
	}
	for _, k := range []string{s.EventsProcessingKey("n1"), s.EventsHoldersKey(), s.EventsInvalidKey()} {
		if !strings.HasPrefix(k, "redial:") || hashTag(k) != s.EventsKey() {
			t.Errorf("%s hashes on %q, want %q", k, hashTag(k), s.EventsKey())
		}
	}
	for _, k := range []string{s.PlansKey(), s.PlansDueKey(), s.PlansProcessingKey("n1"),
		s.PlansHoldersKey(), s.PlansEndedKey()} {
		if !strings.HasPrefix(k, "redial:") || hashTag(k) != "callback" {
			t.Errorf("%s hashes on %q, want callback", k, hashTag(k))
		}
	}
}

func TestClaimEventOldestFirstAckAndInvalid(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	for _, e := range []string{"e1", "e2", "e3"} {
		if err := s.PushEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for range 3 {
		e, ok, err := s.ClaimEvent(ctx, "n1", time.Second)
		if err != nil || !ok {
			t.Fatalf("claim = %v, %v", ok, err)
		}
		got = append(got, e)
	}
	if strings.Join(got, " ") != "e1 e2 e3" {
		t.Fatalf("claimed %q, want oldest first", got)
	}
	if c, err := s.ClaimedEvents(ctx, "n1"); err != nil || strings.Join(c, " ") != "e3 e2 e1" {
		t.Fatalf("claimed events = %q, %v", c, err)
	}
	if err := s.AckEvent(ctx, "n1", "e1"); err != nil {
		t.Fatal(err)
	}
	if err := s.AckEvent(ctx, "n1", "e1"); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("second ack = %v, want ErrClaimGone", err)
	}
	if err := s.InvalidEvent(ctx, "n1", "e2", "no account_id"); err != nil {
		t.Fatal(err)
	}
	if err := s.InvalidEvent(ctx, "n1", "e2", "again"); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("second invalid = %v, want ErrClaimGone", err)
	}
	in := lrange(t, r, s.EventsInvalidKey())
	if len(in) != 1 {
		t.Fatalf("invalid = %q", in)
	}
	if p := decodeParked(t, in[0]); p.Item != "e2" || p.Reason != "no account_id" || p.Host != "n1" {
		t.Fatalf("invalid entry %+v", p)
	}
	if c := lrange(t, r, s.EventsProcessingKey("n1")); len(c) != 1 || c[0] != "e3" {
		t.Fatalf("processing = %q", c)
	}
	if e, ok, err := s.ClaimEvent(ctx, "n1", 10*time.Millisecond); err != nil || ok {
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
	if err := s.EnsureEventHolder(ctx, "dead"); err != nil {
		t.Fatal(err)
	}
	for range claimed {
		if _, ok, err := s.ClaimEvent(ctx, "dead", time.Second); err != nil || !ok {
			t.Fatalf("claim = %v, %v", ok, err)
		}
	}
	s.Heartbeat(ctx, "dead", time.Minute)
	if n, err := s.RecoverEvents(ctx, "dead"); !errors.Is(err, ErrHostAlive) || n != 0 {
		t.Fatalf("recover of a live host = %d, %v", n, err)
	}
	r.Client.Del(ctx, s.AliveKey("dead"))
	if n, err := s.RecoverEvents(ctx, "dead"); err != nil || n != claimed {
		t.Fatalf("recover = %d, %v", n, err)
	}
	for i := range total {
		e, ok, err := s.ClaimEvent(ctx, "live", time.Second)
		if err != nil || !ok || e != fmt.Sprint("e", i) {
			t.Fatalf("claim %d after recovery = %q, %v, %v", i, e, ok, err)
		}
	}
	if h, err := s.EventHolders(ctx); err != nil || len(h) != 0 {
		t.Fatalf("holders after recovery = %v, %v", h, err)
	}
	if n, err := s.RecoverOwnEvents(ctx, "live"); err != nil || n != total {
		t.Fatalf("recover own = %d, %v", n, err)
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
			ok, err := s.CreatePlan(ctx, field, fmt.Sprintf(`{"node":%d}`, i), due)
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
	if js, ok, err := s.Plan(ctx, field); err != nil || !ok || js != fmt.Sprintf(`{"node":%d}`, winner) {
		t.Fatalf("plan = %q, %v, %v", js, ok, err)
	}
	if n := r.Client.ZCard(ctx, s.PlansDueKey()).Val(); n != 1 {
		t.Fatalf("%d due entries", n)
	}
	// While it is being attempted, the same event still adds nothing.
	if p, _, err := s.ClaimDuePlans(ctx, "n1", 10); err != nil || len(p) != 1 {
		t.Fatalf("claim = %v, %v", p, err)
	}
	if ok, err := s.CreatePlan(ctx, field, "{}", due); err != nil || ok {
		t.Fatalf("create during an attempt = %v, %v", ok, err)
	}
	if n := r.Client.ZCard(ctx, s.PlansDueKey()).Val(); n != 0 {
		t.Fatalf("%d due entries during the attempt", n)
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
		plans []PlanRecord
		next  time.Time
		err   error
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for h, host := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p, next, err := s.ClaimDuePlans(ctx, host, 9)
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
		if !res.next.Equal(wantNext) {
			t.Errorf("host %d: next %v, want %v", h, res.next, wantNext)
		}
		for _, p := range res.plans {
			if seen[p.Field] {
				t.Fatalf("plan %s claimed twice", p.Field)
			}
			seen[p.Field] = true
			if p.JSON != `{"f":"`+p.Field+`"}` || !p.Due.Equal(dueAt[p.Field]) {
				t.Fatalf("claimed %+v, due %v", p, dueAt[p.Field])
			}
			if p.Due.After(now) {
				t.Fatalf("plan %s claimed before it was due", p.Field)
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
	if h, err := s.PlanHolders(ctx); err != nil || len(h) == 0 {
		t.Fatalf("plan holders = %v, %v", h, err)
	}
}

func TestReschedulePlanWritesTheNextAttempt(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	f := PlanField("acc", "vm")
	now := cbRedisTime(t, r)
	s.CreatePlan(ctx, f, `{"attempt":0}`, now.Add(-time.Second))
	if p, _, err := s.ClaimDuePlans(ctx, "n1", 1); err != nil || len(p) != 1 {
		t.Fatalf("claim = %v, %v", p, err)
	}
	if err := s.MarkPlanInvited(ctx, "n1", f); err != nil {
		t.Fatal(err)
	}
	if err := s.ReschedulePlan(ctx, "n2", f, `{"attempt":9}`, now); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("reschedule by a node without the claim = %v, want ErrClaimGone", err)
	}
	next := now.Add(-time.Millisecond).Truncate(time.Millisecond)
	if err := s.ReschedulePlan(ctx, "n1", f, `{"attempt":1}`, next); err != nil {
		t.Fatal(err)
	}
	if r.Client.HLen(ctx, s.PlansProcessingKey("n1")).Val() != 0 {
		t.Fatal("claim left after reschedule")
	}
	p, _, err := s.ClaimDuePlans(ctx, "n2", 5)
	if err != nil || len(p) != 1 || p[0].JSON != `{"attempt":1}` || !p[0].Due.Equal(next) {
		t.Fatalf("claim after reschedule = %+v, %v", p, err)
	}
}

func TestEndPlanStopsItWhoeverHoldsIt(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	f := PlanField("acc", "vm")
	s.CreatePlan(ctx, f, `{"attempt":2}`, time.Unix(1, 0))
	if p, _, err := s.ClaimDuePlans(ctx, "n2", 1); err != nil || len(p) != 1 {
		t.Fatalf("claim = %v, %v", p, err)
	}
	// n1 learns the callback was answered while n2 holds the plan.
	if err := s.EndPlan(ctx, "n1", f, "answered"); err != nil {
		t.Fatal(err)
	}
	if err := s.ReschedulePlan(ctx, "n2", f, `{"attempt":3}`, time.Unix(1, 0)); !errors.Is(err, ErrPlanGone) {
		t.Fatalf("reschedule of an ended plan = %v, want ErrPlanGone", err)
	}
	if _, ok, _ := s.Plan(ctx, f); ok || r.Client.ZCard(ctx, s.PlansDueKey()).Val() != 0 ||
		r.Client.HLen(ctx, s.PlansProcessingKey("n2")).Val() != 0 {
		t.Fatal("ended plan came back or left a claim")
	}
	if err := s.EndPlan(ctx, "n1", f, "again"); !errors.Is(err, ErrPlanGone) {
		t.Fatalf("second end = %v, want ErrPlanGone", err)
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
	s.ClaimDuePlans(ctx, "n2", 1)
	if err := s.EndPlan(ctx, "", f, "cancelled"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPlanInvited(ctx, "n2", f); !errors.Is(err, ErrPlanGone) {
		t.Fatalf("mark of an ended plan = %v, want ErrPlanGone", err)
	}
	if ended, _ := s.EndedPlans(ctx, 1); len(ended) != 1 || string(ended[0].Plan) != `"not json"` {
		t.Fatalf("ended record of a non-JSON plan %+v", ended)
	}
}

func TestEndedPlansAreCapped(t *testing.T) {
	s, r := newDialerStore(t, "n1")
	ctx := context.Background()
	for i := range EndedPlansCap + 5 {
		f := fmt.Sprint("acc/vm", i)
		s.CreatePlan(ctx, f, "{}", time.Unix(1, 0))
		if err := s.EndPlan(ctx, "", f, "x"); err != nil {
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
	if p, _, err := s.ClaimDuePlans(ctx, "dead", 10); err != nil || len(p) != 2 {
		t.Fatalf("claim = %v, %v", p, err)
	}
	if err := s.MarkPlanInvited(ctx, "dead", PlanField("acc", "vm1")); err != nil {
		t.Fatal(err)
	}
	s.Heartbeat(ctx, "dead", time.Minute)
	if n, err := s.RecoverPlans(ctx, "dead"); !errors.Is(err, ErrHostAlive) || n != 0 {
		t.Fatalf("recover of a live host = %d, %v", n, err)
	}
	r.Client.Del(ctx, s.AliveKey("dead"))
	before := cbRedisTime(t, r).Truncate(time.Millisecond)
	if n, err := s.RecoverPlans(ctx, "dead"); err != nil || n != 2 {
		t.Fatalf("recover = %d, %v", n, err)
	}
	after := cbRedisTime(t, r)
	p, _, err := s.ClaimDuePlans(ctx, "live", 10)
	if err != nil || len(p) != 2 {
		t.Fatalf("claim after recovery = %v, %v", p, err)
	}
	for _, pl := range p {
		var v struct{ Attempt int }
		json.Unmarshal([]byte(pl.JSON), &v)
		if v.Attempt != 1 || pl.Due.Before(before) || pl.Due.After(after) {
			t.Fatalf("recovered plan %+v (due between %v and %v)", pl, before, after)
		}
	}
	if err := s.ReschedulePlan(ctx, "dead", p[0].Field, "{}", time.Now()); !errors.Is(err, ErrClaimGone) {
		t.Fatalf("reschedule by the recovered node = %v, want ErrClaimGone", err)
	}
	if h, _ := s.PlanHolders(ctx); len(h) != 1 || h[0] != "live" {
		t.Fatalf("plan holders = %v", h)
	}
	if n, err := s.RecoverOwnPlans(ctx, "live"); err != nil || n != 2 {
		t.Fatalf("recover own = %d, %v", n, err)
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
