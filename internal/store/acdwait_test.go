package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"redial/internal/testenv"
)

// newACDStore is a store of host on a fresh redis-server.
func newACDStore(t *testing.T, host string) (*testenv.Redis, *Store) {
	t.Helper()
	r := testenv.StartRedis(t)
	return r, NewWithClient(r.Client, Config{Domain: "acme", Host: host})
}

// joinAll puts refs in queue in that order, one millisecond apart from t0,
// and checks each one's position.
func joinAll(t *testing.T, s *Store, queue string, t0 time.Time, refs ...string) {
	t.Helper()
	ctx := context.Background()
	for _, ref := range refs {
		before, err := s.rdb.ZCard(ctx, s.WaitingKey(queue)).Result()
		if err != nil {
			t.Fatal(err)
		}
		pos, err := s.JoinQueue(ctx, queue, ref, 0, t0)
		if err != nil {
			t.Fatalf("JoinQueue %s: %v", ref, err)
		}
		if pos != int(before)+1 {
			t.Fatalf("JoinQueue %s: position %d, want %d", ref, pos, before+1)
		}
		t0 = t0.Add(time.Millisecond)
	}
}

func setAvailable(t *testing.T, s *Store, now time.Time, exts ...string) {
	t.Helper()
	for _, ext := range exts {
		if err := s.SetAgentState(context.Background(), ext, AgentAvailable, "", now); err != nil {
			t.Fatal(err)
		}
	}
}

func line(t *testing.T, s *Store, queue string) []string {
	t.Helper()
	refs, err := s.rdb.ZRange(context.Background(), s.WaitingKey(queue), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return refs
}

func callerHash(t *testing.T, s *Store, ref string) map[string]string {
	t.Helper()
	h, err := s.rdb.HGetAll(context.Background(), s.callerKey(ref)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func cands(exts ...string) []Candidate {
	out := make([]Candidate, len(exts))
	for i, e := range exts {
		out[i] = Candidate{Ext: e, Level: 1}
	}
	return out
}

func offer(t *testing.T, s *Store, queue, ref string, c []Candidate, ringAll bool, now time.Time) OfferResult {
	t.Helper()
	res, err := s.Offer(context.Background(), queue, ref, c, ringAll, false, now)
	if err != nil {
		t.Fatalf("Offer %s: %v", ref, err)
	}
	return res
}

// Callers line up in join order with positions 1, 2, 3; a full queue
// refuses, a call already queued cannot join twice.
func TestJoinQueueOrderFullAndDuplicate(t *testing.T) {
	_, s := newACDStore(t, "h1")
	ctx := context.Background()
	joinAll(t, s, "sales", acdT0, "c1", "c2", "c3")
	if got := line(t, s, "sales"); !slices.Equal(got, []string{"c1", "c2", "c3"}) {
		t.Fatalf("line = %v", got)
	}
	for i, ref := range []string{"c1", "c2", "c3"} {
		if p, err := s.Position(ctx, "sales", ref); err != nil || p != i+1 {
			t.Fatalf("Position(%s) = %d, %v; want %d", ref, p, err, i+1)
		}
	}
	if p, err := s.Position(ctx, "sales", "nobody"); err != nil || p != 0 {
		t.Fatalf("Position of a caller not queued = %d, %v", p, err)
	}
	if h := callerHash(t, s, "c2"); h["queue"] != "sales" || h["host"] != "h1" || h["state"] != "waiting" {
		t.Fatalf("caller hash = %v", h)
	}

	_, err := s.JoinQueue(ctx, "sales", "c4", 3, acdT0.Add(time.Second))
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("join a queue holding max_len callers: %v, want ErrQueueFull", err)
	}
	if pos, err := s.JoinQueue(ctx, "sales", "c4", 4, acdT0.Add(time.Second)); err != nil || pos != 4 {
		t.Fatalf("join below max_len = %d, %v", pos, err)
	}

	_, err = s.JoinQueue(ctx, "sales", "c1", 0, acdT0.Add(2*time.Second))
	if !errors.Is(err, ErrCallerQueued) {
		t.Fatalf("second join of c1: %v, want ErrCallerQueued", err)
	}
	// Not in another queue either, and the first join keeps its place.
	_, err = s.JoinQueue(ctx, "support", "c1", 0, acdT0.Add(2*time.Second))
	if !errors.Is(err, ErrCallerQueued) {
		t.Fatalf("join of c1 to a second queue: %v, want ErrCallerQueued", err)
	}
	if got := line(t, s, "sales"); !slices.Equal(got, []string{"c1", "c2", "c3", "c4"}) {
		t.Fatalf("line after refused joins = %v", got)
	}
	if n, _ := s.rdb.ZCard(ctx, s.WaitingKey("support")).Result(); n != 0 {
		t.Fatalf("refused join left %d callers in support", n)
	}
}

// The n-th in line is offered the n-th free candidate, so the first in
// line gets the preferred agent whoever asks first; nobody is offered
// while the free agents are taken by those ahead.
func TestOfferAheadLogic(t *testing.T) {
	_, s := newACDStore(t, "h1")
	ctx := context.Background()
	joinAll(t, s, "sales", acdT0, "c1", "c2", "c3")
	setAvailable(t, s, acdT0, "1001", "1002")
	now := acdT0.Add(time.Second)
	order := cands("1001", "1002")

	// Only two free agents: the third in line waits, untouched.
	res := offer(t, s, "sales", "c3", order, false, now)
	if res.Agents != nil || res.Gone || res.Ahead != 2 || res.Free != 2 {
		t.Fatalf("offer to third in line with two free = %+v", res)
	}
	if p, _ := s.Position(ctx, "sales", "c3"); p != 3 {
		t.Fatalf("c3 at %d after a refused offer", p)
	}

	// The second in line asks first: it gets the second free agent.
	res = offer(t, s, "sales", "c2", order, false, now)
	if !slices.Equal(res.Agents, []string{"1002"}) {
		t.Fatalf("offer to second in line = %+v, want agent 1002", res)
	}
	res = offer(t, s, "sales", "c1", order, false, now)
	if !slices.Equal(res.Agents, []string{"1001"}) {
		t.Fatalf("offer to first in line = %+v, want agent 1001", res)
	}
	for ext, ref := range map[string]string{"1001": "c1", "1002": "c2"} {
		if a := readAgentState(t, s, ext, now); a.State != AgentRinging || a.CallRef != ref || !a.Since.Equal(now) {
			t.Fatalf("agent %s = %+v, want ringing for %s", ext, a, ref)
		}
	}
	if h := callerHash(t, s, "c2"); h["state"] != "offered" || h["offered"] != "1002" {
		t.Fatalf("c2 hash = %v", h)
	}
	if got := line(t, s, "sales"); !slices.Equal(got, []string{"c3"}) {
		t.Fatalf("line = %v, want [c3]", got)
	}
	// c3 is now first but nobody is free.
	res = offer(t, s, "sales", "c3", order, false, now)
	if res.Agents != nil || res.Ahead != 0 || res.Free != 0 {
		t.Fatalf("offer with nobody free = %+v", res)
	}
	// An offered caller is not waiting: a second offer finds it gone.
	setAvailable(t, s, now, "1003")
	if res := offer(t, s, "sales", "c1", cands("1003"), false, now); !res.Gone || res.Agents != nil {
		t.Fatalf("second offer to an offered caller = %+v, want gone", res)
	}
	if a := readAgentState(t, s, "1003", now); a.State != AgentAvailable {
		t.Fatalf("agent 1003 = %+v after an offer to a gone caller", a)
	}
}

// ring_all offers the first in line every free agent of the lowest free
// level, and nobody else anything.
func TestOfferRingAll(t *testing.T) {
	_, s := newACDStore(t, "h1")
	joinAll(t, s, "sales", acdT0, "c1", "c2")
	setAvailable(t, s, acdT0, "1001", "1002", "1003", "2001")
	if err := s.SetAgentState(context.Background(), "1002", AgentPaused, "lunch", acdT0); err != nil {
		t.Fatal(err)
	}
	now := acdT0.Add(time.Second)
	order := []Candidate{{"1001", 1}, {"1002", 1}, {"1003", 1}, {"2001", 2}}

	res := offer(t, s, "sales", "c2", order, true, now)
	if res.Agents != nil || res.Ahead != 1 || res.Free != 3 {
		t.Fatalf("ring_all offer to the second in line = %+v, want none", res)
	}
	res = offer(t, s, "sales", "c1", order, true, now)
	if !slices.Equal(res.Agents, []string{"1001", "1003"}) {
		t.Fatalf("ring_all offer = %v, want the free level-1 agents [1001 1003]", res.Agents)
	}
	if h := callerHash(t, s, "c1"); h["offered"] != "1001 1003" {
		t.Fatalf("c1 offered = %q", h["offered"])
	}
	for _, ext := range []string{"1001", "1003"} {
		if a := readAgentState(t, s, ext, now); a.State != AgentRinging || a.CallRef != "c1" {
			t.Fatalf("agent %s = %+v", ext, a)
		}
	}
	if a := readAgentState(t, s, "2001", now); a.State != AgentAvailable {
		t.Fatalf("level-2 agent = %+v; rang while level 1 had free agents", a)
	}
	// Level 1 all taken: the next first in line rings level 2.
	res = offer(t, s, "sales", "c2", order, true, now)
	if !slices.Equal(res.Agents, []string{"2001"}) {
		t.Fatalf("ring_all offer with level 1 busy = %+v, want [2001]", res)
	}
}

// A level-2 agent is offered only while no level-1 agent is free.
func TestOfferTiers(t *testing.T) {
	_, s := newACDStore(t, "h1")
	joinAll(t, s, "sales", acdT0, "c1", "c2", "c3")
	setAvailable(t, s, acdT0, "1001", "2001")
	now := acdT0.Add(time.Second)
	order := []Candidate{{"1001", 1}, {"2001", 2}}
	if res := offer(t, s, "sales", "c1", order, false, now); !slices.Equal(res.Agents, []string{"1001"}) {
		t.Fatalf("first in line = %+v, want level-1 agent 1001", res)
	}
	if res := offer(t, s, "sales", "c2", order, false, now); !slices.Equal(res.Agents, []string{"2001"}) {
		t.Fatalf("second in line with level 1 busy = %+v, want 2001", res)
	}
	if res := offer(t, s, "sales", "c3", order, false, now); res.Agents != nil || res.Free != 0 {
		t.Fatalf("third in line with everyone busy = %+v", res)
	}
}

// An agent in wrap-up is not offered before wrapup_until; NextFree says
// when it will be, and from then on it is offered.
func TestOfferWaitsForWrapup(t *testing.T) {
	_, s := newACDStore(t, "h1")
	ctx := context.Background()
	setAvailable(t, s, acdT0, "1001")
	joinAll(t, s, "sales", acdT0, "c0", "c1")
	if res := offer(t, s, "sales", "c0", cands("1001"), false, acdT0); !slices.Equal(res.Agents, []string{"1001"}) {
		t.Fatalf("offer c0 = %+v", res)
	}
	if err := s.CallAnswered(ctx, "1001", "c0", acdT0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	end := acdT0.Add(time.Minute)
	if err := s.CallEnded(ctx, "1001", "c0", 10*time.Second, end); err != nil {
		t.Fatal(err)
	}
	until := end.Add(10 * time.Second)
	res := offer(t, s, "sales", "c1", cands("1001"), false, until.Add(-time.Millisecond))
	if res.Agents != nil || res.Free != 0 || !res.NextFree.Equal(until) {
		t.Fatalf("offer during wrap-up = %+v, want none with NextFree %v", res, until)
	}
	if a := readAgentState(t, s, "1001", until.Add(-time.Millisecond)); a.State != AgentWrapup {
		t.Fatalf("agent = %+v, want wrapup", a)
	}
	res = offer(t, s, "sales", "c1", cands("1001"), false, until)
	if !slices.Equal(res.Agents, []string{"1001"}) {
		t.Fatalf("offer at wrapup_until = %+v, want 1001", res)
	}
	if a := readAgentState(t, s, "1001", until); a.State != AgentRinging || a.CallRef != "c1" || !a.WrapupUntil.IsZero() {
		t.Fatalf("agent after the offer = %+v", a)
	}
}

// A caller whose offer went unanswered goes back where it was, ahead of
// those who joined after it.
func TestUnofferKeepsPlace(t *testing.T) {
	_, s := newACDStore(t, "h1")
	ctx := context.Background()
	setAvailable(t, s, acdT0, "1001")
	joinAll(t, s, "sales", acdT0, "c1", "c2", "c3")
	now := acdT0.Add(time.Second)
	if res := offer(t, s, "sales", "c1", cands("1001"), false, now); !slices.Equal(res.Agents, []string{"1001"}) {
		t.Fatalf("offer = %+v", res)
	}
	if p, _ := s.Position(ctx, "sales", "c2"); p != 1 {
		t.Fatalf("c2 at %d while c1 rings, want 1", p)
	}
	if p, _ := s.Position(ctx, "sales", "c1"); p != 0 {
		t.Fatalf("ringing c1 at position %d, want 0", p)
	}
	if _, err := s.CallNotAnswered(ctx, "1001", "c1", 0, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	ok, err := s.Unoffer(ctx, "sales", "c1")
	if err != nil || !ok {
		t.Fatalf("Unoffer = %v, %v", ok, err)
	}
	if got := line(t, s, "sales"); !slices.Equal(got, []string{"c1", "c2", "c3"}) {
		t.Fatalf("line after Unoffer = %v, want c1 first again", got)
	}
	if h := callerHash(t, s, "c1"); h["state"] != "waiting" || h["offered"] != "" || h["joined"] != fmt.Sprint(acdT0.UnixMilli()) {
		t.Fatalf("c1 hash after Unoffer = %v", h)
	}
	if ok, err := s.Unoffer(ctx, "sales", "c1"); ok || err != nil {
		t.Fatalf("Unoffer of a waiting caller = %v, %v; want false", ok, err)
	}
	if ok, err := s.Unoffer(ctx, "sales", "nobody"); ok || err != nil {
		t.Fatalf("Unoffer of an unknown caller = %v, %v; want false", ok, err)
	}
	if n, _ := s.rdb.ZCard(ctx, s.WaitingKey("sales")).Result(); n != 3 {
		t.Fatalf("%d waiting after refused Unoffers, want 3", n)
	}
	// The next offer goes to c1 again, not to c2.
	if res := offer(t, s, "sales", "c2", cands("1001"), false, now.Add(2*time.Second)); res.Agents != nil {
		t.Fatalf("c2 offered %v while c1 is first again", res.Agents)
	}
	if res := offer(t, s, "sales", "c1", cands("1001"), false, now.Add(2*time.Second)); !slices.Equal(res.Agents, []string{"1001"}) {
		t.Fatalf("c1 offered %+v after Unoffer", res)
	}
}

// Many nodes offering at once: no agent rings for two callers, no caller
// is offered twice at a time, and when the dust settles the five agents
// ring for the first five in line.
func TestOfferConcurrentNeverDoubleBooks(t *testing.T) {
	const nCallers, nAgents, rounds = 20, 5, 40
	_, s := newACDStore(t, "h1")
	ctx := context.Background()
	refs := make([]string, nCallers)
	for i := range refs {
		refs[i] = fmt.Sprintf("c%02d", i)
	}
	joinAll(t, s, "sales", acdT0, refs...)
	exts := make([]string, nAgents)
	for i := range exts {
		exts[i] = fmt.Sprintf("10%02d", i)
	}
	setAvailable(t, s, acdT0, exts...)
	order := cands(exts...)
	now := acdT0.Add(time.Second)

	// Phase 1: every caller's goroutine offers, and whatever it got it
	// checks, then hands back (Unoffer + ReleaseAgent).
	holding := make(map[string]*atomic.Int32, nAgents)
	for _, e := range exts {
		holding[e] = new(atomic.Int32)
	}
	var offered atomic.Int64
	errs := make(chan error, nCallers*rounds)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, ref := range refs {
		wg.Go(func() {
			<-start
			for range rounds {
				res, err := s.Offer(ctx, "sales", ref, order, false, false, now)
				if err != nil {
					errs <- err
					return
				}
				if res.Gone {
					errs <- fmt.Errorf("%s found gone while it alone takes itself out", ref)
					return
				}
				if len(res.Agents) == 0 {
					continue
				}
				offered.Add(1)
				if len(res.Agents) != 1 {
					errs <- fmt.Errorf("%s offered %v at once", ref, res.Agents)
				}
				ext := res.Agents[0]
				if n := holding[ext].Add(1); n != 1 {
					errs <- fmt.Errorf("agent %s offered to %d callers at once", ext, n)
				}
				if h, _ := s.rdb.HGetAll(ctx, s.AgentStateKey(ext)).Result(); h["state"] != AgentRinging || h["call_ref"] != ref {
					errs <- fmt.Errorf("agent %s offered to %s but its hash is %v", ext, ref, h)
				}
				if h, _ := s.rdb.HGetAll(ctx, s.callerKey(ref)).Result(); h["state"] != "offered" || h["offered"] != ext {
					errs <- fmt.Errorf("caller %s offered %s but its hash is %v", ref, ext, h)
				}
				holding[ext].Add(-1)
				if ok, err := s.Unoffer(ctx, "sales", ref); err != nil || !ok {
					errs <- fmt.Errorf("Unoffer %s: %v %v", ref, ok, err)
					return
				}
				if err := s.ReleaseAgent(ctx, ext, ref, now); err != nil {
					errs <- fmt.Errorf("ReleaseAgent %s for %s: %w", ext, ref, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	if offered.Load() == 0 {
		t.Fatal("no offer was made in the churn phase")
	}
	if got := line(t, s, "sales"); !slices.Equal(got, refs) {
		t.Fatalf("line after the churn = %v, want every caller back in join order", got)
	}

	// Phase 2: one offer per caller, all at once, nothing handed back.
	got := make([][]string, nCallers)
	start = make(chan struct{})
	for i, ref := range refs {
		wg.Go(func() {
			<-start
			res, err := s.Offer(ctx, "sales", ref, order, false, false, now)
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = res.Agents
		})
	}
	close(start)
	wg.Wait()
	agentOf := map[string]string{}
	for i, ref := range refs {
		switch {
		case i < nAgents && len(got[i]) != 1:
			t.Errorf("%s (number %d in line) offered %v, want one agent", ref, i+1, got[i])
		case i >= nAgents && len(got[i]) != 0:
			t.Errorf("%s (number %d in line) offered %v with %d agents for those ahead", ref, i+1, got[i], nAgents)
		}
		for _, ext := range got[i] {
			if prev, dup := agentOf[ext]; dup {
				t.Errorf("agent %s offered to %s and %s", ext, prev, ref)
			}
			agentOf[ext] = ref
		}
	}
	// The hashes agree with the offers.
	for _, ext := range exts {
		h, _ := s.rdb.HGetAll(ctx, s.AgentStateKey(ext)).Result()
		if h["state"] != AgentRinging || h["call_ref"] != agentOf[ext] {
			t.Errorf("agent %s hash %v, want ringing for %q", ext, h, agentOf[ext])
		}
	}
	for i, ref := range refs {
		h := callerHash(t, s, ref)
		switch {
		case i < nAgents:
			if h["state"] != "offered" || len(strings.Fields(h["offered"])) != 1 || agentOf[h["offered"]] != ref {
				t.Errorf("caller %s hash %v", ref, h)
			}
		default:
			if h["state"] != "waiting" || h["offered"] != "" {
				t.Errorf("caller %s hash %v, want waiting", ref, h)
			}
		}
	}
	if got := line(t, s, "sales"); !slices.Equal(got, refs[nAgents:]) {
		t.Errorf("line = %v, want %v", got, refs[nAgents:])
	}
}

// Answers (within and beyond the service level), abandons and overflows
// are counted over the last ServiceWindow; a caller that leaves twice
// counts once.
func TestQueueWaitStatsOutcomes(t *testing.T) {
	_, s := newACDStore(t, "h1")
	ctx := context.Background()
	setAvailable(t, s, acdT0, "1001", "1002")
	joinAll(t, s, "sales", acdT0, "c1", "c2", "c3", "c4", "c5")
	now := acdT0.Add(time.Minute)
	for _, ref := range []string{"c1", "c2"} {
		if res := offer(t, s, "sales", ref, cands("1001", "1002"), false, now); len(res.Agents) != 1 {
			t.Fatalf("offer %s = %+v", ref, res)
		}
	}
	if err := s.CallerConnected(ctx, "sales", "c1", "1001", 5*time.Second, now); err != nil {
		t.Fatal(err)
	}
	if err := s.CallerConnected(ctx, "sales", "c2", "1002", 45*time.Second, now); err != nil {
		t.Fatal(err)
	}
	if h := callerHash(t, s, "c1"); h["state"] != "connected" || h["agent"] != "1001" {
		t.Fatalf("connected caller hash = %v", h)
	}
	leave := func(ref, outcome string) {
		t.Helper()
		if err := s.LeaveQueue(ctx, "sales", ref, outcome, 30*time.Second, now); err != nil {
			t.Fatal(err)
		}
	}
	leave("c3", OutcomeAbandoned)
	leave("c3", OutcomeAbandoned) // already gone: not counted again
	leave("c4", OutcomeOverflow)
	leave("c1", "") // the connected call ended: counted at the answer
	leave("c2", "")
	if h := callerHash(t, s, "c1"); len(h) != 0 {
		t.Fatalf("caller hash after LeaveQueue = %v", h)
	}
	if m, _ := s.rdb.SMembers(ctx, s.callersKey("h1")).Result(); !slices.Equal(m, []string{"c5"}) {
		t.Fatalf("h1 holds %v, want [c5]", m)
	}

	st, err := s.QueueWaitStats(ctx, "sales", 20*time.Second, now)
	if err != nil {
		t.Fatal(err)
	}
	want := QueueWait{Waiting: 1, Oldest: acdT0.Add(4 * time.Millisecond), Answered: 2, AnsweredWithin: 1, Abandoned: 1, Overflowed: 1}
	if !st.Oldest.Equal(want.Oldest) {
		t.Fatalf("QueueWaitStats.Oldest = %v, want %v (c5's join)", st.Oldest, want.Oldest)
	}
	st.Oldest = want.Oldest
	if st != want {
		t.Fatalf("QueueWaitStats = %+v, want %+v", st, want)
	}
	// An hour later the outcomes are out of the window.
	st, err = s.QueueWaitStats(ctx, "sales", 20*time.Second, now.Add(ServiceWindow+time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if st.Answered+st.Abandoned+st.Overflowed != 0 || st.Waiting != 1 {
		t.Fatalf("QueueWaitStats after the window = %+v", st)
	}
	// An empty queue has no oldest.
	st, err = s.QueueWaitStats(ctx, "support", 20*time.Second, now)
	if err != nil || st != (QueueWait{}) {
		t.Fatalf("QueueWaitStats of an empty queue = %+v, %v", st, err)
	}
}

// The recovery of a dead host drops its callers wherever they were
// (waiting, ringing, talking) and frees their agents, leaving the live
// host's callers and any agent another call now holds alone; a host
// whose heartbeat is alive is refused.
func TestACDLedgerRecoverDeadHost(t *testing.T) {
	r, a := newACDStore(t, "ha")
	b := NewWithClient(r.Client, Config{Domain: "acme", Host: "hb"})
	ctx := context.Background()
	setAvailable(t, a, acdT0, "1001", "1002", "1003", "1004")
	// Offers honour the line, so those offered joined first.
	join := func(s *Store, ref string, ms int) {
		t.Helper()
		if _, err := s.JoinQueue(ctx, "sales", ref, 0, acdT0.Add(time.Duration(ms)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	join(b, "b2", 0)
	join(b, "b3", 1)
	join(b, "b4", 2)
	join(a, "a1", 3)
	join(a, "a2", 4)
	join(b, "b1", 5)
	join(a, "a3", 6)
	now := acdT0.Add(time.Second)
	// b2 rings 1001; b3 talks to 1002; b4 rang 1004, which was then set
	// available by hand and now rings for a1; a2 rings 1003; b1 and a3
	// wait.
	for _, o := range [][2]string{{"b2", "1001"}, {"b3", "1002"}, {"b4", "1004"}} {
		if res := offer(t, b, "sales", o[0], cands(o[1]), false, now); len(res.Agents) != 1 {
			t.Fatalf("offer %s to %s = %+v", o[0], o[1], res)
		}
	}
	if err := b.CallAnswered(ctx, "1002", "b3", now); err != nil {
		t.Fatal(err)
	}
	if err := b.CallerConnected(ctx, "sales", "b3", "1002", time.Second, now); err != nil {
		t.Fatal(err)
	}
	setAvailable(t, a, now, "1004")
	if res := offer(t, a, "sales", "a1", cands("1004"), false, now); !slices.Equal(res.Agents, []string{"1004"}) {
		t.Fatalf("offer a1 = %+v", res)
	}
	if res := offer(t, a, "sales", "a2", cands("1003"), false, now); !slices.Equal(res.Agents, []string{"1003"}) {
		t.Fatalf("offer a2 = %+v", res)
	}
	if got := line(t, a, "sales"); !slices.Equal(got, []string{"b1", "a3"}) {
		t.Fatalf("line before the recovery = %v", got)
	}
	ledger := a.ACDLedger()
	holders, err := ledger.Holders(ctx)
	slices.Sort(holders)
	if err != nil || !slices.Equal(holders, []string{"ha", "hb"}) {
		t.Fatalf("Holders = %v, %v", holders, err)
	}

	// hb heartbeats: refused, nothing moves.
	if err := r.Client.Set(ctx, a.AliveKey("hb"), "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if res, err := ledger.Recover(ctx, "hb"); !errors.Is(err, ErrHostAlive) || res.Total() != 0 {
		t.Fatalf("Recover of a live host = %+v, %v; want ErrHostAlive", res, err)
	}
	if got := line(t, a, "sales"); !slices.Equal(got, []string{"b1", "a3"}) {
		t.Fatalf("line after a refused recovery = %v", got)
	}
	if st := readAgentState(t, a, "1001", now); st.State != AgentRinging || st.CallRef != "b2" {
		t.Fatalf("agent 1001 after a refused recovery = %+v", st)
	}

	// hb dies.
	if err := r.Client.Del(ctx, a.AliveKey("hb")).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := ledger.Recover(ctx, "hb")
	if err != nil {
		t.Fatal(err)
	}
	if res.Interrupted != 4 || res.Total() != 4 {
		t.Fatalf("Recover = %+v, want 4 interrupted (b1..b4)", res)
	}
	if got := line(t, a, "sales"); !slices.Equal(got, []string{"a3"}) {
		t.Fatalf("line after the recovery = %v, want [a3]", got)
	}
	later := now.Add(time.Hour)
	for ext, want := range map[string]struct{ state, ref string }{
		"1001": {AgentAvailable, ""}, // rang for b2
		"1002": {AgentAvailable, ""}, // talked to b3
		"1003": {AgentRinging, "a2"}, // ha's caller: untouched
		"1004": {AgentRinging, "a1"}, // b4 rang it once, a1 holds it now
	} {
		if st := readAgentState(t, a, ext, later); st.State != want.state || st.CallRef != want.ref {
			t.Errorf("agent %s after the recovery = %+v, want %s %q", ext, st, want.state, want.ref)
		}
	}
	if st := readAgentState(t, a, "1002", later); st.LastCallEnd.IsZero() || st.Calls != 1 {
		t.Errorf("agent 1002 that talked to b3: %+v, want its last call ended and counted", st)
	}
	for _, ref := range []string{"b1", "b2", "b3", "b4"} {
		if h := callerHash(t, a, ref); len(h) != 0 {
			t.Errorf("caller %s still has its hash %v", ref, h)
		}
	}
	for _, ref := range []string{"a1", "a2", "a3"} {
		if h := callerHash(t, a, ref); h["host"] != "ha" {
			t.Errorf("caller %s of the live host: %v", ref, h)
		}
	}
	if n, _ := r.Client.Exists(ctx, b.callersKey("hb")).Result(); n != 0 {
		t.Errorf("hb's callers set still exists")
	}
	holders, err = ledger.Holders(ctx)
	if err != nil || !slices.Equal(holders, []string{"ha"}) {
		t.Fatalf("Holders after the recovery = %v, %v; want [ha]", holders, err)
	}
	// A second recovery finds nothing.
	if res, err := ledger.Recover(ctx, "hb"); err != nil || res.Total() != 0 {
		t.Fatalf("second Recover = %+v, %v", res, err)
	}
}

// A node starting again drops the callers its previous run left.
func TestACDLedgerSettleOwn(t *testing.T) {
	r, a := newACDStore(t, "ha")
	b := NewWithClient(r.Client, Config{Domain: "acme", Host: "hb"})
	ctx := context.Background()
	setAvailable(t, a, acdT0, "1001")
	joinAll(t, a, "sales", acdT0, "a1", "a2")
	joinAll(t, b, "sales", acdT0.Add(time.Second), "b1")
	if res := offer(t, a, "sales", "a1", cands("1001"), false, acdT0); len(res.Agents) != 1 {
		t.Fatalf("offer = %+v", res)
	}
	res, err := a.ACDLedger().SettleOwn(ctx)
	if err != nil || res.Interrupted != 2 {
		t.Fatalf("SettleOwn = %+v, %v; want 2 interrupted", res, err)
	}
	if got := line(t, a, "sales"); !slices.Equal(got, []string{"b1"}) {
		t.Fatalf("line = %v, want [b1]", got)
	}
	if st := readAgentState(t, a, "1001", acdT0); st.State != AgentAvailable {
		t.Fatalf("agent that rang for a1 = %+v", st)
	}
	holders, _ := a.ACDLedger().Holders(ctx)
	if !slices.Equal(holders, []string{"hb"}) {
		t.Fatalf("Holders = %v, want [hb]", holders)
	}
}
